"""The narrow waist: what a benchmark asks of a model, and what comes back.

Five request kinds cover every metric: free generation, the log-likelihood of a
continuation given a context, pooled hidden states, the gradient norm of a
continuation's loss (the GradNorm membership-inference attack), and the logit lens
(per-layer vocabulary distributions, UnLOK-VQA's white-box attacks). Metrics build requests and read
responses; they never touch a model. Requests are frozen dataclasses so they can be
hashed into the response cache and de-duplicated across metrics. Each kind is declared
once, with its response type and cache-key rule (`harness.api.kinds.request_kind`).

Images ride on the text kinds: `images` holds content-addressed `MediaRef`s (a path given
here is read and hashed on construction), so the cache key names the picture, not its path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal, Union

from harness.api.kinds import kind, request_kind, stable_json
from harness.api.media import MediaRef, as_media

Pooling = Literal["mean", "last", "per_token", "sum"]
# Which positions a HiddenStatesRequest pools: the continuation's own tokens (the default), or
# the positions that *predict* them, from the last context token through the second-to-last
# continuation token (CHES, docs/methods.md §2.2: |continuation| positions, h(x, y_<k) for k = 1..|y|).
Span = Literal["continuation", "predicting"]


@dataclass
class GenerateResponse:
    texts: list[str]  # n samples
    n_tokens: list[int]
    # With `top_logprobs` > 0: per sample, per generated position, {token text: log-prob}.
    top_logprobs: list[list[dict[str, float]]] | None = None
    # Input tokens the backend cut to fit the model (0: none); metrics count such answers.
    truncated: int = 0


@dataclass
class LoglikelihoodResponse:
    """Per-token statistics of the continuation under the model.

    `token_mu`/`token_sigma` are the mean and standard deviation of log p over the full
    vocabulary distribution at each position (what Min-k%++ needs), filled only for requests
    that ask for them (`moments=True`; otherwise empty): they are elementwise work over the
    whole vocabulary at every position.
    """

    token_logprobs: list[float]
    token_greedy: list[bool]
    token_mu: list[float]
    token_sigma: list[float]
    truncated: int = 0  # input tokens the backend cut to fit the model (0: none)

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def sum(self) -> float:
        """Summed log-probability, log p(y|x) (NPO, DPO, likelihood displacement)."""
        return float(sum(self.token_logprobs))

    @property
    def mean(self) -> float:
        """Length-normalised log-probability, -avgNLL (TOFU probability, truth ratio)."""
        return self.sum / max(1, self.n_tokens)

    @property
    def greedy(self) -> bool:
        """True when greedy decoding would produce the whole continuation."""
        return all(self.token_greedy)


@dataclass
class HiddenStatesResponse:
    """layer -> pooled vector (pooling mean/last/sum) or per-token matrix (per_token), as lists.

    `n_positions`: how many positions were pooled (LN-CHES divides by it); None in answers
    cached before the field existed.
    """

    states: dict[int, list]
    n_positions: int | None = None
    truncated: int = 0  # input tokens the backend cut to fit the model (0: none)
    depth_layers: dict[str, int] | None = None  # the request's `depths` (as text) -> the layer read


@dataclass
class GradNormResponse:
    """Mean over parameter tensors of the gradient p-norm; NaN for an empty continuation."""

    norm: float

def _hidden_states_from_fields(fields: dict) -> "HiddenStatesResponse":
    fields["states"] = {int(k): v for k, v in fields["states"].items()}
    return HiddenStatesResponse(**fields)


@request_kind("generate", GenerateResponse)
@dataclass(frozen=True)
class GenerateRequest:
    """Generate a completion of `prompt`. temperature 0 means greedy decoding."""

    prompt: str
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None
    images: tuple[MediaRef, ...] = ()  # content-addressed; paths are read and hashed here
    chat: bool = True  # apply the tokenizer's chat template when it has one
    # > 0: also return the k most likely tokens (text -> log-probability) at each generated
    # position, as OpenAI's `top_logprobs` does. Model judges read the 0-100 score this way.
    top_logprobs: int = 0
    def __post_init__(self) -> None:
        _media(self)

    @property
    def sampled(self) -> bool:
        return self.temperature > 0


@request_kind("loglikelihood", LoglikelihoodResponse, key_omit_at_default={"answer_eos": False, "moments": False})
@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score `continuation` given `context` (teacher forcing, continuation tokens only).

    `answer_eos`: the tokenizer's EOS id follows the continuation's tokens and is scored as
    one of them (open-unlearning's answer encoding, `harness.prompts.encode_answer`); an
    empty continuation stays empty. `moments`: also return `token_mu`/`token_sigma`
    (Min-k%++). The evaluator sends one request where both forms of the same pair are asked
    (harness/evaluate.py).
    """

    context: str
    continuation: str
    system: str | None = None
    images: tuple[MediaRef, ...] = ()
    chat: bool = True
    answer_eos: bool = False
    moments: bool = False
    def __post_init__(self) -> None:
        _media(self)


@request_kind("hidden_states", HiddenStatesResponse, key_omit_at_default={"span": "continuation", "depths": ()},
              decode=_hidden_states_from_fields)
@dataclass(frozen=True)
class HiddenStatesRequest:
    """Hidden states of `context + continuation` at chosen layers, pooled over the continuation.

    Layer 0 is the embedding output, layer L the last block's output (HF convention; in
    transformers 5 the last entry is after the final norm). `pooling="sum"` adds the vectors
    up (CHES); `span="predicting"` pools the positions that predict the continuation's tokens
    instead of the tokens themselves (shifted one to the left). To count an EOS as part of the
    continuation (CHES), append the tokenizer's EOS string to `continuation`.
    """

    context: str
    continuation: str
    layers: tuple[int, ...] = (-1,)
    pooling: Pooling = "mean"
    system: str | None = None
    images: tuple[MediaRef, ...] = ()
    chat: bool = True
    span: Span = "continuation"
    # Layers named by relative depth (0.5: the middle one), resolved by the backend to
    # round(depth * L) of its L layers; the response says which (`depth_layers`).
    depths: tuple[float, ...] = ()
    def __post_init__(self) -> None:
        _media(self)


