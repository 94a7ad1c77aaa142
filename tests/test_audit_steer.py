"""Activation steering on a constructed model where the direction's effect is known exactly.

The model is the tiny Llama with every block's output projections zeroed, so each block adds nothing to the
residual stream: the logits are lm_head(norm(embedding + whatever is added)). A plain torch computation on an
unwrapped copy of the same weights is the reference for the hook added through the bridge.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.steering import Candidate, candidates, mean_difference, steering_vector
from eval.builtin import toy_max
from hooks import tiny
from hooks.capture import plan_rows
from hooks.models import wrap
from hooks.steer import hook_name, steered_choice_logits, steering


def _identity_blocks(seed: int = 0):  # noqa: ANN202 - (hf, tok)
    hf, tok = tiny.build("tiny-llama", seed=seed)
    with torch.no_grad():
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return hf, tok


@pytest.fixture(scope="module")
def models():  # noqa: ANN201 - (bridge model, plain reference model, tokenizer)
    hf, tok = _identity_blocks()
    ref, _ = _identity_blocks()
    return wrap(hf, tok, name="tiny-identity", source="tiny", path=None), ref.eval(), tok


def _reference_logits(ref, ids: torch.Tensor, added: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return ref.lm_head(ref.model.norm(ref.model.embed_tokens(ids) + added)).float()


def test_hook_adds_the_vector_everywhere_or_at_the_last_position(models) -> None:  # noqa: ANN001
    lm, ref, tok = models
    ids = torch.tensor([tok("Which number is largest? Answer:").input_ids])
    v = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        plain = lm.bridge(ids).float()
        assert torch.allclose(plain, _reference_logits(ref, ids, torch.zeros(lm.d_model)), atol=1e-4)
        with steering(lm, 0, v, "all"):
            steered = lm.bridge(ids).float()
        assert torch.allclose(steered, _reference_logits(ref, ids, v), atol=1e-4)
        with steering(lm, 1, v, "last"):
            last = lm.bridge(ids).float()
        assert torch.allclose(last[:, :-1], plain[:, :-1], atol=1e-5)
        assert torch.allclose(last[:, -1], _reference_logits(ref, ids, v)[:, -1], atol=1e-4)
        assert torch.allclose(lm.bridge(ids).float(), plain)  # the hook is gone after the context


def test_a_known_direction_moves_every_answer(models) -> None:  # noqa: ANN001
    """Steering along the unembedding of " C" makes C every question's answer, through the same scoring path the
    audit uses (`hooks.forward.hooked_forward` inside the steering context)."""
    lm, _, _ = models
    rows = plan_rows(lm, toy_max("dev")[:12], ["default"], [], 0)
    choice = torch.tensor([list(r.choice_ids) for r in rows])
    seqs = [r.ids for r in rows]
    c_token = rows[0].choice_ids[2]
    direction = lm.hf_model.lm_head.weight[c_token].detach().numpy()
    plain = steered_choice_logits(lm, seqs, choice)
    for positions in ("all", "last"):
        vec = steering_vector(direction, 50.0, 1.0)
        logits = steered_choice_logits(lm, seqs, choice, layer=0, vector=vec, positions=positions, batch_size=5)
        assert (logits.argmax(axis=1) == 2).all()
        assert (logits[:, 2] - plain[:, 2] > 0).all()
    with pytest.raises(ValueError, match="layer"):
        hook_name(2, lm.n_layers)
    with pytest.raises(ValueError, match="shape"):
        with steering(lm, 0, np.zeros(3)):
            pass


def test_direction_estimation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 5))
    right = np.arange(20) % 3 == 0
    assert np.allclose(mean_difference(x, right), x[right].mean(0) - x[~right].mean(0))
    with pytest.raises(ValueError, match="both groups"):
        mean_difference(x, np.ones(20, bool))
    d = np.array([3.0, 4.0])
    assert np.linalg.norm(steering_vector(d, 2.0, 0.5)) == pytest.approx(1.0)
    assert not steering_vector(d, 2.0, 0.0).any()
    cands = candidates([0, 1], ["all", "last"], [0.0, 1.0, 2.0])
    assert cands[0] == Candidate(-1, "all", 0.0) and cands[0].key() == "none" and len(cands) == 1 + 2 * 2 * 2
