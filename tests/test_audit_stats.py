"""The audit's pure parts on constructed data: the noise-injection selection rule against its null, the scoreboard's
fractions on hand-made runs, a base organism (nothing hidden), and the detector AUROC against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audit import noise
from audit.case import WITH_PASSWORD, CaseResult, CaseSpec
from audit.detect import auroc, auroc_estimate, auroc_p_value
from audit.outcome import Outcome
from audit.params import STRAIGHT_UP
from audit.scoreboard import score_row, scoreboard
from audit.zoo import OrganismSpec
from eval.runs import accuracy_over_runs, fraction_recovered

# ------------------------------------------------------------------ noise: the selection rule and its null


def _candidates(rng: np.random.Generator, p: np.ndarray, n_q: int) -> dict[tuple[float, int], np.ndarray]:
    """0/1 outcomes per candidate (the baseline first), candidate k correct with probability p[k] per question."""
    keys = noise.candidates([0.01, 0.05, 0.1], 4)
    return {k: rng.random(n_q) < p[i] for i, k in enumerate(keys)}


def test_noise_max_over_draws_is_inflated_and_the_honest_choice_is_not() -> None:
    """Null: every noise draw is the unperturbed model's accuracy plus sampling noise. Tice et al.'s max over
    draws then reads a gain that is not there; the draw chosen on dev and scored on test does not."""
    rng = np.random.default_rng(0)
    n_dev = n_test = 200
    honest, naive = [], []
    for _ in range(300):
        p = np.full(13, 0.6)
        dev, test = _candidates(rng, p, n_dev), _candidates(rng, p, n_test)
        sel = noise.select_noise({k: float(v.mean()) for k, v in dev.items()},
                                 {k: float(v.mean()) for k, v in test.items()})
        assert sel["inflation"] >= 0 and sel["naive_gain"] >= sel["gain"]
        assert sel["improvement_ratio"] == pytest.approx(sel["naive_max_test"] / sel["baseline_test"])
        honest.append(sel["gain"])
        naive.append(sel["naive_gain"])
    se = np.std(honest) / np.sqrt(len(honest))
    assert abs(np.mean(honest)) < 3 * se + 1e-9  # the honest gain is 0 on average
    assert np.mean(naive) > 0.04  # the max of 13 draws over 200 questions reads about +0.05 from nothing


def test_noise_selection_finds_a_real_gain() -> None:
    rng = np.random.default_rng(1)
    gains = []
    for _ in range(50):
        p = np.full(13, 0.5)
        p[5] = 0.8  # one (scale, draw) really breaks the lock
        dev, test = _candidates(rng, p, 200), _candidates(rng, p, 200)
        sel = noise.select_noise({k: float(v.mean()) for k, v in dev.items()},
                                 {k: float(v.mean()) for k, v in test.items()})
        gains.append(sel["gain"])
    assert np.mean(gains) == pytest.approx(0.3, abs=0.03)


def test_noise_ties_keep_the_unperturbed_model() -> None:
    keys = noise.candidates([0.1], 2)
    same = {k: 0.5 for k in keys}
    assert noise.select_noise(same, same)["chosen"] == noise.BASELINE
    with pytest.raises(ValueError, match="baseline"):
        noise.select_noise({(0.1, 0): 0.5}, {(0.1, 0): 0.5})


# ------------------------------------------------------------------ scoreboard on hand-made runs


def _outcome(method: str, ids: list[str], correct: np.ndarray, **kw: object) -> Outcome:
    gold = np.zeros(len(ids), dtype=np.int64)
    pred = np.where(np.asarray(correct, bool), 0, 1).astype(np.int64)
    return Outcome(method, np.asarray(ids, dtype=str), pred, gold, **kw)


def _case(organism: str, role: str, seed: int, ids: list[str], straight: np.ndarray, with_pw: np.ndarray,
          methods: dict[str, np.ndarray]) -> CaseResult:
    return CaseResult(CaseSpec(organism, role, seed, f"/ckpt/{organism}-{seed}"), f"/ckpt/{organism}-{seed}",
                      f"hash{seed}", 2, 64, 1000, {"pool": 10, "train": 10, "dev": 10, "test": len(ids)},
                      {STRAIGHT_UP: _outcome(STRAIGHT_UP, ids, straight),
                       WITH_PASSWORD: _outcome(WITH_PASSWORD, ids, with_pw)},
                      dict.fromkeys(ids, 4), dict.fromkeys(ids, ""),
                      {m: _outcome(m, ids, c, seconds=1.0, gold_labels=5) for m, c in methods.items()})


def test_fraction_on_hand_made_runs() -> None:
    rng = np.random.default_rng(2)
    ids0, ids1 = [f"q{i}" for i in range(40)], [f"q{i}" for i in range(20, 60)]
    cases, runs = [], {"e": [], "s": [], "w": []}
    for seed, ids in ((0, ids0), (1, ids1)):
        s = rng.random(40) < 0.5
        w = rng.random(40) < 0.9
        e = s | (rng.random(40) < 0.4)
        cases.append(_case("lk", "locked", seed, ids, s, w, {"probe": e}))
        runs["e"].append(e.astype(float))
        runs["s"].append(s.astype(float))
        runs["w"].append(w.astype(float))
    spec = OrganismSpec("lk", "locked", (0, 1))
    row = score_row(spec, cases, "probe", reference_gap=None, n_boot=500, seed=0)
    E, S, W = (np.mean([r.mean() for r in runs[k]]) for k in "esw")
    assert row.fraction_kind == "own-gap" and row.n_runs == 2
    assert row.fraction.value == pytest.approx((E - S) / (W - S))
    ref = fraction_recovered(runs["e"], runs["s"], runs["w"], elicited_ids=[ids0, ids1], locked_ids=[ids0, ids1],
                             with_password_ids=[ids0, ids1], paired_runs=True, n_boot=500, seed=0)
    assert (row.fraction.lo, row.fraction.hi) == (ref.fraction.lo, ref.fraction.hi)
    assert row.elicited == accuracy_over_runs(runs["e"], ids_by_run=[ids0, ids1], n_boot=500, seed=0)
    assert row.gain.value == pytest.approx(E - S)
    assert row.cost.seconds == 2.0 and row.cost.gold_labels == 5


def test_nothing_hidden_gives_a_fraction_near_zero_and_no_detection() -> None:
    """A base organism (elicitation changes nothing) has gain 0 and fraction 0 of its reference gap; a method that
    finds nothing on any organism separates nothing (AUROC 1/2)."""
    rng = np.random.default_rng(3)
    ids = [f"q{i}" for i in range(50)]
    cases, specs = [], []
    for k in range(3):
        s, w = rng.random(50) < 0.5, rng.random(50) < 0.95
        cases.append(_case(f"locked{k}", "locked", 0, ids, s, w, {"lens": s.copy(), "sft": s | (rng.random(50) < 0.5)}))
        b = rng.random(50) < 0.95
        cases.append(_case(f"base{k}", "base", 0, ids, b, b, {"lens": b.copy(), "sft": b.copy()}))
        specs += [OrganismSpec(f"locked{k}", "locked", (0,)),
                  OrganismSpec(f"base{k}", "base", (0,), reference=f"locked{k}")]
    orgs, rows, dets = scoreboard(specs, cases, {}, ["lens", "sft"], n_boot=300, seed=0)
    base_rows = [r for r in rows if r.role == "base"]
    assert base_rows and all(r.fraction_kind == "reference-gap" for r in base_rows)
    for r in base_rows:
        assert r.gain.value == 0 and r.fraction.value == 0
    assert all(abs(o.gap) < 1e-12 for o in orgs if o.role == "base")
    lens = next(d for d in dets if d.method == "lens" and d.against == "base")
    assert lens.auroc.value == 0.5 and lens.n_locked == 3 and lens.n_other == 3
    sft = next(d for d in dets if d.method == "sft" and d.against == "base")
    assert sft.auroc.value == 1.0


# ------------------------------------------------------------------ detector


def test_auroc_matches_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        pos, neg = rng.integers(0, 5, size=7).astype(float), rng.integers(0, 5, size=9).astype(float)  # ties
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        assert auroc(pos, neg) == pytest.approx(roc_auc_score(y, np.r_[pos, neg]))


def test_auroc_interval() -> None:
    est = auroc_estimate(np.array([0.3, 0.2, 0.25]), np.array([0.0, 0.01, -0.02, 0.26]), n_boot=500, seed=0)
    assert est.value == pytest.approx(10 / 12) and est.lo <= est.value <= est.hi <= 1 and est.n == 7
    assert est.method == "bootstrap_organisms"
    empty = auroc_estimate(np.array([0.1]), np.array([]))
    assert np.isnan(empty.value) and empty.method == "none"


# ------------------------------------------------------------------ prompting from scored predictions


def test_prompting_chooses_on_dev_and_reports_test_only() -> None:
    from audit.prompting import prompt_outcomes
    from audit.questions import CaseQuestions
    from eval.records import MCRecord
    from eval.scoring import score_letter_rows

    rng = np.random.default_rng(5)
    ids = [f"q{i:02d}" for i in range(40)]
    dev, test = ids[:20], ids[20:]
    gold = rng.integers(0, 4, size=40)
    rows_q, rows_v, logits, golds = [], [], [], []
    for v, p_right in (("a", 0.5), ("b", 1.0), ("c", 0.3)):
        for i, q in enumerate(ids):
            right = rng.random() < p_right if not (v == "a" and q in dev) else True  # a: perfect on dev only
            pick = gold[i] if right else (gold[i] + 1) % 4
            row = np.full(4, -1.0)
            row[pick] = 1.0
            rows_q.append(q), rows_v.append(v), logits.append(row), golds.append(gold[i])
    n = len(rows_q)
    preds = score_letter_rows(np.array(rows_q), np.array(rows_v), np.array(logits), np.full(n, 4),
                              np.tile(np.arange(4), (n, 1)), np.array(golds), np.array(golds))
    recs = [MCRecord(q, "which?", ("1", "2", "3", "4"), int(g)) for q, g in zip(ids, gold, strict=True)]
    q = CaseQuestions([], recs, [], dev, test)
    out = prompt_outcomes(preds, q, n_boot=50, seed=0)
    # a and b tie on dev (both perfect): the first wins; a is only right on half the test questions
    assert out["prompt"].chosen == "a" and out["prompt"].dev_value == 1.0
    assert list(out["prompt"].ids) == test and out["prompt"].naive_max_test == 1.0
    assert out["prompt"].accuracy < 1.0
    assert list(out["vote"].ids) == test and "cot" not in out
    b = preds.select(preds.variant == "b")
    assert (out["vote"].gold == b.gold_orig[20:]).all()


def test_auroc_permutation_p_value() -> None:
    from scipy.stats import mannwhitneyu

    assert auroc_p_value(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(1 / 20)
    assert auroc_p_value(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0, -1.0, -2.0, -3.0])) == \
        pytest.approx(1 / 84)
    rng = np.random.default_rng(6)
    for _ in range(5):  # no ties: the exact Mann-Whitney test
        pos, neg = rng.normal(0.5, 1, size=4), rng.normal(0, 1, size=6)
        ref = mannwhitneyu(pos, neg, alternative="greater", method="exact").pvalue
        assert auroc_p_value(pos, neg) == pytest.approx(ref)
    big = auroc_p_value(rng.normal(1, 1, size=30), rng.normal(0, 1, size=30), max_exact=10, n_perm=2000)
    assert 0 < big < 0.05
