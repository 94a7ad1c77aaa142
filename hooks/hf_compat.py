"""What differs between the transformers releases gaplens allows, in one place: how a KV cache goes in and out.

transformers 5.24 renamed the cache argument of every forward from `past_key_values` to `cache` (the old name
is accepted with a deprecation warning at the model's entry point) and model outputs carry `.cache` instead of
`.past_key_values`. Inside the model, 5.24's decoder layers hand the cache to attention as `cache=`.
TransformerLens 4.3's attention bridges, which replace the HF attention modules when a model is wrapped, read
the cache only from `past_key_values`: under 5.24 they silently dropped it, so every token after a cached
prefix attended only to itself (5-30 nats off on SmolLM2). `patch_bridge_cache` gives those modules the cache
under both names; `cache_kwargs` and `output_cache` speak whichever name the installed release documents.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch


@functools.cache
def _cache_param(forward: Any) -> str:
    params = inspect.signature(forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_param(hf_model: torch.nn.Module) -> str:
    """The name under which this model's forward documents its KV cache argument."""
    return _cache_param(type(hf_model).forward)


def cache_kwargs(hf_model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """Keyword arguments that hand `cache` to `hf_model`'s forward (or the bridge around it) and extend it."""
    return {cache_param(hf_model): cache, "use_cache": True}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (`.cache` from 5.24 on, `.past_key_values` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _alias_cache(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict]:
    if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
        kwargs["past_key_values"] = kwargs["cache"]
    elif kwargs.get("past_key_values") is not None and kwargs.get("cache") is None and "cache" in kwargs:
        kwargs["cache"] = kwargs["past_key_values"]
    return args, kwargs


def patch_bridge_cache(bridge: torch.nn.Module) -> int:
    """Give every TransformerLens attention bridge the KV cache under both names; returns how many were patched.

    Idempotent: a module is patched once. The hooks live as long as the bridge.
    """
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    n = 0
    for module in bridge.modules():
        if isinstance(module, AttentionBridge) and not getattr(module, "_gaplens_cache_alias", False):
            module.register_forward_pre_hook(_alias_cache, with_kwargs=True)
            module._gaplens_cache_alias = True  # type: ignore[attr-defined]
            n += 1
    return n
