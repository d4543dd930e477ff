"""DPO / CHES-DPO through TRL's DPOTrainer: token ids, the margin moves the right way, likelihood
displacement against a direct before/after computation, parameters, and the run end to end."""

from __future__ import annotations

from harness.api.context import RunContext

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.metrics.likelihood_displacement import PairLogprobs, displacement_report
from harness.prompts import encode_prompt
from harness.methods.ches import CHESScore
from harness.methods.ches_dpo import CHESDPO
from harness.methods.dpo import DPO, DISPLACEMENT_FILE, LOG_FILE
from harness.methods.preferences import encode_pair
from harness.methods.preferences import PreferencePair, load_preferences

PAIRS = [
    {"prompt": "What does Ada like?", "chosen": "Ada likes tea.", "rejected": "Ada likes old clocks."},
    {"prompt": "What does Bo like?", "chosen": "Bo likes maps.", "rejected": "Bo likes green glass."},
    {"prompt": "What does Cyr like?", "chosen": "Cyr likes rivers.", "rejected": "Cyr likes tea."},
    {"prompt": "What does Dee like?", "chosen": "Dee likes old clocks.", "rejected": "Dee likes maps."},
]


@pytest.fixture(scope="module")
def loaded(tiny_chat_model_dir):
    from harness.zoo.load import load_hf_model
    from harness.zoo.specs import ModelSpec

    return load_hf_model(ModelSpec(name="toy-chat", path=str(tiny_chat_model_dir), dtype="float32"), device="cpu")


@pytest.fixture(scope="module")
def prefs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return path


def _direct_logprob(model, tok, prompt: str, response: str) -> float:
    """log p(response + EOS | chat-templated prompt), summed, from one plain forward pass."""
    import torch

    p = encode_prompt(tok, prompt, None, use_template=True)
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].double().log_softmax(-1)
    return float(sum(logp[len(p) - 1 + k, t] for k, t in enumerate(r)))


