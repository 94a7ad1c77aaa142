"""Prompting methods from a capture store of the eval questions: prompt variants (best chosen on dev), majority
vote over them, and chain of thought (when it ran).

Pure functions over scored predictions (`eval.scoring`); the choice is `eval.stats.honest_best` (chosen on the dev
questions, reported on the test questions), the vote is `eval.stats.majority_vote` (ties broken by summed softmax
probability, as `cli.py eval` does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.outcome import Outcome, answers_on
from audit.questions import CaseQuestions
from eval import scoring, stats
from eval.metrics import score_generations
from hooks.generate import read_generations
from hooks.store import Store

COT_SCORINGS = (scoring.COT, scoring.COT_FORCED)


def store_predictions(store: Path, generations: Path | None = None) -> scoring.Predictions:
    """Every metric's prediction per question: the store's lettered and option rows, plus the chains of thought
    read from `generations` (answer extracted from the text, `eval.metrics.score_generations`)."""
    with Store(store) as s:
        parts = [scoring.score_store(s.rows, s.array("answer_logits"), s.array("option_logprob"),
                                     s.array("option_nchars"))]
    if generations is not None:
        _, rows = read_generations(generations)
        parts.append(score_generations(rows)[0])
    return scoring.concat(parts)


def _best(preds: scoring.Predictions, q: CaseQuestions, method: str, *, n_boot: int, seed: int) -> Outcome:
    """The metric best on dev, its answers on test (`eval.stats.honest_best`)."""
    hb = stats.honest_best(preds.correct.astype(float), preds.variant, preds.question_id, set(q.dev_ids),
                           n_boot=n_boot, seed=seed)
    chosen = hb["chosen"]
    mine = preds.select(preds.variant == chosen)
    ids, pred, gold = answers_on(mine.question_id, mine.pred_orig, mine.gold_orig, q.test_ids)
    null = hb["max_excess_null"]
    return Outcome(method, ids, pred, gold, chosen=chosen, variant=str(mine.base_variant[0]),
                   dev_value=hb["dev_accuracy"], naive_max_test=hb["naive_max_test"],
                   n_candidates=len(hb["dev_by_variant"]), gold_labels=hb["n_dev"],
                   extra={"expected_max_by_chance": hb["expected_max_by_chance"],
                          "max_excess_null_mean": None if null is None else null["null_mean"]})


def prompt_outcomes(preds: scoring.Predictions, q: CaseQuestions, *, n_boot: int, seed: int
                    ) -> dict[str, Outcome]:
    """"prompt" (best metric on dev, reported on test), "vote" (majority over every non-CoT metric, test questions)
    and, when chain-of-thought metrics are present, "cot" (the best of them on dev)."""
    p = preds.select(np.isin(preds.question_id, np.asarray(q.eval_ids, dtype=str)))
    cot = np.isin(p.scoring, COT_SCORINGS)
    plain = p.select(~cot)
    out = {"prompt": _best(plain, q, "prompt", n_boot=n_boot, seed=seed)}
    mat = scoring.prediction_matrix(plain, questions=q.test_ids)
    vote = stats.majority_vote(mat.pred, mat.n_choices, scores=np.nan_to_num(mat.probs))
    out["vote"] = Outcome("vote", np.asarray(mat.question_ids, dtype=str), vote, mat.gold, chosen=None,
                          variant="all", n_candidates=len(mat.variants),
                          extra={"n_variants": float(len(mat.variants))})
    if cot.any():
        out["cot"] = _best(p.select(cot), q, "cot", n_boot=n_boot, seed=seed)
    return out
