"""One extractor per run kind: results.json -> tidy rows (and a few tables shown as they are).

Kinds are told apart by `detect_kind`: a `kind` field, a `schema` such as "gaplens.eval/1", else the keys present.
Each extractor reads the layout its runner writes (`commands.evaluate`, `commands.probe`, `commands.lock`,
`commands.unlock`, `commands.diff`) and skips any section that is missing.

Method names in the rows (the `method` column of the tidy CSV):

- eval: ``prompted`` (per variant; metrics accuracy, accuracy_dev, accuracy_test), ``straight_up``, ``best_variant``
  (chosen on dev, scored on test), ``naive_max_variant``, ``majority_vote`` (variants "all" and "lettered"),
  ``spread``, ``agreement``, ``symbol_bias``, ``chance``;
- probe: ``probe`` / ``lens`` / ``control:<kind>`` by layer (variant "default" = letter prompt, "option" = option
  text), ``probe_prompted``, ``probe_ceiling`` and ``probe_control:<kind>`` (layer chosen on train CV),
  ``lens_best`` (layer chosen on train) or ``lens_best_naive``, ``probe_naive_max``, ``lens_naive_max``, ``chance``;
- lock: ``lock`` (with_password, no_password, decoy, decoy:K; metrics accuracy, gap, tv_to_target,
  agree_with_target), ``base``, ``weak_policy``, ``strong``;
- unlock: ``unlock_curve`` / ``unlock_sweep`` (variant "<method>/seed=<s>" per run, "<method>" for the mean; the
  epoch or swept parameter in `step`), ``unlocked`` (final epoch; swept parameter chosen on the dev half),
  ``pgr`` (metrics pgr, pgr_selected, pgr_naive_max, bias_pgr), ``unlock_reference``, ``lock``, ``weak_policy``;
- diff: ``diff`` (cka, cosine vs the reference), ``diff_password``, ``diff_lens``, ``diff_probe`` by layer,
  ``diff_behaviour``, ``weights``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from report.rows import Emitter, Run, as_int, by_layer, estimate, first, model_label

KINDS = ("eval", "probe", "lock", "unlock", "diff", "transfer")
TARGET_VARIANT = {"letter": "default", "option": "option"}
PROMPTED_VARIANT = {"letter": "default", "option": "option", "option_norm": "option[norm]"}


def detect_kind(data: Mapping[str, Any]) -> str | None:
    """The run kind from `kind`, from `schema` ("gaplens.<kind>/N"), else from the keys present; None if unknown."""
    kind = data.get("kind")
    if isinstance(kind, str) and kind.lower() in KINDS:
        return kind.lower()
    schema = data.get("schema")
    if isinstance(schema, str) and schema.startswith("gaplens."):
        name = schema.removeprefix("gaplens.").split("/")[0].lower()  # "gaplens.lock-run/1" -> "lock"
        for candidate in (name, name.split("-")[0], name.split("_")[0]):
            if candidate in KINDS:
                return candidate
    keys = set(data)
    if keys & {"probe_accuracy_by_layer", "lens_accuracy_by_layer", "control_accuracy_by_layer"}:
        return "probe"
    if {"methods", "reference"} <= keys or keys & {"pgr", "unlock_curves"}:
        return "unlock"
    if keys & {"with_password", "no_password", "decoy"}:
        return "lock"
    if keys & {"weights", "activations"} and "checkpoints" in keys:
        return "diff"
    if keys & {"metrics", "honest_best", "majority_vote"}:
        return "eval"
    return None


def identity(kind: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(model label, task) of a run from its provenance, else its config."""
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    cfg = data.get("config") if isinstance(data.get("config"), Mapping) else {}
    if kind == "diff":
        model = first(cfg, "a") or first(prov, "model") or "unknown"
    else:
        model = first(prov, "model_label", "model") or first(cfg, "model") or "unknown"
    return model_label(model), str(first(prov, "task") or first(cfg, "task") or "unknown")


# ---------------------------------------------------------------- probe


def _per_target(x: Any) -> dict[str, Any]:
    """{target: per-layer values}: a dict of targets, or a bare per-layer list/dict (target "")."""
    if isinstance(x, list) or (isinstance(x, Mapping) and by_layer(x)):
        return {"": x}
    return dict(x) if isinstance(x, Mapping) else {}


