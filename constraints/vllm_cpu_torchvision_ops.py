"""Started by a .pth line in the vLLM CPU test virtualenv only (Makefile `vllm-venv`).

vLLM's LLaVA module imports torchvision. The only torchvision wheels built for torch 2.13 in
the package registry are CUDA builds, whose C ops cannot load against the CPU torch; torchvision
0.28 then fails at import on two fake-kernel registrations (`torchvision::nms`, `::qnms`) for
ops that were never defined. Defining those two schemas first lets torchvision import, and
vLLM's image processing uses only its pure-Python transforms. GPU installs never see this file.
"""

import importlib.util
from pathlib import Path


def _define_missing_ops() -> None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    lib_path = Path(next(iter(spec.submodule_search_locations))) / "_C.so"
    try:
        torch.ops.load_library(str(lib_path))
        return  # a matching build: its ops are real
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_LIB"] = lib  # kept alive: the definitions live as long as the library object


_define_missing_ops()
