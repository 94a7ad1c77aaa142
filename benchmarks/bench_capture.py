"""Capture speed and memory, as ratios against baselines measured in the same run.

1. Throughput: hooked capture (TransformerBridge + residual hooks at every layer + lens) over the same
   length-sorted batches as a bare Hugging Face forward pass of a never-wrapped copy of the model.
   Target: capture throughput / HF throughput >= 0.9.
2. Memory: peak RSS of capturing 2000 questions divided by that of 200 (each in a fresh subprocess).
   Target: < 1.5 (the store streams blocks to disk; memory must not grow with the number of questions).

    python benchmarks/bench_capture.py [--model smollm2-135m-instruct] [--n-speed 96] [--small 200] [--large 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_questions(path: Path, n: int) -> Path:
    """A synthetic jsonl task of n short arithmetic questions (no download, deterministic)."""
    with path.open("w") as f:
        for i in range(n):
            a, b = 11 + (i * 7) % 80, 3 + (i * 13) % 60
            right = a + b
            choices = [right, right + 1, right - 10, right + 9]
            k = i % 4
            choices[0], choices[k] = choices[k], choices[0]
            f.write(json.dumps({"id": f"q{i}", "question": f"What is {a} + {b}?",
                                "choices": [str(c) for c in choices], "answer": k}) + "\n")
    return path


def speed(model_name: str, task: str, n: int, batch_size: int, repeats: int) -> dict[str, float]:
    import torch

    from eval import tasks
    from hooks import forward as cap
    from hooks.models import load_hf, load_model
    from hooks.rows import batches, plan_rows

    torch.set_num_threads(1)
    model = load_model(model_name)
    plain = load_hf(model_name).model  # an unwrapped copy: the bare HF baseline
    records = tasks.load_task(tasks.TaskSpec(task), n=n)
    rows = sorted(plan_rows(model, records, ["default"], [], 0), key=lambda r: len(r.ids))
    batches = [rows[a:b] for a, b in batches(rows, batch_size, 1 << 30)]
    layers = list(range(model.n_layers + 1))
    pad = model.tokenizer.pad_token_id

    def run_hf(keep_all: bool) -> None:
        with torch.no_grad():
            for part in batches:
                ids, mask = cap.pad_left([r.ids for r in part], pad)
                if keep_all:
                    plain(input_ids=ids, attention_mask=mask)
                else:
                    plain(input_ids=ids, attention_mask=mask, logits_to_keep=1)

    def run_capture() -> None:
        for part in batches:
            choice = torch.tensor([r.choice_ids for r in part])
            out = cap.hooked_forward(model, [r.ids for r in part], layers=layers, choice_ids=choice)
            cap.logit_lens(model, out.resid, choice)

    def best_of(fn, *args) -> float:  # noqa: ANN001
        fn(*args)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        return min(times)

    t_hf_full = best_of(run_hf, True)
    t_hf_keep = best_of(run_hf, False)
    t_cap = best_of(run_capture)
    tokens = sum(len(r.ids) for r in rows)
    return {"rows": len(rows), "tokens": tokens, "hf_full_s": t_hf_full, "hf_keep1_s": t_hf_keep, "capture_s": t_cap}


def peak_rss_of_capture(model_name: str, task: str, n: int, out: Path) -> float:
    """Peak RSS (MiB) of a fresh process that loads the model and captures n questions."""
    code = (
        f"import resource, sys, torch; sys.path.insert(0, {str(ROOT)!r}); torch.set_num_threads(1)\n"
        "from pathlib import Path\nfrom hooks.capture import CaptureConfig, capture\n"
        f"capture(CaptureConfig(model={model_name!r}, task={task!r}, n={n}, variants=('default',)), Path({str(out)!r}))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--n-speed", type=int, default=96, help="questions for the throughput comparison")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--large", type=int, default=2000)
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_questions(Path(tmp) / "questions.jsonl", max(args.large, args.n_speed))
        task = f"jsonl:{data}"
        s = speed(args.model, task, args.n_speed, args.batch_size, args.repeats)
        print(f"model {args.model}: {s['rows']} prompts, {s['tokens']} tokens, batch {args.batch_size}, best of "
              f"{args.repeats}")
        print(f"  bare HF forward (full logits)      {s['hf_full_s']:.3f} s")
        print(f"  bare HF forward (logits_to_keep=1) {s['hf_keep1_s']:.3f} s")
        print(f"  hooked capture (all layers + lens) {s['capture_s']:.3f} s")
        print(f"  throughput ratio capture / HF(full logits)  = {s['hf_full_s'] / s['capture_s']:.2f}  (target >= 0.9)")
        print(f"  throughput ratio capture / HF(keep 1 logit) = {s['hf_keep1_s'] / s['capture_s']:.2f}")
        if not args.skip_memory:
            small = peak_rss_of_capture(args.model, task, args.small, Path(tmp) / "small.h5")
            large = peak_rss_of_capture(args.model, task, args.large, Path(tmp) / "large.h5")
            print(f"peak RSS: {args.small} questions {small:.0f} MiB, {args.large} questions {large:.0f} MiB, "
                  f"ratio {large / small:.2f}  (target < 1.5)")


if __name__ == "__main__":
    main()
