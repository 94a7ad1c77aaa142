"""End-to-end smoke test: `cli.py lock` then `cli.py unlock` on the toy organism with tiny settings."""

from __future__ import annotations

import json

import cli
from core.samples import read_samples
from core.schemas import LockResult, UnlockResult
from hooks.models import load_model

LOCK = ["--n", "120", "--toy-steps", "20", "--steps", "8", "--batch-size", "8", "--weak-labels", "hard"]
UNLOCK = ["--epochs", "4", "--eval-every", "2", "--seeds", "2", "--many", "6", "--average-m", "2",
          "--relock-rounds", "1", "--relock-steps", "2", "--large-n", "6", "--large-epochs", "1", "--n-eval", "20",
          "--controls", "many,average,masked,noise,scale,relock,strong", "--noise-scales", "0,0.1",
          "--scale-factors", "0.9,1.0", "--no-progress"]


def test_lock_then_unlock(tmp_path, capsys) -> None:
    lock_dir, unlock_dir = tmp_path / "lock", tmp_path / "unlock"
    assert cli.main(["lock", "--out", str(lock_dir), *LOCK]) == 0
    text = capsys.readouterr().out
    assert "with password" in text and "without password" in text and "decoys" in text
    res = LockResult.read(lock_dir / "results.json")
    assert (res.split_sizes.train, res.split_sizes.pool, res.split_sizes.eval) == (60, 30, 30)
    m = res.metrics
    for key in ("with_password", "no_password", "decoys_trained", "decoys_held_out", "weak_policy", "base_no_password"):
        e = getattr(m, key)
        assert 0.0 <= e.value <= 1.0 and e.lo <= e.value <= e.hi
    model, base = res.header.model, res.base_model
    assert (model.kind, model.kind_source, base.name, base.kind) == ("fine-tuned", "lock-record", "toy", "base")
    assert model.n_params == base.n_params == res.toy.n_params
    for name in ("lock_metrics.csv", "train_log.csv", "config.json", "toy/toy.json", "model/gaplens_lock.json"):
        assert (lock_dir / name).exists(), name
    meta = json.loads((lock_dir / "model" / "gaplens_lock.json").read_text())
    assert load_model(str(lock_dir / "model")).weight_hash == meta["weight_hash"] == model.weight_hash
    assert set(meta["splits"]["eval"]).isdisjoint(meta["splits"]["pool"])
    assert set(meta["splits"]["train"]).isdisjoint(meta["splits"]["pool"] + meta["splits"]["eval"])

    from eval.tasks import TaskSpec, load_task

    exported = load_task(TaskSpec(f"jsonl:{lock_dir / 'questions' / 'eval.jsonl'}"))
    assert sorted(r.id for r in exported) == sorted(meta["splits"]["eval"])

    mtime = (lock_dir / "results.json").stat().st_mtime_ns
    assert cli.main(["lock", "--out", str(lock_dir), *LOCK]) == 0  # same config: reused
    assert (lock_dir / "results.json").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert cli.main(["lock", "--out", str(lock_dir), *LOCK[:-2], "--weak-labels", "soft"]) == 2  # different config
    assert "different config" in capsys.readouterr().err

    assert cli.main(["unlock", "--model", str(lock_dir), "--out", str(unlock_dir), "--save-models", *UNLOCK]) == 0
    text = capsys.readouterr().out
    assert "PGR" in text and "weak-sample unlocking curve" in text
    out = UnlockResult.read(unlock_dir / "results.json")
    methods = out.methods
    assert set(methods) == {"weak", "many", "average", "masked", "noise", "scale", "relock-weak", "relock-large",
                            "large", "strong"}
    weak = methods["weak"]
    assert weak.n_runs == 2 and weak.curve.epochs == [0, 2, 4]
    # intervals over runs and questions (eval.runs), within [0, 1] for accuracies; the re-locked controls use the
    # mitigated model's per-question answers, kept beside the mitigation record
    assert weak.final.pgr.method == weak.final.acc.method == "bootstrap_crossed"
    assert methods["relock-weak"].final.pgr.method == "bootstrap_crossed"
    assert (unlock_dir / "runs" / "relock-mitigation-answers.json").exists()
    assert weak.curve.ci_method == "bootstrap_nested" and methods["scale"].sweep.ci_method == "wilson"
    for m in methods.values():
        ci = m.curve.ci if m.curve is not None else m.sweep.ci
        assert all(0 <= lo <= hi <= 1 for lo, hi in ci)
    assert methods["noise"].sweep.params == [0.0, 0.1] and methods["scale"].n_runs == 1
    assert methods["average"].curve.epochs == [0, 4] and out.mitigation is not None
    assert out.header.model.weight_hash == meta["weight_hash"] and out.header.model.kind == "fine-tuned"
    # every run's final answers per question: their accuracy is the last point of its curve
    samples = read_samples(unlock_dir / "samples.parquet").to_pandas()
    for method, m in methods.items():
        if m.curve is not None:
            for seed, run in zip(m.seeds, m.curve.runs, strict=True):
                rows = samples[samples.method == f"unlock:{method}-s{seed}"]
                assert len(rows) == out.n_eval and rows.correct.mean() == run[-1]
    assert samples[samples.method == "locked"].groupby("condition").correct.mean().to_dict() == {
        "no_password": out.reference.locked.acc, "with_password": out.reference.with_pw.acc}
    for name in ("unlock_curve.csv", "unlock_curve.png", "config.json", "runs/weak-s0.json"):
        assert (unlock_dir / name).exists(), name
    header = (unlock_dir / "unlock_curve.csv").read_text().splitlines()[0]
    assert header.startswith("method,seed,kind,x,acc")

    saved = json.loads((unlock_dir / "models" / "weak-s0" / "gaplens_unlock.json").read_text())
    unlocked = load_model(str(unlock_dir / "models" / "weak-s0"))
    assert unlocked.weight_hash == saved["weight_hash"] != meta["weight_hash"] == saved["locked_weight_hash"]
    assert saved["method"] == "weak" and saved["seed"] == 0
    assert (unlock_dir / "models" / "relock-weak-s1").is_dir() and not (unlock_dir / "models" / "noise-s0").exists()

    mtime = (unlock_dir / "runs" / "weak-s1.json").stat().st_mtime_ns
    assert cli.main(["unlock", "--model", str(lock_dir / "model"), "--out", str(unlock_dir), "--save-models",
                     *UNLOCK]) == 0
    assert (unlock_dir / "runs" / "weak-s1.json").stat().st_mtime_ns == mtime  # finished runs are reused
    again = UnlockResult.read(unlock_dir / "results.json").methods
    assert again["relock-large"].final.pgr == methods["relock-large"].final.pgr


def test_bad_flags_fail_before_writing(tmp_path, capsys) -> None:
    assert cli.main(["lock", "--out", str(tmp_path / "x"), "--weak", "toy-weak", "--model", "tiny-llama"]) == 2
    assert "toy-weak" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli.main(["unlock", "--model", str(tmp_path), "--out", str(tmp_path / "u"), "--controls", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
