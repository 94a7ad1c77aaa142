"""Reading answers out of no-password activations: the logit lens (layer chosen on dev) and linear probes trained on
the gold labels of train questions (target and layer chosen by train cross-validation, `probes.fit.ceiling`), with
their shuffled-label control fitted and chosen the same way.

Both read one capture store holding the train and eval questions: lettered rows of the prompt the lock was trained
on (its variant, scored by each answer's first token as the lock scores it), and ``option_listed`` option rows for
the option target.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audit.outcome import Outcome, answers_on
from audit.questions import CaseQuestions
from eval.stats import select_then_report
from hooks.store import Store
from probes.fit import FeatureReader, ceiling, sweep_layers
from probes.lens import lens_predictions
from probes.targets import load_target

OPTION_VARIANT = "option_listed"


def lens_outcome(store_path: Path, q: CaseQuestions, variant: str = "default") -> Outcome:
    """The logit lens on the answer tokens of `variant` (lettered rows), the layer best on dev, reported on test."""
    with Store(store_path) as store:
        m = store.mask(variant=variant, lettered=True)
        r = store.rows
        logits = store.array("lens_logits", m)
        layers = list(store.layers)
    qids = r["question_id"][m].astype(str)
    pos = lens_predictions(logits, r["n_choices"][m])
    correct = pos == r["label"][m][:, None]
    dev, test = np.isin(qids, q.dev_ids), np.isin(qids, q.test_ids)
    sel = select_then_report({layer: float(correct[dev, i].mean()) for i, layer in enumerate(layers)},
                             {layer: float(correct[test, i].mean()) for i, layer in enumerate(layers)})
    i = layers.index(sel["chosen"])
    order = r["order"][m]
    rows = np.arange(len(pos))
    pred = np.where(pos[:, i] >= 0, order[rows, np.clip(pos[:, i], 0, None)], -1)
    ids, pred, gold = answers_on(qids, pred, r["answer_original"][m], q.test_ids)
    return Outcome("lens", ids, pred, gold, chosen=f"layer {sel['chosen']}", variant=variant, layer=int(sel["chosen"]),
                   dev_value=sel["dev_value"], naive_max_test=sel["naive_max_test"], n_candidates=len(layers),
                   gold_labels=len(q.dev_ids))


def probe_outcome(store_path: Path, q: CaseQuestions, targets: Sequence[str], *, seed: int,
                  variant: str = "default") -> Outcome:
    """Linear probes per layer on the train questions' gold labels; the (target, layer) with the best train CV,
    reported on test; "shuffled_control" is the same pipeline on shuffled train labels (its test accuracy). The letter
    target reads `variant`'s lettered rows, the option target the option_listed rows."""
    where = {"letter": variant, "option": OPTION_VARIANT}
    with Store(store_path) as store:
        tg = [load_target(store, t, where[t]) for t in targets]
        layers = list(store.layers)
        reader = FeatureReader(store, np.concatenate([t.rows for t in tg]))
        sweeps = sweep_layers(reader, tg, q.train_ids, range(len(layers)), kinds=("probe", "shuffled"), seed=seed,
                              desc="audit probes")
    ceil = ceiling(sweeps["probe"], layers)
    fit = sweeps["probe"].fits[ceil["target"]][layers.index(ceil["layer"])]
    a = fit.answers
    ids, pred, gold = answers_on(a.qids, a.pred, a.gold, q.test_ids)
    ctrl = ceiling(sweeps["shuffled"], layers)
    cfit = sweeps["shuffled"].fits[ctrl["target"]][layers.index(ctrl["layer"])]
    test = np.isin(cfit.test_ids.astype(str), q.test_ids)
    naive = max(float(np.mean(f.test_correct[np.isin(f.test_ids.astype(str), q.test_ids)]))
                for fits in sweeps["probe"].fits.values() for f in fits)
    return Outcome("probe", ids, pred, gold, chosen=f"{ceil['target']} probe, layer {ceil['layer']}",
                   variant=where[ceil["target"]], layer=int(ceil["layer"]), dev_value=ceil["cv_accuracy"],
                   naive_max_test=naive, n_candidates=ceil["n_candidates"], gold_labels=len(q.train_ids),
                   extra={"shuffled_control": float(np.mean(cfit.test_correct[test])),
                          "shuffled_layer": float(ctrl["layer"])})
