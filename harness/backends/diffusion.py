"""A diffusers text-to-image pipeline behind the request interface (the `diffusion` extra).

It serves one kind, `generate_image` (`harness.api.requests.ImageGenerationRequest`): each
request is seeded, so the cache answers a rerun; the pictures go into the run's `BlobStore`
as PNGs named by their content hash, and the response holds only those references. Requests
that share their settings are batched into one pipeline call, each with its own
`torch.Generator` seeded from its `seed`, so a request's images do not depend on what it was
batched with. An `init_image` turns the request into image-to-image through the pipeline's
img2img sibling (`AutoPipelineForImage2Image.from_pipe`: same weights, no copy).

A LoRA adapter (a PEFT directory trained on the UNet by a diffusion method) is merged into
the UNet when the pipeline loads (`harness.zoo.load`).
"""

from __future__ import annotations

import inspect
import io
from collections import defaultdict
from typing import Any, ClassVar

from harness.api.backend import Backend
from harness.api.media import BlobStore
from harness.api.requests import ImageGenerationRequest, ImageResponse
from harness.errors import HarnessError
from harness.fingerprint import model_identity
from harness.zoo.specs import ModelSpec
from harness.zoo.tiny import single_threaded

BATCH_IMAGES = 16  # images per pipeline call


class DiffusionBackend(Backend):
    name: ClassVar[str] = "diffusers"
    serves: ClassVar[frozenset[str]] = frozenset({"generate_image"})
    chat_template_hash = None  # read by provenance; a pipeline has no chat template

    def __init__(self, spec: ModelSpec, device: str | None = None, adapter: str | None = None, blobs: Any = None,
                 loaded: Any = None, identity: str | None = None, batch_size: int | str = "auto"):
        """`loaded`: a pipeline already in memory (a method's base or result); pass `identity`
        when its weights differ from what `spec`/`adapter` name on disk."""
        from harness.io import cache_dir

        self.spec, self.device, self.adapter = spec, device, adapter or spec.adapter
        self.blobs = blobs if blobs is not None else BlobStore(cache_dir() / "blobs")
        self._loaded, self._identity = loaded, identity
        self._img2img: Any = None
        self.calls = 0

    @property
    def identity(self) -> str:
        if self._identity is None:
            path = self._loaded.path if self._loaded is not None else self.spec.resolve_path()
            self._identity = model_identity(path, self.spec.revision, self.adapter)
        return self._identity

    @property
    def loaded(self) -> Any:
        if self._loaded is None:
            from harness.zoo.load import load_hf_model

            self._loaded = load_hf_model(self.spec, self.device, self.adapter)
        return self._loaded

    @property
    def pipeline(self) -> Any:
        return self.loaded.model

    def img2img(self) -> Any:
        """The pipeline's image-to-image sibling over the same components."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            try:
                self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline)
            except Exception as e:  # noqa: BLE001 - a pipeline family without an img2img variant
                raise HarnessError(f"model {self.spec.name!r}: its pipeline {type(self.pipeline).__name__} has no "
                                   f"image-to-image variant ({str(e).splitlines()[0][:200]})") from None
        return self._img2img

    def generate_image(self, requests: list[ImageGenerationRequest]) -> list[ImageResponse]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.steps, r.guidance_scale, r.height, r.width, r.n, r.init_image is not None, r.strength)].append(i)
        out: list[ImageResponse | None] = [None] * len(requests)
        for (_, _, _, _, n, _, _), indices in groups.items():
            per_call = max(1, BATCH_IMAGES // n)
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                images = self._run([requests[i] for i in chunk])
                for k, i in enumerate(chunk):
                    out[i] = ImageResponse([self._store(im) for im in images[k * n : (k + 1) * n]])
        self.calls += len(requests)
        return out  # type: ignore[return-value]

    def _run(self, batch: list[ImageGenerationRequest]) -> list[Any]:
        """One pipeline call for requests that share their settings; PIL images, request-major."""
        import torch

        first = batch[0]
        generators = []
        for r in batch:
            g = torch.Generator("cpu").manual_seed(r.seed)
            generators += [g] * r.n  # one stream per request: its images never depend on the batch
        kwargs: dict[str, Any] = dict(prompt=[r.prompt for r in batch], negative_prompt=[r.negative_prompt for r in batch],
                                      num_inference_steps=first.steps, guidance_scale=first.guidance_scale,
                                      num_images_per_prompt=first.n, generator=generators, output_type="pil")
        if first.init_image is not None:
            pipe = self.img2img()
            kwargs["image"] = [r.init_image.open_image() for r in batch]
            kwargs["strength"] = first.strength
        else:
            pipe = self.pipeline
            if first.height:
                kwargs["height"] = first.height
            if first.width:
                kwargs["width"] = first.width
        if "clean_caption" in inspect.signature(pipe.__call__).parameters:
            kwargs["clean_caption"] = False  # DeepFloyd IF: caption cleaning needs bs4 + ftfy, and alters prompts
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            if pipe.device.type == "cpu":  # small CPU kernels: threads fighting over shared cores cost 10x
                return list(single_threaded(pipe, **kwargs).images)
            return list(pipe(**kwargs).images)

    def _store(self, image: Any) -> Any:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return self.blobs.put(buf.getvalue(), ".png", "image/png")

    def logits_fingerprint(self, probes: list[str]) -> Any:
        """The UNet's noise prediction for each probe prompt on fixed noise at a fixed step:
        what the took-effect check compares between a method's model and its base."""
        import torch

        pipe = self.pipeline
        unet = pipe.unet
        size = unet.config.sample_size
        g = torch.Generator("cpu").manual_seed(0)
        x = torch.randn((len(probes), unet.config.in_channels, size, size), generator=g).to(unet.device, unet.dtype)
        t = torch.full((len(probes),), pipe.scheduler.config.num_train_timesteps // 2, device=unet.device)
        with torch.no_grad():
            states = encode_prompt(pipe, probes)
            return unet(x, t, encoder_hidden_states=states).sample.float().cpu()

    def close(self) -> None:
        self._loaded, self._img2img = None, None


def encode_prompt(pipe: Any, prompts: list[str]) -> Any:
    """Text-encoder states of `prompts` as the pipeline encodes them (no guidance, no cleaning)."""
    params = inspect.signature(pipe.encode_prompt).parameters
    kwargs: dict[str, Any] = {"device": pipe.unet.device, "num_images_per_prompt": 1}
    if "do_classifier_free_guidance" in params:
        kwargs["do_classifier_free_guidance"] = False
    if "clean_caption" in params:
        kwargs["clean_caption"] = False
    return pipe.encode_prompt(prompts, **kwargs)[0]
