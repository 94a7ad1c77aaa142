"""unlock_curve.png: no-password accuracy vs epoch per method (runs thin, mean bold), and the weight sweeps."""

from __future__ import annotations

from pathlib import Path

from core.schemas import UnlockResult


def plot(results: UnlockResult, path: str | Path) -> Path:
    """Draw the unlocking curves (left) and, when present, the noise/scale sweeps (right) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: v for k, v in results.methods.items() if v.curve is not None}
    sweeps = {k: v for k, v in results.methods.items() if v.sweep is not None}
    fig, axes = plt.subplots(1, 1 + len(sweeps), figsize=(7 + 3.5 * len(sweeps), 4.5), squeeze=False)
    ax = axes[0, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, m) in enumerate(curves.items()):
        c = colors[i % len(colors)]
        ep = m.curve.epochs
        for run in m.curve.runs:
            ax.plot(ep, run, color=c, alpha=0.25, lw=0.8)
        pgr = m.final.pgr if m.final is not None else None
        label = name if pgr is None or pgr.value != pgr.value else \
            f"{name} (PGR {pgr.value:.2f} [{pgr.lo:.2f}, {pgr.hi:.2f}])"
        ax.plot(ep, m.curve.mean, color=c, lw=2, marker="o" if len(ep) <= 3 else None, ms=4, label=label)
    ref = results.reference
    ax.axhline(ref.with_pw.acc, color="k", ls="--", lw=1, label="locked, with password")
    ax.axhline(ref.locked.acc, color="k", ls=":", lw=1, label="locked, no password")
    ax.axhline(results.weak_policy_acc, color="grey", ls="-.", lw=1, label="weak policy")
    ax.set_xlabel("epoch (weak-sample fine-tuning)")
    ax.set_ylabel("accuracy without password (eval questions)")
    ax.set_title(f"weak-sample unlocking, n={results.params['n_samples']} samples")
    ax.legend(fontsize=7, loc="best")
    for j, (name, m) in enumerate(sweeps.items(), start=1):
        ax = axes[0, j]
        for run in m.sweep.runs:
            ax.plot(m.sweep.params, run, color="C0", alpha=0.3, lw=0.8)
        ax.plot(m.sweep.params, m.sweep.mean, color="C0", lw=2, marker="o", ms=4)
        ax.axhline(m.with_pw, color="k", ls="--", lw=1)
        ax.axhline(m.locked, color="k", ls=":", lw=1)
        ax.set_xlabel("relative noise scale" if name == "noise" else "weight scale factor")
        ax.set_title(f"{name}: chosen {m.selected.chosen} on dev")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
