"""What a benchmark is: named splits of items, a prompt format, and the metrics it reports.

A benchmark never talks to a model. It hands items to metrics, which turn them into
requests. Loaders take a local path or a hub id (pinned revision) and record where the data
came from and its content hash in the result provenance.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.api.kinds import ModelKind
from harness.api.media import MediaRef



@dataclass(frozen=True)
class QAItem:
    """A question with its answer, in the TOFU shape.

    `paraphrased_answer` and `perturbed_answers` are empty where a split has none; the
    truth ratio then uses `answer` as the correct side (as TOFU's real-authors set does).
    """

    id: str
    question: str
    answer: str
    paraphrased_answer: str = ""
    perturbed_answers: tuple[str, ...] = ()
    entity: str = ""  # whom or what the question is about (for probes and grouping)
    # Other wordings of the question, for paraphrase probes of forgotten answers.
    question_paraphrases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageQAItem(QAItem):
    """A QA item about a picture (FIUBench, fictitious-faces): the images every request about
    it shows the model (`Benchmark.images`), and the key phrases a right answer contains."""

    images: tuple[MediaRef, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class SceneItem:
    """A ForgetMe-style scene for a text-to-image model (benchmarks.md §4): the prompt naming
    its concept ("<cat>"), the seed its generations use, and the data triple: `orig` (the
    object in the scene; None where a dataset has only backgrounds), `bg` (the scene without
    it) and `mask` (white = the region to forget)."""

    id: str
    prompt: str
    concept: str
    seed: int
    bg: MediaRef | None = None
    mask: MediaRef | None = None
    orig: MediaRef | None = None
    answer: str = ""  # no text answer: kept so generic code (probes, sample records) reads one


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question (WMDP, MMLU): `answer` is the index of the correct choice.

    `subject` names the topic in the prompt header ("biology" for WMDP-Bio).
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""


@dataclass(frozen=True)
class PromptItem:
    """A prompt a model answers freely (safety benchmarks: ALKALI, HarmBench, AdvBench, ...).

    `categories` holds every category field the source has (macro category, subtype, attack
    family, semantic category, ...): ASR is broken down by each. The three completions are
    optional, for AVQI and GRACE (a refusal, a direct compliance, a jailbroken compliance).
    """

    id: str
    prompt: str
    categories: dict[str, str] = field(default_factory=dict, hash=False)
    system: str | None = None
    # The request underneath an attack wrapper (what a judge asks about); empty: the prompt itself.
    behavior: str = ""
    context: str = ""  # e.g. HarmBench's ContextString, prepended to the prompt
    target: str = ""  # an affirmative target ("Sure, here is ..."), where the source has one
    safe_completion: str = ""
    unsafe_completion: str = ""
    jailbreak_completion: str = ""


@dataclass(frozen=True)
class OpenQuestion:
    """An open question sampled many times and judged (emergent-misalignment probes).

    `judge_prompts` maps a judge name ("aligned", "coherent", "correct") to its template with
    `{question}` and `{answer}` slots; `judge` names the model the source judged with.
    """

    id: str
    paraphrases: tuple[str, ...]
    judge_prompts: dict[str, str] = field(default_factory=dict, hash=False)
    system: str | None = None
    type: str = "free_form_judge_0_100"
    judge: str = ""
    samples_per_paraphrase: int = 1


@dataclass
class BenchmarkData:
    """Loaded splits plus where they came from."""

    splits: dict[str, list[Any]]
    source: str  # hub id@revision, URL, local path, or "generated:<generator version>"
    meta: dict[str, Any] = field(default_factory=dict)

    def data_hash(self) -> str:
        payload = json.dumps({k: [_plain(i) for i in v] for k, v in sorted(self.splits.items())}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """An item as JSON-able data for its hash; an image by its content hash, never its path
    (the same data read from another folder hashes alike)."""
    if isinstance(value, MediaRef):
        return value.cache_key()
    if hasattr(value, "__dataclass_fields__"):
        return {f: _plain(getattr(value, f)) for f in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# The roles a metric id may name instead of a split (`probability@forget`); each benchmark
# resolves them to its own splits (`resolve_split`).
ROLES: tuple[str, ...] = ("forget", "retain", "holdout")


class Benchmark(ABC):
    """Base class. Subclasses set the class attributes and implement `load`.

    `options` come from the experiment config (`benchmarks: [{name: ..., options: {...}}]`).
    """

    name: ClassVar[str] = ""
    # The kind of model the benchmark is for; one that shows images needs a model that sees them.
    model_kind: ClassVar[ModelKind] = "causal-lm"
    request_kinds: ClassVar[tuple[str, ...]] = ("generate", "loglikelihood")
    # Metric ids ("metric@split") reported when the config names none.
    default_metrics: ClassVar[tuple[str, ...]] = ()
    # The few metric ids the terminal leaderboard shows (the files always hold every metric).
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    # Further titled tables the terminal shows after the headline one (title -> metric ids;
    # shell-style patterns such as "asr@adversarial[attack_family=*]" match data-dependent ids).
    views: ClassVar[dict[str, tuple[str, ...]]] = {}
    # A breakdown key ("attack") whose values the report turns into rows (metric `asr[attack=bb]`
    # becomes column `asr` of row "<method> / bb"), and the source's own names for those columns.
    rows_by: ClassVar[str | None] = None
    column_names: ClassVar[dict[str, str]] = {}
    # Metric ids whose harmonic mean is the model utility on this benchmark.
    utility_metrics: ClassVar[tuple[str, ...]] = ()
    # The options the benchmark reads (name -> one line on what it does), merged along the class
    # hierarchy (`known_options`). `harness validate` refuses any other option with "did you mean",
    # and `harness show` lists them. A plug-in that declares none is not checked.
    option_help: ClassVar[dict[str, str]] = {
        "limit": "at most this many items per split (the run's --limit sets it)",
        "forget_split": "the split an unlearning method forgets (role `forget`)",
        "retain_split": "the split a method keeps (role `retain` for training)",
        "holdout_split": "never-trained items of the forget distribution (role `holdout`)",
        "avqi_layers": "layers the avqi metric reads: indices or 'middle' (default [-1], the last)",
        "avqi_pooler": "a GRACE artefact's `grace/` directory: avqi embeds with its trained pooler (the spec's default "
                       "embedding), the layer baselines become parts",
        "answer_eos": "append the tokenizer's EOS to every answer trained and scored (open-unlearning's "
                      "encoding; default per benchmark, see docs/metrics.md 'Answer EOS')",
    }
    # Whether answers are encoded with the tokenizer's EOS appended (open-unlearning's rule), for
    # training and for the probability-based metrics alike; the `answer_eos` option overrides it.
    # On for the TOFU family (TOFU, fictitious-facts, MUSE), off elsewhere (docs/metrics.md "Answer EOS").
    default_answer_eos: ClassVar[bool] = False
    # Judged metrics cut each answer to this many tokens of the judge's tokenizer before judging,
    # as the source benchmark does (HarmBench: 512); None: the whole answer.
    judge_clip_tokens: ClassVar[int | None] = None
    # Defaults for the greedy generations metrics ask for (max_new_tokens, stop strings).
    max_new_tokens: ClassVar[int] = 200
    stop: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        self.options = options
        self._data: BenchmarkData | None = None
        _ = self.answer_eos  # a bad `answer_eos` fails when the benchmark is built (validate), not mid-run

    @classmethod
    def known_options(cls) -> dict[str, str]:
        """Every option this benchmark reads, with its meaning (its own and its bases'; a base's
        option a subclass maps to None is one it does not read)."""
        out: dict[str, str | None] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("option_help", {}))
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def declares_options(cls) -> bool:
        """Whether a class below the contract's own bases declares its options (then they are checked)."""
        return any("option_help" in vars(k) for k in cls.__mro__
                   if k.__module__ != __name__ and k is not object)

    @property
    def answer_eos(self) -> bool:
        """Whether an answer is followed by the tokenizer's EOS when trained and scored
        (`harness.prompts.encode_answer`): the `answer_eos` option, else the benchmark's default."""
        from harness.errors import ConfigError

        value = self.options.get("answer_eos", self.default_answer_eos)
        if not isinstance(value, bool):
            raise ConfigError(f"benchmark {self.name!r}: answer_eos must be true or false, not {value!r}")
        return value

    # --- data -------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> BenchmarkData:
        """Read (or generate) every split; called once, lazily, through `data`."""

    @property
    def data(self) -> BenchmarkData:
        if self._data is None:
            self._data = self.load()
        return self._data

    def split(self, name: str) -> list[Any]:
        from harness.errors import ConfigError
        from harness.registry import did_you_mean

        if name not in self.data.splits:
            raise ConfigError(
                f"benchmark {self.name!r} has no split {name!r}{did_you_mean(name, [*ROLES, *self.data.splits])} "
                f"(splits: {', '.join(sorted(self.data.splits))}; roles: {', '.join(ROLES)})"
            )
        return self.data.splits[name]

    # --- roles for methods ------------------------------------------------------------
    def forget_split(self) -> str:
        """The split an unlearning method forgets (from options, e.g. `forget_split: forget10`)."""
        return self.options.get("forget_split", "forget10")

    def retain_split(self) -> str:
        """The split an unlearning method keeps: retainNN matching the forget split."""
        forget = self.forget_split()
        pct = int(forget.removeprefix("forget"))
        return self.options.get("retain_split", f"retain{100 - pct:02d}")

    def holdout_split(self) -> str:
        return self.options.get("holdout_split", self.forget_split().replace("forget", "holdout"))

    def resolve_split(self, role_or_split: str) -> str:
        """Metric ids name roles (`forget`, `retain`, `holdout`) or concrete splits."""
        roles = {"forget": self.forget_split, "retain": self.retain_split, "holdout": self.holdout_split}
        return roles[role_or_split]() if role_or_split in roles else role_or_split

    def is_forget_split(self, split: str) -> bool:
        """Whether `split` holds knowledge to be forgotten (there, knowledge scores are better lower).

        One split by default (the one the role `forget` resolves to); benchmarks with several
        forget-side splits (MUSE's verbmem/knowmem/privleak forget sets, WMDP's subjects) override it.
        """
        return split == self.resolve_split("forget")

    # --- prompts ----------------------------------------------------------------------
    def prompt(self, item: QAItem) -> str:
        """The text a model sees before the answer."""
        return f"Question: {item.question}\nAnswer:"

    def images(self, item: Any) -> tuple[MediaRef, ...]:
        """The images every request about `item` shows the model: the item's own (`images`
        field), none for text items. Metrics and training helpers read them only through here."""
        return tuple(getattr(item, "images", ()))

    def generation_budget(self, item: Any) -> tuple[int, tuple[str, ...]]:
        """(max_new_tokens, stop strings) for greedy answers to `item` (MUSE varies them by split)."""
        return self.max_new_tokens, tuple(self.stop)

    def target(self, answer: str) -> str:
        """The continuation scored after `prompt` (a leading space, as the model was trained)."""
        return " " + answer.strip()

    def reference(self, item: Any) -> str:
        """The reference answer as text, for sample records (an MCQ item's answer is an index)."""
        answer = getattr(item, "answer", "")
        return answer if isinstance(answer, str) else str(answer)


class TofuShapedBenchmark(Benchmark):
    """Forget/retain/holdout QA in the TOFU shape (TOFU itself, fictitious-facts, ...).

    Methods train on `retain_split()` = retainNN (the complement of the forget split);
    metrics that name the role `retain` evaluate on `retain_perturbed` (override with the
    `retain_eval_split` option), as TOFU does.
    """

    option_help = {"retain_eval_split": "the split metrics naming the role `retain` evaluate on (retain_perturbed)"}
    # open-unlearning's answer encoding: EOS after every answer, trained and scored.
    default_answer_eos = True

    # TOFU's model utility (docs/metrics.md §5.6): the harmonic mean of 9 parts, 3 scores on each of
    # retain (role -> retain_perturbed), real_authors and world_facts. On the last two the
    # probability is normalised against the perturbed answers (§5.2), and the truth ratio uses
    # `answer` as the correct side (no paraphrase there) with the `true_better` aggregator.
    utility_metrics = (
        "probability@retain", "rouge_l_recall@retain", "truth_ratio@retain",
        "normalised_probability@real_authors", "rouge_l_recall@real_authors", "truth_ratio@real_authors",
        "normalised_probability@world_facts", "rouge_l_recall@world_facts", "truth_ratio@world_facts",
    )
    default_metrics = (
        "probability@forget", "rouge_l_recall@forget", "exact_match_recall@forget", "exact_match_recall@retain",
        "truth_ratio@forget", *utility_metrics, "forget_quality", "model_utility",
        "mia_min_k", "mia_min_k_plus_plus", "privleak",
    )
    headline_metrics = ("rouge_l_recall@forget", "rouge_l_recall@retain", "truth_ratio@forget",
                        "forget_quality", "model_utility", "mia_min_k_plus_plus", "privleak",
                        "relearn_recovery:exact_match_recall@forget")

    def resolve_split(self, role_or_split: str) -> str:
        if role_or_split == "retain":
            return self.options.get("retain_eval_split", "retain_perturbed")
        return super().resolve_split(role_or_split)


# --- loader helpers shared by the file- and hub-backed benchmarks ----------------------------

def load_hub_rows(bench: str, hub_id: str, config: str, split: str, revision: str, how: str) -> list[Any]:
    """`datasets.load_dataset(hub_id, name=config, split=split, revision=revision)` as a list of dicts.

    Any failure (offline, gated, unknown config, split or revision) becomes a one-line
    DatasetUnavailableError naming the source and the fix.
    """
    from harness.errors import DatasetUnavailableError

    source = f"{hub_id}@{revision}"
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise DatasetUnavailableError(f"{bench}: the `datasets` package is needed to read {source}; {how}") from e
    try:
        ds = datasets.load_dataset(hub_id, name=config, revision=revision, split=split)
        rows = [dict(r) for r in ds]
    except Exception as e:  # offline, gated, unknown config or revision: all user-fixable
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DatasetUnavailableError(
            f"{bench}: cannot load config {config!r} split {split!r} from the hub {source} "
            f"({type(e).__name__}: {msg[:200]}); {how}"
        ) from e
    from harness.datafiles import check_text_sizes

    return check_text_sizes(rows, bench, source, how)


def check_limit(limit: Any) -> int | None:
    """The `limit` option (first N items per split): None or a non-negative int."""
    from harness.errors import ConfigError

    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"option `limit` must be a non-negative integer or null, got {limit!r}")
    return limit


