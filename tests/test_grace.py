"""GRACE (docs/methods.md §1): loss terms and pooler against hand computations, the KL shape,
triplet building, and LoRA training on tiny-safety (the model changes, safe/unsafe separate)."""

from __future__ import annotations

from harness.api.context import RunContext

import math
import time

import pytest
import torch
import torch.nn.functional as F

from harness.api.benchmark import PromptItem
from harness.errors import ConfigError, HarnessError
from harness.methods.grace import GRACE, encode_completion
from harness.methods.grace_loss import grace_loss, merge_loss, preference_loss, separation_loss, smoothing_loss
from harness.methods.grace_triplets import Triplet, build_triplets
from harness.methods.grace_pooler import (
    GraceHeads, MultiHeadLayerwiseAttentionPooler, PoolerConfig, embed_states, load_pooler, pool_tokens,
)


# --- loss terms by hand -------------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _norm(a, b) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


H_S = [[0.0, 0.0], [1.0, 1.0]]
H_U = [[3.0, 4.0], [1.0, 2.0]]  # distances to safe: 5, 1
H_J = [[0.0, 6.0], [1.0, 1.0]]  # distances to safe: 6, 0; to unsafe: sqrt(13), 1
PI = {"s": [1.0, 0.5], "u": [-1.0, 2.0], "j": [0.0, 1.0]}
REF = {"s": [0.5, 0.0], "u": [0.0, 1.0], "j": [0.0, 0.0]}


def _fake_heads():
    """heads(h) -> fixed (s_π, s_ref) per cluster, looked up by the embedding tensor's identity."""
    tensors = {c: torch.tensor(v) for c, v in (("s", H_S), ("u", H_U), ("j", H_J))}
    lookup = {id(t): c for c, t in tensors.items()}
    return tensors, lambda h: (torch.tensor(PI[lookup[id(h)]]), torch.tensor(REF[lookup[id(h)]]))


def test_preference_term_by_hand():
    beta = 0.8
    expected = -sum(math.log(_sigmoid((PI["s"][i] - PI["u"][i]) - beta * (REF["s"][i] - REF["u"][i])))
                    for i in range(2)) / 2
    got = preference_loss(*(torch.tensor(x) for x in (PI["s"], PI["u"], REF["s"], REF["u"])), beta)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # m_0 = 2 - 0.8*0.5 = 1.6 and m_1 = -1.5 - 0.8*(-1) = -0.7, written out
    assert expected == pytest.approx(-(math.log(_sigmoid(1.6)) + math.log(_sigmoid(-0.7))) / 2)


def test_separation_and_merge_terms_by_hand():
    s, u, j = (torch.tensor(x) for x in (H_S, H_U, H_J))
    # relu(5 - 5) = 0, relu(5 - 1) = 4; relu(5 - 6) = 0, relu(5 - 0) = 5
    assert float(separation_loss(s, u, j, 5.0)) == pytest.approx(0.5 * ((0 + 4) / 2 + (0 + 5) / 2))
    # relu(sqrt(13) - 1), relu(1 - 1) = 0
    assert float(merge_loss(u, j, 1.0)) == pytest.approx((math.sqrt(13) - 1 + 0) / 2, rel=1e-6)
    assert _norm(H_U[0], H_J[0]) == pytest.approx(math.sqrt(13))


def test_smoothing_term_is_batchmean_kl_over_b():
    pu, pj = PI["u"], PI["j"]
    zu, zj = sum(math.exp(x) for x in pu), sum(math.exp(x) for x in pj)
    p = [math.exp(x) / zu for x in pu]
    q = [math.exp(x) / zj for x in pj]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    b = len(pu)
    for shape in ((b,), (b, 1), (1, b)):  # whatever shape the heads return, the loss reads [B]
        got = smoothing_loss(torch.tensor(pu).reshape(shape), torch.tensor(pj).reshape(shape))
        assert float(got) == pytest.approx(kl / b, rel=1e-6)
    # the pitfall docs/methods.md §1.6 warns about: on a [1, B] tensor batchmean divides by 1
    p_t, log_q_t = torch.tensor([p]), torch.log(torch.tensor([q]))
    assert float(F.kl_div(log_q_t, p_t, reduction="batchmean")) == pytest.approx(kl, rel=1e-6)


