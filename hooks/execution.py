"""The execution policy in one place: device, dtype, device map, quantization, batch sizes and CPU threads.

`resolve_device("auto")` is CUDA when available, else MPS, else the CPU; an unavailable device is an error that
names the flag. `resolve_dtype("auto", device)` is bfloat16 on CUDA and float32 elsewhere. `check(cfg)` resolves an
`ExecutionOptions` config before anything loads (an unavailable device, `--load-in` without CUDA or bitsandbytes,
`--device-map` without accelerate: a ValueError naming the flag). `Placement` is where a loaded model actually is;
`execution_record` turns it into the `core.schemas.Execution` a results file records.

`find_batch_size(fn, start)` calls `fn(size)` and halves `size` after each out-of-memory error (the spirit of
accelerate's `find_executable_batch_size`): the trainer's micro-batches, generation and the capture use it.
`torch_threads(n)` sets torch's intra-op threads once for the body of a run (0: every core) and restores them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from core.config import AUTO_BATCH, DEVICE_MAPS, QUANTIZATIONS, resolve_threads
from core.schemas import Execution

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
T = TypeVar("T")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for `--device NAME`; ValueError naming the flag when it is not available here."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
        if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError("--device mps: MPS is not available on this machine")
    if name != "cpu":
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return torch.device("cpu")


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The model dtype for `--dtype NAME` on `device` (auto: bfloat16 on CUDA, float32 elsewhere)."""
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"--dtype must be auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """A device as results record it: with its index ("cuda:0", not "cuda")."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def check_device_map(device_map: str | None, device_flag: str, device: torch.device) -> None:
    """`--device-map auto` spreads a model over every visible CUDA device (accelerate); on a machine without CUDA
    it puts the whole model on the CPU. With `--device cuda:N`, `cpu` (CUDA present) or `mps` it is refused."""
    if device_map is None:
        return
    if device_map not in DEVICE_MAPS:
        raise ValueError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if importlib.util.find_spec("accelerate") is None:
        raise ValueError(f"--device-map {device_map} needs accelerate (pip install accelerate)")
    if device.type == "cuda" and str(device_flag) not in ("auto", "cuda"):
        raise ValueError(f"--device-map {device_map} places the model on every visible CUDA device; give --device "
                         f"cuda or auto instead of {device_flag} (choose devices with CUDA_VISIBLE_DEVICES)")
    if device.type == "cpu" and torch.cuda.is_available():
        raise ValueError(f"--device-map {device_map} spreads the model over the CUDA devices; it conflicts with "
                         "--device cpu")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"--device-map {device_map} spreads a model over CUDA devices; drop it with --device "
                         f"{device.type}")


