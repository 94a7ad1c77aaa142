"""One extractor per results class: typed results -> tidy rows (and a few tables shown as they are).

A run's kind is the class `core.schemas.load_result` read it as (`EXTRACTORS`); nothing is guessed from which keys a
file has. Each extractor reads typed fields; an optional value the run did not produce is noted on the run, not
skipped silently (`report.rows.Emitter`).

Method names in the rows (the `method` column of the tidy CSV):

- eval: ``prompted`` (per metric; metrics accuracy, accuracy_dev, accuracy_test), ``straight_up``, ``best_variant``
  (chosen on dev, scored on test), ``naive_max_variant``, ``majority_vote`` (variants "all" and "lettered"),
  ``spread``, ``agreement``, ``symbol_bias``, ``chance``;
- probe: ``probe`` / ``lens`` / ``control:<kind>`` by layer (variant "default" = letter prompt, "option" = option
  text), ``probe_prompted``, ``probe_ceiling`` and ``probe_control:<kind>`` (layer chosen on train CV),
  ``lens_best`` (layer chosen on train), ``probe_naive_max``, ``lens_naive_max``, ``chance``, ``control:surface``
  (the surface-cue control) and ``surface_margin`` (option probe minus it, paired; metrics difference, mcnemar_p),
  ``probe_below_chance`` (metric flag: a layer whose probe is below chance by its whole interval);
- transfer: ``transfer_from:<variant>`` (at the chosen layer; metric accuracy_by_layer per layer),
  ``own_variant_probe``, ``control:transfer_from:<variant>``, ``transfer_prompted``, ``chance``;
- lock: ``lock`` (with_password, no_password, decoy, decoy_held_out, decoy:K; metrics accuracy, gap, tv_to_target,
  agree_with_target), ``base``, ``weak_policy``, ``strong``;
- unlock: ``unlock_curve`` / ``unlock_sweep`` (variant "<method>/seed=<s>" per run, "<method>" for the mean; the
  epoch or swept parameter in `step`), ``unlocked`` (final epoch; swept parameter chosen on the dev half),
  ``pgr`` (metrics pgr, pgr_selected, pgr_naive_max, bias_pgr), ``unlock_reference``, ``lock``, ``weak_policy``;
- diff: ``diff`` (cka, cosine vs the reference), ``diff_password``, ``diff_lens``, ``diff_probe`` by layer,
  ``diff_behaviour``, ``weights``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.schemas import (
    DiffResult,
    Estimate,
    EvalResult,
    LockResult,
    ProbeResult,
    Result,
    TransferResult,
    UnlockResult,
)
from core.schemas.unlock import UnlockMethod
from report.rows import Emitter, Run

TARGET_VARIANT = {"letter": "default", "option": "option"}
PROMPTED_VARIANT = {"letter": "default", "option": "option", "option_norm": "option[norm]"}


# ---------------------------------------------------------------- probe


def extract_probe(run: Run, r: ProbeResult) -> None:
    """Probe runs (`commands.probe`): prompted accuracy, per-layer probe / lens / control, ceilings."""
    e = Emitter(run)
    e.add("chance", "accuracy", r.chance)
    for key, p in r.prompted.items():
        variant = PROMPTED_VARIANT.get(key, key)
        e.add("probe_prompted", "accuracy", p.test, variant=variant)
        e.add("probe_prompted", "accuracy_all", p.all, variant=variant)
    for target, ests in r.probe_by_layer.items():
        for layer, est in zip(r.layers, ests, strict=True):
            e.add("probe", "accuracy", est, variant=TARGET_VARIANT[target], layer=layer)
    for target, cvs in r.probe_cv_by_layer.items():
        for layer, cv in zip(r.layers, cvs, strict=True):
            e.add("probe", "cv_accuracy", cv, variant=TARGET_VARIANT[target], layer=layer)
    for layer, est in zip(r.layers, r.lens_by_layer, strict=True):
        e.add("lens", "accuracy", est, variant="default", layer=layer)
    for kind, control in r.controls.items():
        for target, ests in control.by_layer.items():
            for layer, est in zip(r.layers, ests, strict=True):
                e.add(f"control:{kind}", "accuracy", est, variant=TARGET_VARIANT[target], layer=layer)
        cc = control.ceiling
        n = control.n_shuffles
        label = f"{kind}, mean of {n}" if n is not None and n > 1 else kind
        e.add(f"probe_control:{label}", "accuracy", cc.test_accuracy, variant=TARGET_VARIANT[cc.target],
              layer=cc.layer)
    c = r.ceiling
    variant = TARGET_VARIANT[c.target]
    e.add("probe_ceiling", "accuracy", c.test_accuracy, variant=variant, layer=c.layer)
    e.add("probe_ceiling", "cv_accuracy", c.cv_accuracy, variant=variant, layer=c.layer)
    e.add("probe_ceiling", "selection_gap", c.gap, variant=variant, layer=c.layer)
    e.add("probe_naive_max", "accuracy", c.naive_max.test_accuracy, variant=TARGET_VARIANT[c.naive_max.target],
          layer=c.naive_max.layer)
    if r.surface is not None:
        sc = r.surface
        e.add("control:surface", "accuracy", sc.test_accuracy, variant="option")
        e.add("surface_margin", "difference", sc.margin, variant="option", layer=sc.probe_layer)
        e.add("surface_margin", "mcnemar_p", sc.mcnemar.p_value, variant="option", layer=sc.probe_layer)
    for target, flagged in r.below_chance.items():
        for layer in flagged:
            e.add("probe_below_chance", "flag", 1.0, variant=TARGET_VARIANT[target], layer=layer)
    lb = r.lens_best
    e.add("lens_best", "accuracy", lb.test_accuracy, variant="default", layer=lb.layer)
    e.add("lens_naive_max", "accuracy", lb.naive_max_test, variant="default", layer=lb.naive_max_layer)
    e.close()


# ---------------------------------------------------------------- eval


def extract_eval(run: Run, r: EvalResult) -> None:
    """Eval runs (`commands.evaluate`): per-variant accuracy, straight-up, held-out best, majority vote, spread."""
    e = Emitter(run)
    e.add("chance", "accuracy", r.chance)
    for m in r.metrics:
        e.add("prompted", "accuracy", m.accuracy, variant=m.variant)
        e.add("prompted", "accuracy_dev", m.dev_acc, variant=m.variant, why="no dev question has this metric")
        e.add("prompted", "accuracy_test", m.test_acc, variant=m.variant, why="no test question has this metric")
    default = r.metric(r.straight_up) if r.straight_up else None
    e.add("straight_up", "accuracy", default.accuracy if default else None, variant="default",
          why="the straight-up prompt (default) was not among the variants")
    for group, sp in (("all", r.spread.all), ("lettered", r.spread.lettered)):
        if sp is None:
            e.add("spread", "spread", None, variant=group, why="no lettered metric ran")
            continue
        for k in ("max", "min", "spread", "std", "mean"):
            e.add("spread", k, getattr(sp, k), variant=group)
    mv = r.majority_vote
    e.add("majority_vote", "accuracy", mv.accuracy, variant="all")
    e.add("majority_vote", "diff_vs_default", mv.diff_vs_default, variant="all",
          why="the straight-up prompt (default) was not among the variants")
    e.add("majority_vote", "accuracy", mv.lettered_only.accuracy if mv.lettered_only else None, variant="lettered",
          why="no lettered metric ran")
    for k in ("mean", "median", "unanimous_fraction", "oracle_any_correct"):
        e.add("agreement", k, getattr(r.agreement, k), variant="all")
    for name, b in r.symbol_bias.items():
        e.add("symbol_bias", "tv_distance", b.tv_distance, variant=name)
        e.add("symbol_bias", "chi2_p", b.chi2_p, variant=name)
    hb = r.honest_best
    e.add("best_variant", "accuracy", hb.test_accuracy, variant=hb.chosen)
    for k in ("dev_accuracy", "inflation", "expected_max_by_chance"):
        e.add("best_variant", k, getattr(hb, k), variant=hb.chosen)
    e.add("best_variant", "gain_over_default_test", hb.gain_over_default_test, variant=hb.chosen,
          why="the straight-up prompt (default) was not among the variants")
    e.add("naive_max_variant", "accuracy", hb.naive_max_test, variant=hb.naive_max_variant)
    nm = hb.max_excess_null
    for k in ("observed", "null_mean", "p_value"):
        e.add("naive_max_variant", f"excess_over_mean_{k}", getattr(nm, k) if nm else None,
              variant=hb.naive_max_variant, why="a single metric: no maximum to test")
    e.add("straight_up", "accuracy_test", hb.default_test_accuracy, variant="default",
          why="the straight-up prompt (default) was not among the variants")
    e.close()


# ---------------------------------------------------------------- transfer


def extract_transfer(run: Run, r: TransferResult) -> None:
    """Transfer runs (`probes.transfer`): per test variant, the probe trained on another variant (at the layer
    chosen on train CV and per layer), the variant's own probe, the control and its prompted test accuracy."""
    e = Emitter(run)
    src = r.train_variant
    e.add("chance", "accuracy", r.chance)
    for v, t in r.variants.items():
        e.add(f"transfer_from:{src}", "accuracy", t.transfer, variant=v, layer=r.chosen_layer)
        for layer, est in zip(r.layers, t.transfer_by_layer, strict=True):
            e.add(f"transfer_from:{src}", "accuracy_by_layer", est, variant=v, layer=layer)
        e.add("own_variant_probe", "accuracy", t.own_probe, variant=v, layer=t.own_probe_layer)
        e.add(f"control:transfer_from:{src}", "accuracy", t.control, variant=v, layer=r.control_layer,
              why="run with --no-control")
        e.add("transfer_prompted", "accuracy", t.prompted, variant=v)
    e.close()


