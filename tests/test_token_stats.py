"""token_stats_many against a direct computation: log_softmax of each row, then the target's entry.

The scorer reads the rows a few at a time and never stacks them; these cases cross its pass
boundaries, share one row between continuations (a packed context's last row), mix requests
with and without Min-k%++ moments, and include an empty continuation.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from harness.backends import token_stats  # noqa: E402
from harness.backends.token_stats import token_stats_many  # noqa: E402


def _direct(logits, rows, target):
    logp = torch.log_softmax(logits.double(), -1)
    lps = [float(logp[r, t]) for r, t in zip(rows, target)]
    greedy = [int(logits[r].argmax()) == t for r, t in zip(rows, target)]
    return lps, greedy


@pytest.mark.parametrize("vocab", [50, 1024])
def test_matches_log_softmax_across_passes_and_shared_rows(vocab, monkeypatch):
    monkeypatch.setattr(token_stats, "CPU_PASS_ELEMENTS", vocab * 16)  # 16 rows a pass: many passes
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, vocab, generator=g) * 4
    logits[7, 3] = 50.0  # a certain token: greedy and log p ~ 0
    rows = [list(range(0, 40)), [7, *range(40, 45)], [7, *range(45, 90)], [], list(range(90, 299, 3))]
    targets = [[int(t) for t in torch.randint(vocab, (len(r),), generator=g)] for r in rows]
    targets[1][0] = targets[2][0] = 3  # both continuations start from shared row 7
    moments = [False, False, True, False, False]
    got = token_stats_many(logits, rows, targets, moments, truncated=[0, 1, 0, 0, 2])
    for k, (r, t) in enumerate(zip(rows, targets)):
        lps, greedy = _direct(logits, r, t)
        assert got[k].token_logprobs == pytest.approx(lps, abs=1e-5)
        assert got[k].token_greedy == greedy
    assert got[1].token_greedy[0] and got[2].token_greedy[0] and got[1].token_logprobs[0] > -1e-6
    assert got[3].token_logprobs == [] and got[4].truncated == 2 and got[1].truncated == 1
    # moments only where asked: E[log p] and its spread under the model, per position (the spread
    # floored at 1e-3: row 7's near-certain token would otherwise divide Min-k%++ by ~0)
    assert got[0].token_mu == [] and len(got[2].token_mu) == len(rows[2])
    logp = torch.log_softmax(logits[rows[2]].double(), -1)
    mu = (logp.exp() * logp).sum(-1)
    sigma = (logp.exp() * (logp - mu[:, None]) ** 2).sum(-1).clamp(min=1e-6).sqrt()  # the scorer's floor
    assert got[2].token_mu == pytest.approx(mu.tolist(), abs=1e-5)
    assert got[2].token_sigma == pytest.approx(sigma.tolist(), abs=1e-5)
    assert all(math.isfinite(x) for x in got[4].token_logprobs)
