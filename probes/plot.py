"""The probe-by-layer figure drawn from probe results (matplotlib Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

from core.io import save_png
from core.schemas import Estimate, ProbeResult

STYLE = {"option": ("tab:blue", "-"), "letter": ("tab:orange", "-")}
CONTROL_STYLE = {"shuffled": ":", "random-init": "-."}


def plot_by_layer(results: ProbeResult, path: str | Path) -> Path:
    """Test accuracy by layer: option / letter probes, logit lens, controls; prompted accuracies and chance as
    horizontal lines; the honest ceiling marked. Written atomically to `path` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    layers = results.layers
    fig = Figure(figsize=(12, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def line(ests: list[Estimate], label: str, color: str, ls: str, band: bool = False) -> None:
        vals = [e.value for e in ests]
        ax.plot(layers, vals, ls, color=color, label=label, marker="o" if ls == "-" else None, ms=3)
        if band:
            ax.fill_between(layers, [e.lo for e in ests], [e.hi for e in ests], color=color, alpha=0.12)

    for target, ests in results.probe_by_layer.items():
        color, ls = STYLE.get(target, ("tab:green", "-"))
        line(ests, f"{target} probe", color, ls, band=True)
        for kind, control in results.controls.items():
            if target in control.by_layer:
                line(control.by_layer[target], f"{target} probe, {kind} control", color, CONTROL_STYLE.get(kind, "--"))
    line(results.lens_by_layer, "logit lens (letters)", "tab:purple", "-")
    hlines = [("letter", "prompted: letter", "tab:red"), ("option", "prompted: option logprob", "tab:brown"),
              ("option_norm", "prompted: option logprob / char", "tab:pink")]
    for key, label, color in hlines:
        if key in results.prompted:
            ax.axhline(results.prompted[key].test.value, color=color, ls="--", lw=1, label=label)
    ax.axhline(results.chance, color="gray", ls=":", lw=1, label="chance")
    ceil = results.ceiling
    ax.plot([ceil.layer], [ceil.test_accuracy.value], "k*", ms=12,
            label=f"ceiling ({ceil.target} probe, layer {ceil.layer}, chosen on train CV)")
    h = results.header
    ax.set_title(f"{h.model.name} on {h.task.name}: accuracy on {results.split.n_test} held-out questions",
                 fontsize=10)
    ax.set_xlabel("layer (residual stream before block L; last = final resid_post)")
    ax.set_ylabel("test accuracy (per question)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return save_png(fig, path)