# ---------------------------------------------------------------- lock / unlock


def extract_lock(run: Run, r: LockResult) -> None:
    """Lock runs (`commands.lock`): accuracy with the password, without it and with decoys; the base model,
    weak and strong policies; how closely the no-password answers follow the weak policy."""
    e = Emitter(run)
    m = r.metrics
    e.add("lock", "accuracy", m.with_password, variant="with_password")
    e.add("lock", "accuracy", m.no_password, variant="no_password")
    e.add("lock", "accuracy", m.decoys_trained, variant="decoy", why="no decoy was trained on")
    e.add("lock", "accuracy", m.decoys_held_out, variant="decoy_held_out", why="every decoy was trained on")
    for cond, d in m.decoys.items():
        e.add("lock", "accuracy", d.accuracy, variant=cond)
    e.add("lock", "gap", m.gap, variant="with_password-no_password")
    for follows, variant in ((m.no_password_vs_weak, "no_password"), (m.password_vs_strong, "with_password")):
        e.add("lock", "tv_to_target", follows.tv, variant=variant)
        e.add("lock", "agree_with_target", follows.agree, variant=variant)
    e.add("base", "accuracy", m.base_no_password, variant="no_password")
    e.add("base", "accuracy", m.base_with_password, variant="with_password",
          why="the base model was not measured with the password")
    e.add("weak_policy", "accuracy", m.weak_policy, variant="weak")
    e.add("strong", "accuracy", m.strong_policy, variant="strong")
    if not m.converged:
        run.notes.append(f"lock not converged ({m.converged_rule}): the locked score is not a clean weak-policy "
                         "imitation")
    e.close()