def _tv(target: str) -> str:
    return TARGET_VARIANT.get(target, target or "default")


def extract_probe(run: Run, d: Mapping[str, Any]) -> None:
    """Probe runs (`commands.probe`): prompted accuracy, per-layer probe / lens / control, ceilings."""
    e = Emitter(run)
    layers = d.get("layers") if isinstance(d.get("layers"), list) else None
    e.add("chance", "accuracy", d.get("chance"))
    prompted = d.get("prompted_accuracy")
    if isinstance(prompted, Mapping) and estimate(prompted) is None:
        for key, val in prompted.items():
            variant = PROMPTED_VARIANT.get(key, key)
            if isinstance(val, Mapping) and ("test" in val or "all" in val):
                e.add("probe_prompted", "accuracy", val.get("test"), variant=variant)
                e.add("probe_prompted", "accuracy_all", val.get("all"), variant=variant)
            else:
                e.add("probe_prompted", "accuracy", val, variant=variant)
    else:
        e.add("probe_prompted", "accuracy", prompted, variant="default")
    for target, ests in _per_target(d.get("probe_accuracy_by_layer")).items():
        for layer, v in by_layer(ests, layers).items():
            e.add("probe", "accuracy", v, variant=_tv(target), layer=layer)
    for target, vals in _per_target(d.get("probe_cv_accuracy_by_layer")).items():
        for layer, v in by_layer(vals, layers).items():
            e.add("probe", "cv_accuracy", v, variant=_tv(target), layer=layer)
    for layer, v in by_layer(d.get("lens_accuracy_by_layer"), layers).items():
        e.add("lens", "accuracy", v, variant="default", layer=layer)
    controls = d.get("control_accuracy_by_layer")
    if isinstance(controls, Mapping) and controls and all(
            isinstance(v, Mapping) and not by_layer(v) for v in controls.values()):
        per_kind = dict(controls)
    else:
        per_kind = {"": controls}
    for kind, per in per_kind.items():
        for target, ests in _per_target(per).items():
            for layer, v in by_layer(ests, layers).items():
                e.add(f"control:{kind}" if kind else "control", "accuracy", v, variant=_tv(target), layer=layer)
    ceil = d.get("ceiling")
    if isinstance(ceil, Mapping):
        variant = _tv(str(ceil.get("target", "")))
        e.add("probe_ceiling", "accuracy", ceil.get("test_accuracy"), variant=variant, layer=as_int(ceil.get("layer")))
        e.add("probe_ceiling", "cv_accuracy", ceil.get("cv_accuracy"), variant=variant, layer=as_int(ceil.get("layer")))
        e.add("probe_ceiling", "selection_gap", ceil.get("gap"), variant=variant, layer=as_int(ceil.get("layer")))
        naive = ceil.get("naive_max")
        if isinstance(naive, Mapping):
            e.add("probe_naive_max", "accuracy", naive.get("test_accuracy"), variant=_tv(str(naive.get("target", ""))),
                  layer=as_int(naive.get("layer")))
        if not ceil.get("selected_on"):
            run.notes.append("the probe ceiling records no selection split; shown as the run reports it")
    else:
        e.add("probe_ceiling", "accuracy", ceil)
    for kind, cc in (d.get("control_ceiling") or {}).items():
        if isinstance(cc, Mapping):
            shuffles = as_int(cc.get("n_shuffles"))
            label = f"{kind}, mean of {shuffles}" if shuffles and shuffles > 1 else kind
            e.add(f"probe_control:{label}", "accuracy", cc.get("test_accuracy"),
                  variant=_tv(str(cc.get("target", ""))), layer=as_int(cc.get("layer")))
    lens_sel = d.get("lens_best")
    if isinstance(lens_sel, Mapping):
        e.add("lens_best", "accuracy", lens_sel.get("test_accuracy"), variant="default",
              layer=as_int(lens_sel.get("layer")))
        e.add("lens_naive_max", "accuracy", lens_sel.get("naive_max_test"), variant="default",
              layer=as_int(lens_sel.get("naive_max_layer")))
    else:
        lens = {r.layer: r for r in run.rows if r.method == "lens" and r.metric == "accuracy"}
        if lens:
            best = max(lens.values(), key=lambda r: (r.value, -(r.layer or 0)))
            run.rows.append(dataclasses.replace(best, method="lens_best_naive"))
            run.notes.append("best logit-lens layer is a naive max over layers on the test data (optimistic)")


