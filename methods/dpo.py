"""DPO through TRL's `DPOTrainer` (docs/methods.md §3); CHES-DPO, DPO on CHES-filtered pairs (§2.5), is
`methods/ches_dpo.py`.

The loss, the reference model and the logging are TRL's own (trl 1.16): nothing here
re-implements DPO. What this module adds:

- Data. Preference pairs from `methods.preferences`: the model's own sampled answers on the
  benchmark's training prompts, judged by the run's `refusal` (or `harm`) judge, chosen = the
  refusal (docs/methods.md §2.6); or a user's dataset (`preferences: file.jsonl | hub id`). The
  prompts come from the split `split`; by default the benchmark's `train` split, and a
  benchmark without one is an error rather than a silent choice: training on the evaluation
  prompts would make the evaluation meaningless (`adversarial-probes` has a `train` split of
  trained objects and templates, disjoint from its `adversarial` split).
- Encoding. The pairs are tokenized here, not by TRL: prompt ids from
  `harness.prompts.encode_prompt` (the ids the backend evaluates; TRL's own conversational
  tokenization would drop the BOS some templates rely on, and merge tokens across the
  prompt/response boundary), then the response ids and EOS. CHES scoring and the
  likelihood-displacement measurement send the same (prompt, response + EOS) through the
  backend, so all three see identical token ids (tests check it).
- Defaults: TRL's (β 0.1, `loss_type ["sigmoid"]`, `max_length` 1024, `truncation_mode`
  keep_start, dropout disabled) with the CHES SORRY-Bench run's optimiser settings
  [proposal, docs/methods.md §3.4]: RMSprop, lr 5e-6 set explicitly, 1 epoch, batch 4 x grad-accum 8.
  LoRA by default (the reference is then the adapter-disabled policy, no second copy); `peft:
  full` trains every weight against a frozen copy. The fully resolved `DPOConfig` is stored in
  the artefact's hparams (`dpo_config`), with the TRL version.
- Measurements. Likelihood displacement on the training pairs (before vs after,
  `harness.metrics.likelihood_displacement`) goes into the artefact's `metrics`, which the
  runner adds to the cell; TRL's per-step `logps/chosen`, `logps/rejected`, rewards and loss
  are written to `dpo_log.jsonl` next to the artefact (the trajectory).

Files next to the artefact: `preferences.jsonl` + `preferences.json` (the pairs and their
provenance), `ches_scores.jsonl` (when scored), `likelihood_displacement.jsonl` (per pair),
`dpo_log.jsonl`, and `adapter/` or `checkpoint/`.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.artifacts import ModelArtifact
from harness.errors import AdapterNoEffectError, ConfigError
from harness.io import atomic_write_jsonl
from harness.api.method import Method, max_logit_difference
from harness.methods.preferences import (PreferenceData, PreferencePair, build_preferences, encode_pair, length_filter,
                                        load_preferences, split_holdout)

if TYPE_CHECKING:
    from harness.api.context import RunContext
    from harness.api.benchmark import Benchmark
    from harness.zoo.load import LoadedModel
    from harness.methods.ches import CHESScore

log = logging.getLogger(__name__)

LOG_FILE = "dpo_log.jsonl"
DISPLACEMENT_FILE = "likelihood_displacement.jsonl"
HOLDOUT_DISPLACEMENT_FILE = "likelihood_displacement_holdout.jsonl"
_MANAGED_DPO_FIELDS = {  # set from the method's own parameters; `trl` must not repeat them
    "output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "max_grad_norm",
    "beta", "loss_type", "loss_weights", "label_smoothing", "max_length", "truncation_mode",
    "precompute_ref_log_probs", "seed", "data_seed", "logging_steps", "use_cpu", "bf16", "fp16",
    "gradient_checkpointing", "report_to", "save_strategy", "eval_strategy",
}


class DPO(Method):
    """Direct preference optimisation on TRL's `DPOTrainer`, with LoRA or full fine-tuning."""

    name: ClassVar[str] = "dpo"
    uses_judges: ClassVar[bool] = True  # the runner hands over the run's JudgePanel (`judges`)

    class Params(Method.Params):
        # --- which pairs
        split: str | None = None  # prompts to sample on; None: the benchmark's `train` split
        limit: int | None = Field(None, ge=1)  # first N prompts of the split
        preferences: str | None = None  # a user's dataset instead: JSONL/JSON file or hub id
        preferences_revision: str | None = None  # required for a hub id
        preferences_split: str = "train"
        n_samples: int = Field(2, ge=2)  # sampled answers per prompt (CHES: 2)
        temperature: float = Field(1.0, gt=0)
        top_p: float = Field(1.0, gt=0, le=1)
        max_new_tokens: int | None = Field(None, ge=1)  # None: the benchmark's own generation budget
        judge_role: Literal["refusal", "harm"] = "refusal"
        threshold: float = Field(0.5, gt=0, le=1)  # compliance >= threshold counts as complied
        fallback: bool = True  # no refusal+compliance among the samples: use the item's safe/unsafe completions
        chat: bool = True  # apply the tokenizer's chat template when it has one
        # --- DPO (TRL DPOConfig)
        beta: float = Field(0.1, gt=0)
        loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"])
        loss_weights: list[float] | None = None
        label_smoothing: float = Field(0.0, ge=0, lt=1)
        lr: float = Field(5e-6, gt=0)
        optim: str = "rmsprop"
        lr_scheduler: str = "linear"
        epochs: float = Field(1.0, gt=0)
        max_steps: int | None = Field(None, ge=1)  # overrides epochs when set
        batch_size: int = Field(4, ge=1)
        grad_accum: int = Field(8, ge=1)
        warmup_ratio: float = Field(0.0, ge=0, lt=1)
        weight_decay: float = Field(0.0, ge=0)
        max_grad_norm: float = Field(1.0, gt=0)
        max_length: int | None = Field(1024, ge=2)
        truncation_mode: Literal["keep_start", "keep_end"] = "keep_start"
        precompute_ref_log_probs: bool = False
        logging_steps: int = Field(1, ge=1)
        bf16: bool = False
        gradient_checkpointing: bool = False
        trl: dict[str, Any] = Field(default_factory=dict)  # any other DPOConfig field, passed through
        # --- model
        peft: Literal["lora", "full"] = "lora"
        lora_r: int = Field(8, ge=1)
        lora_alpha: float = 16
        lora_dropout: float = Field(0.0, ge=0, lt=1)
        lora_target_modules: str | list[str] = "all-linear"
        # --- measurements
        displacement: bool = True  # log-probs of the training pairs before and after training
        # A seeded share of the pairs kept out of training; displacement is measured on them too
        # (`likelihood_displacement_holdout:*`, docs/metrics.md §15).
        holdout_fraction: float = Field(0.0, ge=0, lt=1)
        ches_scores: bool = False  # also CHES-score the pairs (Spearman with displacement); ches-dpo always does

        @field_validator("loss_type", mode="before")
        @classmethod
        def _one_or_many(cls, v: Any) -> Any:
            return [v] if isinstance(v, str) else v

        @field_validator("trl")
        @classmethod
        def _known_trl_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
            import dataclasses

            from trl import DPOConfig

            known = {f.name for f in dataclasses.fields(DPOConfig)}
            unknown = sorted(set(v) - known)
            if unknown:
                raise ValueError(f"not DPOConfig fields: {', '.join(unknown)}")
            managed = sorted(set(v) & _MANAGED_DPO_FIELDS)
            if managed:
                raise ValueError(f"set these with the method's own parameters, not `trl`: {', '.join(managed)}")
            return v

    def __init__(self, **hparams: Any):
        super().__init__(**hparams)
        p = self.params
        if p.preferences is not None and p.split is not None:
            raise ConfigError(f"method {self.name!r}: give `preferences` (a dataset) or `split` (prompts), not both")
        if p.loss_weights is not None and len(p.loss_weights) != len(p.loss_type):
            raise ConfigError(f"method {self.name!r}: `loss_weights` needs one weight per `loss_type` entry")

    # --- data ------------------------------------------------------------------------------
    def training_split(self, benchmark: "Benchmark") -> str:
        if self.params.split is not None:
            return self.params.split
        if "train" in benchmark.data.splits:
            return "train"
        raise ConfigError(
            f"method {self.name!r}: benchmark {benchmark.name!r} has no `train` split; set the method's `split` "
            f"to the prompts to train on (not the ones you evaluate on; splits: {', '.join(sorted(benchmark.data.splits))})"
        )

    def preference_data(self, base: "LoadedModel", benchmark: "Benchmark", backend: Any, ctx: "RunContext",
                        chat: bool) -> PreferenceData:
        p = self.params
        if p.preferences is not None:
            data = load_preferences(p.preferences, p.preferences_revision, p.preferences_split)
            if p.limit is not None:
                data.pairs = data.pairs[: p.limit]
            return data
        split = self.training_split(benchmark)
        items = benchmark.split(split)[: p.limit] if p.limit is not None else benchmark.split(split)
        if not items:
            raise ConfigError(f"method {self.name!r}: split {split!r} of {benchmark.name!r} is empty")
        if not all(hasattr(it, "prompt") and hasattr(it, "id") for it in items):
            raise ConfigError(f"method {self.name!r}: split {split!r} of {benchmark.name!r} has no prompts to "
                              "sample on; give a preference dataset with `preferences`")
        decoding = benchmark.decoding() if hasattr(benchmark, "decoding") else {}
        max_new = p.max_new_tokens or int(decoding.get("max_new_tokens", 512))
        judge = ctx.judge(self.params.judge_role)
        return build_preferences(
            items, backend, judge, prompt_of=benchmark.prompt, judge_role=p.judge_role, n_samples=p.n_samples,
            temperature=p.temperature, top_p=p.top_p, max_new_tokens=max_new, stop=getattr(benchmark, "stop", ()),
            seed=ctx.seed, fallback=p.fallback, threshold=p.threshold, chat=chat,
            provenance={"model": base.spec.name, "model_identity": backend.identity,
                        "benchmark": benchmark.name, "split": split, "dataset_hash": benchmark.data.data_hash()},
        )

    def select(self, pairs: list[PreferencePair], backend: Any, eos: str | None, chat: bool,
               output_dir: Path) -> tuple[list[PreferencePair], "list[CHESScore] | None"]:
        """The pairs to train on, and their CHES scores when computed (DPO: all pairs)."""
        if not self.params.ches_scores:
            return pairs, None
        from harness.methods.ches import save_scores, score_pairs

        scores = score_pairs(backend, pairs, eos, chat)
        save_scores(output_dir, scores)
        return pairs, scores

    # --- the method ------------------------------------------------------------------------
    def apply(self, base: "LoadedModel", benchmark: "Benchmark", ctx: "RunContext") -> ModelArtifact:
        from harness.metrics.likelihood_displacement import (HOLDOUT_PREFIX, displacement_report, measure_logprobs,
                                                             pair_deltas, results_to_json)

        p, seed = self.params, ctx.seed
        output_dir, tok, chat = self.start(base, ctx)
        eos = tok.eos_token
        if eos is None:
            raise ConfigError(f"method {self.name!r}: the tokenizer of {base.spec.name!r} has no EOS token")
        t0 = time.time()
        before_backend = ctx.backends.in_memory(base)
        data = self.preference_data(base, benchmark, before_backend, ctx, chat)
        data.save(output_dir)
        pairs, scores = self.select(data.pairs, before_backend, eos, chat, output_dir)
        if not pairs:
            counts = data.provenance.get("counts", {})
            raise ConfigError(f"method {self.name!r}: no preference pairs to train on ({counts}); sample more "
                              "answers (`n_samples`), turn on `fallback`, or give `preferences`")
        pairs, held_out = split_holdout(pairs, p.holdout_fraction, seed)
        pairs, dropped = length_filter(tok, pairs, chat, p.max_length, p.truncation_mode)
        if not pairs:
            raise ConfigError(f"method {self.name!r}: every preference pair's prompt fills `max_length` "
                              f"({p.max_length}); raise `max_length`")
        # TRL drops these before training: they are neither trained nor measured, and they are counted.
        filter_note = {"dropped_by_length_filter": len(dropped), "max_length": p.max_length,
                       "truncation_mode": p.truncation_mode}
        before = measure_logprobs(before_backend, pairs, eos, chat) if p.displacement else None
        before_held = measure_logprobs(before_backend, held_out, eos, chat) if p.displacement and held_out else None
        t_data = time.time() - t0

        model, trainer_log, resolved, steps, t_train = self._train(base, pairs, chat, seed)
        probe_diff = self._probe_diff(model, base, pairs[0], chat)
        if probe_diff == 0.0:
            raise AdapterNoEffectError(
                f"method {self.name!r}: the trained model gives the base model's logits after {steps} steps "
                f"(lr {p.lr}); nothing was learned"
            )

        metrics: dict[str, Any] = {}
        if before is not None:
            from harness.zoo.load import LoadedModel

            trained = LoadedModel(model=model, tokenizer=tok, spec=base.spec, path=base.path, device=base.device)
            # Weights that exist only in memory have no content identity: nothing is cached for them.
            after_backend = ctx.backends.in_memory(trained, identity="in-memory:trained", cached=False)
            after = measure_logprobs(after_backend, pairs, eos, chat)
            atomic_write_jsonl(output_dir / DISPLACEMENT_FILE, pair_deltas(before, after))
            metrics = results_to_json(displacement_report(before, after, scores, seed=seed, notes=filter_note))
            if before_held is not None:
                after_held = measure_logprobs(after_backend, held_out, eos, chat)
                atomic_write_jsonl(output_dir / HOLDOUT_DISPLACEMENT_FILE, pair_deltas(before_held, after_held))
                metrics.update(results_to_json(displacement_report(
                    before_held, after_held, scores, seed=seed, prefix=HOLDOUT_PREFIX,
                    notes={"held_out_pairs": len(held_out), "holdout_fraction": p.holdout_fraction})))
        atomic_write_jsonl(output_dir / LOG_FILE, trainer_log)

        target = self.save_model(model, tok, output_dir, p.peft)
        from harness.fingerprint import directory_fingerprint

        import trl

        artifact = ModelArtifact(
            method=self.name,
            base_model=base.spec.name,
            adapter_path=str(target) if p.peft == "lora" else None,
            checkpoint_path=str(target) if p.peft == "full" else None,
            hash=directory_fingerprint(target),
            hparams={**p.model_dump(), "dpo_config": resolved, "trl_version": trl.__version__},
            train_stats={
                "steps": steps,
                "seconds": round(t_train, 2),
                "data_seconds": round(t_data, 2),
                "seed": seed,
                "n_pairs": len(pairs),
                "n_pairs_total": len(data.pairs),
                "n_pairs_held_out": len(held_out),
                "n_pairs_dropped_by_length_filter": len(dropped),
                "pairs_dropped_by_length_filter": [q.id for q in dropped],
                "preferences": data.provenance,
                "preferences_hash": data.fingerprint(),
                "final_loss": next((r["loss"] for r in reversed(trainer_log) if "loss" in r), None),
                "probe_max_logit_diff": probe_diff,
                "chat_template": chat,
            },
            metrics=metrics,
        )
        artifact.save(output_dir)
        return artifact

    def _train(self, base: "LoadedModel", pairs: list[PreferencePair], chat: bool,
               seed: int) -> tuple[Any, list[dict], dict[str, Any], int, float]:
        """Train on TRL's DPOTrainer; returns (model, per-step log, resolved DPOConfig, steps, seconds)."""
        import datasets
        from trl import DPOConfig

        p = self.params
        tok = base.tokenizer
        rows = [encode_pair(tok, pair, chat) for pair in pairs]
        dataset = datasets.Dataset.from_list(rows)
        model = self._trainable_copy(base)
        peft_config = None
        if p.peft == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(task_type="CAUSAL_LM", r=p.lora_r, lora_alpha=p.lora_alpha,
                                     lora_dropout=p.lora_dropout, target_modules=p.lora_target_modules)
        ref_model = None
        if p.peft == "full" and not p.precompute_ref_log_probs:
            ref_model = copy.deepcopy(model).eval()  # TRL would reload it from disk by name otherwise
        with tempfile.TemporaryDirectory(prefix="harness-dpo-") as tmp:
            try:
                args = DPOConfig(
                    output_dir=tmp, report_to=[], save_strategy="no", eval_strategy="no",
                    per_device_train_batch_size=p.batch_size, gradient_accumulation_steps=p.grad_accum,
                    learning_rate=p.lr, num_train_epochs=p.epochs, max_steps=p.max_steps or -1,
                    lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_ratio, weight_decay=p.weight_decay,
                    optim=p.optim, max_grad_norm=p.max_grad_norm, beta=p.beta, loss_type=list(p.loss_type),
                    loss_weights=p.loss_weights, label_smoothing=p.label_smoothing, max_length=p.max_length,
                    truncation_mode=p.truncation_mode, precompute_ref_log_probs=p.precompute_ref_log_probs,
                    seed=seed, data_seed=seed, logging_steps=p.logging_steps,
                    use_cpu=str(base.device).startswith("cpu"), bf16=p.bf16, fp16=False,
                    gradient_checkpointing=p.gradient_checkpointing, disable_tqdm=not sys.stderr.isatty(),
                    dataloader_num_workers=0, **p.trl,
                )
            except (ValueError, TypeError) as e:
                raise ConfigError(f"method {self.name!r}: invalid DPO settings: {str(e).splitlines()[0]}") from None
            try:
                trainer = _make_trainer(model, ref_model, args, dataset, tok, peft_config)
            except ValueError as e:
                raise ConfigError(f"method {self.name!r}: TRL refused the setup: {str(e).splitlines()[0]}") from None
            start = time.time()
            trainer.train()
            seconds = time.time() - start
            resolved = _resolved_config(args)
        trained = trainer.model
        trained.eval()
        if getattr(trained.config, "use_cache", None) is False:
            trained.config.use_cache = True
        if p.gradient_checkpointing and hasattr(trained, "gradient_checkpointing_disable"):
            trained.gradient_checkpointing_disable()
        history = [dict(r) for r in trainer.state.log_history]
        steps = trainer.state.global_step
        del trainer
        return trained, history, resolved, steps, seconds

    def _trainable_copy(self, base: "LoadedModel") -> Any:
        from harness.api.method import _is_peft

        model = copy.deepcopy(base.model)
        if _is_peft(model):
            if self.params.peft == "lora":
                raise ConfigError(f"method {self.name!r}: base model {base.spec.name!r} already carries an adapter; "
                                  "use peft: full, or merge the adapter into a checkpoint first")
            model = model.merge_and_unload()
        model.train()
        return model

    @staticmethod
    def _probe_diff(model: Any, base: "LoadedModel", pair: PreferencePair, chat: bool) -> float:
        """Max |logit difference| between the trained and the base model on one training sequence."""
        row = encode_pair(base.tokenizer, pair, chat)
        return max_logit_difference(model, base.model, row["prompt_ids"] + row["chosen_ids"], base.device)


