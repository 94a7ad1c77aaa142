"""The execution policy in one place: which device and dtype a run uses, and how many CPU threads.

`resolve_device("auto")` is CUDA when available, else MPS, else the CPU; an unavailable device is an error that
names the flag. `resolve_dtype("auto", device)` is bfloat16 on CUDA and float32 elsewhere. `torch_threads(n)`
sets torch's intra-op threads once for the body of a run (0: every core this process may use) and restores them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from core.config import resolve_threads

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for `--device NAME`; ValueError naming the flag when it is not available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError("--device mps: MPS is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The model dtype for `--dtype NAME` on `device` (auto: bfloat16 on CUDA, float32 elsewhere)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"--dtype must be auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the body with `n` torch intra-op threads (0: every available core); yields the number used."""
    old = torch.get_num_threads()
    used = resolve_threads(n)
    log.info("running with %d torch thread(s)", used)
    torch.set_num_threads(used)
    try:
        yield used
    finally:
        torch.set_num_threads(old)
