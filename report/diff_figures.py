"""The figures of `python cli.py diff`, drawn from its results.json document (no model, no arrays).

- ``weights_relative_change.png``, ``weights_effective_rank.png``, ``weights_cosine.png``: heatmaps, layer x
  component, one panel per update or pair;
- ``activations.png`` (CKA and cosine with the reference, password effects) and ``lens_probe.png`` (logit lens
  and probe transfer), per-layer curves: a colour per checkpoint label, dashed with the password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.io import save_png
from locking import weights


def _save(fig: Any, path: Path) -> None:
    save_png(fig, path, dpi=100)


def _heatmaps(path: Path, params: list[dict[str, Any]], panels: list[tuple[str, str, str]], cmap: str,
              vlim: tuple[float, float] | None) -> None:
    from matplotlib.figure import Figure

    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.4 * cols + 0.5, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for ax, (title, value, update) in zip(axes, panels, strict=False):
        layers, comps, grid = weights.layer_component_grid(params, value, update)
        kw = {"vmin": vlim[0], "vmax": vlim[1]} if vlim else {}
        im = ax.imshow(grid, aspect="auto", cmap=cmap, origin="lower", **kw)
        ax.set_xticks(range(len(comps)), comps, rotation=60, fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)


def _curves(ax: Any, series: dict[str, list[float | None]], title: str, ylabel: str, colors: dict[str, str]) -> None:
    """One line per "label[/condition]": a colour per checkpoint label, dashed with the password."""
    for name, ys in series.items():
        ax.plot(range(len(ys)), [np.nan if y is None else y for y in ys], marker=".", color=colors[name.split("/")[0]],
                linestyle="--" if name.endswith("/pw") else "-", label=name)
        ax.set_xticks(range(len(ys)))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("layer (resid_pre; last = final resid)")
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=6)


def write_plots(out: Path, doc: dict[str, Any]) -> None:
    from matplotlib.figure import Figure

    w, act = doc["weights"], doc["activations"]
    params = w["params"]
    colors = {lab: f"C{i}" for i, lab in enumerate(doc["checkpoints"])}
    _heatmaps(out / "weights_relative_change.png", params,
              [(f"relative change {u}", "relative_change", u) for u in w["updates"]], "viridis", None)
    _heatmaps(out / "weights_effective_rank.png", params,
              [(f"effective rank {u}", "effective_rank", u) for u in w["updates"]], "magma", None)
    if w["cosine_pairs"]:
        _heatmaps(out / "weights_cosine.png", params, [(f"cos {p}", p, "") for p in w["cosine_pairs"]],
                  "coolwarm", (-1.0, 1.0))
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    _curves(axes[0], {f"{lab}/{c}": v["cka"] for lab, d in act["vs_reference"].items() for c, v in d.items()},
            "linear CKA with a", "CKA", colors)
    _curves(axes[1], {f"{lab}/{c}": v["cosine"] for lab, d in act["vs_reference"].items() for c, v in d.items()},
            "mean cosine with a", "cosine", colors)
    _curves(axes[2], {lab: v["distance"] for lab, v in act["password_effect"].items()},
            "no password vs own with-password", "relative distance", colors)
    _curves(axes[3], {lab: v["distance"] for lab, v in act["to_reference_password"].items()},
            "no password vs a with password", "relative distance", colors)
    _save(fig, out / "activations.png")
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    _curves(axes[0], {f"{lab}/{c}": v["accuracy"] for lab, d in act["lens"].items() for c, v in d.items()},
            "logit lens accuracy", "accuracy", colors)
    _curves(axes[1], {f"{lab}/{c}": v["accuracy"] for lab, d in doc["probe"]["transfer"].items()
                      for c, v in d.items()}, f"probe trained on {doc['probe']['trained_on']}", "test accuracy", colors)
    _save(fig, out / "lens_probe.png")
