"""What a method is, and the shared machinery of loss-based unlearning (docs/methods.md §5.0, §6).

`Method` is the general plug-in contract: hyperparameters declared as a pydantic `Params`
model, and `apply(base, benchmark, ctx) -> ModelArtifact`, where `ctx` (a `RunContext`)
carries the output dir, the seed, the run's judges and the backend factory every model
query goes through. Data-level methods
(CHES filtering) and representation methods (GRACE) subclass `Method` directly.

`UnlearningMethod` is for loss-based unlearning (GradAscent, GradDiff, NPO, ...). A subclass
overrides only `loss(model, forget, retain, ref_model)`; data pairing, tokenisation, LoRA or
full fine-tuning, the HF `Trainer` loop, the reference model, saving and the artefact are
shared. A complete method fits in a dozen lines (see examples/my_method/).
"""

from __future__ import annotations

import copy
import logging
import shutil
import sys
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.api.context import RunContext
from harness.artifacts import ModelArtifact
from harness.api.training import ForgetRetainDataset, PairCollator, encode_items, model_inputs, pad_id
from harness.errors import AdapterNoEffectError, ConfigError

if TYPE_CHECKING:
    import torch

    from harness.api.benchmark import Benchmark
    from harness.zoo.load import LoadedModel

log = logging.getLogger(__name__)




def uses_chat_template(base: "LoadedModel", wanted: bool) -> bool:
    """Whether training prompts are chat-templated: asked for, not switched off in the model
    spec, and the tokenizer has a template (the same rule the backend applies at evaluation)."""
    owner = base.processor if base.processor is not None and base.spec.chat_template == "auto" else base.tokenizer
    return wanted and base.spec.chat_template != "none" and bool(getattr(owner, "chat_template", None))


# Module-name parts of a VLM's vision side (llava-hf, Qwen-VL, Idefics, Mllama naming).
VISION_PARTS = ("vision_tower", "vision_model", "visual")
PROJECTOR_PARTS = ("multi_modal_projector", "mm_projector", "connector")


def vlm_lora_targets(model: Any, include: str) -> list[str]:
    """The linear layers LoRA adapts in a VLM: the language model's ("none"), plus the projector's
    ("projector"), plus the vision tower's ("all"); never the output head. FIUBench adapts the
    language model; the vision side is opt-in (`lora_vision`)."""
    import torch

    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        vision = any(part in name.split(".") for part in VISION_PARTS)
        projector = any(part in name.split(".") for part in PROJECTOR_PARTS)
        if (vision and include != "all") or (projector and include == "none"):
            continue
        names.append(name)
    return names

class Method(ABC):
    """A method: turns a base model (and a benchmark's data) into a new model artefact.

    Subclasses set `name`, extend the nested `Params` model with their hyperparameters, and
    implement `apply`. An unknown or ill-typed hyperparameter raises a one-line ConfigError.
    """

    name: ClassVar[str] = ""
    # Methods that judge their own samples (preference data, GRACE triplets) set this: the
    # run's judges (`ctx.judge(role)`) then enter the method's recipe hash.
    uses_judges: ClassVar[bool] = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    params: Params

    def __init__(self, **hparams: Any):
        try:
            self.params = self.Params(**hparams)
        except ValidationError as e:
            raise ConfigError(_params_error(self.name or type(self).__name__, self.Params, e)) from None

    @abstractmethod
    def apply(self, base: "LoadedModel", benchmark: "Benchmark", ctx: RunContext) -> ModelArtifact:
        """Produce the method's artefact in `ctx.output_dir` (and save `artifact.json` there)."""

    @staticmethod
    def save_model(model: Any, tokenizer: Any, output_dir: Path, peft: str) -> Path:
        """Save what the harness evaluates: `adapter/` (LoRA) or `checkpoint/` (full weights +
        tokenizer), replacing an older one; returns its directory."""
        target = output_dir / ("adapter" if peft == "lora" else "checkpoint")
        if target.exists():
            shutil.rmtree(target)
        model.save_pretrained(target, safe_serialization=True)
        if peft != "lora":
            tokenizer.save_pretrained(target)
        return target

    def start(self, base: "LoadedModel", ctx: RunContext, seed_all: bool = True) -> tuple[Path, Any, bool]:
        """The set-up every method does first: the output dir created, the seed set, and
        (output dir, tokenizer, whether prompts are chat-templated). `seed_all` seeds Python,
        NumPy and torch (transformers.set_seed); False seeds torch alone."""
        import torch
        from transformers import set_seed

        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(ctx.seed) if seed_all else torch.manual_seed(ctx.seed)
        return ctx.output_dir, base.tokenizer, uses_chat_template(base, getattr(self.params, "chat", False))


