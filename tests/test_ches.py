"""CHES and LN-CHES against a direct per-example forward pass; filtering against a sort."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.prompts import encode_prompt
from harness.api.requests import HiddenStatesRequest, request_key
from harness.methods.ches import (CHESScore, ches_from_sums, filter_indices, filter_pairs, quantile_window, save_scores,
                          score_pairs, window_size)
from harness.methods.preferences import PreferencePair

PAIRS = [
    PreferencePair("p0", "What does Ada like?", "Ada likes tea.", "Ada likes old clocks and green glass."),
    PreferencePair("p1", "What does Bo like?", "I cannot say.", "Bo likes maps."),
    PreferencePair("p2", "Question: What does Cyr like?", "Cyr likes rivers, I think.", "rivers", system="Be brief."),
]


@pytest.fixture(scope="module")
def loaded(tiny_chat_model_dir):
    from harness.zoo.load import load_hf_model
    from harness.zoo.specs import ModelSpec

    return load_hf_model(ModelSpec(name="toy-chat", path=str(tiny_chat_model_dir), dtype="float32"), device="cpu")


def _direct_sum(loaded, prompt: str, system: str | None, response: str) -> tuple[np.ndarray, int]:
    """Σ of last-layer states at the positions predicting each response token (EOS included), one
    unpadded forward pass, positions picked by hand."""
    import torch

    tok = loaded.tokenizer
    prompt_ids = encode_prompt(tok, prompt, system, use_template=True)
    resp_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + resp_ids])
    with torch.no_grad():
        h = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()
    positions = list(range(len(prompt_ids) - 1, len(prompt_ids) + len(resp_ids) - 1))
    assert len(positions) == len(resp_ids)
    return h[positions].sum(0).numpy(), len(resp_ids)


def test_ches_and_ln_ches_match_a_direct_computation(loaded):
    from harness.backends.hf import HFBackend

    backend = HFBackend(loaded.spec, device="cpu", loaded=loaded)
    scores = score_pairs(backend, PAIRS, loaded.tokenizer.eos_token, chat=True)  # one batch: left padding
    for pair, s in zip(PAIRS, scores):
        a_pos, n_pos = _direct_sum(loaded, pair.prompt, pair.system, pair.chosen)
        a_neg, n_neg = _direct_sum(loaded, pair.prompt, pair.system, pair.rejected)
        ches = a_pos @ a_neg - a_pos @ a_pos
        mean_pos, mean_neg = a_pos / n_pos, a_neg / n_neg  # LN-CHES: the same formula on mean vectors
        ln = mean_pos @ mean_neg - mean_pos @ mean_pos
        assert (s.id, s.n_chosen, s.n_rejected) == (pair.id, n_pos, n_neg)
        assert s.ches == pytest.approx(ches, rel=1e-4, abs=1e-3)
        assert s.ln_ches == pytest.approx(ln, rel=1e-4, abs=1e-5)
    # one at a time gives the same scores as the batch
    alone = score_pairs(backend, PAIRS[1:2], loaded.tokenizer.eos_token, chat=True)[0]
    assert alone.ches == pytest.approx(scores[1].ches, rel=1e-5)


def test_ches_formula_by_hand():
    # a+ = (1, 2), a- = (3, 0): <a+, a-> = 3, ||a+||^2 = 5; |y+| = 2, |y-| = 1
    ches, ln = ches_from_sums(np.array([1.0, 2.0]), np.array([3.0, 0.0]), 2, 1)
    assert ches == pytest.approx(3 - 5)
    assert ln == pytest.approx(3 / 2 - 5 / 4)


def test_hidden_state_span_and_sum_pooling(loaded):
    from harness.backends.hf import HFBackend

    backend = HFBackend(loaded.spec, device="cpu", loaded=loaded)
    ctx, cont = "What does Ada like?", "Ada likes tea."
    per_tok = backend.hidden_states([HiddenStatesRequest(ctx, cont, pooling="per_token", chat=False)])[0].states[-1]
    pred = backend.hidden_states([HiddenStatesRequest(ctx, cont, pooling="per_token", span="predicting",
                                                      chat=False)])[0]
    summed = backend.hidden_states([HiddenStatesRequest(ctx, cont, pooling="sum", span="predicting", chat=False)])[0]
    n = len(loaded.tokenizer(cont, add_special_tokens=False)["input_ids"])
    assert len(per_tok) == n and len(pred.states[-1]) == n and pred.n_positions == n
    # predicting positions are the continuation positions shifted one to the left
    assert np.allclose(np.asarray(pred.states[-1])[1:], np.asarray(per_tok)[:-1], atol=1e-5)
    assert np.allclose(np.asarray(summed.states[-1]), np.asarray(pred.states[-1]).sum(0), atol=1e-4)
    # the default request keeps its old cache key (span left out at its default)
    default = HiddenStatesRequest(ctx, cont)
    assert request_key(default) != request_key(HiddenStatesRequest(ctx, cont, span="predicting"))
    import dataclasses
    import hashlib
    import json

    # the key before `span` existed: every field (the kind too) but span (and `depths`, added later)
    old = {**{k: v for k, v in dataclasses.asdict(default).items() if k not in ("span", "depths")},
           "kind": "hidden_states"}
    assert request_key(default) == hashlib.sha256(
        json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_filter_keeps_a_window_of_the_sort():
    rng = np.random.default_rng(3)
    values = rng.normal(size=40).tolist()
    order = np.argsort(values)
    assert filter_indices(values, 5) == order[:5].tolist()  # q = 0: the lowest
    assert filter_indices(values, 5, quantile=1.0) == order[-5:].tolist()
    assert filter_indices(values, 0.25) == order[:10].tolist()  # a fraction of 40
    assert filter_indices(values, 1.0) == order.tolist()
    # centred at q = 0.5: idx = round(0.5 * 39) = 20 (numpy rounds half to even), window [18, 23)
    assert filter_indices(values, 5, quantile=0.5) == order[18:23].tolist()
    assert quantile_window(10, 3, 0.5) == (3, 6)  # idx round(4.5) = 4 -> start 3
    assert quantile_window(10, 4, 0.95) == (6, 10)  # clipped at the end
    assert window_size(100, 7) == 7
    # ties keep the data order (stable sort)
    assert filter_indices([1.0, 0.0, 1.0, 0.0], 3) == [1, 3, 0]


@pytest.mark.parametrize("keep", [0, -1, 0.0, 1.5, True])
def test_bad_keep_is_a_config_error(keep):
    with pytest.raises(ConfigError):
        filter_indices([1.0, 2.0], keep)


def test_filter_pairs_by_measure_and_saved_scores(tmp_path):
    scores = [CHESScore("p0", ches=5.0, ln_ches=-1.0, n_chosen=3, n_rejected=4),
              CHESScore("p1", ches=-2.0, ln_ches=2.0, n_chosen=2, n_rejected=2),
              CHESScore("p2", ches=1.0, ln_ches=0.5, n_chosen=5, n_rejected=1)]
    assert [p.id for p in filter_pairs(PAIRS, scores, "ches", keep=2)] == ["p1", "p2"]
    assert [p.id for p in filter_pairs(PAIRS, scores, "ln_ches", keep=2)] == ["p0", "p2"]
    with pytest.raises(ConfigError):
        filter_pairs(PAIRS, scores, "edit", keep=2)
    with pytest.raises(ConfigError):
        filter_pairs(PAIRS[:2], scores, "ches", keep=2)
    import json

    path = save_scores(tmp_path, scores, kept={"p1"})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"] and [r["kept"] for r in rows] == [False, True, False]
    assert rows[0]["ches"] == 5.0 and rows[2]["n_rejected"] == 1
