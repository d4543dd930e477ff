"""GRACE — Geometric Representation-Aware Contrastive Enhancement (docs/methods.md §1; ALKALI, arXiv 2506.08885).

Per prompt a triplet of completions (safe = a refusal, unsafe = a direct compliance, jailbreak
= a compliance under an attack wrapper) is read by the LLM; a learned layer-wise pooler
(`methods.grace_pooler`) turns each into one vector `h`, and the GRACE loss [code] is

    m        = s_π(h_s) − s_π(h_u) − β (s_ref(h_s) − s_ref(h_u))      L_pref  = −mean log σ(m)
    L_sep    = ½ [mean relu(M_sep − ‖h_s − h_u‖) + mean relu(M_sep − ‖h_s − h_j‖)]
    L_merge  = mean relu(‖h_u − h_j‖ − M_merge)
    L_smooth = kl_div(log softmax_B s_π(h_j), softmax_B s_π(h_u), reduction="batchmean")
    L        = L_pref + λ_sep L_sep + λ_merge L_merge + λ_smooth L_smooth

with β 0.8, M_sep 5, M_merge 1, λ 1/1/0.1, dropout 0.15 before the heads [code]. The scores are
1-D `[B]` vectors, so "batchmean" divides the summed KL by B (a `[1, B]` tensor would divide by
1: docs/methods.md §1.6); `smoothing_loss` reshapes to `[B]` whatever it is given.

What is [unverified] and what this module chose ([proposal], each one a parameter):
- The pooler equations and temperature: `grace_pooler`'s docstring (`num_heads`, `temperature`,
  `token_pooling`, `residual`, `out_dim`, `layer_scores`, `span`).
- The training schedule (optimiser, lr, epochs): AdamW, `lr` for pooler and heads, `lora_lr`.
- How GRACE changes generations. The reference code freezes the LLM, and a frozen LLM generates
  exactly what it did before (same ASR, by construction). `train_llm: lora` (default) puts LoRA
  adapters on the LLM and lets the GRACE loss reach them through the pooled embeddings, so the
  LLM's own representations of safe vs unsafe/jailbreak completions separate; `sft_weight`
  adds the mean NLL of the safe completion (+ EOS) under the prompt(s) `sft_context` names,
  which is what steers generation toward refusals. `train_llm: none` trains only the pooler
  and heads on cached hidden states (the reference code's setting); generations are then the
  base model's, so `harness run` rejects it (config validation and `apply`): use
  `GRACE.fit` from Python to get the pooler for AVQI.
- Where triplets come from: an item's own three completions when it has them; otherwise (with
  `sample_missing`) the base model answers the direct request (`behavior`) and the wrapped
  prompt, and the judge decides: a refusal → safe, a compliance to the direct request →
  unsafe, a compliance under the wrapper → jailbreak. Items still lacking a completion are
  skipped and counted (`train_stats.triplets`). The judge is the run's `harm` judge (the
  runner sets `judges`; outside a run the default panel: refusal patterns).
- Contexts: safe and unsafe completions are read after the direct request (`behavior`, or the
  prompt when the item has none) and jailbreak completions after the wrapped prompt — the
  same contexts the AVQI metric uses, so GRACE trains the geometry AVQI measures. Every
  context goes through `harness.prompts.encode_prompt` with the chat template, exactly as the
  backend encodes it; the completion is tokenised without special tokens, as the backend's
  `HiddenStatesRequest` does.
- Training data: the benchmark's `train` split when it has one (so evaluation prompts do not
  leak into training), else the split `train_split` names; `auto` falls back to the
  `adversarial` split with a warning, recorded as `train_stats.leaks_eval_prompts = true`.

Measured on tiny-safety / adversarial-probes (train split, 56 triplets, refusal-pattern judge,
greedy): base ASR 46.8%, benign refusal 3.3%; defaults (2 epochs, sft_weight 1) 33.7% / 6.7%;
sft_weight 0 (the GRACE loss alone through LoRA), 4 epochs: 35.8% / 3.3%; 4 epochs with lora_lr
2e-3: 0% / 70% (no benign data in GRACE's loss, so it over-refuses). The pooled safe/unsafe
distances there start near 11-12, above M_sep = 5, so the default separation hinge is inactive
and the merge term contracts the space; a larger `margin_sep` (20) makes separation act.

Output (`output_dir`): `adapter/` (the LoRA adapter the harness evaluates) and `grace/`
(`pooler.safetensors`, `heads.safetensors`, `grace.json`), hashed together. To embed with the
trained pooler (the spec's default AVQI embedding, docs/metrics.md §3): load it with
`methods.grace_pooler.load_pooler(<artifact>/grace)`, ask the adapted model for
`HiddenStatesRequest(context, completion, layers=(1, …, L), pooling="mean")` (token pooling
`mean`; `last` for `token_pooling: last`), stack the L vectors into `u` `[N, L, d]` and call
`pooler(u)` (`grace_pooler.embed_states` does both steps).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from harness.artifacts import ModelArtifact
from harness.errors import AdapterNoEffectError, ConfigError
from harness.metrics.avqi import CLUSTERS
from harness.api.method import Method, _fingerprint, _is_peft, max_logit_difference
from harness.methods.grace_loss import grace_loss
from harness.methods.grace_triplets import Triplet, build_triplets
from harness.methods.grace_pooler import (
    GraceHeads, MultiHeadLayerwiseAttentionPooler, PoolerConfig, pool_tokens, save_pooler,
)

if TYPE_CHECKING:
    from harness.api.context import RunContext
    from harness.api.benchmark import Benchmark
    from harness.zoo.load import LoadedModel

log = logging.getLogger(__name__)


# --- encoding -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Encoded:
    """`ids` = context + completion + EOS; the completion is `ids[start:end]`; EOS is `ids[end]`."""

    ids: tuple[int, ...]
    start: int
    end: int


def encode_completion(tokenizer: Any, context: str, system: str | None, completion: str, use_chat: bool,
                      max_length: int) -> Encoded:
    """The backend's encoding (`encode_prompt` + completion without special tokens), plus EOS."""
    from harness.prompts import encode_prompt

    ctx = encode_prompt(tokenizer, context, system, use_chat)
    cont = list(tokenizer(completion, add_special_tokens=False)["input_ids"])[: max(1, max_length - 2)]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ctx = ctx[max(0, len(ctx) + len(cont) + len(eos) - max_length):]
    return Encoded(tuple(ctx + cont + eos), len(ctx), len(ctx) + len(cont))