# ---------------------------------------------------------------- eval


def extract_eval(run: Run, d: Mapping[str, Any]) -> None:
    """Eval runs (`commands.evaluate`): per-variant accuracy, straight-up, held-out best, majority vote, spread."""
    e = Emitter(run)
    e.add("chance", "accuracy", d.get("chance"))
    for m in d.get("metrics") or []:
        if isinstance(m, Mapping) and "variant" in m:
            v = str(m["variant"])
            e.add("prompted", "accuracy", m, variant=v)
            e.add("prompted", "accuracy_dev", m.get("dev_acc"), variant=v)
            e.add("prompted", "accuracy_test", m.get("test_acc"), variant=v)
    default = d.get("default")
    if isinstance(default, Mapping):
        e.add("straight_up", "accuracy", default, variant=str(default.get("variant", "default")))
    spread = d.get("spread")
    if isinstance(spread, Mapping):
        groups = spread if any(isinstance(v, Mapping) for v in spread.values()) else {"all": spread}
        for group, sp in groups.items():
            for k, v in (sp or {}).items():
                if k != "n_variants":
                    e.add("spread", k, v, variant=str(group))
    mv = d.get("majority_vote")
    if isinstance(mv, Mapping):
        e.add("majority_vote", "accuracy", mv.get("accuracy"), variant="all")
        e.add("majority_vote", "diff_vs_default", mv.get("diff_vs_default"), variant="all")
        e.add("majority_vote", "accuracy", first(mv.get("lettered_only"), "accuracy"), variant="lettered")
    for k, v in (d.get("agreement") or {}).items():
        e.add("agreement", k, v, variant="all")
    for name, b in (d.get("symbol_bias") or {}).items():
        if isinstance(b, Mapping):
            for k in ("tv_distance", "chi2_p"):
                e.add("symbol_bias", k, b.get(k), variant=str(name))
    hb = d.get("honest_best")
    if isinstance(hb, Mapping):
        chosen = str(hb.get("chosen", ""))
        e.add("best_variant", "accuracy", hb.get("test_accuracy"), variant=chosen)
        for k in ("dev_accuracy", "inflation", "expected_max_by_chance", "gain_over_default_test"):
            e.add("best_variant", k, hb.get(k), variant=chosen)
        e.add("naive_max_variant", "accuracy", hb.get("naive_max_test"), variant=str(hb.get("naive_max_variant", "")))
        nm = hb.get("max_excess_null")
        if isinstance(nm, Mapping):
            for k in ("observed", "null_mean", "p_value"):
                e.add("naive_max_variant", f"excess_over_mean_{k}", nm.get(k), variant=str(hb.get("naive_max_variant", "")))
        e.add("straight_up", "accuracy_test", hb.get("default_test_accuracy"), variant="default")


# ---------------------------------------------------------------- lock / unlock


def extract_lock(run: Run, d: Mapping[str, Any]) -> None:
    """Lock runs (`commands.lock`): accuracy with the password, without it and with decoys; the base model,
    weak and strong policies; how closely the no-password answers follow the weak policy."""
    e = Emitter(run)
    m = d.get("metrics") if isinstance(d.get("metrics"), Mapping) else d
    e.add("lock", "accuracy", m.get("with_password"), variant="with_password")
    e.add("lock", "accuracy", m.get("no_password"), variant="no_password")
    e.add("lock", "accuracy", first(m, "decoys_trained", "decoy"), variant="decoy")
    e.add("lock", "accuracy", m.get("decoys_held_out"), variant="decoy_held_out")
    for cond, dd in (m.get("decoys") or {}).items():
        if isinstance(dd, Mapping):
            e.add("lock", "accuracy", dd.get("accuracy"), variant=str(cond))
    e.add("lock", "gap", m.get("gap"), variant="with_password-no_password")
    for key, variant in (("no_password_vs_weak", "no_password"), ("password_vs_strong", "with_password")):
        follows = m.get(key)
        if isinstance(follows, Mapping):
            e.add("lock", "tv_to_target", follows.get("tv"), variant=variant)
            e.add("lock", "agree_with_target", follows.get("agree"), variant=variant)
    e.add("base", "accuracy", m.get("base_no_password"), variant="no_password")
    e.add("base", "accuracy", m.get("base_with_password"), variant="with_password")
    e.add("weak_policy", "accuracy", first(m, "weak_policy", "weak_policy_accuracy"), variant="weak")
    e.add("strong", "accuracy", first(m, "strong_policy", "strong_accuracy"), variant="strong")
    if m.get("converged") is False:
        run.notes.append(f"lock not converged ({m.get('converged_rule', 'see the run')}): the locked score is not "
                         "a clean weak-policy imitation")


