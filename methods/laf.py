"""LAF — Label-Agnostic Forgetting, adapted to language models (docs/methods.md §4, LM adaptation §4.2 [proposal]).

Shen et al., ICLR 2024 (`ShaofeiShen768/LAF`). No labels: the method reads the forget and
retain *prompts* only, never their answers (so it needs no forget labels; the optional
LAF+R retain fine-tune is the only place retain answers are read).

- Representation `e(x)`: the attention-mask mean-pooled hidden state at HF hidden-state index
  ℓ (the output of decoder layer ℓ − 1) over the prompt tokens; default ℓ = ⌊2L/3⌋.
  Standardised with the retain-set mean and std of the original model, for the VAEs only.
- Two VAEs on the frozen original model's representations: `vae_r` on retain prompts,
  `vae_f` on forget prompts; MLP d → 1024 → 256 → z, linear decoder output (the original's
  sigmoid cannot reconstruct unbounded LM features), loss `‖ê − e‖²_sum/B + 0.025·KL`, Adam.
- Extractor = decoder layers 0..ℓ−1 (trainable); the layers above, the final norm, the
  embeddings and `lm_head` stay frozen (embeddings too, because tied embeddings are the head).
- Per batch (forget batch, random retain batch), two optimisers alternate:
  1. `L_UE = N(E_r, vae_r) − N(E_f, vae_f)`, `N(E, vae) = Σ_i exp(ℓ_i/(ℓ_i+1))`, ℓ_i the squared
     reconstruction error of row i summed over dims, divided by d when `ue_mean_over_dims`
     (§4.2's suggestion against saturation); the VAEs are frozen and reconstruct from their
     mean code (deterministic; the original samples);
  2. a fresh forward, `L_RA = Σ_i log(exp(c^r_i) / Σ_j exp(c^f_j/τ))`, `c = 1 − cos(e, e_teacher)`,
     the teacher being the frozen original model; the cosine is taken on the unstandardised
     representations, as specified (`ra_space: standardised` takes it in the VAEs' space instead).
- LAF+R (`retain_steps > 0`): that many steps of answer NLL on retain items, training the
  layers above ℓ (the analogue of the original's head fine-tune).
Output: a full checkpoint (`checkpoint/`), hashed.
"""

from __future__ import annotations

import copy
import random
import time
from typing import Literal, TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from harness.artifacts import ModelArtifact
from harness.errors import AdapterNoEffectError, ConfigError
from harness.api.method import Method, _fingerprint
from harness.representations.layers import decoder_layers

if TYPE_CHECKING:
    from harness.api.context import RunContext
    from harness.api.benchmark import Benchmark
    from harness.zoo.load import LoadedModel