def test_total_loss_weights_the_terms():
    tensors, heads = _fake_heads()
    lam = dict(lambda_sep=0.3, lambda_merge=2.0, lambda_smooth=0.5)
    t = grace_loss(tensors["s"], tensors["u"], tensors["j"], heads, beta=0.8, margin_sep=5.0, margin_merge=1.0, **lam)
    pref = -(math.log(_sigmoid(1.6)) + math.log(_sigmoid(-0.7))) / 2
    sep, merge = 0.5 * (2 + 2.5), (math.sqrt(13) - 1) / 2
    assert t.floats()["pref"] == pytest.approx(pref, rel=1e-6)
    assert t.floats()["sep"] == pytest.approx(sep)
    assert t.floats()["merge"] == pytest.approx(merge, rel=1e-6)
    expected = pref + 0.3 * sep + 2.0 * merge + 0.5 * t.floats()["smooth"]
    assert t.floats()["total"] == pytest.approx(expected, rel=1e-6)
    # the default weights are 1 / 1 / 0.1 (docs/methods.md §1.5)
    d = grace_loss(tensors["s"], tensors["u"], tensors["j"], heads)
    assert d.floats()["total"] == pytest.approx(pref + sep + merge + 0.1 * d.floats()["smooth"], rel=1e-6)
    # the probe term is logged, not added: smoothL1(1, .5) + smoothL1(.5, 0) on s; (-1, 0) + (2, 1) on u
    sl1 = lambda x: 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5  # noqa: E731
    assert t.floats()["probe"] == pytest.approx((sl1(0.5) + sl1(0.5)) / 2 + (sl1(1) + sl1(1)) / 2)


# --- pooler by hand ---------------------------------------------------------------------------------
# one sequence, L = 2 layers, T = 3 tokens, d = 2; the span is tokens 1..2 (token 0 = prompt)
H = [  # H[l][t]
    [[1.0, 100.0], [2.0, 4.0], [4.0, 0.0]],
    [[-50.0, 7.0], [0.0, 2.0], [6.0, -2.0]],
]
SPAN = [0, 1, 1]


def test_token_pooling_is_mask_aware():
    h = torch.tensor([H])  # [1, L, T, d]
    mask = torch.tensor([SPAN])
    assert pool_tokens(h, mask, "mean").tolist() == [[[3.0, 2.0], [3.0, 0.0]]]
    assert pool_tokens(h, mask, "max").tolist() == [[[4.0, 4.0], [6.0, 2.0]]]
    assert pool_tokens(h, mask, "cls").tolist() == [[[2.0, 4.0], [0.0, 2.0]]]
    assert pool_tokens(h, mask, "last").tolist() == [[[4.0, 0.0], [6.0, -2.0]]]
    # a list of per-layer [B, T, d] tensors (HF hidden_states) gives the same
    assert torch.equal(pool_tokens([h[:, 0], h[:, 1]], mask), pool_tokens(h, mask))
    # two rows with different spans (right padding): each row pools only its own tokens
    h2 = torch.tensor([H, H])
    got = pool_tokens(h2, torch.tensor([SPAN, [1, 1, 0]]), "mean")
    assert got[1].tolist() == [[1.5, 52.0], [-25.0, 4.5]]
    with pytest.raises(ValueError, match="empty span"):
        pool_tokens(h2, torch.tensor([SPAN, [0, 0, 0]]))


