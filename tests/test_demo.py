"""The real demo models: the built-in tiny zoo learns the facts, and the demo's methods forget them.

Slow (it trains both tiny models once; they are cached by content hash afterwards).
"""

from __future__ import annotations

import pytest

from harness.demo import demo_config
from harness.results import find_summaries, read_summary
from harness.runner import Runner

pytestmark = pytest.mark.slow


def test_demo_lowers_forget_recall_and_reference_keeps_retain_recall(tmp_path):
    cfg = demo_config(output_dir=str(tmp_path / "demo"), cache_dir=str(tmp_path / "cache"),
                      metrics=["exact_match_recall@forget", "exact_match_recall@retain"])
    report = Runner(cfg).run()
    assert len(report.cells) == 6  # the reference, the original and four methods
    recall = {}
    for path in find_summaries(tmp_path / "demo"):
        s = read_summary(path)
        recall[(s.model, s.method)] = (s.metrics["exact_match_recall@forget"].value,
                                       s.metrics["exact_match_recall@retain"].value)
    original_forget, original_retain = recall[("tiny-facts", "none")]
    assert original_forget >= 0.9 and original_retain >= 0.9  # the tiny model memorised the facts
    ref_forget, ref_retain = recall[("tiny-facts-retain", "none")]
    assert ref_forget <= 0.05 and ref_retain >= 0.9  # never saw the forget entities, kept the rest
    for method in ("grad-ascent", "grad-diff", "npo", "laf"):
        forget, _ = recall[("tiny-facts", method)]
        assert forget < original_forget - 0.2, (method, forget)
