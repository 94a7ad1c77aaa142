"""gaplens vs lm-evaluation-harness on the same questions, the same prompts and the same model: per-question
agreement of the predictions, both accuracies side by side, and the wall time of each (model loading included).

    .venv/bin/python scripts/agree_lmeval.py --data-dir /work/shared/data            # ARC-Easy and MMLU
    .venv/bin/python scripts/agree_lmeval.py --data-dir /work/shared/data --only arc

Needs the optional extra lm-eval (`pip install "gaplens[lmeval]"`) and no network: lm-eval reads the local
benchmark files through task YAMLs written into WORK/lmeval-tasks, each `include:`-ing lm-eval's own task YAML
(so its prompt is lm-eval's, unchanged) and replacing only where the documents come from.

- ARC-Easy: `cli.py eval --task arc-easy --variants lmeval-arc --select first --n N` (acc is the metric
  "lmeval-arc"'s option scoring, acc_norm its "[norm]" metric) vs lm-eval's `arc_easy` (`--limit N`): the first N
  test questions in file order.
- MMLU: the first ROWS test questions of the first SUBJECTS subjects (file order, subjects sorted by name), written
  as one JSONL task for gaplens (`--task jsonl:FILE --variants lmeval-mmlu --select first`) vs lm-eval's
  `mmlu_<subject>` tasks (0-shot, `--limit ROWS` each). Letter continuations " A".." D" all have one character,
  so acc_norm equals acc and lm-eval's MMLU tasks report acc only.

Both run the same weights: gaplens' embedded model, which gaplens dequantizes into its cache
($GAPLENS_CACHE or ~/.cache/gaplens, `models/NAME`) and lm-eval loads as a local HF directory in float32.
Each tool runs as its own process, one after the other, from scratch (their output directories are removed first).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _lmeval_task_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _yaml(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def arc_task(task_dir: Path, data_dir: Path) -> str:
    """A task `arc_easy_local`: lm-eval's arc_easy.yaml, documents from the local ARC-Easy JSONL files."""
    arc = data_dir / "arc"
    files = {s: arc / f"ARC-Easy-{s}.jsonl" for s in ("train", "validation", "test")}
    _yaml(task_dir / "arc_easy_local.yaml", [
        f"include: {_lmeval_task_dir() / 'arc' / 'arc_easy.yaml'}",
        "task: arc_easy_local",
        "tag: []",
        "dataset_path: json",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files:",
        *[f"    {s}: {p}" for s, p in files.items()],
    ])
    return "arc_easy_local"