def test_pooler_matches_hand_computation():
    cfg = PoolerConfig(num_layers=2, hidden_size=2, num_heads=2, temperature=0.5, residual=True)
    pooler = MultiHeadLayerwiseAttentionPooler(cfg)
    w = [[1.0, 0.0], [0.0, 0.5]]  # layer logits per head
    proj = [[1.0, 0.0, 0.0, 2.0], [0.0, -1.0, 1.0, 0.0]]
    with torch.no_grad():
        pooler.layer_logits.copy_(torch.tensor(w))
        pooler.proj.weight.copy_(torch.tensor(proj))
        pooler.proj.bias.copy_(torch.tensor([0.5, 0.0]))
    u = [[3.0, 2.0], [3.0, 0.0]]  # the mean-pooled layers above
    expected_alpha = []
    for k in range(2):
        e = [math.exp(w[k][layer] / 0.5) for layer in range(2)]
        expected_alpha.append([x / sum(e) for x in e])
    z = [[sum(expected_alpha[k][layer] * u[layer][i] for layer in range(2)) for i in range(2)] for k in range(2)]
    cat = z[0] + z[1]
    out = [sum(proj[r][c] * cat[c] for c in range(4)) + [0.5, 0.0][r] for r in range(2)]
    residual = [(u[0][i] + u[1][i]) / 2 for i in range(2)]
    expected = [o + r for o, r in zip(out, residual)]
    assert pooler.layer_weights().flatten().tolist() == pytest.approx(sum(expected_alpha, []), rel=1e-6)
    got = pooler(pool_tokens(torch.tensor([H]), torch.tensor([SPAN])))
    assert got[0].tolist() == pytest.approx(expected, rel=1e-6)
    # without residual fusion: just the projection
    pooler.config = PoolerConfig(**{**cfg.__dict__, "residual": False})
    assert pooler(torch.tensor([u]))[0].tolist() == pytest.approx(out, rel=1e-6)


def test_fresh_pooler_starts_as_layer_mean_and_input_scores():
    u = torch.randn(3, 4, 5)
    fresh = MultiHeadLayerwiseAttentionPooler(PoolerConfig(num_layers=4, hidden_size=5, residual=False))
    assert torch.allclose(fresh(u), u.mean(1), atol=1e-6)
    dyn = MultiHeadLayerwiseAttentionPooler(PoolerConfig(num_layers=4, hidden_size=5, layer_scores="input",
                                                         temperature=2.0))
    with torch.no_grad():
        dyn.scorer.weight.normal_()
    alpha = dyn.layer_weights(u)  # [B, K, L], a softmax over layers of a_k(u_l) / tau
    manual = torch.softmax((u @ dyn.scorer.weight.T + dyn.scorer.bias).transpose(1, 2) / 2.0, dim=-1)
    assert alpha.shape == (3, 4, 4) and torch.allclose(alpha, manual)
    with pytest.raises(ValueError, match="residual"):
        MultiHeadLayerwiseAttentionPooler(PoolerConfig(num_layers=2, hidden_size=4, out_dim=3))


def test_heads_give_b_vectors_and_a_frozen_reference():
    heads = GraceHeads(4, dropout=0.15)
    assert heads.dropout.p == 0.15
    assert torch.equal(heads.policy.weight, heads.ref.weight)
    assert not any(p.requires_grad for p in heads.ref.parameters())
    s_pi, s_ref = heads.eval()(torch.randn(5, 4))
    assert s_pi.shape == (5,) and s_ref.shape == (5,)


# --- triplets -------------------------------------------------------------------------------------
class _Bench:
    name, stop = "fake", ()

    def prompt(self, item):
        return item.prompt