# --- helpers ---------------------------------------------------------------------------------


def _make_trainer(model: Any, ref_model: Any, args: Any, dataset: Any, tokenizer: Any, peft_config: Any) -> Any:
    from trl import DPOTrainer

    from harness.api.training import quiet_trainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer fed token ids made by `encode_pair` (the harness's one prompt encoding).

        Only the dataset preparation differs: TRL would re-tokenize the text itself. Its own
        filter still runs: with keep_start truncation, prompts that fill `max_length` are dropped.
        """

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
            if args.max_length is not None and args.truncation_mode == "keep_start":
                dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
            return dataset

    with warnings.catch_warnings():  # peft 0.21 reads a deprecated transformers 5 property
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = PretokenizedDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                                         processing_class=tokenizer, peft_config=peft_config)
    quiet_trainer(trainer)  # raw log dicts to the run's log file; dpo_log.jsonl keeps them too
    if len(trainer.train_dataset) == 0:
        raise ConfigError("DPO: every preference pair's prompt fills `max_length`; raise `max_length`")
    return trainer


def _resolved_config(args: Any) -> dict[str, Any]:
    """The DPOConfig as run (every field, defaults included), without the temp output paths."""
    import json

    d = args.to_dict()
    for k in ("output_dir", "logging_dir"):
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str))
