"""Membership-inference attacks (docs/metrics.md §7): forget vs holdout, scored by ROC AUC.

`MIAMetric` holds everything the attacks share: one request per item of the benchmark's
forget and holdout splits (the benchmark prompt, then its target of the answer), the AUC
and its bootstrap CI. Each attack overrides only its per-item score (and, for GradNorm, the
request kind).

Conventions (§0.2): every score is loss-like, **higher = looks less like a member**; the
AUC is `sklearn.metrics.roc_auc_score` with **forget = label 0, holdout = label 1**, so
AUC ≈ 1 means the forget answers look much more "member" than the holdout answers, and
AUC ≈ 0.5 means the two cannot be told apart, the ideal after unlearning. There is no
"higher is better" direction (below 0.5 is not better than 0.5), so `higher_is_better` is
None. PrivLeak (§8, `harness.metrics.privleak`) flips it to the MUSE convention 1 − AUC.

The metrics take no split (`mia_loss`, not `mia_loss@forget`). `per_item` maps item ids of
both splits to their scores (the ids are distinct across splits in every benchmark; a
collision is an error); `split_scores` splits such a result back into the two samples.
"""

from __future__ import annotations

import math
import zlib
from abc import abstractmethod
from typing import Any, Mapping

import numpy as np
from scipy.stats import rankdata

from harness.api.metric import Metric, MetricResult, ResponseMap, answer_request
from harness.api.requests import GradNormRequest, LoglikelihoodRequest, LoglikelihoodResponse, Request
from harness.stats import bootstrap_ci

ROLES = ("forget", "holdout")
NO_REFERENCE = "no reference run; give `--reference MODEL` or set `reference:` in the config"


def mia_auc(forget: Any, holdout: Any) -> float:
    """ROC AUC of the scores with forget = 0, holdout = 1 (`sklearn.metrics.roc_auc_score`)."""
    from sklearn.metrics import roc_auc_score

    f, h = np.asarray(forget, dtype=float), np.asarray(holdout, dtype=float)
    labels = np.concatenate([np.zeros(len(f)), np.ones(len(h))])
    return float(roc_auc_score(labels, np.concatenate([f, h])))


