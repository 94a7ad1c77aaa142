"""The report's paired analysis (report.gap, report.findings) on constructed outcomes with known answers, checked
against the statistics it wires (eval.paired, eval.runs) and against statsmodels references."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from eval.paired import paired_gap, select_best_of_k
from eval.runs import fraction_recovered
from report.findings import findings
from report.gap import Settings, analyse, holm
from report.outcomes import REFERENCE, STRAIGHT, UNLOCK, Outcome

ST = Settings(n_boot=300, n_perm=200, seed=4)
N = 120
IDS = np.array([f"q{i:03d}" for i in range(N)])
ROLES = np.where(np.arange(N) < 60, "dev", "test")


def outcome(key: str, family: str, values: np.ndarray, *, run: str = "eval", ids: np.ndarray = IDS,
            roles: np.ndarray = ROLES, dev_score: float | None = None, by_run: tuple = ()) -> Outcome:
    return Outcome(key, key, family, ids, np.asarray(values, dtype=float), roles, np.full(len(ids), 4), run,
                   dev_score=dev_score, n_runs=max(1, len(by_run)), by_run=by_run)


@pytest.fixture(scope="module")
def case() -> dict:
    rng = np.random.default_rng(7)
    straight = (rng.random(N) < 0.45).astype(float)
    option = np.maximum(straight, rng.random(N) < 0.5).astype(float)  # clearly better everywhere
    rotate = (rng.random(N) < 0.45).astype(float)
    test = ROLES == "test"
    probe_a = np.maximum(straight, rng.random(N) < 0.3)[test].astype(float)
    probe_b = np.maximum(straight, rng.random(N) < 0.6)[test].astype(float)
    outs = [outcome("straight-up", "straight-up", straight),
            outcome("prompt:default", "prompt variants", straight), outcome("prompt:option", "prompt variants", option),
            outcome("prompt:rotate", "prompt variants", rotate),
            outcome("probe:a", "probe", probe_a, run="probe", ids=IDS[test], roles=ROLES[test], dev_score=0.9),
            outcome("probe:b", "probe", probe_b, run="probe", ids=IDS[test], roles=ROLES[test], dev_score=0.6)]
    kinds = {"eval": "eval", "probe": "probe"}
    g = analyse("m", "t", outs, kinds, n_params=10, kind="base", settings=ST)
    return {"g": g, "straight": straight, "option": option, "rotate": rotate, "probe_a": probe_a, "test": test}


def test_each_family_is_select_best_of_k_on_dev_then_test(case) -> None:
    g, s, test = case["g"], case["straight"], case["test"]
    dev = ~test
    fam = g.families["prompt variants"]
    want = select_best_of_k({"prompt:default": s[dev], "prompt:option": case["option"][dev],
                             "prompt:rotate": case["rotate"][dev]},
                            {"prompt:default": s[test], "prompt:option": case["option"][test],
                             "prompt:rotate": case["rotate"][test]}, s[test], chance=0.25, dev_ids=IDS[dev],
                            test_ids=IDS[test], straight_ids=IDS[test], n_boot=ST.n_boot, n_perm=ST.n_perm,
                            seed=ST.seed)
    assert fam.selected == want and fam.chosen.key == "prompt:option" and fam.n_candidates == 3
    assert (g.n_dev, g.n_test, g.chance) == (60, 60, 0.25)
    # the probe is chosen by its train cross-validation score (0.9 beats 0.6), not by its test accuracy
    probe = g.probe
    assert probe.chosen.key == "probe:a" and probe.dev_kind == "train cross-validation"
    assert probe.selected.dev_accuracy == {"probe:a": 0.9, "probe:b": 0.6}
    assert probe.gap == paired_gap(case["probe_a"], s[test], chance=0.25, n_boot=ST.n_boot, seed=ST.seed)
    assert g.best.n_candidates == 5 and g.best.chosen.key == "probe:a"  # the highest dev score of any family


def test_gap_statistics_match_references(case) -> None:
    g, s, test = case["g"], case["straight"], case["test"]
    gap = g.families["prompt variants"].gap
    e = case["option"][test]
    assert gap.difference.value == pytest.approx(np.mean(e - s[test]))
    assert gap.difference.lo <= gap.difference.value <= gap.difference.hi
    b, c = int(np.sum((e == 1) & (s[test] == 0))), int(np.sum((e == 0) & (s[test] == 1)))
    ref = mcnemar([[0, b], [c, 0]], exact=True)
    assert (gap.mcnemar.b, gap.mcnemar.c) == (b, c) and gap.mcnemar.p_value == pytest.approx(ref.pvalue)
    assert gap.ratio is not None and gap.ratio.value == pytest.approx(e.mean() / s[test].mean())


def test_fixed_comparisons_use_every_question_and_holm(case) -> None:
    g, s = case["g"], case["straight"]
    fixed = {f.outcome.key: f for f in g.fixed}
    assert set(fixed) == {"prompt:option", "prompt:rotate"}  # the default prompt is straight-up itself
    assert fixed["prompt:option"].gap == paired_gap(case["option"], s, chance=0.25, n_boot=ST.n_boot, seed=ST.seed)
    assert fixed["prompt:option"].gap.n == N  # nothing is chosen: every question counts
    p = [f.gap.mcnemar.p_value for f in g.fixed]
    assert [f.p_holm for f in g.fixed] == pytest.approx(multipletests(p, method="holm")[1].tolist())


def test_holm_matches_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.5, 0.001, 0.04]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())
    assert holm([]) == []


def test_below_chance_straight_up_gives_no_ratio() -> None:
    rng = np.random.default_rng(1)
    straight = (rng.random(N) < 0.1).astype(float)  # far below chance 0.25
    better = np.maximum(straight, rng.random(N) < 0.5).astype(float)
    g = analyse("m", "t", [outcome("straight-up", "straight-up", straight), outcome("prompt:x", "prompt variants",
                                                                                      better)],
                {"eval": "eval"}, n_params=None, kind="base", settings=ST)
    gap = g.families["prompt variants"].gap
    assert gap.ratio is None and "at or below chance" in gap.ratio_reason
    assert gap.difference.lo > 0  # the difference is still reported, with its interval


def test_questions_with_conflicting_roles_are_left_out() -> None:
    rng = np.random.default_rng(2)
    straight = (rng.random(N) < 0.5).astype(float)
    other_roles = ROLES.copy()
    other_roles[:10] = "test"  # another run put 10 dev questions in its test half
    outs = [outcome("straight-up", "straight-up", straight),
            outcome("prompt:x", "prompt variants", straight),
            outcome("lens:L0", "logit lens", (rng.random(N) < 0.5).astype(float), run="probe", roles=other_roles)]
    g = analyse("m", "t", outs, {"eval": "eval", "probe": "probe"}, n_params=None, kind="base", settings=ST)
    assert g.n_dev == 50 and g.n_test == 60
    assert any("10 questions have different roles" in n for n in g.notes)
    assert g.families["logit lens"].selected.n_dev == 50


def test_locking_fraction_recovered_is_eval_runs() -> None:
    rng = np.random.default_rng(3)
    locked = (rng.random(N) < 0.25).astype(float)
    pw = np.maximum(locked, rng.random(N) < 0.8).astype(float)
    seeds = tuple(np.maximum(locked, rng.random(N) < p).astype(float) for p in (0.3, 0.5))
    outs = [outcome("straight-up", "straight-up", locked, run="u"), outcome("with-password", "reference", pw, run="u"),
            outcome("unlock:weak", "unlocking", np.mean(seeds, axis=0), run="u", by_run=seeds)]
    g = analyse("m [locked]", "t", outs, {"u": "unlock"}, n_params=None, kind="base locked", settings=ST)
    o, rec = g.locking.recovered["unlock:weak"]
    want = fraction_recovered(list(seeds), locked, pw, elicited_ids=[IDS, IDS], locked_ids=IDS,
                              with_password_ids=IDS, n_boot=ST.n_boot, seed=ST.seed)
    assert rec == want and o.n_runs == 2
    assert g.locking.with_password.value == pytest.approx(pw.mean()) and g.locking.n_questions == N
    fam = g.families["unlocking"]  # the per-question mean over seeds: a sign test, bootstrap interval
    assert fam.gap.mcnemar.test == "sign_test" and fam.gap.elicited.method == "bootstrap"


def test_findings_answer_with_intervals(case) -> None:
    other = analyse("m2", "t", [outcome("straight-up", "straight-up", case["straight"]),
                                outcome("prompt:x", "prompt variants", case["rotate"])],
                    {"eval": "eval"}, n_params=20, kind="instruct", settings=ST)
    found = {f.question: f for f in findings([case["g"], other], ST)}
    consistent = next(f for q, f in found.items() if "consistent" in q)
    assert "1 model pairs" in consistent.answer or "of 1 model pairs" in consistent.answer
    assert any("gap of m minus gap of m2" in d and "[" in d for d in consistent.details)
    assert "4 models" in consistent.cannot
    variants = next(f for q, f in found.items() if "variants move" in q)
    assert any(d.startswith("m on t: 1 of 2 variants move it: prompt:option +0.") for d in variants.details)
    assert any(d.startswith("m2 on t: none of 1 variants detectably") for d in variants.details)


def test_a_candidate_without_dev_answers_is_left_out_not_the_others(case) -> None:
    """A probe whose cross-validation score is not finite comes with test rows only (dev_score None): it must not
    empty the dev questions the other candidates share (which would silently leave only itself to choose)."""
    s, test = case["straight"], case["test"]
    outs = [outcome("straight-up", "straight-up", s), outcome("prompt:default", "prompt variants", s),
            outcome("prompt:option", "prompt variants", case["option"]),
            outcome("probe:nan", "probe", case["probe_a"], run="probe", ids=IDS[test], roles=ROLES[test])]
    g = analyse("m", "t", outs, {"eval": "eval", "probe": "probe"}, n_params=10, kind="base", settings=ST)
    assert g.best is not None and g.best.n_candidates == 2 and g.best.chosen.key == "prompt:option"
    assert any("no dev answers: probe:nan" in n for n in g.notes)
    assert "probe" not in g.families and any(n.startswith("probe: not compared") for n in g.notes)


def test_lock_and_unlock_runs_in_one_group_keep_each_runs_straight_up() -> None:
    """A lock run and an unlock run of the same locked model share the keys "straight-up" and "with-password":
    the unlocking family is compared with the unlock run's own straight-up, and the locking table is built."""
    rng = np.random.default_rng(3)
    locked = (rng.random(N) < 0.3).astype(float)
    strong = (rng.random(N) < 0.9).astype(float)
    runs = tuple((np.maximum(locked, rng.random(N) < 0.4)).astype(float) for _ in range(3))
    no_roles = np.full(N, "")
    outs = [outcome("straight-up", STRAIGHT, locked, run="lock", roles=no_roles),
            outcome("with-password", REFERENCE, strong, run="lock", roles=no_roles),
            outcome("straight-up", STRAIGHT, locked, run="unlock"),
            outcome("with-password", REFERENCE, strong, run="unlock"),
            outcome("unlock:weak", UNLOCK, np.mean(runs, axis=0), run="unlock", by_run=runs)]
    g = analyse("m", "t", outs, {"lock": "lock", "unlock": "unlock"}, n_params=10, kind="locked", settings=ST)
    assert g.locking is not None and "unlock:weak" in g.locking.recovered
    assert g.families[UNLOCK].chosen.run == "unlock"