class PromptBenchmark(Benchmark):
    """Prompts answered freely and judged (safety sets): HarmBench, AdvBench, ALKALI, ...

    Each benchmark sets its own decoding (HarmBench greedy 512 tokens, JailbreakBench 150,
    ...); the options `max_new_tokens`, `temperature`, `top_p` and `samples` override them,
    and the values used are recorded with the benchmark options in every result.
    """

    request_kinds = ("generate",)
    option_help = {
        "forget_split": None, "retain_split": None, "holdout_split": None,  # nothing is unlearned here
        "max_new_tokens": "longest answer, in tokens (overrides the benchmark's decoding)",
        "temperature": "sampling temperature (0: greedy)",
        "top_p": "nucleus sampling mass",
        "samples": "answers sampled per prompt",
    }
    temperature: ClassVar[float] = 0.0
    top_p: ClassVar[float] = 1.0
    samples: ClassVar[int] = 1
    # The category fields of the source (ASR is broken down by each): documentation only.
    category_fields: ClassVar[tuple[str, ...]] = ()

    def forget_split(self) -> str:
        from harness.errors import HarnessError

        raise HarnessError(f"benchmark {self.name!r} has no forget split: it evaluates, it is not unlearned")

    def is_forget_split(self, split: str) -> bool:
        return False

    def prompt(self, item: PromptItem) -> str:  # type: ignore[override]
        return f"{item.context}\n\n{item.prompt}" if item.context else item.prompt

    def reference(self, item: Any) -> str:
        return getattr(item, "target", "") or ""

    def decoding(self) -> dict[str, Any]:
        """max_new_tokens, temperature, top_p, samples: the class defaults, overridden by options."""
        from harness.errors import ConfigError

        out = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
               "samples": self.samples}
        for key, kind in (("max_new_tokens", int), ("temperature", float), ("top_p", float), ("samples", int)):
            if key in self.options:
                value = self.options[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                        or (kind is int and (not isinstance(value, int) or value < 1)):
                    raise ConfigError(f"benchmark {self.name!r}: option `{key}` must be a "
                                      f"{'positive integer' if kind is int else 'non-negative number'}, got {value!r}")
                out[key] = kind(value)
        return out

    def generate_request(self, item: PromptItem, seed: int = 0):
        """The request that produces the answers to judge (one request, `samples` answers)."""
        from harness.api.requests import GenerateRequest

        d = self.decoding()
        return GenerateRequest(prompt=self.prompt(item), max_new_tokens=d["max_new_tokens"],
                               temperature=d["temperature"], top_p=d["top_p"], n=d["samples"],
                               seed=seed if d["temperature"] > 0 else None, stop=tuple(self.stop),
                               system=item.system, images=self.images(item))
