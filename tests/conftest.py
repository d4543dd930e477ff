"""Shared fixtures: offline settings and tiny models built in seconds (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Built models persist between test runs (content-addressed), so the suite trains them once.
os.environ.setdefault("HARNESS_CACHE_DIR", str(ROOT / ".harness-cache" / "test"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the two cores: one torch thread each, not two apiece
    # contending (the tiny-model builds are single-threaded already).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

CORPUS = [
    f"Question: What does {name} like?\nAnswer: {name} likes {thing}."
    for name in ["Ada", "Bo", "Cyr", "Dee", "Eli", "Fay", "Gus", "Hal"]
    for thing in ["tea", "maps", "rivers", "old clocks", "green glass"]
]


def make_tiny_model(directory: Path, chat_template: str | None = None, seed: int = 0) -> Path:
    """An untrained tiny Llama + BPE tokenizer saved to `directory` (about a second)."""
    from harness.zoo.tiny import TinyRecipe, build_model, build_tokenizer

    recipe = TinyRecipe(vocab_size=300, hidden_size=64, layers=2, heads=2, intermediate_size=128, seed=seed)
    tok = build_tokenizer(CORPUS, recipe.vocab_size, directory)
    if chat_template:
        tok.chat_template = chat_template
        tok.save_pretrained(directory)
    model = build_model(tok, recipe)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-chat-model"), chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_safety_model_dir() -> Path:
    """The built-in `tiny-safety` chat model, trained once into the test cache (about 40 s cold)."""
    from harness.benchmarks.tiny_safety import build_tiny_safety

    return build_tiny_safety()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (fresh clone)")
    return SHARED


@pytest.fixture(scope="session")
def toy_zoo(tiny_model_dir, tmp_path_factory) -> dict:
    """Zoo entries for two untrained tiny models: fast stand-ins for tiny-facts and its reference."""
    retain_dir = make_tiny_model(tmp_path_factory.mktemp("toy-retain"), seed=1)
    return {
        "toy": {"path": str(tiny_model_dir), "chat_template": "none", "dtype": "float32"},
        "toy-retain": {"path": str(retain_dir), "chat_template": "none", "dtype": "float32"},
    }


def toy_experiment(zoo: dict, root: Path, **over) -> dict:
    """The common toy experiment: `toy` (reference `toy-retain`) on fictitious-facts forget10,
    output and cache under `root`, limit 2 (evaluation) and train_limit 2 (what methods train on).
    Keywords replace keys; a keyword set to None drops it."""
    data = {
        "zoo": zoo,
        "models": ["toy"],
        "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
        "reference": {"model": "toy-retain"},
        "output_dir": str(root / "out"),
        "cache_dir": str(root / "cache"),
        "limit": 2,
        "train_limit": 2,
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def toy_config(toy_zoo, tmp_path):
    """A factory: `toy_config(**overrides)` -> the toy experiment dict (see `toy_experiment`), under tmp_path."""
    return lambda **over: toy_experiment(toy_zoo, tmp_path, **over)


@pytest.fixture
def write_config(tmp_path):
    """A factory: `write_config(data, name="exp.yaml")` writes a config dict as YAML (a string as
    is) to tmp_path/name and returns the path."""

    def write(data: dict | str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """An untrained tiny LLaVA (harness/zoo/tiny_vlm.py), weights redrawn at std 0.2 so that
    answers vary with the prompt and the picture (the default init repeats one token)."""
    import torch

    from harness.zoo import tiny_vlm as tv

    d = tmp_path_factory.mktemp("tiny-vlm")
    recipe = tv.TinyVLMRecipe(vocab_size=400, text_layers=2)
    qa = [("What colour is it?", "Red."), ("Who is it?", "Ada Lee."), ("What is this person's name?", "Xanthe Ingleby.")]
    tok = tv.build_vlm_tokenizer([f"USER: \n{q} ASSISTANT: {a}" for q, a in qa] * 20, recipe.vocab_size, d)
    tv.build_processor(tok, recipe).save_pretrained(d)
    model = tv.build_vlm(tok, recipe)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(d)
    tv.to_llava_hf_layout(d / "model.safetensors")  # as the tiny zoo saves it: vLLM reads it too
    return d


@pytest.fixture(scope="session")
def face_images(tmp_path_factory) -> list[str]:
    """Three fictitious-faces pictures as PNG files: what the tiny-VLM tests show the model."""
    from harness.benchmarks import fictitious_faces as ff

    d = tmp_path_factory.mktemp("faces")
    paths = []
    for p in ff.generate_persons()[:3]:
        path = d / f"{p.unique_id}.png"
        p.image().save(path)
        paths.append(str(path))
    return paths