def max_logit_difference(model: Any, base_model: Any, ids: list[int], device: Any) -> float:
    """Max |logit difference| of two models on one sequence: did training change anything?"""
    import torch

    batch = torch.tensor([ids], device=device)
    with torch.no_grad():
        return float((model(input_ids=batch).logits.float() - base_model(input_ids=batch).logits.float()).abs().max())


def _params_error(method: str, params: type[BaseModel], e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown hyperparameter {field!r} (known: {', '.join(sorted(params.model_fields))})")
        else:
            parts.append(f"hyperparameter {field!r}: {err['msg']} (got {err.get('input')!r})")
    return f"method {method!r}: " + "; ".join(parts)


class ReferenceModel:
    """Outputs of the frozen starting model, computed under `torch.no_grad()`.

    Call it like a model: `ref_model(**batch).logits`. With LoRA it is the adapter-disabled
    view of the model being trained (no extra memory); with full fine-tuning it is the
    untouched starting model. A method that declared it needs no reference gets an
    unavailable one, and calling it is an error.
    """

    def __init__(self, peft_model: Any = None, frozen: Any = None):
        self._peft = peft_model
        self._frozen = frozen

    @property
    def available(self) -> bool:
        return self._peft is not None or self._frozen is not None

    @property
    def model(self) -> Any:
        """The module the reference runs (the frozen model, or the PEFT model whose adapter it
        disables), for methods that hook its layers (RMU); None when unavailable."""
        return self._frozen if self._frozen is not None else self._peft

    def __call__(self, **batch: Any) -> Any:
        import torch

        if self._frozen is not None:
            with torch.no_grad():
                return self._frozen(**batch)
        if self._peft is not None:
            was_training = self._peft.training
            self._peft.eval()  # the reference is deterministic: no dropout
            try:
                with torch.no_grad(), self._peft.disable_adapter():
                    return self._peft(**batch)
            finally:
                self._peft.train(was_training)
        raise RuntimeError(
            "this method declared needs_reference = False (and uses no KL retain loss) but its loss "
            "called ref_model; set needs_reference = True on the class"
        )


class UnlearningMethod(Method):
    """Loss-based unlearning on (forget, random retain) pairs; subclasses override only `loss`.

    Data: each forget item of `benchmark.split(benchmark.forget_split())` is paired with a
    uniformly random retain item (a fresh draw each time it is fetched, from an RNG seeded
    with the run seed, recorded as `pair_seed`). An item is `prompt + target + EOS`; only the
    target and EOS tokens are supervised (labels −100 on the prompt and on padding). When the
    tokenizer has a chat template (and the model spec does not say `chat_template: none`),
    the prompt goes through it with `add_generation_prompt=True`, as evaluation does.

    Training: an HF `Trainer` whose `compute_loss` calls `self.loss`. Defaults suit the tiny
    CPU models: LoRA (r 8, alpha 16) on all linear layers with lr 1e-3. open-unlearning
    trains 1B+ models fully with lr 1e-5, 10 epochs, batch 8 x 4 (`peft="full"`, `lr=1e-5`,
    `epochs=10`, `grad_accum=4`). The base model is deep-copied before training so that
    `base.model` stays usable; for large models that doubles memory during `apply`.

    Output: LoRA saves `output_dir/adapter`; full fine-tuning saves the model and tokenizer
    to `output_dir/checkpoint`. Both are hashed with `directory_fingerprint`.
    """

    needs_reference: ClassVar[bool] = False  # loss() calls ref_model (NPO, KL retain, ...)
    uses_retain: ClassVar[bool] = True  # batches carry a paired retain example

    class Params(Method.Params):  # descriptions: what `harness show <method>` prints
        lr: float = Field(1e-3, gt=0, description="learning rate (AdamW)")
        epochs: int = Field(5, ge=1, description="passes over the forget set")
        batch_size: int = Field(8, ge=1, description="forget examples per step (each with a retain example)")
        grad_accum: int = Field(1, ge=1, description="steps whose gradients are summed before an update")
        weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
        warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with a linear learning-rate warm-up")
        max_steps: int | None = Field(None, ge=1, description="stop after this many updates (overrides epochs)")
        peft: Literal["lora", "full"] = Field("lora", description="train a LoRA adapter or every weight")
        lora_r: int = Field(8, ge=1, description="LoRA rank")
        lora_alpha: float = Field(16, description="LoRA scaling numerator (scale = alpha / r)")
        lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
        lora_target_modules: str | list[str] = Field("all-linear", description="modules that get adapters")
        lora_vision: Literal["none", "projector", "all"] = Field(
            "none", description="a VLM's all-linear LoRA: the language model only, + the projector, or + the vision tower")
        gamma: float = Field(1.0, description="weight of the forget loss")
        alpha: float = Field(1.0, description="weight of the retain loss (methods with a retain term)")
        gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
        max_length: int = Field(256, ge=2, description="longest tokenised example; longer ones are cut")
        logging_steps: int = Field(10, ge=1, description="updates between logged losses")
        chat: bool = Field(True, description="apply the tokenizer's chat template to prompts when it has one")

    # --- what a subclass provides -----------------------------------------------------
    @abstractmethod
    def loss(self, model: Any, forget: dict, retain: dict | None, ref_model: ReferenceModel) -> "torch.Tensor":
        """The training loss on one batch. `retain` is None when `uses_retain` is False."""

    # --- optional hooks (defaults do nothing special) -----------------------------------
    def encode_forget(
        self, benchmark: "Benchmark", items: list, tokenizer: Any, max_length: int, chat: bool, seed: int
    ) -> list[dict]:
        """Encode the forget split. Override to attach extra targets to each item, e.g. IdkDPO's
        "I don't know" answer via `encode_items(..., alternate_answers=...)`; `seed` is the run seed."""
        return encode_items(benchmark, items, tokenizer, max_length, chat)

    def on_train_start(self, model: Any, ref_model: ReferenceModel, base: "LoadedModel", seed: int) -> None:
        """Called once the trainable model exists, before the first step: per-run state for `loss`
        (RMU resolves its layer and seeds its control vector here)."""

    def extra_train_stats(self) -> dict[str, Any]:
        """Entries added to the artefact's `train_stats` (RMU records the resolved layer)."""
        return {}

    def wants_reference(self) -> bool:
        """Whether `loss` will call `ref_model` (drives whether full fine-tuning keeps a frozen copy)."""
        return self.needs_reference or getattr(self.params, "retain_loss_type", "NLL") == "KL"

    # --- shared machinery -------------------------------------------------------------
    def apply(self, base: "LoadedModel", benchmark: "Benchmark", ctx: RunContext) -> ModelArtifact:
        import torch

        p, seed = self.params, ctx.seed
        output_dir, tok, use_chat = self.start(base, ctx)
        enc = base.processor if base.processor is not None else tok  # a VLM's items encode with their images

        forget = self.encode_forget(benchmark, benchmark.split(benchmark.forget_split()), enc, p.max_length, use_chat, seed)
        retain = None
        if self.uses_retain:
            retain = encode_items(benchmark, benchmark.split(benchmark.retain_split()), enc, p.max_length, use_chat)
        dataset = ForgetRetainDataset(forget, retain, seed=seed)
        collator = PairCollator(pad_id(tok))

        model, ref = self._prepare_model(base)
        self.on_train_start(model, ref, base, seed)
        with tempfile.TemporaryDirectory(prefix="harness-unlearn-") as tmp:
            trainer = self._trainer(model, ref, dataset, collator, seed, base.device, tmp)
            start = time.time()
            trainer.train()
            seconds = time.time() - start

        model.eval()
        probe = collator([dataset[0]])["forget"]
        diff = self._probe_diff(model, base.model, probe, base.device)
        if diff == 0.0:
            raise AdapterNoEffectError(
                f"method {self.name!r}: the trained model gives the same logits as the base model "
                f"after {trainer.state.global_step} steps (lr {p.lr}); nothing was learned"
            )
        if getattr(model.config, "use_cache", None) is False:
            model.config.use_cache = True
        if p.gradient_checkpointing and hasattr(model, "gradient_checkpointing_disable"):
            model.gradient_checkpointing_disable()

        target = self.save_model(model, tok, output_dir, p.peft)

        final = trainer.last_loss
        if final is not None and not torch.isfinite(final):
            log.warning("method %r: final training loss %s; the model has probably diverged", self.name, float(final))
        artifact = ModelArtifact(
            method=self.name,
            base_model=base.spec.name,
            adapter_path=str(target) if p.peft == "lora" else None,
            checkpoint_path=str(target) if p.peft == "full" else None,
            hash=_fingerprint(target),
            hparams=p.model_dump(),
            train_stats={
                "steps": trainer.state.global_step,
                "final_loss": None if final is None else float(final),
                "mean_loss": trainer.mean_loss,
                "seconds": round(seconds, 2),
                "seed": seed,
                "pair_seed": dataset.seed,
                "n_forget": len(forget),
                "n_retain": len(retain) if retain is not None else 0,
                "probe_max_logit_diff": diff,
                **self.extra_train_stats(),
            },
        )
        artifact.save(output_dir)
        del trainer
        return artifact

    def _prepare_model(self, base: "LoadedModel") -> tuple[Any, ReferenceModel]:
        """A trainable copy of the base model (LoRA-wrapped or full) and its reference view."""
        p = self.params
        src = base.model
        is_peft = _is_peft(src)
        if is_peft and p.peft == "lora":
            raise ConfigError(
                f"method {self.name!r}: base model {base.spec.name!r} already carries an adapter; "
                "use peft: full, or merge the adapter into a checkpoint first"
            )
        model = copy.deepcopy(src)
        if is_peft:
            model = model.merge_and_unload()
        model.train()
        if p.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if p.peft == "full":
            for param in model.parameters():
                param.requires_grad_(True)
            # base.model is never trained, so it is the frozen starting model itself.
            return model, ReferenceModel(frozen=src if self.wants_reference() else None)

        from peft import LoraConfig, get_peft_model

        if p.gradient_checkpointing:
            model.enable_input_require_grads()  # else LoRA trains nothing (open-unlearning#178)
        targets = p.lora_target_modules
        if base.spec.kind == "image-text-to-text" and targets == "all-linear":
            targets = vlm_lora_targets(model, p.lora_vision)
        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=p.lora_r,
            lora_alpha=p.lora_alpha,
            lora_dropout=p.lora_dropout,
            target_modules=targets,
        )
        with warnings.catch_warnings():  # peft 0.21 reads a deprecated transformers 5 property
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(model, config)
        return model, ReferenceModel(peft_model=model)

    def _trainer(
        self, model: Any, ref: ReferenceModel, dataset: Any, collator: Any, seed: int, device: str, tmp: str
    ) -> Any:
        from transformers import TrainingArguments

        p = self.params
        args = TrainingArguments(
            output_dir=tmp,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            per_device_train_batch_size=p.batch_size,
            gradient_accumulation_steps=p.grad_accum,
            learning_rate=p.lr,
            num_train_epochs=p.epochs,
            max_steps=p.max_steps if p.max_steps is not None else -1,
            weight_decay=p.weight_decay,
            warmup_steps=p.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers 5)
            lr_scheduler_type="linear",
            optim="adamw_torch",
            seed=seed,
            data_seed=seed,
            logging_steps=p.logging_steps,
            remove_unused_columns=False,
            use_cpu=str(device).startswith("cpu"),
            disable_tqdm=not sys.stderr.isatty(),
            dataloader_num_workers=0,
            bf16=False,
            fp16=False,
        )
        return _make_trainer(self, model, ref, args, dataset, collator)

    @staticmethod
    def _probe_diff(model: Any, base_model: Any, probe: dict, device: str) -> float:
        """Max |logit difference| between the trained model and the base model on one forget item."""
        import torch

        batch = {k: v.to(device) for k, v in model_inputs(probe).items()}
        with torch.no_grad():
            new = model(**batch).logits.float()
            old = base_model(**batch).logits.float()
        return float((new - old).abs().max())