def mmlu_subset(data_dir: Path, out: Path, n_subjects: int, rows: int) -> list[str]:
    """The first `rows` test questions of the first `n_subjects` MMLU subjects, in cais/mmlu's layout
    (question, subject, choices, answer) per subject for lm-eval, and as one gaplens JSONL file (with ids)."""
    tests = sorted((data_dir / "mmlu" / "test").glob("*_test.csv"))[:n_subjects]
    out.mkdir(parents=True, exist_ok=True)
    subjects, gaplens_rows = [], []
    for path in tests:
        subject = path.name[: -len("_test.csv")]
        subjects.append(subject)
        for split, src in (("test", path), ("dev", data_dir / "mmlu" / "dev" / f"{subject}_dev.csv")):
            with src.open(newline="", encoding="utf-8") as fh:
                docs = [{"question": r["question"], "subject": subject,
                         "choices": [r[f"choice{i}"] for i in range(4)], "answer": int(r["answer"])}
                        for r in csv.DictReader(fh)]
            with (out / f"{subject}_{split}.jsonl").open("w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(d) + "\n" for d in docs)
            if split == "test":
                gaplens_rows += [{"id": f"{subject}/{i}", **d} for i, d in enumerate(docs[:rows])]
    with (out / "gaplens-mmlu.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in gaplens_rows)
    return subjects


def mmlu_tasks(task_dir: Path, data: Path, subjects: list[str]) -> list[str]:
    """Tasks `mmlu_<subject>_local`: lm-eval's mmlu_<subject>.yaml, documents from `data`."""
    names = []
    for s in subjects:
        name = f"mmlu_{s}_local"
        _yaml(task_dir / f"{name}.yaml", [
            f"include: {_lmeval_task_dir() / 'mmlu' / 'default' / f'mmlu_{s}.yaml'}",
            f"task: {name}",
            "tag: []",
            "dataset_path: json",
            "dataset_name: null",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {data / f'{s}_test.jsonl'}",
            f"    dev: {data / f'{s}_dev.jsonl'}",
        ])
        names.append(name)
    return names


def timed(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd` (output to `log`); its (wall, CPU) seconds, CPU = user + system time of the process and its
    children (steadier than wall time on a shared machine); exits with the log's tail if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n" + "".join(log.read_text().splitlines(True)[-30:]))
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def gaplens_predictions(run: Path, variant: str) -> dict[str, pd.DataFrame]:
    """method (option, option_norm or letter) -> (question_id, prediction, correct) of `variant`."""
    df = pd.read_parquet(run / "samples.parquet")
    df = df[df["variant"] == variant]
    return {m.split(":", 1)[1]: g.set_index("question_id")[["prediction", "correct"]]
            for m, g in df.groupby("method")}


def lmeval_predictions(out: Path, task: str) -> pd.DataFrame:
    """doc_id -> pred (acc: argmax log-likelihood), pred_norm (acc_norm: per character of the choice), gold and
    lm-eval's own acc / acc_norm of the item (checked against the recomputed predictions)."""
    files = glob.glob(str(out / "**" / f"samples_{task}_*.jsonl"), recursive=True)
    if len(files) != 1:
        sys.exit(f"expected one samples file of {task} under {out}, found {files}")
    rows = []
    for line in Path(files[0]).read_text().splitlines():
        s = json.loads(line)
        ll = np.array([float(r[0]) for r in s["filtered_resps"]])  # 0.4.13 writes them as strings
        args = s["arguments"]  # {"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...} (0.4.13)
        pairs = [(a["arg_0"], a["arg_1"]) for a in args.values()] if isinstance(args, dict) else args
        # lm-eval's acc_norm divides by len(choice): doc_to_choice's text, without the target delimiter " "
        conts = [c for _, c in pairs]
        nchar = np.array([len(c[1:] if c.startswith(" ") else c) for c in conts], dtype=float)
        pred, pred_norm, gold = int(np.argmax(ll)), int(np.argmax(ll / nchar)), int(s["target"])
        if float(pred == gold) != s["acc"] or ("acc_norm" in s and float(pred_norm == gold) != s["acc_norm"]):
            sys.exit(f"{task} doc {s['doc_id']}: recomputed predictions disagree with lm-eval's acc/acc_norm")
        rows.append({"doc_id": s["doc_id"], "pred": pred, "pred_norm": pred_norm, "gold": gold})
    return pd.DataFrame(rows).set_index("doc_id").sort_index()


def compare(title: str, ids: list[str], gap: dict[str, pd.DataFrame], lme: pd.DataFrame,
            metrics: list[tuple[str, str, str]], t_gap: tuple[float, float],
            t_lme: tuple[float, float]) -> list[str]:
    """Lines of the side-by-side table; `metrics` are (label, gaplens method, lm-eval prediction column)."""
    lines = [f"== {title}: {len(ids)} questions",
             f"{'metric':<10} {'gaplens acc':>12} {'lm-eval acc':>12} {'agree':>14}"]
    if len(lme) != len(ids):
        sys.exit(f"{title}: lm-eval scored {len(lme)} documents, gaplens {len(ids)} questions")
    for label, method, col in metrics:
        g = gap[method].loc[ids]
        ours = g["prediction"].to_numpy()
        theirs = lme[col].to_numpy()
        agree = int((ours == theirs).sum())
        acc_g = float(g["correct"].mean())
        acc_l = float((theirs == lme["gold"].to_numpy()).mean())
        lines.append(f"{label:<10} {acc_g:>12.4f} {acc_l:>12.4f} {agree:>5}/{len(ids)} {agree / len(ids):>6.1%}")
        for i in np.flatnonzero(ours != theirs)[:5]:
            lines.append(f"    differs: {ids[i]}: gaplens {ours[i]}, lm-eval {theirs[i]} (gold {lme['gold'].iloc[i]})")
    lines.append(f"wall time: gaplens {t_gap[0]:.1f} s, lm-eval {t_lme[0]:.1f} s (lm-eval / gaplens "
                 f"x{t_lme[0] / t_gap[0]:.2f}); CPU time: gaplens {t_gap[1]:.1f} s, lm-eval {t_lme[1]:.1f} s "
                 f"(x{t_lme[1] / t_gap[1]:.2f}); load average at the end {os.getloadavg()[0]:.1f}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("GAPLENS_DATA_DIR"), help="benchmark data (MMLU, ARC)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="an embedded gaplens model")
    p.add_argument("--n", type=int, default=200, help="ARC-Easy: the first N test questions")
    p.add_argument("--mmlu-subjects", type=int, default=20, help="MMLU: the first K subjects (sorted by name)")
    p.add_argument("--mmlu-rows", type=int, default=10, help="MMLU: the first R test questions of each subject")
    p.add_argument("--batch-size", type=int, default=16, help="rows per forward pass, both tools")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, both tools (gaplens --threads, "
                   "lm-eval OMP_NUM_THREADS); on a shared machine one thread wastes least time spinning")
    p.add_argument("--only", choices=("arc", "mmlu", "both"), default="both")
    p.add_argument("--work", default="runs/agree-lmeval", help="working directory (its runs are replaced)")
    args = p.parse_args()
    if not args.data_dir:
        sys.exit("give --data-dir (or set $GAPLENS_DATA_DIR)")
    data_dir = Path(args.data_dir).resolve()
    work = Path(args.work).resolve()
    task_dir = work / "lmeval-tasks"
    shutil.rmtree(task_dir, ignore_errors=True)
    task_dir.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads)}
    model_dir = Path(os.environ.get("GAPLENS_CACHE", Path.home() / ".cache" / "gaplens")) / "models" / args.model
    gaplens = [sys.executable, str(ROOT / "cli.py"), "eval", "--model", args.model, "--data-dir", str(data_dir),
               "--select", "first", "--cot", "off", "--device", "cpu", "--dtype", "float32",
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]

    def lmeval(tasks: list[str], limit: int, out: Path) -> list[str]:
        return [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
                "--model_args", f"pretrained={model_dir},dtype=float32", "--tasks", ",".join(tasks),
                "--include_path", str(task_dir), "--limit", str(limit), "--num_fewshot", "0",
                "--batch_size", str(args.batch_size), "--device", "cpu", "--output_path", str(out), "--log_samples"]

    report = [f"# scripts/agree_lmeval.py, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}, load average "
              f"{os.getloadavg()[0]:.1f} at the start), model {args.model}, batch size {args.batch_size}, "
              f"{args.threads} thread(s)"]
    if args.only in ("arc", "both"):
        run = work / "gaplens-arc"
        out = work / "lmeval-arc"
        for d in (run, out):
            shutil.rmtree(d, ignore_errors=True)
        t_gap = timed([*gaplens, "--task", "arc-easy", "--variants", "lmeval-arc", "--n", str(args.n),
                       "--out", str(run)], work / "gaplens-arc.log", env)
        if not model_dir.is_dir():
            sys.exit(f"{model_dir} is missing: gaplens keeps embedded models there once they are dequantized")
        t_lme = timed(lmeval([arc_task(task_dir, data_dir)], args.n, out), work / "lmeval-arc.log", env)
        with (data_dir / "arc" / "ARC-Easy-test.jsonl").open() as fh:
            ids = [json.loads(line)["id"] for line, _ in zip(fh, range(args.n), strict=False)]
        report += compare("ARC-Easy test, lmeval-arc vs lm-eval arc_easy", ids,
                          gaplens_predictions(run, "option+label:Question:%20"),
                          lmeval_predictions(out, "arc_easy_local"),
                          [("acc", "option", "pred"), ("acc_norm", "option_norm", "pred_norm")], t_gap, t_lme)
    if args.only in ("mmlu", "both"):
        run = work / "gaplens-mmlu"
        out = work / "lmeval-mmlu"
        for d in (run, out):
            shutil.rmtree(d, ignore_errors=True)
        subjects = mmlu_subset(data_dir, work / "mmlu-data", args.mmlu_subjects, args.mmlu_rows)
        n = args.mmlu_subjects * args.mmlu_rows
        t_gap = timed([*gaplens, "--task", f"jsonl:{work / 'mmlu-data' / 'gaplens-mmlu.jsonl'}",
                       "--variants", "lmeval-mmlu", "--n", str(n), "--out", str(run)], work / "gaplens-mmlu.log", env)
        tasks = mmlu_tasks(task_dir, work / "mmlu-data", subjects)
        t_lme = timed(lmeval(tasks, args.mmlu_rows, out), work / "lmeval-mmlu.log", env)
        gap = gaplens_predictions(run, "header+strip")
        parts = [lmeval_predictions(out, t).assign(subject=s) for t, s in zip(tasks, subjects, strict=True)]
        lme = pd.concat(parts).reset_index()
        ids = [f"{s}/{d}" for s, d in zip(lme["subject"], lme["doc_id"], strict=True)]
        report += compare(f"MMLU test, first {args.mmlu_rows} of the first {args.mmlu_subjects} subjects, "
                          "lmeval-mmlu vs lm-eval mmlu_<subject> (0-shot)", ids, gap, lme,
                          [("acc", "letter", "pred")], t_gap, t_lme)
    text = "\n".join(report)
    (work / "agreement.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
