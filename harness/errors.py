"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class HarnessError(Exception):
    """Bad input: a config, a name, a path or data that the user supplied."""


class ConfigError(HarnessError):
    """The experiment config is missing, malformed or inconsistent."""


class UnknownNameError(HarnessError):
    """A benchmark, method, metric, model or backend name that no registry knows."""


class DatasetUnavailableError(HarnessError):
    """Benchmark data that cannot be reached: not released, gated, or not at the given path."""


class ModelLoadError(HarnessError):
    """A model or adapter that cannot be loaded from the given spec."""


class AdapterNoEffectError(HarnessError):
    """A method's artefact gives the same logits as its base model: it did nothing."""