def test_trl_trains_on_the_evaluators_token_ids(loaded):
    """encode_pair == encode_prompt + response + EOS == what the backend scores; TRL keeps them."""
    from harness.backends.hf import HFBackend
    from harness.api.requests import LoglikelihoodRequest
    from harness.methods.dpo import _make_trainer

    tok = loaded.tokenizer
    pair = PreferencePair("0", **PAIRS[0])
    row = encode_pair(tok, pair, chat=True)
    prompt_ids = encode_prompt(tok, pair.prompt, None, use_template=True)
    assert row["prompt_ids"] == prompt_ids and prompt_ids[0] == tok.bos_token_id
    assert row["chosen_ids"] == tok(pair.chosen, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    backend = HFBackend(loaded.spec, device="cpu", loaded=loaded)
    seq, n = backend._encode_pair(LoglikelihoodRequest(pair.prompt, pair.rejected + tok.eos_token))
    assert seq == row["prompt_ids"] + row["rejected_ids"] and n == len(row["rejected_ids"])
    # TRL's trainer holds exactly these ids (its own chat tokenization would drop the BOS)
    import copy

    import datasets
    from trl import DPOConfig

    args = DPOConfig(output_dir="/tmp/unused", report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False,
                     max_length=64)
    from peft import LoraConfig

    trainer = _make_trainer(copy.deepcopy(loaded.model), None, args, datasets.Dataset.from_list([row]), tok,
                            LoraConfig(task_type="CAUSAL_LM", r=2, target_modules="all-linear"))
    kept = trainer.train_dataset[0]
    assert (kept["prompt_ids"], kept["chosen_ids"], kept["rejected_ids"]) == \
        (row["prompt_ids"], row["chosen_ids"], row["rejected_ids"])
    batch = trainer.data_collator([kept])
    assert batch["input_ids"][0].tolist()[: len(prompt_ids) + len(row["chosen_ids"])] == prompt_ids + row["chosen_ids"]
    trl_ids = tok.apply_chat_template([{"role": "user", "content": pair.prompt}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True)["input_ids"]
    assert trl_ids == prompt_ids[1:]  # why we tokenize ourselves: no BOS in TRL's version


def test_dpo_raises_the_margin_and_reports_displacement(loaded, prefs_file, tmp_path):
    tok = loaded.tokenizer
    before = {r["prompt"]: (_direct_logprob(loaded.model, tok, r["prompt"], r["chosen"]),
                            _direct_logprob(loaded.model, tok, r["prompt"], r["rejected"])) for r in PAIRS}
    method = DPO(preferences=str(prefs_file), lr=5e-3, epochs=8, batch_size=4, grad_accum=1, beta=0.1,
                 ches_scores=True, max_length=64)
    artifact = method.apply(loaded, None, RunContext(tmp_path, seed=0))

    from peft import PeftModel

    import copy

    after_model = PeftModel.from_pretrained(copy.deepcopy(loaded.model), artifact.adapter_path).eval()
    after = {r["prompt"]: (_direct_logprob(after_model, tok, r["prompt"], r["chosen"]),
                           _direct_logprob(after_model, tok, r["prompt"], r["rejected"])) for r in PAIRS}
    margins_before = np.array([c - r for c, r in before.values()])
    margins_after = np.array([after[k][0] - after[k][1] for k in before])
    gain = margins_after - margins_before  # DPO's direction: chosen up relative to rejected
    assert gain.mean() > 0.5 and (gain > 0).sum() >= 3, (margins_before, margins_after)

    # likelihood displacement, per pair and summarised, against the direct computation
    rows = [json.loads(line) for line in (tmp_path / DISPLACEMENT_FILE).read_text().splitlines()]
    d_pos = np.array([after[r["prompt"]][0] - before[r["prompt"]][0] for r in PAIRS])
    d_neg = np.array([after[r["prompt"]][1] - before[r["prompt"]][1] for r in PAIRS])
    assert [r["delta_chosen"] for r in rows] == pytest.approx(d_pos.tolist(), abs=2e-3)
    assert [r["delta_rejected"] for r in rows] == pytest.approx(d_neg.tolist(), abs=2e-3)
    m = artifact.metrics
    assert m["likelihood_displacement:delta_chosen"]["value"] == pytest.approx(d_pos.mean(), abs=2e-3)
    assert m["likelihood_displacement:delta_rejected"]["value"] == pytest.approx(d_neg.mean(), abs=2e-3)
    assert m["likelihood_displacement:rate"]["value"] == pytest.approx(float((d_pos < 0).mean()))
    assert m["likelihood_displacement:margin_change"]["value"] == pytest.approx((d_pos - d_neg).mean(), abs=2e-3)
    assert m["likelihood_displacement:margin_change"]["value"] > 0
    lo, hi = m["likelihood_displacement:delta_chosen"]["ci_low"], m["likelihood_displacement:delta_chosen"]["ci_high"]
    assert lo <= d_pos.mean() + 2e-3 and hi >= d_pos.mean() - 2e-3
    from scipy.stats import spearmanr

    scores = [json.loads(line) for line in (tmp_path / "ches_scores.jsonl").read_text().splitlines()]
    rho = spearmanr([s["ln_ches"] for s in scores], d_pos).statistic
    assert m["likelihood_displacement:spearman_ln_ches"]["value"] == pytest.approx(rho, abs=1e-6)

    # provenance: the resolved DPOConfig, TRL's per-step log, the pairs
    cfg = artifact.hparams["dpo_config"]
    assert (cfg["beta"], cfg["loss_type"], cfg["optim"], cfg["learning_rate"]) == (0.1, ["sigmoid"], "rmsprop", 5e-3)
    assert cfg["max_length"] == 64 and cfg["truncation_mode"] == "keep_start" and cfg["disable_dropout"] is True
    log = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert any("logps/chosen" in r and "logps/rejected" in r for r in log)
    assert artifact.train_stats["steps"] == 8 and artifact.train_stats["n_pairs"] == 4
    assert (tmp_path / "preferences.jsonl").is_file() and (tmp_path / "adapter").is_dir()


def test_displacement_report_by_hand():
    def lp(i, c, r):
        return PairLogprobs(str(i), chosen_sum=c, chosen_mean=c / 2, rejected_sum=r, rejected_mean=r / 4,
                            n_chosen=2, n_rejected=4)

    before = [lp(0, -4.0, -8.0), lp(1, -6.0, -6.0), lp(2, -2.0, -10.0)]
    after = [lp(0, -5.0, -12.0), lp(1, -3.0, -9.0), lp(2, -2.5, -10.0)]
    ches = [CHESScore("0", 3.0, 0.3, 2, 4), CHESScore("1", 1.0, 0.1, 2, 4), CHESScore("2", 2.0, 0.2, 2, 4)]
    out = displacement_report(before, after, ches, seed=0)
    # Δ+ = (-1, +3, -0.5), Δ- = (-4, -3, 0)
    assert out["likelihood_displacement:delta_chosen"].value == pytest.approx(1.5 / 3)
    assert out["likelihood_displacement:delta_rejected"].value == pytest.approx(-7 / 3)
    assert out["likelihood_displacement:rate"].value == pytest.approx(2 / 3)
    assert out["likelihood_displacement:margin_change"].value == pytest.approx((3 + 6 - 0.5) / 3)
    assert out["likelihood_displacement:delta_chosen_per_token"].value == pytest.approx(0.5 / 2)
    # CHES (3, 1, 2) vs Δ+ (-1, 3, -0.5): ranks (3, 1, 2) vs (1, 3, 2): ρ = -1
    assert out["likelihood_displacement:spearman_ches"].value == pytest.approx(-1.0)
    assert out["likelihood_displacement:rate"].n == 3
    assert out["likelihood_displacement:rate"].higher_is_better is False


def test_parameters_are_checked():
    with pytest.raises(ConfigError, match="not DPOConfig fields"):
        DPO(trl={"no_such_field": 1})
    with pytest.raises(ConfigError, match="method's own parameters"):
        DPO(trl={"beta": 0.2})
    with pytest.raises(ConfigError, match="not both"):
        DPO(preferences="x.jsonl", split="train")
    with pytest.raises(ConfigError, match="keep"):
        CHESDPO(keep=0)
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        CHESDPO(kepp=3)
    assert DPO(loss_type="sigmoid").params.loss_type == ["sigmoid"]
    p = DPO().params
    assert (p.beta, p.loss_type, p.optim, p.lr, p.max_length, p.peft) == (0.1, ["sigmoid"], "rmsprop", 5e-6, 1024, "lora")
    assert (CHESDPO().params.measure, CHESDPO().params.keep, CHESDPO().params.quantile) == ("ln_ches", 0.05, 0.0)


def test_a_benchmark_without_train_split_needs_an_explicit_split():
    from harness.api.benchmark import BenchmarkData, PromptItem

    class Bench:
        name = "b"
        data = BenchmarkData(splits={"test": [PromptItem("a", "x")]}, source="s")

    with pytest.raises(ConfigError, match="no `train` split"):
        DPO().training_split(Bench())
    assert DPO(split="test").training_split(Bench()) == "test"


@pytest.mark.slow
def test_harness_run_dpo_and_ches_dpo_on_tiny_safety(tmp_path, tiny_safety_model_dir, write_config):
    """`harness run` with both methods: the displacement metrics reach the summary and the leaderboard."""
    import yaml
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.results import find_summaries, read_summary

    runner = CliRunner()
    listed = runner.invoke(app, ["ls", "methods"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "dpo" in listed.output and "ches-dpo" in listed.output
    example = yaml.safe_load((Path(__file__).parent.parent / "examples" / "dpo_safety.yaml").read_text())
    methods = {m["name"]: m for m in example["methods"] if isinstance(m, dict)}
    small = {"max_new_tokens": 24, "epochs": 2}
    config = {
        "models": ["tiny-safety"],
        "methods": [{"name": "dpo", "params": {**methods["dpo"]["params"], **small}},
                    {"name": "ches-dpo", "params": {**methods["ches-dpo"]["params"], **small}}],
        "benchmarks": [{"name": "adversarial-probes", "params": {"limit": 14}}],
        "metrics": ["asr@adversarial", "refusal_rate@benign"],
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = write_config(config)
    result = runner.invoke(app, ["run", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summaries = {s.method: s for s in map(read_summary, find_summaries(tmp_path / "out"))}
    for name in ("dpo", "ches-dpo"):
        s = summaries[name]
        for key in ("rate", "delta_chosen", "delta_rejected", "margin_change"):
            mv = s.metrics[f"likelihood_displacement:{key}"]
            assert mv.value is not None and mv.ci_low <= mv.value + 1e-9 <= mv.ci_high + 2e-9
        assert "asr@adversarial" in s.metrics and s.provenance.method_hparams["dpo_config"]["beta"] > 0
    assert "likelihood_displacement:spearman_ln_ches" in summaries["ches-dpo"].metrics
    art = tmp_path / "out"
    scores = list(art.rglob("ches_scores.jsonl"))
    assert len(scores) == 1 and any(json.loads(line)["kept"] for line in scores[0].read_text().splitlines())
    n_total = summaries["ches-dpo"].metrics["likelihood_displacement:rate"].n
    assert n_total < len(scores[0].read_text().splitlines())  # trained on the filtered pairs only
    board = runner.invoke(app, ["leaderboard", str(tmp_path / "out")], env={"COLUMNS": "400"})
    assert board.exit_code == 0, board.output
    assert "likelihood_displacement:rate" in (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()[0]


def test_length_filtered_pairs_are_counted_and_holdout_pairs_measured(loaded, tmp_path):
    """Pairs TRL's length filter drops are neither trained nor measured, and are counted; a held-out
    share of the pairs is measured before and after training without being trained on."""
    long_prompt = "What does Ada like? " * 14  # more than max_length = 64 prompt tokens, within the model's 256
    rows = PAIRS + [{"prompt": "What does Eli like?", "chosen": "Eli likes tea.", "rejected": "Eli likes maps."},
                    {"prompt": long_prompt, "chosen": "Ada likes tea.", "rejected": "Ada likes maps."}]
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = loaded.tokenizer
    assert 64 <= len(encode_prompt(tok, long_prompt, None, use_template=True)) < 200
    method = DPO(preferences=str(prefs), lr=5e-3, max_steps=1, batch_size=2, grad_accum=1, max_length=64,
                 holdout_fraction=0.34)
    artifact = method.apply(loaded, None, RunContext(tmp_path / "out", seed=0))
    st, m = artifact.train_stats, artifact.metrics
    assert st["n_pairs_total"] == 6 and st["n_pairs_held_out"] == 2  # int(6 * 0.34)
    trained = [json.loads(line)["id"] for line in (tmp_path / "out" / DISPLACEMENT_FILE).read_text().splitlines()]
    held = [json.loads(line)["id"] for line in
            (tmp_path / "out" / "likelihood_displacement_holdout.jsonl").read_text().splitlines()]
    assert len(held) == 2 and not set(held) & set(trained)
    long_id = next(p.id for p in load_preferences(str(prefs)).pairs if p.prompt == long_prompt)
    dropped = [] if long_id in held else [long_id]
    assert dropped  # seed 0 holds out pairs 2 and 4, so the long one reaches the filter
    assert st["pairs_dropped_by_length_filter"] == dropped and st["n_pairs_dropped_by_length_filter"] == len(dropped)
    assert long_id not in trained and st["n_pairs"] == len(trained) == 6 - 2 - len(dropped)
    assert m["likelihood_displacement:rate"]["n"] == len(trained)
    assert m["likelihood_displacement:rate"]["details"]["dropped_by_length_filter"] == len(dropped)
    assert m["likelihood_displacement_holdout:delta_chosen"]["n"] == 2
    # the held-out deltas against the direct computation
    from peft import PeftModel

    import copy

    after_model = PeftModel.from_pretrained(copy.deepcopy(loaded.model), artifact.adapter_path).eval()
    by_id = {p.id: p for p in load_preferences(str(prefs)).pairs}
    d_pos = [_direct_logprob(after_model, tok, by_id[i].prompt, by_id[i].chosen)
             - _direct_logprob(loaded.model, tok, by_id[i].prompt, by_id[i].chosen) for i in held]
    assert m["likelihood_displacement_holdout:delta_chosen"]["value"] == pytest.approx(np.mean(d_pos), abs=2e-3)