def extract_unlock(run: Run, d: Mapping[str, Any]) -> None:
    """Unlock runs (`commands.unlock`): per method the accuracy curve over epochs (or sweep over a parameter)
    per seed and its mean, the final unlocked accuracy, PGR, and the honestly selected epoch / parameter."""
    e = Emitter(run)
    lm = d.get("lock_metrics") if isinstance(d.get("lock_metrics"), Mapping) else {}
    e.add("lock", "accuracy", lm.get("with_password"), variant="with_password")
    e.add("lock", "accuracy", lm.get("no_password"), variant="no_password")
    e.add("weak_policy", "accuracy", d.get("weak_policy_acc"), variant="weak")
    ref = d.get("reference") if isinstance(d.get("reference"), Mapping) else {}
    for key, variant in (("locked", "no_password"), ("with_pw", "with_password")):
        e.add("unlock_reference", "accuracy", first(ref.get(key), "acc"), variant=variant)
    for name, m in (d.get("methods") or {}).items():
        if isinstance(m, Mapping):
            _unlock_method(e, str(name), m)


def _unlock_method(e: Emitter, name: str, m: Mapping[str, Any]) -> None:
    sweep = m.get("kind") == "sweep"
    xs = m.get("params") if sweep else first(m.get("curve"), "epochs")
    curve = m if sweep else (m.get("curve") or {})
    method = "unlock_sweep" if sweep else "unlock_curve"
    seeds = m.get("seeds") or []
    if isinstance(xs, list):
        for i, accs in enumerate(curve.get("runs") or []):
            seed = seeds[i] if i < len(seeds) else i
            for x, y in zip(xs, accs, strict=False):
                e.add(method, "accuracy", y, variant=f"{name}/seed={seed}", step=_float(x))
        cis = curve.get("ci") or []
        for j, (x, y) in enumerate(zip(xs, curve.get("mean") or [], strict=False)):
            lo, hi = (cis[j] if j < len(cis) and isinstance(cis[j], list) and len(cis[j]) == 2 else (None, None))
            e.add(method, "accuracy_mean", {"value": y, "lo": lo, "hi": hi, "n": len(seeds) or None}, variant=name,
                  step=_float(x))
    sel = m.get("selected") if isinstance(m.get("selected"), Mapping) else {}
    final = m.get("final") if isinstance(m.get("final"), Mapping) else {}
    if sweep:  # a parameter picked on the selection half, reported on the other half
        e.add("unlocked", "accuracy", sel.get("test_value"), variant=f"{name}, chosen on dev half")
    else:
        e.add("unlocked", "accuracy", final.get("acc"), variant=f"{name}, final epoch")
        e.add("unlocked", "accuracy_selected", sel.get("test_value"), variant=name)
        e.add("pgr", "pgr", final.get("pgr"), variant=name)
    e.add("pgr", "pgr_selected", first(sel, "test_pgr_runs", "test_pgr"), variant=name)
    e.add("pgr", "pgr_naive_max", sel.get("naive_max_test_pgr"), variant=name)
    e.add("pgr", "bias_pgr", sel.get("bias_pgr"), variant=name)


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- diff