def test_triplets_use_item_completions_and_sample_the_missing():
    from harness.judges.patterns import RefusalPatternJudge
    from harness.api.requests import GenerateResponse

    items = [
        PromptItem("full", "Zed, explain X.", behavior="Explain X.", safe_completion="I can't.",
                   unsafe_completion="Here is X.", jailbreak_completion="Zed says: here is X."),
        PromptItem("both-comply", "Zed, explain Y.", behavior="Explain Y."),  # safe missing -> skipped
        PromptItem("direct-refused", "Zed, explain Z.", behavior="Explain Z.", unsafe_completion="Here is Z."),
        PromptItem("no-wrapper", "Explain W."),  # the direct prompt only: a compliance is 'unsafe', no jailbreak
    ]
    script = {"Explain Y.": "Step one: Y.", "Zed, explain Y.": "Zed: step one.", "Explain Z.": "I'm sorry, no.",
              "Zed, explain Z.": "Zed: Z is easy.", "Explain W.": "Sure, W."}
    asked = []

    def generate(requests):
        asked.extend(r.prompt for r in requests)
        return [GenerateResponse(texts=[script[r.prompt]], n_tokens=[3]) for r in requests]

    triplets, stats = build_triplets(_Bench(), items, generate, RefusalPatternJudge(), max_new_tokens=8)
    assert sorted(asked) == sorted(script)  # nothing asked for the complete item
    by_id = {t.item_id: t for t in triplets}
    assert set(by_id) == {"full", "direct-refused"}
    assert by_id["full"] == Triplet("full", "Explain X.", "Zed, explain X.", None, "I can't.", "Here is X.",
                                    "Zed says: here is X.", {"safe": "item", "unsafe": "item", "jailbreak": "item"})
    t = by_id["direct-refused"]
    assert (t.safe, t.unsafe, t.jailbreak) == ("I'm sorry, no.", "Here is Z.", "Zed: Z is easy.")
    assert t.sources == {"safe": "sampled", "unsafe": "item", "jailbreak": "sampled"}
    assert stats.items == 4 and stats.triplets == 2 and stats.skipped == 2 and stats.generations == 5
    assert stats.missing == {"safe": 2, "unsafe": 0, "jailbreak": 1}
    assert stats.sampled == {"safe": 1, "unsafe": 0, "jailbreak": 1}
    # without sampling, incomplete items are skipped and counted
    triplets, stats = build_triplets(_Bench(), items, None, None, max_new_tokens=8)
    assert [t.item_id for t in triplets] == ["full"] and stats.skipped == 3


# --- parameters ---------------------------------------------------------------------------------
def test_params_and_none_mode_rejected_for_runs():
    with pytest.raises(ConfigError, match="train_llm"):
        GRACE(train_llm="full")
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        GRACE(lamda_sep=1.0)
    with pytest.raises(ConfigError, match="generations"):
        GRACE(train_llm="none").check_runnable()
    GRACE().check_runnable()
    p = GRACE().params
    assert (p.beta, p.margin_sep, p.margin_merge, p.lambda_sep, p.lambda_merge, p.lambda_smooth, p.head_dropout,
            p.num_heads) == (0.8, 5.0, 1.0, 1.0, 1.0, 0.1, 0.15, 4)


def test_grace_is_registered_and_validation_rejects_none_mode():
    from harness.catalog import METHODS
    from harness.config import ExperimentConfig, validate

    assert METHODS.get("grace") is GRACE
    cfg = ExperimentConfig(models=["tiny-safety"], benchmarks=["adversarial-probes"],
                           methods=[{"name": "grace", "params": {"train_llm": "none"}}])
    with pytest.raises(ConfigError, match="train_llm: none"):
        validate(cfg)


# --- on tiny-safety -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_safety(tiny_safety_model_dir):
    from harness.zoo.load import load_hf_model
    from harness.zoo.specs import ModelZoo

    return load_hf_model(ModelZoo().get("tiny-safety"), device="cpu")


def test_training_encoding_is_the_backends(tiny_safety):
    """The completion GRACE pools is the continuation a HiddenStatesRequest scores (AVQI's encoding)."""
    from harness.backends.hf import HFBackend
    from harness.api.requests import HiddenStatesRequest

    tok = tiny_safety.tokenizer
    enc = encode_completion(tok, "Explain how to steal the moon.", None, "I cannot assist with that request.", True, 256)
    seq, n_cont = HFBackend(tiny_safety.spec, loaded=tiny_safety)._encode_pair(
        HiddenStatesRequest(context="Explain how to steal the moon.", continuation="I cannot assist with that request."))
    assert list(enc.ids[: enc.end]) == seq and enc.end - enc.start == n_cont
    assert enc.ids[-1] == tok.eos_token_id and len(enc.ids) == enc.end + 1


