"""Elicitation methods that change the weights, run through `locking.unlock` on a case's context: weight noise
(`locking.unlock.run_noise`, several draws), fine-tuning on n strong (gold) demonstrations (Greenblatt et al. 2024;
`run_weak` with the strong policy) and on n weak-model samples (the unlock command's method, `run_weak`).

Fine-tuning runs evaluate dev and test every `eval_every` epochs; the epoch best on dev (epoch 0, the untouched
model, first) is reported on test. Training is seeded, so the chosen epoch's model is rebuilt exactly by training
again for that many epochs, which gives its per-question answers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from audit import noise
from audit.outcome import Outcome, answers_on
from audit.questions import CaseQuestions
from eval.stats import select_then_report
from locking import evalset, unlock

NOISE_SEED = 7919  # noise seeds are NOISE_SEED * (case seed + 1) + draw: distinct from every training seed


def _answers(es: evalset.EvalSet, pred: Any, q: CaseQuestions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gold = np.array([list(o)[g] for o, g in zip(es.orders, es.gold.tolist(), strict=True)])
    return answers_on(np.array(es.ids), np.asarray(pred), gold, q.test_ids)


def noise_outcome(ctx: unlock.Context, p: unlock.UnlockParams, q: CaseQuestions, *, seed: int, draws: int,
                  ref: dict[str, Any], ref_answers: dict[str, evalset.Answers], n_perm: int) -> Outcome:
    """Every (scale, draw) scored on dev and test; the best on dev reported on test (`audit.noise.select_noise`)."""
    dev_mask = ctx.dev
    base = ref_answers["none"]
    preds: dict[tuple[float, int], np.ndarray] = {noise.BASELINE: base.pred}
    for d in range(draws):
        rec = unlock.run_noise(ctx, p, NOISE_SEED * (seed + 1) + d, ref)
        for s in p.noise_scales:
            preds[(float(s), d)] = np.asarray(rec["answers"][str(s)]["pred"])
    gold = base.gold
    correct = {k: v == gold for k, v in preds.items()}
    sel = noise.select_noise({k: float(c[dev_mask].mean()) for k, c in correct.items()},
                             {k: float(c[~dev_mask].mean()) for k, c in correct.items()})
    null = noise.excess_null(np.stack([c[~dev_mask] for c in correct.values()], axis=1), n_perm=n_perm, seed=seed)
    ids, pred, gold_t = _answers(ctx.es, preds[sel["chosen"]], q)
    scale, draw = sel["chosen"]
    chosen = "none" if sel["chosen"] == noise.BASELINE else f"scale {scale:g}, draw {draw}"
    return Outcome("noise", ids, pred, gold_t, chosen=chosen, dev_value=sel["dev_value"],
                   naive_max_test=sel["naive_max_test"], n_candidates=len(correct), gold_labels=int(dev_mask.sum()),
                   extra={"naive_gain": sel["naive_gain"], "inflation": sel["inflation"],
                          "improvement_ratio": sel["improvement_ratio"], "max_excess": null["observed"],
                          "max_excess_null_mean": null["null_mean"], "max_excess_p": null["p_value"]})


def finetune_outcome(ctx: unlock.Context, p: unlock.UnlockParams, q: CaseQuestions, *, method: str, seed: int,
                     ref: dict[str, Any], ref_answers: dict[str, evalset.Answers]) -> Outcome:
    """"sft" (n gold demonstrations: `ctx.strong`) or "unlock" (n weak samples: `ctx.weak`): fine-tune, choose the
    epoch on dev, report it on test."""
    kind = {"sft": "strong", "unlock": "weak"}[method]
    ctx.begin_run(None)
    rec = unlock.run_weak(ctx, p, seed, ref, method=kind)
    curve = rec["curve"]
    sel = select_then_report({pt["epoch"]: pt["acc_dev"] for pt in curve}, {pt["epoch"]: pt["acc_test"] for pt in curve})
    epoch = sel["chosen"]
    if epoch == 0:
        pred = ref_answers["none"].pred
    elif epoch == curve[-1]["epoch"]:
        pred = rec["answers"]["final"]["pred"]
    else:  # seeded training: the same samples and batches rebuild the chosen epoch's weights
        ctx.begin_run(None)
        again = unlock.run_weak(ctx, replace(p, epochs=int(round(epoch))), seed, ref, method=kind)
        pred = again["answers"]["final"]["pred"]
        if abs(again["curve"][-1]["acc_test"] - sel["test_value"]) > 1e-9:
            raise RuntimeError(f"{method}: retraining to epoch {epoch} did not reproduce its test accuracy")
    ids, pred, gold = _answers(ctx.es, pred, q)
    n = len(rec["samples"])
    return Outcome(method, ids, pred, gold, chosen=f"epoch {epoch:g}", dev_value=sel["dev_value"],
                   naive_max_test=sel["naive_max_test"], n_candidates=len(curve),
                   gold_labels=int(ctx.dev.sum()) + (n if method == "sft" else 0), samples=n,
                   extra={"final_test": curve[-1]["acc_test"], "with_password_after": rec["final_with_pw"]["acc_test"]})
