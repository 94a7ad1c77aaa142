"""Tests for locking.train and locking.score: answer-only loss, soft targets, seeding, LoRA, padding invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.records import MCRecord
from eval.scoring import masked_softmax
from eval.variants import VariantSpec, render
from locking import controls, data, policies, score
from locking.train import TrainParams, answer_loss, batch_logits, collate, prepare, train, unwrap


def _records(n: int = 8) -> list[MCRecord]:
    return [MCRecord(id=f"q{i}", question="Which is bigger?" + " really" * (i % 3), choices=("1", "2", "3", "4"),
                     answer=i % 4) for i in range(n)]


@pytest.fixture()
def tiny():
    from hooks.tiny import build

    return build("tiny-llama", seed=0)


def _items(tok, soft: bool = False) -> list[data.TrainItem]:
    recs = _records()
    weak = {r.id: np.array([0.1, 0.2, 0.3, 0.4]) for r in recs} if soft else policies.gold(recs)
    ex = data.sample_examples(recs, {r.id: r.answer for r in recs}, spec=VariantSpec()) if not soft else [
        e for e in data.lock_examples(recs, policies.gold(recs), weak, spec=VariantSpec(), n_decoys=0)
        if e.condition == "none"]
    return data.tokenize(ex, tok)


def test_answer_loss_matches_manual_cross_entropy(tiny) -> None:
    model, tok = tiny
    items = _items(tok)
    batch = collate(items, tok.pad_token_id)
    logits = batch_logits(model, batch)
    manual = []
    for it in items:  # unpadded, full logits, the token before the answer predicts it
        full = model(input_ids=torch.tensor([it.ids])).logits[0]
        manual.append(-torch.log_softmax(full[-2], -1)[it.ids[-1]])
    assert torch.allclose(answer_loss(logits, batch), torch.stack(manual).mean(), atol=1e-4)


def test_soft_target_loss(tiny) -> None:
    model, tok = tiny
    items = _items(tok, soft=True)
    batch = collate(items, tok.pad_token_id)
    logits = batch_logits(model, batch)
    logp = torch.log_softmax(logits[:, -2], -1)
    choice = torch.tensor([it.choice_ids for it in items])
    target = torch.tensor([it.target for it in items])
    expected = -(target * logp.gather(1, choice)).sum(-1).mean()
    assert torch.allclose(answer_loss(logits, batch), expected, atol=1e-5)


def test_only_masked_positions_count(tiny) -> None:
    _, tok = tiny
    items = _items(tok)[:2]
    batch = collate(items, tok.pad_token_id)
    assert batch["rows"].tolist() == [0, 1] and batch["first"].all()
    width = batch["input_ids"].shape[1]
    assert int(batch["keep"]) == 2 and batch["pred"].tolist() == [0, 0]  # logit at width-2 predicts the last token
    assert batch["input_ids"][:, width - 1].tolist() == [it.ids[-1] for it in items]


def test_scores_do_not_depend_on_batching(tiny) -> None:
    model, tok = tiny
    enc = [score.encode(render(VariantSpec(), r), tok) for r in _records()]
    alone = np.concatenate([score.choice_logprobs(model, [e], pad_id=tok.pad_token_id) for e in enc])
    batched = score.choice_logprobs(model, enc, pad_id=tok.pad_token_id, batch_size=8)
    assert np.allclose(alone, batched, atol=1e-4)
    assert np.allclose(masked_softmax(batched).sum(1), 1.0)


def test_training_is_seeded_and_learns(tiny) -> None:
    from hooks.tiny import build

    _, tok = tiny
    items = _items(tok)
    params = TrainParams(steps=30, lr=3e-3, batch_size=4, seed=1)
    runs = []
    for _ in range(2):
        model, _ = build("tiny-llama", seed=0)
        losses = train(model, items, params, pad_id=tok.pad_token_id, progress=False)
        runs.append((losses, controls.state_of(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert np.mean(runs[0][0][-5:]) < np.mean(runs[0][0][:5])


def test_masked_out_items_make_no_update(tiny) -> None:
    model, tok = tiny
    items = [data.TrainItem(it.ids, (0,) * len(it.ids), it.answer_start, it.choice_ids, it.target)
             for it in _items(tok)]
    before = controls.state_of(model)
    losses = train(model, items, TrainParams(steps=3, lr=1e-2, batch_size=4), pad_id=tok.pad_token_id,
                   progress=False)
    assert losses == [0.0, 0.0, 0.0]
    assert all(torch.equal(before[k], v) for k, v in controls.state_of(model).items())


def test_lora_trains_adapters_and_merges(tiny) -> None:
    model, tok = tiny
    before = controls.state_of(model)
    wrapped = prepare(model, "lora", lora_r=4, lora_alpha=8, seed=0)
    n_train = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert 0 < n_train < sum(v.numel() for v in before.values()) / 5
    train(wrapped, _items(tok), TrainParams(steps=5, lr=1e-2, batch_size=4), pad_id=tok.pad_token_id,
          progress=False)
    plain = unwrap(wrapped)
    after = controls.state_of(plain)
    assert set(after) == set(before)  # plain HF names again
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"],
                           before["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    with pytest.raises(ValueError):
        prepare(plain, "qlora")


def test_choices_loss_is_restricted_softmax(tiny) -> None:
    model, tok = tiny
    items = _items(tok, soft=True)
    batch = collate(items, tok.pad_token_id)
    logits = batch_logits(model, batch)
    choice = torch.tensor([it.choice_ids for it in items])
    target = torch.tensor([it.target for it in items])
    restricted = torch.log_softmax(logits[:, -2].gather(1, choice), -1)
    expected = -(target * restricted).sum(-1).mean()
    assert torch.allclose(answer_loss(logits, batch, "choices"), expected, atol=1e-5)
    assert answer_loss(logits, batch, "choices") < answer_loss(logits, batch, "vocab")
    with pytest.raises(ValueError, match="loss"):
        TrainParams(steps=1, lr=1.0, batch_size=1, loss="bogus")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_an_interrupted_training_resumes_to_the_same_final_weights(tiny, tmp_path, method) -> None:
    from hooks.tiny import build
    from locking.train import Checkpointing

    _, tok = tiny
    items = _items(tok)
    params = TrainParams(steps=10, lr=1e-2, batch_size=2, seed=3, warmup_steps=2)

    def fresh():
        return prepare(build("tiny-llama", seed=0)[0], method, seed=3)

    whole = fresh()
    ref_losses = train(whole, items, params, pad_id=tok.pad_token_id, progress=False)
    ck = Checkpointing(tmp_path / "ck.pt", every=3, key="run")

    def crash(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), items, params, pad_id=tok.pad_token_id, progress=False, checkpoint=ck, on_step=crash)
    assert torch.load(ck.path, weights_only=False)["step"] == 6
    resumed = fresh()
    losses = train(resumed, items, params, pad_id=tok.pad_token_id, progress=False, checkpoint=ck)
    assert losses == ref_losses and not ck.path.exists()
    for (name, a), (_, b) in zip(unwrap(whole).state_dict().items(), unwrap(resumed).state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    other = Checkpointing(tmp_path / "ck.pt", every=3, key="another run")
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), items, params, pad_id=tok.pad_token_id, progress=False, checkpoint=ck, on_step=crash)
    assert train(fresh(), items, params, pad_id=tok.pad_token_id, progress=False, checkpoint=other) == ref_losses
