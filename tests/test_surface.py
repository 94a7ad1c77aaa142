"""Tests for probes.surface (the surface-cue control's features) and its fit through probes.fit.fit_layer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from eval.records import MCRecord
from probes.fit import fit_layer
from probes.surface import TOKEN_PATTERN, option_texts, surface_features
from probes.targets import Target


def records(n: int, *, longest_is_gold: bool) -> list[MCRecord]:
    """n questions of 4 options; with `longest_is_gold` the gold option is the longest, else one word like all."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        gold = int(rng.integers(4))
        choices = [f"word{rng.integers(50)}" for _ in range(4)]
        if longest_is_gold:
            choices[gold] = "the quite long and detailed correct sounding answer"
        out.append(MCRecord(f"q{i}", f"question {i}?", tuple(choices), gold))
    return out


def option_target(recs: list[MCRecord]) -> tuple[Target, np.ndarray]:
    """The option target of `recs` shown in their original order (one row per option), and each row's order."""
    qid, y, opt, order = [], [], [], []
    for r in recs:
        for k in range(len(r.choices)):
            qid.append(r.id)
            y.append(int(k == r.answer))
            opt.append(k)
            order.append(list(range(len(r.choices))))
    n = len(qid)
    order_arr = np.array(order)
    t = Target("option", np.arange(n), np.array(y), np.array(qid), np.full(n, 4), order_arr, np.array(opt),
               np.array([r.answer for r in recs for _ in r.choices]))
    return t, order_arr


def test_option_texts_follow_the_displayed_order() -> None:
    rec = MCRecord("q", "Which?", ("red", "green", "blue"), 1)
    order = np.array([[2, 0, 1], [2, 0, 1], [2, 0, 1]])
    assert option_texts([rec], np.array(["q"] * 3), order, np.array([0, 1, 2])) == ["blue", "red", "green"]
    with pytest.raises(ValueError, match="question 'x' of the store is not among"):
        option_texts([rec], np.array(["x"]), order[:1], np.array([0]))
    with pytest.raises(ValueError, match="row has no option"):
        option_texts({"q": rec}, np.array(["q"]), order[:1], np.array([-1]))


def test_features_are_lengths_and_a_train_vocabulary() -> None:
    texts = ["Red apple", "green apple", "blue sky", "unseen word"]
    train = np.array([True, True, True, False])
    f = surface_features(texts, np.array([2, 2, 2, 3]), np.array([9, 11, 8, 11]), train, min_df=1)
    ref = CountVectorizer(lowercase=True, binary=True, token_pattern=TOKEN_PATTERN, min_df=1).fit(texts[:3])
    assert f.names == ["n_tokens", "n_chars", *(f"word:{w}" for w in ref.get_feature_names_out())]
    assert np.array_equal(f.X[:, 2:], ref.transform(texts).toarray())
    assert f.X[:, :2].tolist() == [[2, 9], [2, 11], [2, 8], [3, 11]]
    assert f.X[3, 2:].sum() == 0  # words never seen in a train option are not features
    only_lengths = surface_features(texts, np.ones(4), np.ones(4), train, min_df=5)
    assert only_lengths.names == ["n_tokens", "n_chars"] and "bag of 0 words" in only_lengths.describe()
    with pytest.raises(ValueError, match="one entry per option row"):
        surface_features(texts, np.ones(3), np.ones(4), train)


@pytest.mark.parametrize("longest_is_gold", [True, False])
def test_surface_probe_finds_a_surface_cue_and_only_then(longest_is_gold: bool) -> None:
    recs = records(80, longest_is_gold=longest_is_gold)
    target, order = option_target(recs)
    texts = option_texts(recs, target.groups, order, target.option_index)
    train = np.isin(target.groups, [f"q{i}" for i in range(40)])
    n_chars = np.array([len(t) for t in texts])
    feats = surface_features(texts, np.array([len(t.split()) for t in texts]), n_chars, train)
    fit = fit_layer(target, feats.X, train)
    acc = fit.test_correct.mean()
    assert len(fit.test_ids) == 40
    if longest_is_gold:
        assert acc == 1.0  # the gold option's length gives it away
    else:
        assert acc < 0.5  # one random word per option: nothing to read (chance 0.25)
