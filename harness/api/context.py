"""What a method or an attack may use of the run, as one object.

Methods and attacks get the run's judges, a backend factory (every model they query comes
from it, so it is routed and cached like the cell's own), the output directory and the seed
in one `RunContext`, instead of a growing list of parameters. Outside a run (a notebook, a
test), `RunContext(output_dir)` gives the default judges and an uncached factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _default_factory() -> Any:
    from harness.backends.factory import BackendFactory

    return BackendFactory()


@dataclass
class RunContext:
    output_dir: Path
    seed: int = 0
    judges: Any = None  # the run's JudgePanel; None: the default panel (refusal patterns)
    backends: Any = field(default_factory=_default_factory)  # BackendFactory
    device: str | None = None
    blobs: Any = None  # BlobStore for media a method or attack produces (generated images); None: none kept

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)

    def judge(self, role: str) -> Any:
        """The run's judge for `role`."""
        from harness.judges.panel import JudgePanel

        return (self.judges if self.judges is not None else JudgePanel()).get(role)

    def in_dir(self, output_dir: str | Path) -> "RunContext":
        """The same run context writing to another directory (an attack's own method run)."""
        return replace(self, output_dir=Path(output_dir))
