"""CHES scoring and filtering of preference pairs (docs/methods.md §2).

CHES (Razin et al., ICLR 2025) predicts which pairs make DPO *lower* the likelihood of the
preferred response (likelihood displacement): the more the dispreferred answer's hidden
representation resembles the preferred one's, the higher the score.

With `a± = Σ_k h(x, y±_<k)`, the last-layer hidden states at the positions that *predict*
each response token (from the last prompt token through the second-to-last response token,
EOS counted as part of the response, so exactly |y| positions), each response in its own
forward pass:

    CHES    = <a+, a-> - ||a+||²
    LN-CHES = <a+, a-> / (|y+| |y-|) - ||a+||² / |y+|²

The hidden states come from the backend (`HiddenStatesRequest(pooling="sum",
span="predicting")` on `prompt` / `response + EOS`, layer -1: in transformers 5 the last entry
is after the final norm, the state that feeds the unembedding), so the prompt goes through the
same chat template as training and evaluation (`harness.prompts.encode_prompt`). Scores are
computed in float32 from the summed vectors. Truncation: the backend keeps the response and
cuts the context from the left to the model's length (the CHES default of 512 input tokens
is not applied) [proposal].

Filtering (§2.5): sort ascending by the measure (stable: ties keep the data's order), keep a
window of `keep` pairs (a count, or a fraction of the data) centred at quantile `q`
(the CHES code's `__quantile_slice`); q = 0, the default, keeps the lowest scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.io import atomic_write_jsonl
from harness.prompts import with_eos

if TYPE_CHECKING:
    from harness.methods.preferences import PreferencePair

Measure = Literal["ches", "ln_ches"]
MEASURES: tuple[str, ...] = ("ches", "ln_ches")
SCORES_FILE = "ches_scores.jsonl"


@dataclass(frozen=True)
class CHESScore:
    """Scores of one pair; `n_chosen`/`n_rejected` are |y+| and |y-| (EOS included)."""

    id: str
    ches: float
    ln_ches: float
    n_chosen: int
    n_rejected: int

    def measure(self, name: str) -> float:
        return float(getattr(self, name))


def ches_requests(pair: "PreferencePair", eos_token: str | None, chat: bool = True) -> tuple[Any, Any]:
    """The two hidden-state requests of a pair: (x, y+) and (x, y-), summed over predicting positions."""
    from harness.api.requests import HiddenStatesRequest

    def req(response: str) -> HiddenStatesRequest:
        return HiddenStatesRequest(context=pair.prompt, continuation=with_eos(response, eos_token), layers=(-1,),
                                   pooling="sum", span="predicting", system=pair.system, chat=chat)

    return req(pair.chosen), req(pair.rejected)


def ches_from_sums(a_pos: np.ndarray, a_neg: np.ndarray, n_pos: int, n_neg: int) -> tuple[float, float]:
    """(CHES, LN-CHES) from the summed hidden states and the response lengths."""
    a_pos = np.asarray(a_pos, dtype=np.float64)
    a_neg = np.asarray(a_neg, dtype=np.float64)
    inner, norm2 = float(a_pos @ a_neg), float(a_pos @ a_pos)
    return inner - norm2, inner / (n_pos * n_neg) - norm2 / (n_pos * n_pos)


def score_pairs(backend: Any, pairs: Sequence["PreferencePair"], eos_token: str | None,
                chat: bool = True) -> list[CHESScore]:
    """CHES and LN-CHES of every pair, with one batched hidden-states call on `backend`.

    Pairs with an empty prompt or response are refused (CHES skips them; the preference
    loaders never produce them).
    """
    for p in pairs:
        if not (p.prompt.strip() and p.chosen.strip() and p.rejected.strip()):
            raise ConfigError(f"CHES: pair {p.id!r} has an empty prompt or response")
    requests = [r for p in pairs for r in ches_requests(p, eos_token, chat)]
    answers = backend.run(requests) if requests else []
    out = []
    for k, p in enumerate(pairs):
        pos, neg = answers[2 * k], answers[2 * k + 1]
        n_pos, n_neg = pos.n_positions, neg.n_positions
        if not n_pos or not n_neg:
            raise ConfigError("CHES needs hidden states with their position counts (a backend that reports "
                              "`n_positions`; clear cached answers from before it did)")
        a_pos, a_neg = next(iter(pos.states.values())), next(iter(neg.states.values()))
        ches, ln = ches_from_sums(np.asarray(a_pos), np.asarray(a_neg), n_pos, n_neg)
        out.append(CHESScore(id=p.id, ches=ches, ln_ches=ln, n_chosen=n_pos, n_rejected=n_neg))
    return out


def save_scores(directory: str | Path, scores: Sequence[CHESScore], kept: set[str] | None = None) -> Path:
    """Per-pair scores as JSONL (`kept`: whether the filter kept the pair), for plotting."""
    path = Path(directory) / SCORES_FILE
    rows = [{**asdict(s), **({"kept": s.id in kept} if kept is not None else {})} for s in scores]
    atomic_write_jsonl(path, rows)
    return path


def window_size(keep: int | float, n: int) -> int:
    """`keep` as a count (int >= 1) or a fraction of n (float in (0, 1]); at least one pair when n > 0."""
    if isinstance(keep, bool):
        raise ConfigError(f"CHES filter: `keep` must be a count or a fraction, got {keep!r}")
    if isinstance(keep, int):
        if keep < 1:
            raise ConfigError(f"CHES filter: `keep` as a count must be >= 1, got {keep}")
        return min(keep, n)
    if not 0 < keep <= 1:
        raise ConfigError(f"CHES filter: `keep` as a fraction must be in (0, 1], got {keep}")
    return min(n, max(1, int(round(keep * n)))) if n else 0


def quantile_window(n: int, size: int, quantile: float) -> tuple[int, int]:
    """[start, end) of a window of `size` sorted positions centred at `quantile` (CHES `__quantile_slice`)."""
    if not 0 <= quantile <= 1:
        raise ConfigError(f"CHES filter: `quantile` must be in [0, 1], got {quantile}")
    idx = int(np.round(quantile * (n - 1))) if n else 0
    start = max(0, idx - size // 2)
    end = start + size
    if end > n:
        end = n
        start = max(0, end - size)
    return start, end


def filter_indices(values: Sequence[float], keep: int | float, quantile: float = 0.0) -> list[int]:
    """Indices (into `values`) of the kept window, in ascending score order."""
    n = len(values)
    order = np.argsort(np.asarray(values, dtype=float), kind="stable")
    start, end = quantile_window(n, window_size(keep, n), quantile)
    return [int(i) for i in order[start:end]]


def filter_pairs(pairs: Sequence["PreferencePair"], scores: Sequence[CHESScore], measure: str = "ln_ches",
                 keep: int | float = 0.05, quantile: float = 0.0) -> list["PreferencePair"]:
    """The pairs in the window of the sorted `measure` (docs/methods.md §2.5), lowest first."""
    if measure not in MEASURES:
        raise ConfigError(f"CHES filter: unknown measure {measure!r} (choose one of: {', '.join(MEASURES)})")
    if len(scores) != len(pairs) or any(s.id != p.id for s, p in zip(scores, pairs)):
        raise ConfigError("CHES filter: the scores do not belong to these pairs")
    idx = filter_indices([s.measure(measure) for s in scores], keep, quantile)
    return [pairs[i] for i in idx]
