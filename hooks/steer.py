"""Activation steering: a vector added to the residual stream entering a block, through the bridge's `hooks(...)`.

`steering(model, layer, vector, positions)` is a context manager: inside it, every forward pass of `model.bridge`
has `vector` added to ``blocks.{layer}.hook_resid_pre``, at every position (``"all"``) or only at the last one
(``"last"``: batches are left padded, so the last position is every row's answer position). The hook is a plain
function `fn(tensor, *, hook)` registered only inside the bridge's `hooks(...)` context, which removes exactly the
hooks it added on exit, whatever happens; other hooks (e.g. `hooks.forward`'s capture hooks, added inside it) run
after it on the same point and see the steered residual.

`steered_choice_logits` scores token sequences under one steering vector: the logits of given choice tokens at the
last position, through `hooks.forward.hooked_forward`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from jaxtyping import Float, Int

from hooks.forward import hooked_forward, to_numpy
from hooks.models import LoadedModel

POSITIONS: tuple[str, ...] = ("all", "last")


def check_positions(positions: str) -> str:
    """`positions` if it is "all" or "last", else ValueError."""
    if positions not in POSITIONS:
        raise ValueError(f"steering positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    return positions


def hook_name(layer: int, n_layers: int) -> str:
    """The hook point a steering vector at `layer` is added to: block `layer`'s resid_pre (0 <= layer < n_layers)."""
    if not 0 <= layer < n_layers:
        raise ValueError(f"steering layer {layer} is outside 0..{n_layers - 1} (the blocks' resid_pre)")
    return f"blocks.{layer}.hook_resid_pre"


def add_vector(vector: Float[torch.Tensor, " d_model"], positions: str) -> Callable[..., torch.Tensor]:
    """A hook function adding `vector` to a (batch, pos, d_model) residual at every or only the last position."""
    check_positions(positions)

    def hook_fn(tensor: torch.Tensor, *, hook: object) -> torch.Tensor:
        v = vector.to(device=tensor.device, dtype=tensor.dtype)
        if positions == "all":
            return tensor + v
        out = tensor.clone()
        out[:, -1, :] = out[:, -1, :] + v
        return out

    return hook_fn


@contextmanager
def steering(model: LoadedModel, layer: int, vector: Float[torch.Tensor, " d_model"] | np.ndarray,
             positions: str = "all") -> Iterator[LoadedModel]:
    """Within the context, `vector` is added at block `layer`'s resid_pre in every forward pass of `model.bridge`."""
    v = torch.as_tensor(np.asarray(vector, dtype=np.float32) if isinstance(vector, np.ndarray) else vector)
    if v.ndim != 1 or v.shape[0] != model.d_model:
        raise ValueError(f"steering vector must have shape ({model.d_model},), got {tuple(v.shape)}")
    name = hook_name(layer, model.n_layers)
    with model.bridge.hooks(fwd_hooks=[(name, add_vector(v.float(), positions))]):
        yield model


def steered_choice_logits(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    choice_ids: Int[torch.Tensor, "n choices"],
    *,
    layer: int | None = None,
    vector: Float[torch.Tensor, " d_model"] | np.ndarray | None = None,
    positions: str = "all",
    batch_size: int = 64,
) -> Float[np.ndarray, "n choices"]:
    """(n, choices) logits of `choice_ids` (-1: no such choice, NaN out) at the last position of each sequence,
    with `vector` added at `layer` (no steering when `vector` is None). Rows are batched in length order."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    out = np.full(tuple(choice_ids.shape), np.nan, dtype=np.float32)

    def run() -> None:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            res = hooked_forward(model, [seqs[i] for i in idx], layers=[0], choice_ids=choice_ids[idx])
            out[idx] = to_numpy(res.last_logits[:, 0])

    if vector is None:
        run()
    else:
        if layer is None:
            raise ValueError("a steering vector needs its layer")
        with steering(model, layer, vector, positions):
            run()
    return out
