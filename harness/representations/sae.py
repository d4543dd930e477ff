"""A TopK sparse autoencoder on one residual layer (docs/metrics.md §4.2, §4.6).

Architecture as in `suppression-or-deletion/models/sae.py` [code]:
`x̂ = W_d · ReLU(TopK(W_e (x − b) + b_lat)) + b`, with a pre-bias `b`, an encoder without bias
plus a separate latent bias `b_lat`, and a decoder without bias whose columns are unit-norm;
the encoder starts as the decoder's transpose. No pretrained SAE exists for the project's
models, so [proposal] it is trained on the original model's activations with MSE and Adam,
re-normalising the decoder columns after every step. Training is cached on disk under
`cache_dir()/sae/` by the content hash of the activations and the configuration, and saved
with safetensors (nothing is unpickled).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from harness.errors import ConfigError


@dataclass(frozen=True)
class SAEConfig:
    """What determines a trained SAE besides its data (part of its cache key)."""

    width: int = 256
    k: int = 16
    lr: float = 1e-3
    steps: int = 600
    batch_size: int = 256
    seed: int = 0

    def check(self, d: int) -> None:
        if self.width < 1 or self.k < 1 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"SAE: width, k, steps, batch_size and lr must be positive (got {asdict(self)})")
        if self.k > self.width:
            raise ConfigError(f"SAE: k ({self.k}) must not exceed the width ({self.width})")
        if d < 1:
            raise ConfigError("SAE: the activations have no dimensions")


class TopKSAE(nn.Module):
    """`x̂ = W_d·ReLU(TopK(W_e(x − b) + b_lat)) + b` (see the module docstring)."""

    def __init__(self, d: int, width: int, k: int, seed: int = 0):
        super().__init__()
        self.d, self.width, self.k = d, width, k
        gen = torch.Generator().manual_seed(seed)
        dec = torch.randn(d, width, generator=gen)
        dec = dec / dec.norm(dim=0, keepdim=True)
        self.pre_bias = nn.Parameter(torch.zeros(d))
        self.latent_bias = nn.Parameter(torch.zeros(width))
        self.encoder = nn.Linear(d, width, bias=False)
        self.decoder = nn.Linear(width, d, bias=False)
        with torch.no_grad():
            self.decoder.weight.copy_(dec)
            self.encoder.weight.copy_(dec.T)

    def pre_codes(self, x: torch.Tensor) -> torch.Tensor:
        """`W_e(x − b)`: no latent bias, no TopK (what steering patches, docs/metrics.md §4.4)."""
        return self.encoder(x - self.pre_bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The sparse code: the k largest of `W_e(x − b) + b_lat` per row, then ReLU; zero elsewhere."""
        z = self.pre_codes(x) + self.latent_bias
        values, idx = z.topk(self.k, dim=-1)
        return torch.zeros_like(z).scatter(-1, idx, torch.relu(values))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) + self.pre_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        w = self.decoder.weight
        w.div_(w.norm(dim=0, keepdim=True).clamp(min=1e-8))


def train_sae(acts: torch.Tensor, config: SAEConfig, progress: bool = True) -> tuple[TopKSAE, dict[str, float]]:
    """Train a TopK SAE on `acts` (N, d) with MSE and Adam; returns it and its training stats.

    The pre-bias starts at the data mean. Stats: final MSE and the fraction of variance
    unexplained (FVU) on all of `acts`.
    """
    from rich.progress import Progress

    acts = acts.detach().float().cpu()
    n, d = acts.shape
    config.check(d)
    if n < 2:
        raise ConfigError(f"SAE: need at least 2 activation vectors to train, got {n}")
    sae = TopKSAE(d, config.width, config.k, seed=config.seed)
    with torch.no_grad():
        sae.pre_bias.copy_(acts.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("training SAE", total=config.steps)
        for _ in range(config.steps):
            batch = acts[torch.randint(0, n, (min(config.batch_size, n),), generator=gen)]
            loss = (sae(batch) - batch).pow(2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sae.normalise_decoder()
            bar.update(task, advance=1)
    sae.eval()
    with torch.no_grad():
        err = (sae(acts) - acts).pow(2).sum(-1)
        var = (acts - acts.mean(0)).pow(2).sum(-1)
    return sae, {"mse": float(err.mean()), "fvu": float(err.sum() / var.sum().clamp(min=1e-12)), "n_train": n}


def activations_hash(acts: torch.Tensor) -> str:
    t = acts.detach().float().cpu().contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


def load_or_train_sae(acts: torch.Tensor, config: SAEConfig, directory: Path | None = None,
                      progress: bool = True) -> tuple[TopKSAE, dict]:
    """The SAE for (`acts`, `config`): loaded from `directory/<hash>.safetensors` when it was
    trained before, else trained and saved there. Returns (sae, info with `hash` and stats)."""
    from safetensors.torch import load_file, save_file

    from harness.io import atomic_write_json, cache_dir

    directory = Path(directory) if directory is not None else cache_dir() / "sae"
    directory.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps({"acts": activations_hash(acts), "config": asdict(config)},
                                    sort_keys=True).encode()).hexdigest()[:24]
    weights, meta = directory / f"{key}.safetensors", directory / f"{key}.json"
    d = acts.shape[-1]
    if weights.exists() and meta.exists():
        sae = TopKSAE(d, config.width, config.k, seed=config.seed)
        sae.load_state_dict(load_file(str(weights)))
        sae.eval()
        return sae, {**json.loads(meta.read_text()), "hash": key, "cached": True}
    sae, stats = train_sae(acts, config, progress=progress)
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    atomic_write_json(meta, {"config": asdict(config), **stats})
    return sae, {"config": asdict(config), **stats, "hash": key, "cached": False}


def select_experts(codes_forget: torch.Tensor, codes_retain: torch.Tensor, rule: str = "top_n",
                   n: int = 32, threshold: float = 0.5) -> list[int]:
    """Forget-selective ("expert") latents, docs/metrics.md §4.3 [proposal] with forget/retain as the classes.

    `codes_*` are sparse SAE codes (tokens × width) of the original model on forget and retain
    inputs. Per latent j: `mean_act_j(c)` and the activation frequency `freq_j(c)`;
    selectivity `s_j = mean_act_j(forget) / (mean_act_j(forget) + mean_act_j(retain))`.
    - `threshold`: every latent with `s_j ≥ threshold` that fires on forget inputs;
    - `top_n`: the `n` latents with the largest `s_j · freq_j(forget)` (that fire at all).
    Returned sorted by score, best first.
    """
    if rule not in ("top_n", "threshold"):
        raise ConfigError(f"expert selection rule must be 'top_n' or 'threshold', not {rule!r}")
    mf, mr = codes_forget.mean(0), codes_retain.mean(0)
    freq = (codes_forget > 0).float().mean(0)
    s = mf / (mf + mr).clamp(min=1e-12)
    score = s * freq
    order = torch.argsort(score, descending=True).tolist()
    fires = mf > 0
    if rule == "threshold":
        return [j for j in order if fires[j] and s[j] >= threshold]
    return [j for j in order if fires[j]][:n]