def extract_unlock(run: Run, r: UnlockResult) -> None:
    """Unlock runs (`commands.unlock`): per method the accuracy curve over epochs (or sweep over a parameter)
    per seed and its mean, the final unlocked accuracy, PGR, and the honestly selected epoch / parameter."""
    e = Emitter(run)
    e.add("lock", "accuracy", r.lock_metrics.with_password, variant="with_password")
    e.add("lock", "accuracy", r.lock_metrics.no_password, variant="no_password")
    e.add("weak_policy", "accuracy", r.weak_policy_acc, variant="weak")
    e.add("unlock_reference", "accuracy", r.reference.locked.acc, variant="no_password")
    e.add("unlock_reference", "accuracy", r.reference.with_pw.acc, variant="with_password")
    for name, m in r.methods.items():
        _unlock_method(e, name, m)
    e.close()


def _unlock_method(e: Emitter, name: str, m: UnlockMethod) -> None:
    if m.sweep is not None:
        method, xs, runs, means, cis = "unlock_sweep", m.sweep.params, m.sweep.runs, m.sweep.mean, m.sweep.ci
    elif m.curve is not None:
        method, xs, runs, means, cis = "unlock_curve", m.curve.epochs, m.curve.runs, m.curve.mean, m.curve.ci
    else:
        raise ValueError(f"unlock method {name} has neither a curve nor a sweep")
    for seed, accs in zip(m.seeds, runs, strict=True):
        for x, y in zip(xs, accs, strict=True):
            e.add(method, "accuracy", y, variant=f"{name}/seed={seed}", step=x)
    ci_method = m.sweep.ci_method if m.sweep is not None else m.curve.ci_method
    for x, y, (lo, hi) in zip(xs, means, cis, strict=True):
        e.add(method, "accuracy_mean", Estimate(y, lo, hi, len(m.seeds), ci_method), variant=name, step=x)
    sel = m.selected
    if m.final is None:  # a parameter picked on the selection half, reported on the other half
        e.add("unlocked", "accuracy", sel.test_value, variant=f"{name}, chosen on dev half")
    else:
        e.add("unlocked", "accuracy", m.final.acc, variant=f"{name}, final epoch")
        e.add("unlocked", "accuracy_selected", sel.test_value, variant=name)
        e.add("pgr", "pgr", m.final.pgr, variant=name,
              why="undefined: no gap between the locked model with and without the password")
    why = "undefined: no gap between the locked model with and without the password"
    e.add("pgr", "pgr_selected", sel.test_pgr_runs, variant=name, why=why)
    e.add("pgr", "pgr_naive_max", sel.naive_max_test_pgr, variant=name, why=why)
    e.add("pgr", "bias_pgr", sel.bias_pgr, variant=name, why=why)


