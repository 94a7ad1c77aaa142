"""Model registry and loading: embedded GGUF models, Hugging Face ids, local directories, tiny test models.

Every loader returns a `LoadedModel`: the TransformerLens `TransformerBridge` wrapping the Hugging Face model,
its tokenizer, and its identity (`core.schemas.ModelIdentity`: weight hash, parameter count, kind) that every
artifact records. A model's kind (base / instruct / fine-tuned) is never guessed from its name: a checkpoint that
carries a lock or unlock record is fine-tuned, an embedded model's kind is in its registry entry, else a model whose
tokenizer has a chat template is instruct, else base (`model_kind`; commands override it with `--model-kind`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.schemas import ModelIdentity, to_data
from core.suggest import did_you_mean
from hooks import execution, hf_compat, tiny
from hooks.model_files import (  # noqa: F401 - part of this module's interface: the registry and the hashes
    DEFAULT_MODEL,
    EMBEDDED,
    FILE_HASH_MIN_PARAMS,
    EmbeddedSpec,
    ModelError,
    _dequantize_to_cache,
    _hf_local_cache,
    atomic_dir,
    available_models,
    cache_root,
    clean_litter,
    file_sha256,
    files_hash,
    model_fingerprint,
    n_params,
    weight_digest,
    weight_hash,
)

log = logging.getLogger(__name__)


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


def identity(hf: Any, tok: Any, *, name: str, source: str, path: str | None, digest: str | None = None,
             method: str = "tensors", random_init: bool = False) -> ModelIdentity:
    """The identity of a plain (not yet wrapped) HF model; `digest` (made by `method`: tensors or files) skips
    hashing the weights again."""
    kind, kind_source = model_kind(name, path, tok)
    cfg = getattr(hf.config, "text_config", None) or hf.config  # multimodal configs keep the LM's in text_config
    if digest is None:
        digest, method = weight_hash(hf), "tensors"
    return ModelIdentity(
        name=name, source=source, path=path, weight_hash=digest, weight_hash_method=method, n_params=n_params(hf),
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
    placement: execution.Placement | None = None  # where it runs (set by `wrap`)

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
            "execution": self.placement.record() if self.placement is not None else None,
        }


def check_name(name: str) -> str:
    """`name` if it can name a model (a registered name, an existing path, or a Hugging Face id "org/name"), else a
    ModelError listing what can be named; nothing is loaded."""
    if name in tiny.TINY_MODELS or name in EMBEDDED or Path(name).exists():
        return name
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return name
    import difflib

    close = difflib.get_close_matches(name, available_models(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ModelError(f"unknown model '{name}'{hint}: not a registered name and no such path. Available: "
                     f"{', '.join(available_models())}, a local HF model directory, or a Hugging Face id.")


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


def _load_hf_dir(path: str | Path, dtype: torch.dtype, **place: Any) -> tuple[Any, Any]:
    """(tokenizer, model) from a HF directory or id; `place`: from_pretrained's device_map and quantization_config
    (None: not given)."""
    from transformers import AutoTokenizer

    p = Path(path)
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is not a Hugging Face model directory: config.json is missing")
        if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
            raise ModelError(f"{p}: no weight files (*.safetensors or *.bin) in the checkpoint directory")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelError(f"could not load checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return tok, _from_pretrained(path, dtype, place)


def _from_pretrained(path: str | Path, dtype: torch.dtype, place: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = {k: v for k, v in place.items() if v is not None}
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        if execution.is_oom(exc):
            raise
        raise ModelError(f"could not load checkpoint {path}: {type(exc).__name__}: {exc}") from exc


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


def wrap(hf: Any, tok: Any, *, name: str, source: str, path: str | None, random_init: bool = False,
         digest: tuple[str, str] | None = None, placement: execution.Placement | None = None) -> LoadedModel:
    """Wrap a loaded HF causal LM in a TransformerBridge.

    The bridge rewires the HF module tree in place (no copy of the weights): after this call `hf.state_dict()`
    has bridge names and `save_pretrained` no longer works, so the weight hash is taken before wrapping and
    checkpoints are saved from a model that was never wrapped (see `load_hf`). `digest` is (hash, method) when
    the caller has it (`HFModel.digest`), else the tensors are hashed; `placement` is where the model is (a model
    spread by a device map keeps its placement: the bridge takes it over from `hf_device_map`).
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    digest, method = digest if digest is not None else (weight_hash(hf), "tensors")
    placement = placement if placement is not None else execution.Placement.of(hf)
    ident = identity(hf, tok, name=name, source=source, path=path, digest=digest, method=method,
                     random_init=random_init)
    clean_state = hf.state_dict()  # tensors share storage with the parameters, so they follow training
    boot_name = path if path is not None else name
    bridge = TransformerBridge.boot_transformers(boot_name, hf_model=hf, tokenizer=tok, device=str(placement.device))
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
        placement=placement,
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
    """A plain Hugging Face model (never wrapped: trainable and savable), where it came from and where it runs."""

    model: Any
    tokenizer: Any
    source: str
    path: str | None
    placement: execution.Placement | None = None
    files: Path | None = None  # the directory of its weight files (None: built in code, or not on this disk)
    random_init: bool = False
    known_digest: tuple[str, str] | None = None  # (hash, method) taken before quantizing a model built in code

    def digest(self) -> tuple[str, str]:
        """(weight hash, method): see `weight_digest`."""
        if self.known_digest is None:
            quantized = self.placement is not None and self.placement.load_in is not None
            self.known_digest = weight_digest(self.model, self.files, quantized=quantized,
                                              random_init=self.random_init)
        return self.known_digest


