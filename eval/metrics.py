"""The metrics of `cli.py eval`, from predictions to the numbers of its results.json. Pure: no model, no files.

`evaluate_predictions` takes scored predictions (`eval.scoring`) of every metric and returns per-metric accuracy
with bootstrap intervals, spread, per-question agreement, majority vote against the straight-up prompt, answer-symbol
bias, and the best metric chosen on dev questions and scored on test questions beside the naive max and its
permutation null. `score_generations` turns chain-of-thought rows (`hooks.generate`) into predictions by extracting
each answer from its text (`eval.extract`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eval import extract, scoring, stats

STRAIGHT_UP = "default"


def score_generations(rows: list[dict[str, Any]]) -> tuple[scoring.Predictions, dict[str, Any]]:
    """Predictions of generated answers (extracted from each row's text) and per-variant extraction stats."""
    found = [extract.extract_choice(r["text"], r["symbols"], r["options"]) for r in rows]
    width = max(len(r["order"]) for r in rows)
    order = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        order[i, : len(r["order"])] = r["order"]
    preds = scoring.score_generated(
        np.array([r["question_id"] for r in rows]), np.array([r["variant"] for r in rows]),
        np.array([f.index for f in found]), np.array([len(r["order"]) for r in rows]), order,
        np.array([r["answer"] for r in rows]), np.array([r["answer_original"] for r in rows]))
    per: dict[str, Any] = {}
    for v in dict.fromkeys(r["variant"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["variant"] == v]
        per[v] = {
            "n": len(idx),
            "answer_found": float(np.mean([found[i].index >= 0 for i in idx])),
            "by_method": {m: sum(found[i].method == m for i in idx) for m in extract.METHODS},
            "stops": {s: sum(rows[i]["stop"] == s for i in idx) for s in extract.STOPS},
            "mean_new_tokens": float(np.mean([rows[i]["n_new_tokens"] for i in idx])),
        }
    return preds, {"variants": per}


def evaluate_predictions(
    preds: scoring.Predictions, *, seed: int = 0, dev_fraction: float = 0.5, n_boot: int = 1000
) -> dict[str, Any]:
    """Every metric of results.json from scored predictions (no files, no model)."""
    mat = scoring.prediction_matrix(preds)
    qids = np.array(mat.question_ids)
    chance = float(np.mean(1.0 / mat.n_choices))
    dev_ids, test_ids = stats.split_ids(mat.question_ids, dev_fraction, seed)
    correct = preds.correct.astype(float)
    hb = stats.honest_best(correct, preds.variant, preds.question_id, set(dev_ids), n_boot=n_boot, seed=seed)
    accs = stats.per_variant_accuracy(correct, preds.variant, question_ids=preds.question_id, n_boot=n_boot,
                                      seed=seed)
    scoring_of = dict(zip(preds.variant.tolist(), preds.scoring.tolist(), strict=True))
    base_of = dict(zip(preds.variant.tolist(), preds.base_variant.tolist(), strict=True))
    metrics = []
    for name in mat.variants:
        e = accs[name]
        m = preds.variant == name
        metrics.append({
            "variant": name, "base_variant": base_of[name], "scoring": scoring_of[name],
            "accuracy": e.value, "ci_lo": e.lo, "ci_hi": e.hi, "n": e.n, "ci_method": e.method,
            "n_missing": int(preds.missing[m].sum()),
            "dev_acc": hb["dev_by_variant"].get(name), "test_acc": hb["test_by_variant"].get(name),
        })
    metrics.sort(key=lambda r: (-r["accuracy"], r["variant"]))
    acc_by = {r["variant"]: r["accuracy"] for r in metrics}
    lettered = {k: v for k, v in acc_by.items() if scoring_of[k] == scoring.LETTER}
    agree = stats.agreement(mat.pred)
    probs = np.nan_to_num(mat.probs)
    maj = stats.majority_vote(mat.pred, mat.n_choices, scores=probs)
    maj_correct = (maj >= 0) & (maj == mat.gold)
    majority = {
        "n_variants": len(mat.variants),
        "accuracy": stats.bootstrap_mean(maj_correct.astype(float), n_boot=n_boot, seed=seed).to_dict(),
        "default_accuracy": None, "diff_vs_default": None,
        "lettered_only": None,
    }
    default = None
    if STRAIGHT_UP in mat.variants:
        col = mat.variants.index(STRAIGHT_UP)
        d_correct = mat.correct[:, col].astype(float)
        default = next(r for r in metrics if r["variant"] == STRAIGHT_UP)
        majority["default_accuracy"] = float(d_correct.mean())
        majority["diff_vs_default"] = stats.bootstrap_mean(
            maj_correct.astype(float) - d_correct, n_boot=n_boot, seed=seed).to_dict()
    let_cols = [i for i, v in enumerate(mat.variants) if scoring_of[v] == scoring.LETTER]
    if let_cols:
        lm = stats.majority_vote(mat.pred[:, let_cols], mat.n_choices, scores=probs[:, let_cols])
        majority["lettered_only"] = {
            "n_variants": len(let_cols),
            "accuracy": stats.bootstrap_mean(((lm >= 0) & (lm == mat.gold)).astype(float), n_boot=n_boot,
                                             seed=seed).to_dict(),
        }
    width = int(mat.n_choices.max())
    bias = {}
    for name in [k for k in acc_by if scoring_of[k] in (scoring.LETTER, scoring.COT_FORCED)]:
        p = preds.select(preds.variant == name)
        bias[name] = stats.symbol_bias(p.pred_pos, p.gold_pos, width)
    default_test = hb["test_by_variant"].get(STRAIGHT_UP)
    honest = {**hb, "default_test_accuracy": default_test,
              "gain_over_default_test": (hb["test_accuracy"]["value"] - default_test
                                         if default_test is not None else None),
              "dev_ids": dev_ids, "test_ids": test_ids}
    col_default = mat.variants.index(STRAIGHT_UP) if STRAIGHT_UP in mat.variants else None
    dev_set = set(dev_ids)
    questions = [
        {"id": q, "gold": int(mat.gold[i]), "n_choices": int(mat.n_choices[i]),
         "agreement": _num(agree[i]), "majority": int(maj[i]), "n_correct": int(mat.correct[i].sum()),
         "default_pred": int(mat.pred[i, col_default]) if col_default is not None else None,
         "split": "dev" if q in dev_set else "test"}
        for i, q in enumerate(qids.tolist())
    ]
    return {
        "n_questions": len(mat.question_ids),
        "chance": chance,
        "metrics": metrics,
        "default": default,
        "spread": {"all": stats.spread(acc_by), "lettered": stats.spread(lettered) if lettered else None},
        "agreement": {"mean": float(np.nanmean(agree)), "median": float(np.nanmedian(agree)),
                      "unanimous_fraction": float(np.mean(agree == 1.0)),
                      "oracle_any_correct": float(np.mean(mat.correct.any(axis=1)))},
        "majority_vote": majority,
        "symbol_bias": bias,
        "honest_best": honest,
        "questions": questions,
    }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)
