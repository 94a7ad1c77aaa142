"""Hooked runs against references: HF hidden states, HF logits, a manual log-likelihood, the logit lens."""

from __future__ import annotations

import pytest
import torch

from hooks import forward as cap


def _ids(model, texts):
    return [model.tokenizer(t).input_ids for t in texts]


@pytest.mark.numerics
def test_resid_equals_hf_hidden_states_with_left_padding(tiny_model):
    texts = ["What is the capital of France?", "Hi", "The answer is B"]
    seqs = _ids(tiny_model, texts)
    layers = list(range(tiny_model.n_layers + 1))
    out = cap.hooked_forward(tiny_model, seqs, layers=layers)
    for i, s in enumerate(seqs):  # each row alone, no padding, through plain HF
        with torch.no_grad():
            ref = tiny_model.hf_model(torch.tensor([s], device=tiny_model.device), output_hidden_states=True)
        for layer in range(tiny_model.n_layers):
            assert torch.allclose(out.resid[i, layer], ref.hidden_states[layer][0, -1], atol=1e-4)
        # the last stored layer is resid_post BEFORE the final norm; HF's last hidden state is after it
        normed = tiny_model.bridge.ln_final(out.resid[i, -1][None])[0]
        assert torch.allclose(normed, ref.hidden_states[-1][0, -1], atol=1e-4)


@pytest.mark.numerics
def test_choice_logits_and_lens_last_layer_equal_model_logits(tiny_model):
    seqs = _ids(tiny_model, ["Question one\nAnswer:", "Another longer question here\nAnswer:"])
    choice = torch.tensor([cap.first_token_ids(tiny_model.tokenizer, "x", [" A", " B", " C", " D"]) for s in seqs])
    out = cap.hooked_forward(tiny_model, seqs, layers=list(range(tiny_model.n_layers + 1)), choice_ids=choice)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            ref = tiny_model.hf_model(torch.tensor([s], device=tiny_model.device)).logits[0, -1, choice[i]].cpu()
            assert torch.allclose(out.last_logits[i, 0], ref, atol=1e-4)
    lens = cap.logit_lens(tiny_model, out.resid, choice)
    assert lens.shape == (2, tiny_model.n_layers + 1, 4)
    assert torch.allclose(lens[:, -1], out.last_logits[:, 0], atol=1e-4)
    assert not torch.allclose(lens[:, 0], lens[:, -1])


@pytest.mark.numerics
def test_option_logprob_matches_manual_sum(tiny_model):
    tok = tiny_model.tokenizer
    prefix = tok("The capital of France is").input_ids
    conts = cap.continuation_ids(tok, "The capital of France is", [" Paris", " Rome"])
    seqs = [prefix + c for c in conts]
    out = cap.hooked_forward(tiny_model, seqs, layers=[0], n_cont=[len(c) for c in conts])
    for i, (s, c) in enumerate(zip(seqs, conts, strict=True)):
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model.hf_model(torch.tensor([s], device=tiny_model.device)).logits[0], -1)
        manual = sum(float(logp[len(prefix) - 1 + k, t]) for k, t in enumerate(c))
        assert abs(float(out.logprob_sum[i]) - manual) < 1e-4


def test_hooks_are_removed_after_the_run(tiny_model):
    seqs = _ids(tiny_model, ["abc"])
    cap.hooked_forward(tiny_model, seqs, layers=[0, 1])
    for hp in tiny_model.bridge.hook_dict.values():
        assert not hp._forward_hooks


def test_bad_layer_is_named():
    import pytest

    with pytest.raises(ValueError, match="layer 7 is outside 0..2"):
        cap.resid_hook_names(2, [0, 7])


@pytest.mark.numerics
def test_shared_prefix_pass_equals_full_sequences(tiny_model):
    """Several questions with prefixes of different lengths in one batch: left-padded prefixes through the KV
    cache, explicit positions, right-padded continuations of different lengths."""
    tok = tiny_model.tokenizer
    groups = [
        (tok("What is the capital of France?\nAnswer:").input_ids,
         [tok(t, add_special_tokens=False).input_ids for t in [" Paris", " Rome is big", " no"]]),
        (tok("Q: 2 + 3 =").input_ids, [tok(t, add_special_tokens=False).input_ids for t in [" 5", " 6 or 7"]]),
        (tok("Which is the largest number of the following four, a question with a longer prefix?").input_ids,
         [tok(t, add_special_tokens=False).input_ids for t in [" 12", " 3", " 100", " one hundred and one"]]),
    ]
    layers = list(range(tiny_model.n_layers + 1))
    seqs = [list(p) + list(c) for p, cs in groups for c in cs]
    full = cap.hooked_forward(tiny_model, seqs, layers=layers, n_cont=[len(c) for _, cs in groups for c in cs])
    shared = cap.hooked_forward_shared_prefix(tiny_model, groups, layers=layers)
    assert torch.allclose(shared.resid, full.resid, atol=1e-4, rtol=1e-4)
    assert torch.allclose(shared.logprob_sum, full.logprob_sum, atol=1e-4, rtol=1e-5)
    one = cap.hooked_forward_shared_prefix(tiny_model, groups[:1], layers=layers)  # one question alone
    assert torch.allclose(one.logprob_sum, full.logprob_sum[:3], atol=1e-4, rtol=1e-5)