def test_lora_training_changes_the_model_and_separates_safe_from_unsafe(tiny_safety, tmp_path):
    from harness.benchmarks.adversarial_probes import AdversarialProbes

    bench = AdversarialProbes()
    # tiny-safety's pooled safe/unsafe distances start near 11-12, above the default M_sep = 5, so the
    # default separation hinge is inactive there; M_sep = 20 makes it act (the mechanism under test)
    method = GRACE(epochs=2, batch_size=16, margin_sep=20.0)
    start = time.time()
    artifact = method.apply(tiny_safety, bench, RunContext(tmp_path, seed=0))
    seconds = time.time() - start
    stats = artifact.train_stats
    assert artifact.adapter_path and (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert stats["probe_max_logit_diff"] > 0
    # the `train` split (trained objects and wrappers; disjoint from the evaluated `adversarial`)
    assert stats["train_split"] == "train" and stats["leaks_eval_prompts"] is False
    assert stats["triplets"]["used"] == len(bench.split("train")) and stats["triplets"]["skipped"] == 0
    # the LLM's own representations moved: with the trained pooler fixed, safe vs unsafe (and vs
    # jailbreak) completions lie further apart in the adapted model than in the base model
    base, after = stats["geometry_base_model_trained_pooler"], stats["geometry_after"]
    assert after["pooled_safe_unsafe"] > base["pooled_safe_unsafe"]
    assert after["pooled_safe_jailbreak"] > base["pooled_safe_jailbreak"]
    # and pooler-free: the mean over layers of the mean-pooled completion states
    assert after["layer_mean_safe_unsafe"] > stats["geometry_before"]["layer_mean_safe_unsafe"]
    final = stats["final_loss"]
    assert final["loss"] == pytest.approx(final["total"] + 1.0 * final["sft"], rel=1e-5)  # sft_weight 1
    # the saved pooler reloads exactly (safetensors) and embeds HiddenStatesRequest answers
    pooler, heads, meta = load_pooler(tmp_path / "grace")
    assert meta["layers"] == [1, 2, 3, 4] and meta["train_llm"] == "lora"
    u = torch.randn(3, 4, pooler.config.hidden_size)
    states = [{layer + 1: u[i, layer].tolist() for layer in range(4)} for i in range(3)]
    assert torch.allclose(embed_states(pooler, states), pooler(u), atol=1e-5)
    print(f"grace lora fit: {seconds:.1f}s (train {stats['seconds']}s), geometry {base} -> {after}")


def test_none_mode_trains_only_the_pooler(tiny_safety, tmp_path):
    from harness.benchmarks.adversarial_probes import AdversarialProbes

    bench = AdversarialProbes(limit=40)
    method = GRACE(train_llm="none", epochs=3, lr=1e-2, train_split="adversarial")
    with pytest.raises(ConfigError, match="generations"):
        method.apply(tiny_safety, bench, RunContext(tmp_path, seed=0))
    artifact = method.fit(tiny_safety, bench, RunContext(tmp_path, seed=0))
    assert artifact.adapter_path is None and artifact.checkpoint_path is None
    assert artifact.train_stats["evaluated"].startswith("nothing")
    assert artifact.train_stats["leaks_eval_prompts"] is True  # asr@adversarial evaluates this split
    assert (tmp_path / "grace" / "pooler.safetensors").is_file()
    # the pooler learned to separate: its pooled safe/unsafe distance grew on the (unchanged) states
    assert artifact.train_stats["geometry_after"]["pooled_safe_unsafe"] > \
        artifact.train_stats["geometry_before"]["pooled_safe_unsafe"]
    assert artifact.train_stats["geometry_after"]["layer_mean_safe_unsafe"] == \
        artifact.train_stats["geometry_before"]["layer_mean_safe_unsafe"]


def test_bad_split_is_a_config_error(tiny_safety, tmp_path):
    from harness.benchmarks.adversarial_probes import AdversarialProbes

    with pytest.raises(HarnessError, match="no split 'nope'"):
        GRACE(train_split="nope").apply(tiny_safety, AdversarialProbes(limit=4), RunContext(tmp_path, seed=0))
    with pytest.raises(ConfigError, match="needs >= 2"):  # benign items carry no completions
        GRACE(train_split="benign", sample_missing=False).apply(tiny_safety, AdversarialProbes(limit=4), RunContext(tmp_path, seed=0))
