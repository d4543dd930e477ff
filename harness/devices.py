"""Device strings a user may give (`device:` in a config, `--device`): checked before any work.

Only the form is checked; whether a CUDA device is present is the backend's business at run
time (a config validated on a laptop may run on a GPU machine).
"""

from __future__ import annotations

import re

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(value: str) -> str:
    """`value` if it names a device; else ValueError (pydantic turns it into a config error)."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise ValueError(f"must be {DEVICE_FORMS}, not {value!r}")
    return value