def mia_auc_ranks(forget: np.ndarray, holdout: np.ndarray) -> float:
    """The same AUC through the Mann-Whitney U statistic (ties get average ranks, exactly as
    roc_auc_score counts them as 1/2). Used as the bootstrap statistic: about 20x faster
    than roc_auc_score, which a 1000-resample bootstrap calls 1000 times."""
    ranks = rankdata(np.concatenate([forget, holdout]))
    n0, n1 = len(forget), len(holdout)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def mia_auc_ci(forget: Any, holdout: Any, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling the forget and holdout scores independently."""
    return bootstrap_ci([forget, holdout], mia_auc_ranks, seed=seed)


class MIAMetric(Metric):
    """An attack: `item_score(item, responses)` per item (None: skipped), AUC over forget vs holdout.

    value = AUC (forget = 0, holdout = 1); CI = `bootstrap_ci` over the two samples with the
    AUC as statistic; n = scored items of both splits; details: n_forget, n_holdout, the
    score's definition and the items skipped. None when either split has no scored item.
    """

    higher_is_better = None
    best_at = 0.5  # forget and holdout cannot be told apart
    needs_split = False
    score: str = ""  # what the per-item score is, for details

    def __init__(self, benchmark, split=None, seed: int = 0, **args: Any):
        from harness.errors import ConfigError

        if split is not None:
            raise ConfigError(f"metric {self.name!r} compares the forget and holdout splits: write it without '@{split}'")
        super().__init__(benchmark, None, seed=seed, **args)
        self.role_splits = {role: benchmark.resolve_split(role) for role in ROLES}

    def role_items(self, role: str) -> list[Any]:
        return self.benchmark.split(self.role_splits[role])

    # --- requests ---------------------------------------------------------------------
    def item_request(self, item: Any) -> Request:
        """The teacher-forced answer request (the one `probability` asks)."""
        return answer_request(self.benchmark, item)

    def requests(self) -> list[Request]:
        return [self.item_request(item) for role in ROLES for item in self.role_items(role)]

    def answer_response(self, item: Any, responses: ResponseMap) -> LoglikelihoodResponse:
        """The item's answer statistics without the EOS position (`mia_tokens`)."""
        request = self.item_request(item)
        return mia_tokens(request, responses[request])

    # --- scores -----------------------------------------------------------------------
    @abstractmethod
    def item_score(self, item: Any, responses: ResponseMap, reference: Mapping[str, MetricResult]) -> float | None:
        """The item's loss-like score (higher = less member-like); None: skipped."""

    def unavailable(self, reference: Mapping[str, MetricResult]) -> str | None:
        """Why the attack cannot run at all (None: it can)."""
        return None

    def split_scores(self, result: MetricResult) -> tuple[np.ndarray, np.ndarray]:
        """(forget scores, holdout scores) of a result of this attack, from its per-item values."""
        f = [result.per_item[i.id] for i in self.role_items("forget") if i.id in result.per_item]
        h = [result.per_item[i.id] for i in self.role_items("holdout") if i.id in result.per_item]
        return np.asarray(f, dtype=float), np.asarray(h, dtype=float)

    def compute(self, responses, deps, reference) -> MetricResult:
        details: dict[str, Any] = {"score": self.score, "labels": "forget=0, holdout=1"}
        reason = self.unavailable(reference or {})
        if reason is not None:
            return self.result(None, None, 0, details={**details, "reason": reason})
        scores: dict[str, dict[str, float]] = {}
        skipped = 0
        for role in ROLES:
            scores[role] = {}
            for item in self.role_items(role):
                s = self.item_score(item, responses, reference or {})
                if s is None or not math.isfinite(s):
                    skipped += 1
                else:
                    scores[role][item.id] = float(s)
        clash = scores["forget"].keys() & scores["holdout"].keys()
        if clash:
            from harness.errors import HarnessError

            raise HarnessError(f"{self.name}: item ids in both the forget and holdout splits: {sorted(clash)[:3]}")
        f = np.fromiter(scores["forget"].values(), dtype=float)
        h = np.fromiter(scores["holdout"].values(), dtype=float)
        details.update(n_forget=len(f), n_holdout=len(h), skipped=skipped)
        per_item = {**scores["forget"], **scores["holdout"]}
        if len(f) == 0 or len(h) == 0:
            empty = [f"{role} ({self.role_splits[role]})" for role in ROLES if not scores[role]]
            details["reason"] = f"no scored items in {' and '.join(empty)}"
            return self.result(None, None, len(per_item), per_item=per_item, details=details)
        value = mia_auc(f, h)
        return self.result(value, mia_auc_ci(f, h, self.seed), len(per_item), per_item=per_item, details=details)


def mia_tokens(request: LoglikelihoodRequest, response: LoglikelihoodResponse) -> LoglikelihoodResponse:
    """The response without its final (EOS) position when the request scored an appended EOS.

    open-unlearning's MIA statistics leave out the EOS prediction its answer encoding adds
    (docs/metrics.md "Answer EOS"); the answer's own tokens keep their log-probs, which do not
    depend on a token after them. So every MIA score is the same with `answer_eos` on or off,
    and the one forward pass `probability` asks for serves both.
    """
    if not getattr(request, "answer_eos", False) or response.n_tokens == 0:
        return response
    return LoglikelihoodResponse(token_logprobs=response.token_logprobs[:-1], token_greedy=response.token_greedy[:-1],
                                 token_mu=response.token_mu[:-1], token_sigma=response.token_sigma[:-1],
                                 truncated=response.truncated)


def _avg_nll(response) -> float | None:
    return None if response.n_tokens == 0 else -response.mean


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest max(1, int(k·n)) values (open-unlearning's `int(len(lp) * k)`)."""
    m = max(1, int(len(values) * k))
    return float(np.mean(np.sort(values)[:m]))


def _check_k(name: str, k: float) -> float:
    from harness.errors import ConfigError

    if not 0 < float(k) <= 1:
        raise ConfigError(f"{name}: k must be in (0, 1], not {k!r}")
    return float(k)


class MIALoss(MIAMetric):
    """LOSS attack: the answer's avgNLL = −mean token log p."""

    name = "mia_loss"
    score = "avgNLL"

    def item_score(self, item, responses, reference):
        return _avg_nll(self.answer_response(item, responses))


ZLIB_TEXTS = ("answer", "prompt_and_answer")


class MIAZlib(MIAMetric):
    """zlib attack: avgNLL / len(zlib.compress(text.encode("utf-8"))).

    `text` says which text is compressed (docs/metrics.md §7, recorded in `details['zlib_text']`):
    `answer` (default, the spec's `answer_text`): the answer as scored, the benchmark's target of
    `item.answer`, whose avgNLL is the numerator; `prompt_and_answer`: the benchmark prompt
    followed by that target, the whole sequence as text (without a chat template's markup).
    """

    name = "mia_zlib"

    def __init__(self, benchmark, split=None, seed: int = 0, text: str = "answer", **args: Any):
        from harness.errors import ConfigError

        if text not in ZLIB_TEXTS:
            raise ConfigError(f"{self.name}: text must be one of {', '.join(ZLIB_TEXTS)}, not {text!r}")
        args["text"] = text
        super().__init__(benchmark, split, seed=seed, **args)
        self.text = text
        what = "the answer" if text == "answer" else "the prompt followed by the answer"
        self.score = f"avgNLL / zlib-compressed length of {what}"

    def zlib_text(self, item: Any) -> str:
        request = self.item_request(item)
        return request.continuation if self.text == "answer" else request.context + request.continuation

    def item_score(self, item, responses, reference):
        nll = _avg_nll(self.answer_response(item, responses))
        return None if nll is None else nll / len(zlib.compress(self.zlib_text(item).encode("utf-8")))

    def compute(self, responses, deps, reference) -> MetricResult:
        result = super().compute(responses, deps, reference)
        result.details["zlib_text"] = self.text
        return result


class MIAMinK(MIAMetric):
    """Min-k% attack: −mean of the lowest max(1, ⌊k·n⌋) answer-token log-probs (k = 0.4 as in
    the configs). open-unlearning drops the final (EOS) prediction; so does `mia_tokens` when
    the benchmark scores answers with their EOS (`answer_eos`)."""

    name = "mia_min_k"

    def __init__(self, benchmark, split=None, seed: int = 0, k: float = 0.4, **args: Any):
        args["k"] = _check_k(self.name, k)
        super().__init__(benchmark, split, seed=seed, **args)
        self.k = args["k"]
        self.score = f"-mean of the lowest {self.k:g} fraction of token log-probs"

    def item_score(self, item, responses, reference):
        response = self.answer_response(item, responses)
        if response.n_tokens == 0:
            return None
        return -_lowest_k_mean(np.asarray(response.token_logprobs, dtype=float), self.k)


class MIAMinKPlusPlus(MIAMetric):
    """Min-k%++ attack: z_t = (log p(y_t) − μ_t)/σ_t with μ_t, σ_t the mean and standard
    deviation of log p over the vocabulary (`token_mu`, `token_sigma`; σ² clamped ≥ 1e-6 by
    the backend); score = −mean of the lowest max(1, ⌊k·n⌋) z_t (k = 0.4). The EOS position
    is dropped as for Min-k%."""

    name = "mia_min_k_plus_plus"

    def __init__(self, benchmark, split=None, seed: int = 0, k: float = 0.4, **args: Any):
        args["k"] = _check_k(self.name, k)
        super().__init__(benchmark, split, seed=seed, **args)
        self.k = args["k"]
        self.score = f"-mean of the lowest {self.k:g} fraction of z = (log p - mu) / sigma"

    def item_request(self, item: Any) -> Request:
        return answer_request(self.benchmark, item, moments=True)

    def item_score(self, item, responses, reference):
        r = self.answer_response(item, responses)
        if r.n_tokens == 0:
            return None
        z = (np.asarray(r.token_logprobs, dtype=float) - np.asarray(r.token_mu, dtype=float)) / np.asarray(
            r.token_sigma, dtype=float
        )
        return -_lowest_k_mean(z, self.k)


MIA_LOSS = "mia_loss"


class MIAReference(MIAMetric):
    """Reference attack: avgNLL_target − avgNLL_ref, the reference model's per-item avgNLL
    read from the reference run's `mia_loss` per-item scores. None without a reference run
    (or when it has no per-item `mia_loss` scores); items the reference did not score are
    skipped. `mia_loss` is also a dependency, so a reference run evaluated with the same
    metric list computes it."""

    name = "mia_reference"
    needs_reference_run = True
    score = "avgNLL - reference model's avgNLL (reference run's mia_loss)"

    def dependencies(self) -> list[str]:
        return [MIA_LOSS]

    def reference_dependencies(self) -> list[str]:
        return [MIA_LOSS]

    def unavailable(self, reference):
        ref = reference.get(MIA_LOSS)
        if ref is None:
            return NO_REFERENCE
        if not ref.per_item:
            return f"the reference run has no per-item {MIA_LOSS} scores"
        return None

    def item_score(self, item, responses, reference):
        ref = reference[MIA_LOSS].per_item.get(item.id)
        nll = _avg_nll(self.answer_response(item, responses))
        return None if ref is None or nll is None else nll - ref


class MIAGradNorm(MIAMetric):
    """GradNorm attack: the mean over parameter tensors of ‖∇ avgNLL‖_p (p = 2), batch 1, the
    model in train() mode (a `GradNormRequest`; see `HFBackend.grad_norm` for which tensors).
    Higher gradient norm = less member-like, as in open-unlearning."""

    name = "mia_gradnorm"
    request_kinds = ("grad_norm",)

    def __init__(self, benchmark, split=None, seed: int = 0, p: float = 2, **args: Any):
        from harness.errors import ConfigError

        if p not in (1, 2, float("inf")):
            raise ConfigError(f"{self.name}: p must be 1, 2 or inf, not {p!r}")
        args["p"] = float(p)
        super().__init__(benchmark, split, seed=seed, **args)
        self.p = float(p)
        self.score = f"mean over parameter tensors of the gradient {self.p:g}-norm of avgNLL"

    def item_request(self, item: Any) -> Request:
        return GradNormRequest(context=self.benchmark.prompt(item), continuation=self.benchmark.target(item.answer), p=self.p,
                               images=self.benchmark.images(item))

    def item_score(self, item, responses, reference):
        return responses[self.item_request(item)].norm