class VAE(nn.Module):
    """MLP VAE with a linear output: d → h1 → h2 → (μ, log σ²) → h2 → h1 → d."""

    def __init__(self, d: int, latent: int, hidden: tuple[int, int] = (1024, 256)):
        super().__init__()
        h1, h2 = hidden
        self.enc = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.mu, self.logvar = nn.Linear(h2, latent), nn.Linear(h2, latent)
        self.dec = nn.Sequential(nn.Linear(latent, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, d))

    def forward(self, e: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.enc(e)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.dec(z), mu, logvar


def vae_loss(recon: torch.Tensor, e: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """`‖ê − e‖²_sum / B + w·KL`, `KL = −½ Σ(log σ² + 1 − μ² − σ²) / B` (LAF `vae_loss_function`)."""
    b = e.shape[0]
    kl = -0.5 * torch.sum(logvar + 1 - mu.pow(2) - logvar.exp()) / b
    return (recon - e).pow(2).sum() / b + kl_weight * kl


def train_vae(e: torch.Tensor, latent: int, epochs: int, lr: float, batch_size: int, kl_weight: float,
              hidden: tuple[int, int], seed: int) -> VAE:
    torch.manual_seed(seed)
    vae = VAE(e.shape[1], latent, hidden)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(e), generator=gen)
        for s in range(0, len(e), batch_size):
            batch = e[order[s:s + batch_size]]
            recon, mu, logvar = vae(batch)
            loss = vae_loss(recon, batch, mu, logvar, kl_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    vae.eval()
    for param in vae.parameters():
        param.requires_grad_(False)
    return vae


def saturating_error(vae: VAE, e: torch.Tensor, mean_over_dims: bool) -> torch.Tensor:
    """`N(E, vae) = Σ_i exp(ℓ_i / (ℓ_i + 1))`, ℓ_i the row's squared reconstruction error."""
    recon, _, _ = vae(e, sample=False)
    err = (recon - e).pow(2).sum(-1)
    if mean_over_dims:
        err = err / e.shape[-1]
    return torch.exp(err / (err + 1)).sum()


def alignment_costs(e_r: torch.Tensor, e_f: torch.Tensor, teacher_r: torch.Tensor,
                    teacher_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample `c = 1 − cos(e, e_teacher)` of the retain and forget batches
    (`CosineEmbeddingLoss` with target +1), on the representations as given."""
    return (1 - torch.cosine_similarity(e_r, teacher_r, dim=-1), 1 - torch.cosine_similarity(e_f, teacher_f, dim=-1))


def alignment_loss(c_retain: torch.Tensor, c_forget: torch.Tensor, tau: float) -> torch.Tensor:
    """`L_RA = Σ_i log(exp(c^r_i) / Σ_j exp(c^f_j / τ))`; τ divides only the forget terms."""
    return (c_retain - torch.logsumexp(c_forget / tau, dim=0)).sum()


class LAF(Method):
    """Label-agnostic forgetting on prompts' pooled hidden states (see the module docstring)."""

    name: ClassVar[str] = "laf"

    class Params(Method.Params):
        layer: int | None = Field(None, ge=1)  # HF hidden-state index; None: floor(2L/3)
        latent: int = Field(32, ge=1)
        vae_hidden: tuple[int, int] = (1024, 256)
        vae_epochs: int = Field(10, ge=1)
        vae_lr: float = Field(1e-3, gt=0)
        kl_weight: float = Field(0.025, ge=0)
        lr_ue: float = Field(1e-5, gt=0)
        lr_ra: float = Field(4e-5, gt=0)
        tau: float = Field(5.0, gt=0)
        epochs: int = Field(3, ge=1)
        batch_size: int = Field(32, ge=1)
        ue_mean_over_dims: bool = True
        retain_steps: int = Field(0, ge=0)  # > 0: LAF+R, NLL on retain answers for the layers above
        lr_retain: float = Field(1e-4, gt=0)
        max_length: int = Field(256, ge=2)
        chat: bool = True
        # Where L_RA's cosine is taken: "raw" representations, as specified (methods.md §4.1; the
        # standardisation exists for the VAEs only), or the VAEs' "standardised" space.
        ra_space: Literal["raw", "standardised"] = "raw"

    def apply(self, base: "LoadedModel", benchmark: "Benchmark", ctx: "RunContext") -> ModelArtifact:
        from harness.prompts import encode_prompt
        from harness.api.training import pad_id

        p, seed = self.params, ctx.seed
        output_dir, tok, use_chat = self.start(base, ctx, seed_all=False)
        forget_items = benchmark.split(benchmark.forget_split())
        retain_items = benchmark.split(benchmark.retain_split())
        if not forget_items or not retain_items:
            raise ConfigError(f"method {self.name!r}: needs non-empty forget and retain splits")
        # Label-free: prompts only (never `item.answer`) for both representation sets.
        forget = [encode_prompt(tok, benchmark.prompt(i), None, use_chat)[-p.max_length:] for i in forget_items]
        retain = [encode_prompt(tok, benchmark.prompt(i), None, use_chat)[-p.max_length:] for i in retain_items]
        pad = pad_id(tok)
        device = base.device

        teacher = base.model
        _, teacher_layers = decoder_layers(teacher)
        n_layers = len(teacher_layers)
        layer = (2 * n_layers) // 3 if p.layer is None else p.layer
        if not 1 <= layer <= n_layers - 1:
            raise ConfigError(f"method {self.name!r}: layer {layer} must be in 1..{n_layers - 1} (hidden-state index; "
                              "the layers above it are the frozen 'classifier')")

        start = time.time()
        with torch.no_grad():
            t_r = _representations(teacher, retain, layer, pad, device, p.batch_size)
            t_f = _representations(teacher, forget, layer, pad, device, p.batch_size)
        mean, std = t_r.mean(0), t_r.std(0).clamp(min=1e-6)
        z_r, z_f = (t_r - mean) / std, (t_f - mean) / std
        vae_r = train_vae(z_r.cpu(), p.latent, p.vae_epochs, p.vae_lr, p.batch_size, p.kl_weight, p.vae_hidden, seed).to(device)
        vae_f = train_vae(z_f.cpu(), p.latent, p.vae_epochs, p.vae_lr, p.batch_size, p.kl_weight, p.vae_hidden, seed + 1).to(device)

        model = copy.deepcopy(teacher)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        _, layers = decoder_layers(model)
        for param in model.parameters():
            param.requires_grad_(False)
        extractor = [q for blk in layers[:layer] for q in blk.parameters()]
        for param in extractor:
            param.requires_grad_(True)
        model.train()
        opt_ue = torch.optim.Adam(extractor, lr=p.lr_ue)
        opt_ra = torch.optim.Adam(extractor, lr=p.lr_ra)
        rng = random.Random(seed)
        ue_losses, ra_losses = [], []
        for _ in range(p.epochs):
            f_order = list(range(len(forget)))
            rng.shuffle(f_order)
            for s in range(0, len(f_order), p.batch_size):
                fb = f_order[s:s + p.batch_size]
                rb = [rng.randrange(len(retain)) for _ in fb]
                f_seqs, r_seqs = [forget[i] for i in fb], [retain[i] for i in rb]
                # 1. extractor unlearning
                e_r = (_pooled(model, r_seqs, layer, pad, device) - mean) / std
                e_f = (_pooled(model, f_seqs, layer, pad, device) - mean) / std
                loss_ue = saturating_error(vae_r, e_r, p.ue_mean_over_dims) - saturating_error(vae_f, e_f, p.ue_mean_over_dims)
                opt_ue.zero_grad()
                loss_ue.backward()
                opt_ue.step()
                # 2. representation alignment (fresh forward)
                e_r, e_f = _pooled(model, r_seqs, layer, pad, device), _pooled(model, f_seqs, layer, pad, device)
                if p.ra_space == "raw":
                    c_r, c_f = alignment_costs(e_r, e_f, t_r[rb].to(device), t_f[fb].to(device))
                else:
                    c_r, c_f = alignment_costs((e_r - mean) / std, (e_f - mean) / std, z_r[rb].to(device),
                                               z_f[fb].to(device))
                loss_ra = alignment_loss(c_r, c_f, p.tau)
                opt_ra.zero_grad()
                loss_ra.backward()
                opt_ra.step()
                ue_losses.append(float(loss_ue.detach()))
                ra_losses.append(float(loss_ra.detach()))
        retain_losses = self._retain_finetune(model, layers, layer, benchmark, retain_items, tok, use_chat, pad, device, rng)
        seconds = time.time() - start
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)

        with torch.no_grad():
            probe = torch.tensor([forget[0]], device=device)
            diff = float((model(input_ids=probe).logits - teacher(input_ids=probe).logits).abs().max())
        if diff == 0.0:
            raise AdapterNoEffectError(f"method {self.name!r}: the trained model gives the base model's logits "
                                       f"(lr_ue {p.lr_ue}, lr_ra {p.lr_ra}); nothing was learned")
        target = self.save_model(model, tok, output_dir, "full")
        artifact = ModelArtifact(
            method=self.name, base_model=base.spec.name, checkpoint_path=str(target), hash=_fingerprint(target),
            hparams=p.model_dump(),
            train_stats={"laf_layer": layer, "n_layers": n_layers, "n_forget": len(forget), "n_retain": len(retain),
                         "steps": len(ue_losses), "final_ue_loss": ue_losses[-1] if ue_losses else None,
                         "final_ra_loss": ra_losses[-1] if ra_losses else None,
                         "final_retain_loss": retain_losses[-1] if retain_losses else None,
                         "seconds": round(seconds, 2), "seed": seed, "probe_max_logit_diff": diff},
        )
        artifact.save(output_dir)
        return artifact

    def _retain_finetune(self, model: Any, layers: Any, layer: int, benchmark: Any, items: list, tok: Any,
                         use_chat: bool, pad: int, device: Any, rng: random.Random) -> list[float]:
        """LAF+R: answer NLL on random retain items, training the decoder layers above ℓ."""
        from harness.api.training import encode_items
        from harness.api.training import answer_nll_mean

        p = self.params
        if p.retain_steps == 0:
            return []
        for param in model.parameters():
            param.requires_grad_(False)
        upper = [q for blk in layers[layer:] for q in blk.parameters()]
        for param in upper:
            param.requires_grad_(True)
        encoded = encode_items(benchmark, items, tok, p.max_length, use_chat)
        opt = torch.optim.Adam(upper, lr=p.lr_retain)
        losses = []
        for _ in range(p.retain_steps):
            batch = _collate([encoded[rng.randrange(len(encoded))] for _ in range(p.batch_size)], pad, device)
            loss = answer_nll_mean(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses


def _collate(examples: list[dict], pad: int, device: Any) -> dict:
    from harness.api.training import PairCollator

    batch = PairCollator(pad)([{"forget": e} for e in examples])["forget"]
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


def _pooled(model: Any, seqs: list[list[int]], layer: int, pad: int, device: Any) -> torch.Tensor:
    """Attention-mask mean of hidden state `layer` over each (right-padded) sequence."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    h = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def _representations(model: Any, seqs: list[list[int]], layer: int, pad: int, device: Any, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([_pooled(model, seqs[s:s + batch_size], layer, pad, device).float()
                      for s in range(0, len(seqs), batch_size)])