# --- helpers --------------------------------------------------------------------------


def _make_trainer(
    method: UnlearningMethod, model: Any, ref: ReferenceModel, args: Any, dataset: Any, collator: Any
) -> Any:
    from transformers import Trainer

    class UnlearnTrainer(Trainer):
        """open-unlearning style: `compute_loss` is the method's loss on (forget, retain) batches."""

        def __init__(self, *a: Any, **kw: Any):
            super().__init__(*a, **kw)
            # Our batches have no top-level labels: Trainer must scale for grad accumulation itself.
            self.model_accepts_loss_kwargs = False
            self.last_loss: Any = None
            self._loss_sum = 0.0
            self._loss_n = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            loss = method.loss(model, inputs["forget"], inputs.get("retain"), ref)
            self.last_loss = loss.detach()
            self._loss_sum += float(self.last_loss)
            self._loss_n += 1
            return (loss, None) if return_outputs else loss

        @property
        def mean_loss(self) -> float | None:
            return self._loss_sum / self._loss_n if self._loss_n else None

    from harness.api.training import quiet_trainer

    trainer = UnlearnTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    return quiet_trainer(trainer)  # raw loss dicts to the run's log; train_stats keep the losses


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def _fingerprint(directory: Path) -> str:
    from harness.fingerprint import directory_fingerprint

    return directory_fingerprint(directory)
