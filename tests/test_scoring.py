"""Tests for eval.scoring on hand-built store arrays (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from eval import stats
from eval.scoring import (
    COT,
    LETTER,
    OPTION,
    OPTION_NORM,
    Predictions,
    concat,
    group_argmax,
    masked_argmax,
    option_correct,
    prediction_matrix,
    score_generated,
    score_letter_rows,
    score_option_rows,
    score_store,
    softmax_original,
    to_original,
)

NAN = np.nan
IDENT = [0, 1, 2, 3]
ROT1 = [3, 0, 1, 2]  # displayed position -> original index (rotate:1)


def test_masked_argmax_ignores_nan_and_padding_and_breaks_ties_low() -> None:
    s = np.array([[0.1, 0.9, 0.3, 5.0], [NAN, 0.2, 0.1, NAN], [1.0, 1.0, 0.0, 0.0], [NAN, NAN, NAN, NAN]])
    assert masked_argmax(s, np.array([3, 4, 4, 4])).tolist() == [1, 1, 0, -1]


def test_to_original_maps_through_order_and_keeps_missing() -> None:
    order = np.array([ROT1, ROT1, [2, 0, 1, -1]])
    assert to_original(np.array([0, -1, 2]), order).tolist() == [3, -1, 1]


def test_softmax_original_reindexes_by_original_choice() -> None:
    s = np.array([[np.log(1.0), np.log(3.0), NAN]])  # 2 valid choices, third is padding
    p = softmax_original(s, np.array([2]), np.array([[1, 0, -1]]))
    assert p[0, :2] == pytest.approx([0.75, 0.25])
    assert np.isnan(p[0, 2])
    assert np.isnan(softmax_original(np.array([[0.0, NAN]]), np.array([2]), np.array([[0, 1]]))).all()


def letter_case() -> dict[str, np.ndarray]:
    # q1 default: argmax pos 2 -> orig 2 (gold 2, correct); q1 rotate:1: pos 0 -> orig 3 (gold orig 2, wrong)
    # q2 default: 3 choices (pos 3 is NaN padding) argmax pos 1 -> orig 1 (gold 0, wrong)
    # q2 rotate:1 (3 choices: order [2, 0, 1]) argmax pos 1 -> orig 0 (gold 0, correct)
    return {
        "question_id": np.array(["q1", "q1", "q2", "q2"]),
        "variant_id": np.array(["default", "rotate:1", "default", "rotate:1"]),
        "answer_logits": np.array([[0.0, 1.0, 2.0, -1.0], [3.0, 1.0, 2.0, 0.0], [0.0, 2.0, 1.0, NAN],
                                   [0.5, 0.9, 0.1, NAN]]),
        "n_choices": np.array([4, 4, 3, 3]),
        "order": np.array([IDENT, ROT1, [0, 1, 2, -1], [2, 0, 1, -1]]),
        "gold_pos": np.array([2, 3, 0, 1]),
        "gold_orig": np.array([2, 2, 0, 0]),
    }


def test_letter_rows_predictions_in_original_order() -> None:
    c = letter_case()
    p = score_letter_rows(c["question_id"], c["variant_id"], c["answer_logits"], c["n_choices"], c["order"],
                          c["gold_pos"], c["gold_orig"])
    assert p.pred_pos.tolist() == [2, 0, 1, 1]
    assert p.pred_orig.tolist() == [2, 3, 1, 0]
    assert p.correct.tolist() == [True, False, False, True]
    assert (p.scoring == LETTER).all() and p.variant.tolist() == p.base_variant.tolist()
    assert p.probs.shape == (4, 4)
    assert np.nansum(p.probs, axis=1) == pytest.approx([1, 1, 1, 1])
    # q1 rotate:1 has its largest weight on original choice 3 (displayed first)
    assert int(np.nanargmax(p.probs[1])) == 3


def test_letter_rows_reject_inconsistent_gold() -> None:
    c = letter_case()
    with pytest.raises(ValueError, match="gold_pos / gold_orig"):
        score_letter_rows(c["question_id"], c["variant_id"], c["answer_logits"], c["n_choices"], c["order"],
                          c["gold_pos"], np.array([2, 2, 0, 1]))


def test_letter_rows_missing_when_all_nan() -> None:
    p = score_letter_rows(np.array(["q"]), np.array(["default"]), np.full((1, 4), NAN), np.array([4]),
                          np.array([IDENT]), np.array([1]), np.array([1]))
    assert p.pred_orig.tolist() == [-1] and p.missing.tolist() == [True] and not p.correct[0]


def option_case() -> dict[str, np.ndarray]:
    # one question q1 (gold original 0) under "option" (identity) and "option+rotate:1" (order ROT1),
    # rows shuffled as a length-sorted store would hold them.
    # identity: logprobs by displayed pos [-10, -4, -9, -12], nchars [20, 2, 9, 12]
    #   acc -> pos 1 (orig 1, wrong); per char [-0.5, -2, -1, -1] -> pos 0 (orig 0, right)
    # rotate:1 displays originals [3, 0, 1, 2]: logprobs [-3, -10, -4, -9], nchars [1, 20, 2, 9]
    #   acc -> pos 0 (orig 3); per char [-3, -0.5, -2, -1] -> pos 1 (orig 0, right)
    rows = [
        ("q1", "option", 1, -4.0, 2), ("q1", "rotate:1+option", 2, -4.0, 2), ("q1", "option", 3, -12.0, 12),
        ("q1", "option", 0, -10.0, 20), ("q1", "rotate:1+option", 0, -3.0, 1), ("q1", "option", 2, -9.0, 9),
        ("q1", "rotate:1+option", 3, -9.0, 9), ("q1", "rotate:1+option", 1, -10.0, 20),
    ]
    q, v, j, lp, nch = (np.array(x) for x in zip(*rows, strict=True))
    order = np.array([ROT1 if name.startswith("rotate") else IDENT for name in v])
    return {"question_id": q, "variant_id": v, "option_index": j, "option_logprob": lp, "option_nchars": nch,
            "n_choices": np.full(len(q), 4), "order": order, "answer_original": np.zeros(len(q), dtype=int),
            "label": (order[np.arange(len(q)), j] == 0).astype(int)}


def option_args(c: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (c["question_id"], c["variant_id"], c["option_index"], c["option_logprob"], c["option_nchars"],
            c["n_choices"], c["order"], c["answer_original"])


def test_option_rows_acc_and_acc_norm() -> None:
    c = option_case()
    acc = score_option_rows(*option_args(c))
    assert acc.variant.tolist() == ["option", "rotate:1+option"]
    assert acc.pred_pos.tolist() == [1, 0] and acc.pred_orig.tolist() == [1, 3]
    assert acc.gold_pos.tolist() == [0, 1] and acc.correct.tolist() == [False, False]
    assert (acc.scoring == OPTION).all()
    norm = score_option_rows(*option_args(c), normalize=True)
    assert norm.variant.tolist() == ["option[norm]", "rotate:1+option[norm]"]
    assert norm.base_variant.tolist() == ["option", "rotate:1+option"]
    assert norm.pred_pos.tolist() == [0, 1] and norm.pred_orig.tolist() == [0, 0]
    assert norm.correct.all() and (norm.scoring == OPTION_NORM).all()
    # probabilities by ORIGINAL choice: softmax of the logprobs re-indexed through the order
    def softmax(x: list[float]) -> np.ndarray:
        return np.exp(x) / np.exp(x).sum()

    assert acc.probs[0] == pytest.approx(softmax([-10, -4, -9, -12]))
    assert acc.probs[1] == pytest.approx(softmax([-10, -4, -9, -3]))


def test_option_rows_incomplete_group_is_missing() -> None:
    c = option_case()
    keep = ~((c["variant_id"] == "option") & (c["option_index"] == 3))
    p = score_option_rows(*(a[keep] for a in option_args(c)))
    assert p.pred_orig.tolist() == [-1, 3]
    lp = c["option_logprob"].copy()
    lp[0] = NAN
    args = list(option_args(c))
    args[3] = lp
    assert score_option_rows(*args).pred_orig.tolist() == [-1, 3]


def test_option_rows_reject_bad_input() -> None:
    c = option_case()
    args = list(option_args(c))
    dup = [np.concatenate([a, a[:1]]) for a in args]
    with pytest.raises(ValueError, match="duplicate"):
        score_option_rows(*dup)
    bad = list(args)
    bad[2] = np.where(np.arange(len(args[2])) == 0, -1, args[2])
    with pytest.raises(ValueError, match="option_index"):
        score_option_rows(*bad)
    bad = list(args)
    bad[7] = np.where(np.arange(len(args[7])) == 0, 1, args[7])
    with pytest.raises(ValueError, match="gold_orig"):
        score_option_rows(*bad)
    zero = list(args)
    zero[4] = np.zeros_like(args[4])
    with pytest.raises(ValueError, match="nchars"):
        score_option_rows(*zero, normalize=True)


def store_case() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """A mixed store: the lettered rows of letter_case() and the option rows of option_case() for q1."""
    lc, oc = letter_case(), option_case()
    n_l, n_o = len(lc["question_id"]), len(oc["question_id"])
    rows = {
        "question_id": np.concatenate([oc["question_id"][:3], lc["question_id"], oc["question_id"][3:]]),
        "variant_id": np.concatenate([oc["variant_id"][:3], lc["variant_id"], oc["variant_id"][3:]]),
        "option_index": np.concatenate([oc["option_index"][:3], np.full(n_l, -1), oc["option_index"][3:]]),
        "label": np.concatenate([oc["label"][:3], lc["gold_pos"], oc["label"][3:]]),
        "n_choices": np.concatenate([oc["n_choices"][:3], lc["n_choices"], oc["n_choices"][3:]]),
        "order": np.concatenate([oc["order"][:3], lc["order"], oc["order"][3:]]),
    }
    # q1's gold is original 2 in letter_case; make the option rows agree
    rows["answer_original"] = np.concatenate([np.full(3, 2), lc["gold_orig"], np.full(n_o - 3, 2)])
    rows["label"] = np.where(rows["option_index"] >= 0,
                             (rows["order"][np.arange(len(rows["order"])), rows["option_index"].clip(0)] == 2),
                             rows["label"]).astype(int)
    answer_logits = np.full((n_l + n_o, 4), NAN)
    answer_logits[3 : 3 + n_l] = lc["answer_logits"]
    lp = np.concatenate([oc["option_logprob"][:3], np.full(n_l, NAN), oc["option_logprob"][3:]])
    nch = np.concatenate([oc["option_nchars"][:3], np.zeros(n_l, dtype=int), oc["option_nchars"][3:]])
    return rows, answer_logits, lp, nch


def test_score_store_mixes_letter_and_option_metrics() -> None:
    rows, logits, lp, nch = store_case()
    p = score_store(rows, logits, lp, nch)
    assert p.metrics() == ["default", "rotate:1", "option", "rotate:1+option", "option[norm]",
                           "rotate:1+option[norm]"]
    assert len(p) == 4 + 2 + 2
    assert len(score_store(rows, logits, lp, nch, acc_norm=False)) == 6
    by = {(q, v): (int(o), bool(c)) for q, v, o, c in zip(p.question_id, p.variant, p.pred_orig, p.correct,
                                                           strict=True)}
    assert by[("q1", "default")] == (2, True)
    assert by[("q1", "option")] == (1, False)
    assert by[("q1", "option[norm]")] == (0, False)
    with pytest.raises(ValueError, match="lacks"):
        score_store({k: v for k, v in rows.items() if k != "order"}, logits, lp, nch)


def test_prediction_matrix_feeds_majority_vote_and_agreement() -> None:
    rows, logits, lp, nch = store_case()
    m = prediction_matrix(score_store(rows, logits, lp, nch))
    assert m.question_ids == ["q1", "q2"]
    assert m.variants[:2] == ["default", "rotate:1"]
    # q2 has no option rows: its option cells are missing
    assert m.pred[1].tolist() == [1, 0, -1, -1, -1, -1]
    assert m.present[1].tolist() == [True, True, False, False, False, False]
    assert m.pred[0].tolist() == [2, 3, 1, 3, 0, 0]
    assert m.gold.tolist() == [2, 0] and m.n_choices.tolist() == [4, 3]
    assert m.correct[0].tolist() == [True, False, False, False, False, False]
    assert m.probs.shape == (2, 6, 4)
    agree = stats.agreement(m.pred)
    assert agree == pytest.approx([2 / 6, 0.5])
    vote = stats.majority_vote(m.pred, m.n_choices, scores=np.nan_to_num(m.probs))
    assert vote[0] in (0, 3) and vote[1] in (0, 1)
    sub = prediction_matrix(score_store(rows, logits, lp, nch), questions=["q2"], variants=["rotate:1"])
    assert sub.pred.tolist() == [[0]] and sub.correct.tolist() == [[True]]


def test_prediction_matrix_rejects_conflicting_gold_and_duplicates() -> None:
    c = letter_case()
    p = score_letter_rows(c["question_id"], c["variant_id"], c["answer_logits"], c["n_choices"], c["order"],
                          c["gold_pos"], c["gold_orig"])
    with pytest.raises(ValueError, match="more than once"):
        prediction_matrix(concat([p, p]))
    other = Predictions(**{**{k: getattr(p, k) for k in p.__dataclass_fields__},
                           "gold_orig": np.array([2, 2, 0, 1]), "gold_pos": np.array([2, 3, 0, 2])})
    with pytest.raises(ValueError, match="gold answer"):
        prediction_matrix(other)


def test_concat_pads_probs() -> None:
    a = score_letter_rows(np.array(["q"]), np.array(["v"]), np.array([[1.0, 0.0]]), np.array([2]),
                          np.array([[0, 1]]), np.array([0]), np.array([0]))
    c = letter_case()
    b = score_letter_rows(c["question_id"], c["variant_id"], c["answer_logits"], c["n_choices"], c["order"],
                          c["gold_pos"], c["gold_orig"])
    both = concat([a, b])
    assert both.probs.shape == (5, 4) and np.isnan(both.probs[0, 2:]).all()
    assert both.select(np.array([0])).question_id.tolist() == ["q"]


def test_generated_answers_are_one_hot_in_original_order() -> None:
    order = np.array([[1, 0, 2], [0, 1, 2], [2, 0, 1]])
    p = score_generated(np.array(["q1", "q2", "q3"]), np.array(["cot"] * 3), np.array([0, -1, 2]),
                        np.array([3, 3, 3]), order, np.array([0, 1, 1]), np.array([1, 1, 0]))
    assert p.pred_orig.tolist() == [1, -1, 1] and p.correct.tolist() == [True, False, False]
    assert p.missing.tolist() == [False, True, False] and set(p.scoring.tolist()) == {COT}
    np.testing.assert_allclose(p.probs[0], [0, 1, 0], atol=1e-12)
    assert np.isnan(p.probs[1]).all()
    with pytest.raises(ValueError, match="pred_pos"):
        score_generated(np.array(["q1"]), np.array(["cot"]), np.array([3]), np.array([3]), order[:1],
                        np.array([0]), np.array([1]))


def test_masked_argmax_respects_n_choices_and_nan():
    s = np.array([[1.0, 5.0, 2.0, 9.0], [np.nan, 0.0, -1.0, np.nan], [np.nan] * 4, [3.0, 3.0, 1.0, 0.0]])
    assert masked_argmax(s).tolist() == [3, 1, -1, 0]
    assert masked_argmax(s, np.array([3, 4, 4, 2])).tolist() == [1, 1, -1, 0]


def test_group_argmax_and_option_correct():
    scores = np.array([0.1, 0.9, 0.3, np.nan, 2.0, 2.0, -1.0])
    groups = np.array(["b", "b", "b", "a", "a", "a", "c"])
    labels = np.array([0, 1, 0, 1, 0, 0, 1])
    uniq, best = group_argmax(scores, groups)
    assert uniq.tolist() == ["a", "b", "c"] and best.tolist() == [4, 1, 6]  # NaN loses, ties -> first row
    ids, correct = option_correct(scores, labels, groups)
    assert ids.tolist() == ["a", "b", "c"] and correct.tolist() == [False, True, True]
