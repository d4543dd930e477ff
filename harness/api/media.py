"""Media in requests and results, addressed by content: an image is the hash of its bytes.

A request that shows a model an image carries a `MediaRef`. Its identity (equality, hashing,
and the response-cache key) is the SHA-256 of the bytes, never the path: the same picture at
two paths is one request, and a changed picture at the same path is a new one, so the cache
can never answer it with an old answer. The path only says where the bytes can be read.

Media a model produces (generated images) go into a `BlobStore`: one file per content hash
under the results or cache directory, written atomically, so a rerun finds them by hash.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DatasetUnavailableError
from harness.io import atomic_write_bytes


@dataclass(frozen=True)
class MediaRef:
    """A picture (or other medium) by content hash; `path` says where to read it, not what it is."""

    sha256: str
    path: str | None = field(default=None, compare=False)
    mime: str = field(default="image/png", compare=False)

    @classmethod
    def from_path(cls, path: str | Path) -> "MediaRef":
        p = Path(path).expanduser()
        try:
            data = p.read_bytes()
        except OSError as e:
            raise DatasetUnavailableError(f"cannot read image {str(p)!r}: {e.strerror or e}") from None
        mime = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        return cls(hashlib.sha256(data).hexdigest(), str(p), mime)

    def cache_key(self) -> str:
        return f"sha256:{self.sha256}"

    def read_bytes(self) -> bytes:
        """The bytes, checked against the hash (a file changed since the reference was made is an error)."""
        if self.path is None:
            raise DatasetUnavailableError(f"image sha256:{self.sha256[:12]} has no path to read it from")
        try:
            data = Path(self.path).read_bytes()
        except OSError as e:
            raise DatasetUnavailableError(f"cannot read image {self.path!r}: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise DatasetUnavailableError(f"image {self.path!r} changed after it was loaded (its content hash differs)")
        return data

    def open_image(self):  # -> PIL.Image.Image
        """The picture as an RGB PIL image (needs pillow: the `vision` extra)."""
        import io

        try:
            from PIL import Image
        except ImportError:
            raise DatasetUnavailableError("reading images needs pillow: pip install 'llm-safety-harness[vision]'") from None
        return Image.open(io.BytesIO(self.read_bytes())).convert("RGB")


def as_media(value: "MediaRef | str | Path") -> MediaRef:
    """A request's image as a MediaRef: paths are read and hashed once, here."""
    return value if isinstance(value, MediaRef) else MediaRef.from_path(value)


class BlobStore:
    """Content-addressed files under `root` (`ab/abcdef....png`), written temp-file-then-rename."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, sha256: str, suffix: str = ".png") -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".png", mime: str = "image/png") -> MediaRef:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest, suffix)
        if not target.exists():
            atomic_write_bytes(target, data)
        return MediaRef(digest, str(target), mime)

    def get(self, ref: MediaRef, suffix: str = ".png") -> MediaRef:
        """`ref` pointing at this store's copy (when present)."""
        target = self.path_for(ref.sha256, suffix)
        if not target.exists():
            raise DatasetUnavailableError(f"blob sha256:{ref.sha256[:12]} is not in {self.root}")
        return MediaRef(ref.sha256, str(target), ref.mime)

