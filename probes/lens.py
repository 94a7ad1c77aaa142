"""Reading the logit lens: per layer, which choice the lens logits pick, whether it is gold, and the layer chosen
on train questions. (The lens logits themselves are computed at capture time, `hooks.forward.logit_lens`.)

Pure numpy functions; nothing here touches a model or a file.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from eval.scoring import masked_argmax


def lens_predictions(
    lens_logits: Float[np.ndarray, "rows layers choices"], n_choices: np.ndarray | None = None
) -> np.ndarray:
    """(rows, layers) argmax choice of the logit lens per layer (-1 where a row has no finite logit)."""
    lens = np.asarray(lens_logits)
    if lens.ndim != 3:
        raise ValueError(f"lens_logits must be (rows, layers, choices), got shape {lens.shape}")
    rows, n_layers, c = lens.shape
    nc = None if n_choices is None else np.tile(np.asarray(n_choices), n_layers)
    return masked_argmax(lens.transpose(1, 0, 2).reshape(n_layers * rows, c), nc).reshape(n_layers, rows).T


def lens_correct(
    lens_logits: Float[np.ndarray, "rows layers choices"], labels: np.ndarray, n_choices: np.ndarray | None = None
) -> np.ndarray:
    """(rows, layers) bool: the logit lens's argmax over each row's choices equals its label, per layer."""
    return lens_predictions(lens_logits, n_choices) == np.asarray(labels)[:, None]
