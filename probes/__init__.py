"""Reading answers out of activations: linear probes (option and letter targets), the logit lens, controls,
and the `probe` stage that writes results.json.

Public API: `LinearProbe` (fit / predict_proba / decision_function / score / save / load), the pure scoring
functions of `probes.lens`, probe targets (`Target`, `load_target`), the layer sweep (`sweep_layers`, `ceiling`),
the batched torch probes (`TorchSolver`, `fit_probes`, `fit_logistic_batch`), and the stage itself (`Config`,
`run`, `summarize`, imported lazily since it pulls in the model code).
"""

from __future__ import annotations

from typing import Any

from probes.fit import FeatureReader, LayerFit, Sweep, ceiling, fit_layer, select_layer, sweep_layers
from probes.lens import group_argmax, lens_correct, lens_predictions, masked_argmax, option_correct
from probes.linear import DEFAULT_CS, LinearProbe
from probes.targets import TARGETS, Target, chance, load_target, probe_scores, question_correct, shuffled_labels
from probes.torch_cv import fit_probes
from probes.torch_linear import TorchSolver, fit_logistic_batch

_RUNNER = ("Config", "run", "summarize", "compute", "prompted_accuracy", "lens_accuracy", "output_dir")

__all__ = [
    "DEFAULT_CS", "TARGETS", "FeatureReader", "LayerFit", "LinearProbe", "Sweep", "Target", "TorchSolver", "ceiling",
    "chance", "fit_layer", "fit_logistic_batch", "fit_probes", "group_argmax", "lens_correct", "lens_predictions", "load_target", "masked_argmax",
    "option_correct", "probe_scores", "question_correct", "select_layer", "shuffled_labels", "sweep_layers",
    *_RUNNER,
]


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from probes import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")