@request_kind("grad_norm", GradNormResponse)
@dataclass(frozen=True)
class GradNormRequest:
    """The p-norm of the gradient of the continuation's mean token NLL given `context`.

    Batch size 1, the model in train() mode during the computation (docs/metrics.md §7, GradNorm):
    loss = mean over continuation tokens of -log p(y_t | x, y_<t); the answer is the mean over
    parameter tensors of ||grad||_p (p in 1, 2, inf). Which tensors: see HFBackend.grad_norm.
    """

    context: str
    continuation: str
    p: float = 2.0
    system: str | None = None
    images: tuple[MediaRef, ...] = ()
    chat: bool = True
    def __post_init__(self) -> None:
        _media(self)


@dataclass
class ImageResponse:
    """Generated images, content-addressed: the cache stores these references, the pixels live
    in the run's `BlobStore` (one PNG per content hash)."""

    images: list[MediaRef]


def _image_response_from_fields(fields: dict) -> "ImageResponse":
    return ImageResponse([MediaRef(i["sha256"], i.get("path"), i.get("mime", "image/png")) for i in fields["images"]])


@request_kind("generate_image", ImageResponse, decode=_image_response_from_fields)
@dataclass(frozen=True)
class ImageGenerationRequest:
    """Text-to-image generation (a diffusers pipeline): `n` images of `prompt` from `seed`.

    Always seeded, so always cached: a rerun makes no model call. `init_image` (with
    `strength` in (0, 1]) asks for image-to-image instead: the picture noised to `strength`
    and denoised under `prompt` (SDEdit; the pipeline's img2img variant), which keeps it
    pixel-aligned with the original, as the Entangled metrics need.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 4.0
    height: int | None = None  # None: the model's native size
    width: int | None = None
    n: int = 1
    init_image: MediaRef | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.init_image is not None and not isinstance(self.init_image, MediaRef):
            object.__setattr__(self, "init_image", as_media(self.init_image))


@dataclass
class LogitLensResponse:
    """Per entry (keyed by layer): the top-k token ids and their values, largest first, and the
    values of the target tokens (in `target_ids` order); with `bottom_k`, also the bottom-k ids
    and values, smallest first. Values are probabilities for `order=0`, their differences for 1
    and 2 (docs/metrics.md §11). `target_ids`: the targets as token ids (a text by its first token)."""

    top_ids: dict[int, list[int]]
    top_values: dict[int, list[float]]
    target_ids: list[int]
    target_values: dict[int, list[float]]
    bottom_ids: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    bottom_values: dict[int, list[float]] = dataclasses.field(default_factory=dict)


def _logit_lens_from_fields(fields: dict) -> "LogitLensResponse":
    for name in ("top_ids", "top_values", "target_values", "bottom_ids", "bottom_values"):
        fields[name] = {int(k): v for k, v in fields[name].items()}
    return LogitLensResponse(**fields)


@request_kind("logit_lens", LogitLensResponse, decode=_logit_lens_from_fields)
@dataclass(frozen=True)
class LogitLensRequest:
    """The logit lens at the last position of `context` (docs/metrics.md §11).

    Each chosen layer's hidden state (layer numbers as `HiddenStatesRequest`: 0 the embeddings,
    L the last block) goes through the model's final norm and LM head (a VLM's language model's),
    then a softmax; layer L's entry is the model's own next-token distribution (HF returns that
    state already normed). `order` 1 or 2 differences consecutive chosen layers' distributions (PD,
    PD²); an entry is keyed by the later layer of its difference. `targets`: texts whose first
    token's value is reported (tokenised as given, without special tokens: the code's
    `tokenizer.encode(answer, add_special_tokens=False)[0]`); `target_ids`: token ids, likewise.
    `bottom_k` > 0 also returns the k smallest entries (the code's bottom-k variants).
    """

    context: str
    layers: tuple[int, ...] = (-1,)
    top_k: int = 4
    order: int = 0
    bottom_k: int = 0
    targets: tuple[str, ...] = ()
    target_ids: tuple[int, ...] = ()
    system: str | None = None
    images: tuple[MediaRef, ...] = ()
    chat: bool = True
    def __post_init__(self) -> None:
        _media(self)


Request = Union[GenerateRequest, LoglikelihoodRequest, HiddenStatesRequest, GradNormRequest, ImageGenerationRequest,
                LogitLensRequest]
Response = Union[GenerateResponse, LoglikelihoodResponse, HiddenStatesResponse, GradNormResponse, ImageResponse,
                 LogitLensResponse]


def request_key(request: Request) -> str:
    """Stable content hash of a request: its kind and every field (images by content hash)."""
    fields = kind(request.kind).key_fields(request)
    fields["kind"] = request.kind
    return hashlib.sha256(stable_json(fields).encode()).hexdigest()


def response_to_json(response: Response) -> str:
    return json.dumps(dataclasses.asdict(response), separators=(",", ":"))


def response_from_json(kind_name: str, text: str) -> Response:
    return kind(kind_name).response_from_fields(json.loads(text))


def _media(request: Request) -> None:
    """Turn the image paths a request was given into content-addressed references."""
    if request.images and not all(isinstance(i, MediaRef) for i in request.images):
        object.__setattr__(request, "images", tuple(as_media(i) for i in request.images))
