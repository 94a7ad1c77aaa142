"""Weight-space controls as pure functions of state dicts: Gaussian noise, scaling and averaging.

- `noisy(state, scale, seed)`: every floating tensor w becomes w + scale * rms(w) * N(0, 1) (noise relative to the
  tensor's own size, so one scale fits embeddings, matrices and norm gains); scale 0 is the identity.
- `scaled(state, factor)`: every weight matrix (ndim >= 2: embeddings, projections, unembedding) times `factor`;
  norm gains and biases unchanged; factor 1 is the identity.
- `average(states)`: the element-wise mean (weight averaging of runs); the mean of identical states is that state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

State = dict[str, torch.Tensor]


def _clone(state: Mapping[str, torch.Tensor]) -> State:
    return {k: v.detach().clone() for k, v in state.items()}


def noisy(state: Mapping[str, torch.Tensor], scale: float, seed: int) -> State:
    """`state` with relative Gaussian noise of size `scale` (a torch generator seeded with `seed`, name order)."""
    if scale < 0:
        raise ValueError(f"noise scale must be >= 0, got {scale}")
    out = _clone(state)
    if scale == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    for name in sorted(out):
        w = out[name]
        if not w.is_floating_point() or w.numel() == 0:
            continue
        rms = w.float().pow(2).mean().sqrt()
        noise = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.device) * (scale * rms)  # drawn on
        # the CPU: the same noise whatever device the weights are on
        out[name] = (w.float() + noise).to(w.dtype)
    return out


def scaled(state: Mapping[str, torch.Tensor], factor: float) -> State:
    """`state` with every weight matrix (ndim >= 2) multiplied by `factor`."""
    out = _clone(state)
    for name, w in out.items():
        if w.is_floating_point() and w.ndim >= 2:
            out[name] = w * factor
    return out


def average(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """Element-wise mean of state dicts with the same keys and shapes (floating tensors; others from the first)."""
    if not states:
        raise ValueError("average needs at least one state dict")
    keys = set(states[0])
    for i, s in enumerate(states[1:], start=1):
        if set(s) != keys:
            raise ValueError(f"state dict {i} has different keys from state dict 0")
    out = _clone(states[0])
    for name, w in out.items():
        if w.is_floating_point():
            out[name] = (torch.stack([s[name].float() for s in states]).mean(0)).to(w.dtype)
    return out


def state_of(model: Any) -> State:
    """A detached copy of a plain model's state dict."""
    return _clone(model.state_dict())


def load_state(model: Any, state: Mapping[str, torch.Tensor]) -> Any:
    """Load `state` into `model` in place (strict) and return the model."""
    model.load_state_dict(dict(state))
    return model