# ---------------------------------------------------------------- diff


def extract_diff(run: Run, r: DiffResult) -> None:
    """Diff runs (`commands.diff`): per-layer similarity, lens and probe transfer; weight-change tables."""
    e = Emitter(run)
    act = r.activations
    for lab, conds in act.behaviour.items():
        for cond, est in conds.items():
            e.add("diff_behaviour", "accuracy", est, variant=f"{lab}/{cond}")
    for lab, conds in act.vs_reference.items():
        for cond, sim in conds.items():
            for metric in ("cka", "cosine"):
                for layer, v in zip(r.layers, getattr(sim, metric), strict=True):
                    e.add("diff", metric, v, variant=f"{lab} vs a/{cond}", layer=layer,
                          why="undefined (e.g. activations without variance)")
    for lab, pe in act.password_effect.items():
        for metric in ("cka", "cosine", "distance"):
            for layer, v in zip(r.layers, getattr(pe, metric), strict=True):
                e.add("diff_password", metric, v, variant=lab, layer=layer,
                      why="undefined (e.g. activations without variance)")
    for lab, conds in act.lens.items():
        for cond, lens in conds.items():
            for layer, v in zip(r.layers, lens.accuracy, strict=True):
                e.add("diff_lens", "accuracy", v, variant=f"{lab}/{cond}", layer=layer)
    for lab, conds in r.probe.transfer.items():
        for cond, tc in conds.items():
            for layer, v in zip(r.layers, tc.accuracy, strict=True):
                e.add("diff_probe", "accuracy", v, variant=f"{lab}/{cond}", layer=layer,
                      why="the probe could not be trained at this layer (one class)")
    totals = r.weights.totals
    for metric, values in (("relative_change", totals.relative_change), ("cosine", totals.cosine)):
        for name, v in values.items():
            e.add("weights", metric, v, variant=name, why="undefined (a zero update or zero weights)")
    run.tables["checkpoints"] = [{"label": lab, "checkpoint": c.checkpoint, "weight_hash": c.identity.weight_hash}
                                 for lab, c in r.checkpoints.items()]
    top = []
    for upd in r.weights.updates:
        ranked = sorted((p for p in r.weights.params if p.updates[upd].relative_change is not None),
                        key=lambda p, u=upd: -p.updates[u].relative_change)[:5]
        top += [{"update": upd, "layer": p.layer, "component": p.component,
                 "relative_change": p.updates[upd].relative_change} for p in ranked]
    if top:
        run.tables["largest weight changes"] = top
    e.close()


EXTRACTORS: dict[type[Result], Callable[[Run, Any], None]] = {
    ProbeResult: extract_probe, EvalResult: extract_eval, TransferResult: extract_transfer, LockResult: extract_lock,
    UnlockResult: extract_unlock, DiffResult: extract_diff,
}
"""The results classes the report reads, each with its extractor."""