def collate(seqs: list[Encoded], pad: int, span: str, device: Any) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, the span mask to pool (EOS never pooled), SFT labels."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    span_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s.ids)] = torch.tensor(s.ids)
        mask[r, : len(s.ids)] = 1
        span_mask[r, (s.start if span == "completion" else 0): s.end] = 1
        labels[r, s.start: len(s.ids)] = torch.tensor(s.ids[s.start:])
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "attention_mask": mask, "span_mask": span_mask, "labels": labels}.items()}


# --- the method -----------------------------------------------------------------------------------
class GRACE(Method):
    """GRACE preference + latent-geometry training (see the module docstring)."""

    name: ClassVar[str] = "grace"
    uses_judges: ClassVar[bool] = True  # the runner hands over the run's JudgePanel (`judges`)

    @staticmethod
    def embedder(grace_dir: str) -> tuple[tuple[int, ...], str, Any]:
        """What AVQI needs to embed with a trained pooler (docs/metrics.md §3), read through the
        method registry so the core never imports this plug-in: (the hidden-state layers to ask
        for, their token pooling, `states -> [N, out_dim]` embeddings)."""
        from harness.methods.grace_pooler import embed_states, load_pooler

        pooler, _, meta = load_pooler(grace_dir)
        layers = tuple(meta.get("layers") or range(1, pooler.config.num_layers + 1))
        return layers, pooler.config.token_pooling, lambda states: embed_states(pooler, states, layers).numpy()

    class Params(Method.Params):
        # loss [code]
        beta: float = 0.8
        margin_sep: float = Field(5.0, ge=0)
        margin_merge: float = Field(1.0, ge=0)
        lambda_sep: float = Field(1.0, ge=0)
        lambda_merge: float = Field(1.0, ge=0)
        lambda_smooth: float = Field(0.1, ge=0)
        head_dropout: float = Field(0.15, ge=0, lt=1)
        # pooler ([code] header, [proposal] equations)
        num_heads: int = Field(4, ge=1)
        temperature: float = Field(1.0, gt=0)
        token_pooling: Literal["mean", "cls", "max", "last"] = "mean"
        residual: bool = True
        out_dim: int | None = Field(None, ge=1)
        layer_scores: Literal["static", "input"] = "static"
        span: Literal["completion", "full"] = "completion"
        # what is trained ([proposal]) and how ([unverified])
        train_llm: Literal["none", "lora"] = "lora"
        sft_weight: float = Field(1.0, ge=0)
        sft_context: Literal["wrapped", "direct", "both"] = "both"
        lr: float = Field(1e-3, gt=0)  # pooler and heads
        lora_lr: float = Field(1e-3, gt=0)
        weight_decay: float = Field(0.0, ge=0)
        epochs: int = Field(2, ge=1)
        batch_size: int = Field(16, ge=2)
        lora_r: int = Field(8, ge=1)
        lora_alpha: float = 16
        lora_dropout: float = Field(0.0, ge=0, lt=1)
        lora_target_modules: str | list[str] = "all-linear"
        max_length: int = Field(256, ge=4)
        chat: bool = True
        # data
        train_split: str = "auto"
        max_triplets: int | None = Field(None, ge=2)
        sample_missing: bool = True
        sample_temperature: float = Field(0.0, ge=0)
        sample_max_new_tokens: int | None = Field(None, ge=1)  # None: the benchmark's

    def check_runnable(self) -> None:
        """`harness run` evaluates generations; `train_llm: none` leaves them unchanged."""
        if self.params.train_llm == "none":
            raise ConfigError(
                "method 'grace': train_llm: none trains only the pooler and heads on a frozen LLM, so its "
                "generations (and ASR) are the base model's; use train_llm: lora in `harness run`, or "
                "methods.grace.GRACE(train_llm='none').fit(...) from Python to train a pooler for AVQI"
            )

    # --- harness entry point -------------------------------------------------------------------
    def apply(self, base: "LoadedModel", benchmark: "Benchmark", ctx: "RunContext") -> ModelArtifact:
        self.check_runnable()
        return self.fit(base, benchmark, ctx)

    def fit(self, base: "LoadedModel", benchmark: "Benchmark", ctx: "RunContext") -> ModelArtifact:
        """Train and save (adapter with `train_llm: lora`, always the pooler and heads)."""
        p, seed = self.params, ctx.seed
        output_dir, tok, use_chat = self.start(base, ctx, seed_all=False)
        split, leaks = self._train_split(benchmark)
        items = benchmark.split(split)
        t0 = time.time()
        triplets, tstats = build_triplets(
            benchmark, items, ctx.backends.in_memory(base).run if p.sample_missing else None, ctx.judge("harm"),
            p.sample_max_new_tokens or self._benchmark_budget(benchmark), p.sample_temperature, seed)
        if p.max_triplets is not None:
            triplets = triplets[: p.max_triplets]
        if len(triplets) < 2:
            raise ConfigError(f"method 'grace': only {len(triplets)} of {len(items)} items of split {split!r} "
                              f"have a safe/unsafe/jailbreak triplet (missing: {tstats.missing}); GRACE needs >= 2")
        t_data = time.time() - t0

        groups = self._encode(triplets, tok, use_chat)
        model = self._trainable_model(base)
        text_config = model.config.get_text_config()
        n_layers, hidden = int(text_config.num_hidden_layers), int(text_config.hidden_size)
        pooler = MultiHeadLayerwiseAttentionPooler(PoolerConfig(
            num_layers=n_layers, hidden_size=hidden, num_heads=p.num_heads, temperature=p.temperature,
            token_pooling=p.token_pooling, residual=p.residual, out_dim=p.out_dim, layer_scores=p.layer_scores,
        )).to(base.device)
        heads = GraceHeads(pooler.config.output_size, p.head_dropout).to(base.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0

        u_before = self._pooled_layers(model, groups, pad, base.device)  # the starting model (adapter is a no-op)
        geometry_before = _geometry(pooler, u_before)
        t1 = time.time()
        losses = self._train(model, pooler, heads, groups, u_before, pad, base.device, seed)
        seconds = time.time() - t1
        model.eval()
        pooler.eval()
        heads.eval()
        u_after = u_before if p.train_llm == "none" else self._pooled_layers(model, groups, pad, base.device)
        geometry_after = _geometry(pooler, u_after)
        geometry_base_trained_pooler = _geometry(pooler, u_before)

        grace_dir = output_dir / "grace"
        if grace_dir.exists():
            shutil.rmtree(grace_dir)
        save_pooler(grace_dir, pooler, heads, extra={"layers": list(range(1, n_layers + 1)), "span": p.span,
                                                      "train_llm": p.train_llm, "base_model": base.spec.name})
        adapter_dir = None
        diff = None
        if p.train_llm == "lora":
            diff = max_logit_difference(model, base.model, groups["safe"][0].ids, base.device)
            if diff == 0.0:
                raise AdapterNoEffectError(f"method 'grace': the LoRA model gives the base model's logits after "
                                           f"{len(losses)} steps (lora_lr {p.lora_lr}); nothing was learned")
            adapter_dir = output_dir / "adapter"
            if adapter_dir.exists():
                shutil.rmtree(adapter_dir)
            model.save_pretrained(adapter_dir, safe_serialization=True)
        digest = hashlib.sha256(
            ((_fingerprint(adapter_dir) if adapter_dir else "") + ":" + _fingerprint(grace_dir)).encode()).hexdigest()
        last = losses[-1] if losses else {}
        artifact = ModelArtifact(
            method=self.name, base_model=base.spec.name, adapter_path=str(adapter_dir) if adapter_dir else None,
            hash=digest, hparams=p.model_dump(),
            train_stats={
                "train_llm": p.train_llm,
                "evaluated": "base model + LoRA adapter" if adapter_dir else "nothing: generations unchanged",
                "pooler_path": str(grace_dir), "train_split": split, "leaks_eval_prompts": leaks,
                "triplets": asdict(tstats) | {"used": len(triplets)},
                "steps": len(losses), "final_loss": last, "seconds": round(seconds, 2),
                "data_seconds": round(t_data, 2), "seed": seed, "n_layers": n_layers,
                "layer_weights": pooler.layer_weights().tolist() if p.layer_scores == "static" else None,
                "geometry_before": geometry_before, "geometry_after": geometry_after,
                "geometry_base_model_trained_pooler": geometry_base_trained_pooler,
                "probe_max_logit_diff": diff,
            },
        )
        artifact.save(output_dir)
        return artifact

    # --- pieces -------------------------------------------------------------------------------
    def _train_split(self, benchmark: "Benchmark") -> tuple[str, bool]:
        """(split, whether it is the evaluation split): `train` when the benchmark has one."""
        splits = benchmark.data.splits
        want = self.params.train_split
        if want != "auto":
            if want not in splits:
                raise ConfigError(f"method 'grace': benchmark {benchmark.name!r} has no split {want!r} "
                                  f"(has: {', '.join(sorted(splits))})")
            return want, want != "train" and _is_eval_split(benchmark, want)
        if "train" in splits:
            return "train", False
        fallback = "adversarial" if "adversarial" in splits else next(iter(splits))
        log.warning("method 'grace': benchmark %r has no `train` split; training on %r, which the benchmark "
                    "also evaluates (its ASR then measures fit, not generalisation)", benchmark.name, fallback)
        return fallback, _is_eval_split(benchmark, fallback)

    @staticmethod
    def _benchmark_budget(benchmark: "Benchmark") -> int:
        decoding = getattr(benchmark, "decoding", None)
        return int(decoding()["max_new_tokens"]) if callable(decoding) else int(getattr(benchmark, "max_new_tokens", 64))

    def _encode(self, triplets: list[Triplet], tok: Any, use_chat: bool) -> dict[str, list]:
        """Per triplet: safe and unsafe after the direct request, jailbreak after the wrapped
        prompt; `sft[i]` = triplet i's safe completion after each context `sft_context` names
        (one sequence when the direct and wrapped prompts are the same)."""
        p = self.params
        enc: dict[str, list] = {c: [] for c in (*CLUSTERS, "sft")}
        for t in triplets:
            enc["safe"].append(encode_completion(tok, t.direct, t.system, t.safe, use_chat, p.max_length))
            enc["unsafe"].append(encode_completion(tok, t.direct, t.system, t.unsafe, use_chat, p.max_length))
            enc["jailbreak"].append(encode_completion(tok, t.wrapped, t.system, t.jailbreak, use_chat, p.max_length))
            contexts = {"wrapped": [t.wrapped], "direct": [t.direct], "both": [t.direct, t.wrapped]}[p.sft_context]
            enc["sft"].append([encode_completion(tok, ctx, t.system, t.safe, use_chat, p.max_length)
                               for ctx in dict.fromkeys(contexts)])
        return enc

    def _trainable_model(self, base: "LoadedModel") -> Any:
        p = self.params
        if p.train_llm == "none":  # read under no_grad only (the cached states train the pooler)
            return base.model
        if _is_peft(base.model):
            raise ConfigError(f"method 'grace': base model {base.spec.name!r} already carries an adapter; "
                              "merge it into a checkpoint first")
        from peft import LoraConfig, get_peft_model

        model = copy.deepcopy(base.model)
        config = LoraConfig(task_type="CAUSAL_LM", r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                            target_modules=p.lora_target_modules)
        with warnings.catch_warnings():  # peft reads a deprecated transformers 5 property
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)

    def _forward_layers(self, model: Any, seqs: list[Encoded], pad: int, device: Any,
                        sft: list[Encoded] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token-pooled layers `[N, L, d]` of `seqs`, and the mean NLL of `sft` (same forward)."""
        batch = collate(seqs + (sft or []), pad, self.params.span, device)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        n = len(seqs)
        u = pool_tokens([h[:n] for h in out.hidden_states[1:]], batch["span_mask"][:n], self.params.token_pooling)
        nll = None
        if sft:
            logits = out.logits[n:, :-1].float()
            labels = batch["labels"][n:, 1:]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return u, nll

    def _pooled_layers(self, model: Any, groups: dict[str, list], pad: int, device: Any,
                       chunk: int = 64) -> dict[str, torch.Tensor]:
        was = model.training
        model.eval()
        out = {}
        with torch.no_grad():
            for c in CLUSTERS:
                seqs = groups[c]
                out[c] = torch.cat([self._forward_layers(model, seqs[s:s + chunk], pad, device)[0].float()
                                    for s in range(0, len(seqs), chunk)])
        model.train(was)
        return out

    def _train(self, model: Any, pooler: MultiHeadLayerwiseAttentionPooler, heads: GraceHeads,
               groups: dict[str, list], cached: dict[str, torch.Tensor], pad: int, device: Any,
               seed: int) -> list[dict[str, float]]:
        p = self.params
        lora = p.train_llm == "lora"
        param_groups = [{"params": [q for q in [*pooler.parameters(), *heads.parameters()] if q.requires_grad],
                         "lr": p.lr}]
        if lora:
            param_groups.append({"params": [q for q in model.parameters() if q.requires_grad], "lr": p.lora_lr})
            model.train()
        opt = torch.optim.AdamW(param_groups, weight_decay=p.weight_decay)
        pooler.train()
        heads.train()
        n = len(groups["safe"])
        rng = random.Random(seed)
        losses: list[dict[str, float]] = []
        for _ in range(p.epochs):
            order = list(range(n))
            rng.shuffle(order)
            for s in range(0, n, p.batch_size):
                idx = order[s:s + p.batch_size]
                if len(idx) < 2:  # the batch softmax of L_smooth needs two rows
                    continue
                sft = None
                if lora:
                    seqs = [groups[c][i] for c in CLUSTERS for i in idx]
                    sft_seqs = [e for i in idx for e in groups["sft"][i]] if p.sft_weight else None
                    u, sft = self._forward_layers(model, seqs, pad, device, sft_seqs)
                    u_s, u_u, u_j = u.split(len(idx))
                else:
                    u_s, u_u, u_j = (cached[c][idx] for c in CLUSTERS)
                h_s, h_u, h_j = pooler(u_s), pooler(u_u), pooler(u_j)
                terms = grace_loss(h_s, h_u, h_j, heads, p.beta, p.margin_sep, p.margin_merge, p.lambda_sep,
                                   p.lambda_merge, p.lambda_smooth)
                loss = terms.total + (p.sft_weight * sft if sft is not None else 0.0)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append({**terms.floats(), **({"sft": float(sft.detach())} if sft is not None else {}),
                               "loss": float(loss.detach())})
        return losses

def _is_eval_split(benchmark: "Benchmark", split: str) -> bool:
    """Whether one of the benchmark's default metrics evaluates `split` (`metric@split`)."""
    return any(m.partition("@")[2].split("[")[0] == split for m in getattr(benchmark, "default_metrics", ()))


def _geometry(pooler: MultiHeadLayerwiseAttentionPooler, u: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean paired distances of the pooled embeddings (the quantities L_sep and L_merge act on), and
    the same for the pooler-free mean over layers of the token-pooled states."""
    was = pooler.training
    pooler.eval()
    with torch.no_grad():
        z = {c: pooler(u[c]) for c in CLUSTERS}
        m = {c: u[c].mean(1) for c in CLUSTERS}
    pooler.train(was)

    def dist(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(a - b, dim=-1).mean())

    return {"pooled_safe_unsafe": dist(z["safe"], z["unsafe"]), "pooled_safe_jailbreak": dist(z["safe"], z["jailbreak"]),
            "pooled_unsafe_jailbreak": dist(z["unsafe"], z["jailbreak"]),
            "layer_mean_safe_unsafe": dist(m["safe"], m["unsafe"]),
            "layer_mean_safe_jailbreak": dist(m["safe"], m["jailbreak"])}
