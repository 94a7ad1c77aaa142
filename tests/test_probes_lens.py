"""Scoring from arrays (masked argmax, per-question option argmax, logit lens) and the lens numerics on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from eval.scoring import masked_argmax
from hooks.capture import CaptureConfig, capture
from hooks.store import Store
from probes.lens import lens_correct, lens_predictions


def test_lens_correct_per_layer():
    lens = np.zeros((2, 3, 4))
    lens[0, :, 2] = 1.0  # row 0 always says 2
    lens[1, 0, 0], lens[1, 1, 3], lens[1, 2, 1] = 1.0, 1.0, 1.0  # row 1 says 0, 3 (masked: 3 choices), 1
    labels, n_choices = np.array([2, 1]), np.array([4, 3])
    assert lens_predictions(lens, n_choices).tolist() == [[2, 2, 2], [0, 0, 1]]
    assert lens_correct(lens, labels, n_choices).tolist() == [[True, True, True], [False, False, True]]


@pytest.mark.numerics
def test_lens_last_layer_is_the_models_answer_logits(tiny_model, tmp_path):
    cfg = CaptureConfig(model="tiny-llama", task="capitals", n=16, variants=("default",), batch_size=8)
    with Store(capture(cfg, tmp_path / "a.h5", model=tiny_model)) as s:
        m = s.mask(lettered=True)
        lens, logits = s.array("lens_logits", m), s.array("answer_logits", m)
        labels, nc = s.rows["label"][m], s.rows["n_choices"][m]
    np.testing.assert_allclose(lens[:, -1], logits, rtol=1e-4, atol=1e-4)
    assert (lens_correct(lens, labels, nc)[:, -1] == (masked_argmax(logits, nc) == labels)).all()