def check_quantization(load_in: str | None, device: torch.device) -> None:
    """`--load-in 8bit|4bit` (bitsandbytes) needs a CUDA device and the bitsandbytes package."""
    if load_in is None:
        return
    if load_in not in QUANTIZATIONS:
        raise ValueError(f"--load-in must be one of {', '.join(QUANTIZATIONS)}, got {load_in!r}")
    if device.type != "cuda":
        why = "this machine has no CUDA device" if not torch.cuda.is_available() else f"--device is {device}"
        raise ValueError(f"--load-in {load_in} (bitsandbytes) needs a CUDA device: {why}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"--load-in {load_in} needs bitsandbytes (pip install 'gaplens[gpu]' or pip install "
                         "bitsandbytes)")


def quantization_config(load_in: str | None, dtype: torch.dtype) -> Any:
    """The transformers `BitsAndBytesConfig` of `--load-in` (None without it); 4bit computes in `dtype`."""
    if load_in is None:
        return None
    from transformers import BitsAndBytesConfig

    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4")


@dataclass(frozen=True)
class Resolved:
    """An `ExecutionOptions` config resolved on this machine, before any model loads."""

    device: torch.device
    dtype: torch.dtype | None  # None: the command's own default (e.g. the lock's float32)
    device_map: str | None
    load_in: str | None


def check(cfg: Any) -> Resolved:
    """Resolve the execution flags of `cfg` (device, dtype, device_map, load_in) here and now: a ValueError naming
    the flag when this machine cannot honour them. Commands call it before anything is written or loaded."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device) if getattr(cfg, "dtype", None) is not None else None
    device_map, load_in = getattr(cfg, "device_map", None), getattr(cfg, "load_in", None)
    check_device_map(device_map, cfg.device, device)
    check_quantization(load_in, device)
    return Resolved(device, dtype, device_map, load_in)


@dataclass(frozen=True)
class Placement:
    """Where a loaded model is: the device its inputs go to, its dtype, and every device holding its weights."""

    device: torch.device  # the input embedding's device (where inputs go)
    dtype: torch.dtype  # the dtype its floating-point weights compute in
    devices: tuple[str, ...]  # every device holding a weight, e.g. ("cuda:0", "cuda:1")
    device_map: str | None = None  # the --device-map it was loaded with
    load_in: str | None = None  # the --load-in quantization it was loaded with

    @classmethod
    def of(cls, model: torch.nn.Module, *, device_map: str | None = None, load_in: str | None = None,
           dtype: torch.dtype | None = None) -> Placement:
        """The placement of a loaded HF model (`dtype`: its compute dtype, when its weights are quantized)."""
        devices = sorted({str(p.device) for p in model.parameters()})
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        device = model.get_input_embeddings().weight.device
        return cls(device, dtype or (floats[0] if floats else torch.float32), tuple(devices), device_map, load_in)

    def record(self) -> dict[str, Any]:
        """As JSON values (what a store or generations file records about where its model ran)."""
        return {"device": str(self.device), "dtype": dtype_name(self.dtype), "devices": list(self.devices),
                "device_map": self.device_map, "load_in": self.load_in}


def execution_record(cfg: Any, *, placement: Placement | Mapping[str, Any] | None = None,
                     batch_size: int | str | None = None, micro_batch_size: int | None = None,
                     threads: int | None = None, runs_model: bool = True) -> Execution:
    """The `Execution` a results file records: the device and dtype the model really ran on (`placement`: a
    `Placement` or its `record()` read back from a store), else the flags resolved on this machine now."""
    rec: Mapping[str, Any]
    if isinstance(placement, Placement):
        rec = placement.record()
    elif placement:
        rec = placement
    else:
        device = resolve_device(cfg.device) if runs_model else torch.device("cpu")
        dtype = getattr(cfg, "dtype", None)
        rec = {"device": device_name(device), "dtype": dtype_name(resolve_dtype(dtype, device)) if runs_model and dtype
               else None, "devices": [device_name(device)] if runs_model else [], "device_map": getattr(cfg, "device_map", None),
               "load_in": getattr(cfg, "load_in", None)}
    if batch_size is None and runs_model:
        batch_size = getattr(cfg, "batch_size", None)
    return Execution(device=str(rec["device"]), dtype=rec.get("dtype"), batch_size=rec.get("batch_size", batch_size),
                     micro_batch_size=micro_batch_size,
                     threads=threads if threads is not None else resolve_threads(getattr(cfg, "threads", 0)),
                     device_map=rec.get("device_map"), devices=[str(d) for d in rec.get("devices", [])],
                     load_in=rec.get("load_in"))


def autocast(device: torch.device | str, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on `device` when asked (CPU, CUDA or MPS), else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is an out-of-memory error of any device (torch's OutOfMemoryError, or the messages accelerate
    recognises: CUDA, XPU, MPS, the CPU allocator)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    from accelerate.utils.memory import should_reduce_batch_size

    return isinstance(exc, Exception) and should_reduce_batch_size(exc)


def free_memory() -> None:
    """Release cached device memory after an out-of-memory error (garbage collection first)."""
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=True)


def find_batch_size(fn: Callable[[int], T], start: int, *, what: str = "batch size") -> tuple[T, int]:
    """`(fn(size), size)` for the first size, from `start` halving after each out-of-memory error, at which `fn`
    runs; the error itself when even size 1 runs out of memory. `fn` must leave no state behind when it fails
    (the caller's outputs are written only once it returns)."""
    if start < 1:
        raise ValueError(f"{what} must be >= 1, got {start}")
    size = start
    while True:
        try:
            return fn(size), size
        except Exception as exc:
            if not is_oom(exc) or size == 1:
                raise
            del exc  # its traceback holds the failed attempt's tensors
            free_memory()
            size = max(1, size // 2)
            log.warning("out of memory: %s halved to %d", what, size)


def start_batch_size(batch_size: int | str | None, default: int, *, auto_start: int) -> int:
    """The batch size to try first: `batch_size` when a number, `auto_start` for "auto", `default` for None."""
    if batch_size is None:
        return default
    if batch_size == AUTO_BATCH:
        return auto_start
    return int(batch_size)


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
