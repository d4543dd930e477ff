"""Diffusion unlearning end to end on the tiny zoo: tiny-scenes, the detector, the cached image
backend, the ForgetMe data loader, routing, and ForgetMe's LoRA forgetting "<cat>" only.

tiny-scenes is built once into the shared test cache (132 CPU-s single-threaded; measured 325 s
wall on 2 cores shared at load ~8), then reused by every run. With it built, this file takes
about 110 s there: ForgetMe's LoRA (200 steps with its retain term) 76 s, the detector's build
and check 19 s, the rest a few seconds each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from harness.api.requests import ImageGenerationRequest  # noqa: E402
from harness.benchmarks.scenes_drawing import CONCEPTS, scenes  # noqa: E402

SEEDS = range(1000, 1008)


@pytest.fixture(scope="module")
def tiny_scenes() -> Path:
    from harness.benchmarks.synthetic_scenes_models import build_tiny_scenes

    return build_tiny_scenes()


@pytest.fixture(scope="module")
def base(tiny_scenes):
    from harness.catalog import MODELS
    from harness.zoo.load import load_hf_model

    return load_hf_model(MODELS.get("tiny-scenes"), device="cpu")


def detection_rates(loaded, identity: str) -> dict[str, float]:
    """Share of 8 seeded generations per concept prompt in which the detector finds it."""
    from harness.backends.diffusion import DiffusionBackend
    from harness.benchmarks.scenes_detector import detect

    backend = DiffusionBackend(loaded.spec, loaded=loaded, identity=identity)
    out = {}
    for c in CONCEPTS:
        images = [r.images[0].open_image() for r in backend.run([ImageGenerationRequest(prompt=c, seed=s) for s in SEEDS])]
        out[c] = sum(p[c] > 0.5 for p in detect(images)) / len(images)
    return out


def test_detector_reads_held_out_drawn_scenes():
    from harness.benchmarks.scenes_detector import detect

    images, labels = [], []
    for c in CONCEPTS:
        for s in scenes(c, 10, seed=99):
            images += [s.original(), s.background()]
            labels += [c, "none"]
    probs = detect(images)
    right = sum(max(p, key=p.get) == label for p, label in zip(probs, labels))
    assert right / len(labels) >= 0.95


def test_tiny_scenes_is_an_if_pipeline_that_draws_its_concepts(tiny_scenes, base):
    from diffusers import DiffusionPipeline, IFPipeline

    assert type(DiffusionPipeline.from_pretrained(str(tiny_scenes))) is IFPipeline
    assert type(base.model) is IFPipeline and base.model.unet.config.sample_size == 32
    rates = detection_rates(base, "base")
    assert rates["<cat>"] >= 0.75 and rates["<house>"] >= 0.75, rates
    assert sum(rates.values()) / len(rates) >= 0.7, rates


def test_seeded_images_are_content_addressed_and_a_rerun_makes_no_model_call(tiny_scenes, tmp_path):
    from harness.api.media import BlobStore
    from harness.backends.factory import BackendFactory
    from harness.cache import ResponseCache
    from harness.catalog import MODELS

    spec = MODELS.get("tiny-scenes")
    requests = [ImageGenerationRequest(prompt="<cat>", seed=1), ImageGenerationRequest(prompt="<bird>", seed=2, n=2)]
    first = BackendFactory(ResponseCache(tmp_path / "c.sqlite"), device="cpu", blobs=BlobStore(tmp_path / "blobs"))
    a = first.make(spec).run(requests)
    assert [len(r.images) for r in a] == [1, 2] and a[1].images[0] != a[1].images[1]
    for ref in (i for r in a for i in r.images):
        assert Path(ref.path).is_file() and Path(ref.path).parent.parent == tmp_path / "blobs"
    second = BackendFactory(ResponseCache(tmp_path / "c.sqlite"), device="cpu", blobs=BlobStore(tmp_path / "blobs"))
    cached = second.make(spec)
    b = cached.run(requests)
    assert (cached.stats.hits, cached.stats.misses) == (2, 0)
    assert cached.backend._loaded is None  # the pipeline was never loaded
    assert [[i.sha256 for i in r.images] for r in b] == [[i.sha256 for i in r.images] for r in a]
    # The same seed gives the same picture whatever it is batched with.
    alone = first.make(spec).backend.run([ImageGenerationRequest(prompt="<bird>", seed=2, n=2, guidance_scale=4.0)])
    assert [i.sha256 for i in alone[0].images] == [i.sha256 for i in a[1].images]


def test_forgetme_lora_forgets_the_cat_and_keeps_the_rest(base, tmp_path):
    from harness.api.context import RunContext
    from harness.catalog import METHODS, build_benchmark
    from harness.zoo.load import load_hf_model

    bench = build_benchmark("synthetic-scenes", concept="<cat>")
    method = METHODS.get("forgetme-lora")(steps=200, lr=3e-3, retain_weight=1.0)
    artifact = method.apply(base, bench, RunContext(tmp_path))
    assert (Path(artifact.adapter_path) / "adapter_config.json").exists()
    unlearned = load_hf_model(base.spec, device="cpu", adapter=artifact.adapter_path)
    before, after = detection_rates(base, "base"), detection_rates(unlearned, "forgetme:" + artifact.hash)
    assert after["<cat>"] <= before["<cat>"] - 0.5, (before, after)
    for c in CONCEPTS[1:]:
        assert after[c] >= before[c] - 0.125, (c, before, after)
    # the base pipeline a grid's other methods train from is untouched
    assert detection_rates(base, "base") == before


def test_forgetme_data_loader(tmp_path):
    from harness.catalog import build_benchmark
    from harness.errors import DatasetUnavailableError

    with pytest.raises(DatasetUnavailableError, match="not released"):
        build_benchmark("forgetme").data
    for k, s in enumerate(scenes("<cat>", 3, seed=5)):
        for part, im in (("bg", s.background()), ("mask", s.mask())) + ((("orig", s.original()),) if k < 2 else ()):
            (tmp_path / part).mkdir(exist_ok=True)
            im.save(tmp_path / part / f"img{k}.png")
    (tmp_path / "bg" / "stray.png").write_bytes((tmp_path / "bg" / "img0.png").read_bytes())  # no mask: skipped
    items = build_benchmark("forgetme", path=str(tmp_path)).split("forget")
    assert [i.id for i in items] == ["img0", "img1", "img2"]
    assert [i.orig is not None for i in items] == [True, True, False]
    with pytest.raises(DatasetUnavailableError, match="bg/ and mask/"):
        build_benchmark("forgetme", path=str(tmp_path / "bg")).data


def test_entangled_metrics_read_the_edits_and_skip_unpaired_items(tmp_path):
    """Through the metric classes with a fake backend whose 'edit' is the background itself:
    Entangled-S is then C of the true background; Entangled-D needs the original."""
    import numpy as np

    from harness.api.media import BlobStore
    from harness.api.requests import ImageResponse
    from harness.catalog import build_benchmark
    from harness.evaluate import evaluate, resolve_metrics
    from harness.metrics.entangled import entangled, entangled_s, image_array, mask_array
    from harness.testing import FakeBackend

    for k, s in enumerate(scenes("<cat>", 2, seed=5)):
        for part, im in (("bg", s.background()), ("mask", s.mask())) + ((("orig", s.original()),) if k == 0 else ()):
            (tmp_path / part).mkdir(exist_ok=True)
            im.save(tmp_path / part / f"img{k}.png")
    bench = build_benchmark("forgetme", path=str(tmp_path))
    items = bench.split("forget")
    store = BlobStore(tmp_path / "blobs")
    by_init = {i.orig.sha256 if i.orig else i.bg.sha256: i.bg for i in items}

    def edit(r):
        return ImageResponse([store.put(Path(by_init[r.init_image.sha256].path).read_bytes())])

    backend = FakeBackend(serves={"generate_image"}, responders={"generate_image": edit})
    results = evaluate(bench, resolve_metrics(bench, ["entangled_d@forget", "entangled_s@forget"], 0), backend).results
    x, y, m = (image_array(items[0].orig), image_array(items[0].bg), mask_array(items[0].mask))
    assert results["entangled_d@forget"].n == 1
    assert results["entangled_d@forget"].value == pytest.approx(entangled(x, y, m))
    expected_s = np.mean([entangled_s(image_array(i.bg), mask_array(i.mask)) for i in items])
    assert results["entangled_s@forget"].value == pytest.approx(expected_s)


def test_routing_keeps_image_generation_to_text_to_image_models(tiny_model_dir):
    from harness.backends.routing import routes, served_kinds
    from harness.catalog import BENCHMARKS
    from harness.config import check_capabilities
    from harness.errors import ConfigError
    from harness.zoo.specs import ModelSpec

    image_model = ModelSpec(name="t2i", kind="text-to-image", path=str(tiny_model_dir))
    assert routes(image_model) == {"generate_image": "diffusers"}
    text_model = ModelSpec(name="lm", path=str(tiny_model_dir))
    assert "generate_image" not in served_kinds(text_model)
    with pytest.raises(ConfigError, match="generate_image"):
        check_capabilities(text_model, BENCHMARKS.get("synthetic-scenes"), "cpu")
    check_capabilities(image_model, BENCHMARKS.get("synthetic-scenes"), "cpu")


def test_fid_and_clip_distance_are_unavailable_without_weights_and_run_with_a_local_network(tmp_path):
    import torch

    from harness.api.media import BlobStore
    from harness.api.requests import ImageResponse
    from harness.catalog import build_benchmark
    from harness.evaluate import evaluate, resolve_metrics
    from harness.metrics.fid import extract_features, fid_from_features
    from harness.testing import FakeBackend

    store = BlobStore(tmp_path / "blobs")
    drawn = {s: sc for s, sc in zip(range(1000, 1004), scenes("<cat>", 4, seed=2))}

    def draw(r):
        import io

        buf = io.BytesIO()
        drawn[r.seed].original().save(buf, format="PNG")
        return ImageResponse([store.put(buf.getvalue())])

    backend = FakeBackend(serves={"generate_image"}, responders={"generate_image": draw})
    bench = build_benchmark("synthetic-scenes", n_forget=4, n_retain=1)
    res = evaluate(bench, resolve_metrics(bench, ["fid@forget", "clip_distance@forget"], 0), backend).results
    assert res["fid@forget"].value is None and "fid_features_path" in res["fid@forget"].details["reason"]
    assert res["clip_distance@forget"].value is None

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.manual_seed(0)
    path = tmp_path / "features.pt"
    torch.jit.script(net).save(str(path))
    bench = build_benchmark("synthetic-scenes", n_forget=4, n_retain=1, fid_features_path=str(path))
    res = evaluate(bench, resolve_metrics(bench, ["fid@forget"], 0), backend).results
    items = bench.split("forget")
    gen = [drawn[i.seed].original() for i in items]
    real = [i.bg.open_image() for i in items]
    expected = fid_from_features(extract_features(str(path), gen), extract_features(str(path), real))
    assert res["fid@forget"].value == pytest.approx(expected) and res["fid@forget"].value > 0


def test_before_after_grid_has_a_row_per_prompt(tmp_path):
    from PIL import Image

    from harness.api.media import BlobStore
    from harness.api.requests import ImageResponse
    from harness.grids import CELL, LABEL_W, SCALE, write_grid
    from harness.testing import FakeBackend

    store = BlobStore(tmp_path / "blobs")

    def solid(colour):
        def draw(r):
            import io

            buf = io.BytesIO()
            Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
            return ImageResponse([store.put(buf.getvalue())])
        return draw

    requests = [ImageGenerationRequest(prompt=p, seed=s) for p in ("<cat>", "<bird>") for s in range(6)]
    requests.append(ImageGenerationRequest(prompt="<cat>", seed=0, init_image=None, strength=1.0))  # a duplicate
    before = FakeBackend(serves={"generate_image"}, responders={"generate_image": solid((255, 0, 0))})
    after = FakeBackend(serves={"generate_image"}, responders={"generate_image": solid((0, 0, 255))})
    grid = Image.open(write_grid(tmp_path / "grid.png", requests, after, before, per_prompt=4))
    assert grid.size == (LABEL_W + 9 * CELL * SCALE, 3 * CELL * SCALE)
    assert before.calls == after.calls == 8  # 2 prompts x 4 seeds, each side once
    row = CELL * SCALE + 5
    assert grid.getpixel((LABEL_W + 5, row)) == (255, 0, 0)  # before, first seed
    assert grid.getpixel((LABEL_W + 5 * CELL * SCALE + 5, row)) == (0, 0, 255)  # after, first seed


def _tiny_clip(directory: Path) -> Path:
    """A random tiny CLIP (character vocabulary, 32-px images) saved with its processor."""
    import json

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz<>":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                      pad_token_id=1),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(directory)
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(directory)
    return directory


def test_clip_distance_with_a_local_tiny_clip(tmp_path):
    import io

    import torch
    from transformers import CLIPModel, CLIPProcessor

    from harness.api.media import BlobStore
    from harness.api.requests import ImageResponse
    from harness.catalog import build_benchmark
    from harness.evaluate import evaluate, resolve_metrics
    from harness.testing import FakeBackend

    clip = _tiny_clip(tmp_path / "clip")
    store = BlobStore(tmp_path / "blobs")
    drawn = dict(zip(range(1000, 1004), scenes("<cat>", 4, seed=2)))

    def draw(r):
        buf = io.BytesIO()
        drawn[r.seed].original().save(buf, format="PNG")
        return ImageResponse([store.put(buf.getvalue())])

    bench = build_benchmark("synthetic-scenes", n_forget=4, n_retain=1, clip_model_path=str(clip))
    backend = FakeBackend(serves={"generate_image"}, responders={"generate_image": draw})
    result = evaluate(bench, resolve_metrics(bench, ["clip_distance@forget"], 0), backend).results["clip_distance@forget"]
    # Independently: CLIP's own forward pass, logits_per_image = exp(logit_scale) * cosine.
    model, processor = CLIPModel.from_pretrained(clip).eval(), CLIPProcessor.from_pretrained(clip)
    images = [drawn[i.seed].original() for i in bench.split("forget")]
    inputs = processor(text=["<cat>"], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        cosine = model(**inputs).logits_per_image[:, 0] / model.logit_scale.exp()
    assert result.n == 4
    assert result.value == pytest.approx(float((1 - cosine).mean()), abs=1e-5)