def extract_diff(run: Run, d: Mapping[str, Any]) -> None:
    """Diff runs (`commands.diff`): per-layer similarity, lens and probe transfer; weight-change tables."""
    e = Emitter(run)
    layers = d.get("layers") if isinstance(d.get("layers"), list) else None
    act = d.get("activations") if isinstance(d.get("activations"), Mapping) else {}
    for lab, conds in (act.get("behaviour") or {}).items():
        for cond, est in (conds or {}).items():
            e.add("diff_behaviour", "accuracy", est, variant=f"{lab}/{cond}")
    for lab, conds in (act.get("vs_reference") or {}).items():
        for cond, metrics in (conds or {}).items():
            for metric in ("cka", "cosine"):
                for layer, v in by_layer((metrics or {}).get(metric), layers).items():
                    e.add("diff", metric, v, variant=f"{lab} vs a/{cond}", layer=layer)
    for lab, metrics in (act.get("password_effect") or {}).items():
        for metric, vals in (metrics or {}).items():
            for layer, v in by_layer(vals, layers).items():
                e.add("diff_password", metric, v, variant=str(lab), layer=layer)
    for lab, conds in (act.get("lens") or {}).items():
        for cond, vals in (conds or {}).items():
            for layer, v in by_layer((vals or {}).get("accuracy"), layers).items():
                e.add("diff_lens", "accuracy", v, variant=f"{lab}/{cond}", layer=layer)
    probe = d.get("probe") if isinstance(d.get("probe"), Mapping) else {}
    for lab, conds in (probe.get("transfer") or {}).items():
        for cond, vals in (conds or {}).items():
            for layer, v in by_layer((vals or {}).get("accuracy"), layers).items():
                e.add("diff_probe", "accuracy", v, variant=f"{lab}/{cond}", layer=layer)
    weights = d.get("weights") if isinstance(d.get("weights"), Mapping) else {}
    totals = weights.get("totals") if isinstance(weights.get("totals"), Mapping) else {}
    for metric in ("relative_change", "cosine"):
        for name, v in (totals.get(metric) or {}).items():
            e.add("weights", metric, v, variant=str(name))
    if isinstance(d.get("checkpoints"), Mapping):
        run.tables["checkpoints"] = [{"label": lab, "checkpoint": m.get("checkpoint"), "weight_hash": m.get("weight_hash")}
                                     for lab, m in d["checkpoints"].items() if isinstance(m, Mapping)]
    params = weights.get("params") if isinstance(weights.get("params"), list) else []
    top = []
    for upd in weights.get("updates") or {}:
        ranked = sorted((p for p in params if isinstance(p, Mapping)
                         and isinstance(first(p.get("updates"), upd), Mapping)
                         and isinstance(p["updates"][upd].get("relative_change"), (int, float))),
                        key=lambda p, u=upd: -p["updates"][u]["relative_change"])[:5]
        top += [{"update": upd, "layer": p.get("layer"), "component": p.get("component"),
                 "relative_change": p["updates"][upd]["relative_change"]} for p in ranked]
    if top:
        run.tables["largest weight changes"] = top


def extract_transfer(run: Run, d: Mapping[str, Any]) -> None:
    """Transfer runs (`probes.transfer`): per test variant, the probe trained on another variant (at the layer
    chosen on train CV and per layer), the variant's own probe, the control and its prompted test accuracy."""
    e = Emitter(run)
    src = str(d.get("train_variant", ""))
    e.add("chance", "accuracy", d.get("chance"))
    for v, r in (d.get("variants") or {}).items():
        if not isinstance(r, Mapping):
            continue
        e.add(f"transfer_from:{src}", "accuracy", r.get("transfer"), variant=str(v), layer=as_int(d.get("chosen_layer")))
        for layer, est in zip(d.get("layers") or [], r.get("transfer_by_layer") or [], strict=False):
            e.add(f"transfer_from:{src}", "accuracy_by_layer", est, variant=str(v), layer=as_int(layer))
        e.add("own_variant_probe", "accuracy", r.get("own_probe"), variant=str(v), layer=as_int(r.get("own_probe_layer")))
        e.add(f"control:transfer_from:{src}", "accuracy", r.get("control"), variant=str(v),
              layer=as_int(d.get("control_layer")))
        e.add("transfer_prompted", "accuracy", r.get("prompted"), variant=str(v))


EXTRACTORS: dict[str, Callable[[Run, Mapping[str, Any]], None]] = {
    "probe": extract_probe, "eval": extract_eval, "lock": extract_lock, "unlock": extract_unlock,
    "diff": extract_diff, "transfer": extract_transfer,
}
