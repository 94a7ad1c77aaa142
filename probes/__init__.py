"""Reading answers out of activations: linear probes (option and letter targets), the logit lens, controls,
and probes across prompt variants (`probes.transfer`). The `probe` command is `commands.probe`.

Public API: `LinearProbe` (fit / predict_proba / decision_function / score / save / load), the pure scoring
functions of `probes.lens`, probe targets (`Target`, `load_target`), the layer sweep (`sweep_layers`, `ceiling`),
the batched torch probes (`TorchSolver`, `fit_probes`, `fit_logistic_batch`), and the stage itself (`Config`,
`run`, `summarize`, imported lazily since it pulls in the model code).
"""

from __future__ import annotations

from probes.fit import FeatureReader, LayerFit, Sweep, ceiling, fit_layer, select_layer, sweep_layers
from probes.lens import lens_correct, lens_predictions
from probes.linear import DEFAULT_CS, LinearProbe
from probes.targets import (
    TARGETS,
    Answers,
    Target,
    chance,
    load_target,
    probe_scores,
    prompted_answers,
    question_answers,
    question_correct,
    shuffled_labels,
)
from probes.torch_cv import fit_probes
from probes.torch_linear import TorchSolver, fit_logistic_batch

__all__ = [
    "DEFAULT_CS", "TARGETS", "Answers", "FeatureReader", "LayerFit", "LinearProbe", "Sweep", "Target", "TorchSolver",
    "ceiling", "chance", "fit_layer", "fit_logistic_batch", "fit_probes", "lens_correct", "lens_predictions",
    "load_target", "probe_scores", "prompted_answers", "question_answers", "question_correct", "select_layer",
    "shuffled_labels", "sweep_layers",
]