def load_hf(
    name: str, *, dtype: torch.dtype | str = torch.float32, device: torch.device | str = "cpu",
    random_init: bool = False, seed: int = 0, device_map: str | None = None, load_in: str | None = None,
) -> HFModel:
    """Load a plain HF causal LM by embedded name, tiny test name, local directory or Hugging Face id, onto
    `device` ("auto", "cpu", "cuda[:N]", "mps") in `dtype` (a torch dtype or a name, "auto" included).

    `device_map` ("auto", "balanced", "sequential") spreads the weights over every visible CUDA device with
    accelerate (on a machine without CUDA: all on the CPU); `load_in` ("8bit", "4bit") quantizes them with
    bitsandbytes (CUDA only). Both are checked before anything loads (ValueError naming the flag). A single CUDA
    device gets the weights straight from the files; the CPU and MPS load as before (CPU, then moved).
    `random_init=True` keeps the architecture and tokenizer but re-initialises the weights (the control model): on
    the CPU before they move, so the control's weights do not depend on the device (with a device map they are
    drawn where they lie); not with `load_in`.
    """
    device = execution.resolve_device(device)
    dtype = execution.resolve_dtype(dtype, device)
    execution.check_device_map(device_map, "auto" if device_map is not None else str(device), device)
    execution.check_quantization(load_in, device)
    if random_init and load_in is not None:
        raise ModelError(f"--load-in {load_in}: the random-init control re-initialises full-precision weights; run "
                         "it without --load-in (or use the shuffled control)")
    quant = execution.quantization_config(load_in, dtype)
    dispatched = device_map is not None or quant is not None
    direct = device.type == "cuda" and not random_init  # weights straight onto the one GPU
    place: dict[str, Any] = {"quantization_config": quant,
                             "device_map": device_map or ({"": execution.device_name(device)} if dispatched or direct
                                                          else None)}
    known = None
    files: Path | None = None
    if name in tiny.TINY_MODELS:
        hf, tok = tiny.build(name, seed=seed)
        path, source = None, "tiny"
        if dispatched:  # through from_pretrained, as a model from files would be
            known = weight_digest(hf, None) if quant is not None else None
            with tempfile.TemporaryDirectory(prefix="gaplens-tiny-") as tmp:
                hf.save_pretrained(tmp)
                hf = _from_pretrained(tmp, dtype, place)
    elif name in EMBEDDED:
        spec = EMBEDDED[name]
        local = _hf_local_cache(spec.hf_id) if os.environ.get("GAPLENS_IGNORE_HF_CACHE") != "1" else None
        path = str(local if local is not None else _dequantize_to_cache(name, spec))
        tok, hf = _load_hf_dir(path, dtype, **place)
        source, files = ("hf-cache" if local is not None else "embedded"), Path(path)
    elif Path(name).exists():
        path, source = str(Path(name).resolve()), "local"
        tok, hf = _load_hf_dir(path, dtype, **place)
        files = Path(path)
    elif "/" in name and not name.startswith((".", "/")):
        path, source = name, "hf"
        try:
            tok, hf = _load_hf_dir(name, dtype, **place)
        except ModelError as exc:
            raise ModelError(
                f"{exc}\nNo such local path either. Available names: {', '.join(available_models())}, "
                "a local HF model directory, or a Hugging Face id (needs the hub or the local HF cache)."
            ) from exc
        files = _hf_local_cache(name)  # where the hub's files landed (no network)
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
    if not dispatched:
        hf = hf.to(device=device, dtype=dtype)
    placement = execution.Placement.of(hf, device_map=device_map, load_in=load_in,
                                       dtype=dtype if load_in is not None else None)
    return HFModel(hf.eval(), tok, source, path, placement, files, random_init, known)


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
    device_map: str | None = None,
    load_in: str | None = None,
) -> LoadedModel:
    """`load_hf` then `wrap`: the model as a TransformerBridge with its tokenizer, weight hash and placement."""
    m = load_hf(name, dtype=dtype, device=device, random_init=random_init, seed=seed, device_map=device_map,
                load_in=load_in)
    return wrap(m.model, m.tokenizer, name=name, source=m.source, path=m.path, random_init=random_init,
                digest=m.digest(), placement=m.placement)
