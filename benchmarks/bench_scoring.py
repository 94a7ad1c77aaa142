"""Letter scoring vs per-choice log-likelihood scoring: wall time on the same questions.

Letter scoring runs one forward pass per question (the prompt lists the options; the answer is read from the
logits of " A".." D", batched across questions); per-choice scoring ("option", lm-eval-harness style) scores
every option's text by its summed log-probability: the capture runs each question's prefix once and reuses its
KV cache for the options (`hooks.forward.hooked_forward_shared_prefix`). Both go through the same capture code
as `cli.py eval` (hooks.capture.capture, no residuals stored), on one loaded model, after a warm-up run; the best of
--repeats runs is kept. Times include rendering and tokenizing.

With --cot-tokens N (> 0) it also times the chain-of-thought variant "cot" on the same questions (greedy decoding
of at most N new tokens, stopping at the answer; `hooks.generate`, one run, batch size --batch-size): the reason
`eval` leaves chain of thought off by default on CPU.

    .venv/bin/python benchmarks/bench_scoring.py --model smollm2-135m-instruct --task capitals --n 50
    .venv/bin/python benchmarks/bench_scoring.py --task mmlu --data-dir /work/shared/data --n 50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import metrics, scoring, stats  # noqa: E402
from hooks import generate as gen  # noqa: E402
from hooks.capture import CaptureConfig, capture  # noqa: E402
from hooks.models import load_model  # noqa: E402
from hooks.store import Store  # noqa: E402


def timed_capture(cfg: CaptureConfig, model: object, path: Path) -> tuple[float, float, int, int]:
    """(seconds, accuracy, rows, tokens) of one capture of `cfg` into a fresh `path`."""
    t0 = time.perf_counter()
    capture(cfg, path, model=model)
    seconds = time.perf_counter() - t0
    with Store(path) as s:
        preds = scoring.score_store(s.rows, s.array("answer_logits"), s.array("option_logprob"),
                                    s.array("option_nchars"), acc_norm=False)
        rows, tokens = len(s), int(s.rows["n_tokens"].sum())
    return seconds, float(stats.accuracy(preds.correct).value), rows, tokens


def timed_generate(cfg: gen.GenerateConfig, model: object, path: Path) -> tuple[float, float, float, float]:
    """(seconds, accuracy, answer-found rate, mean new tokens) of one chain-of-thought run into a fresh `path`."""
    t0 = time.perf_counter()
    gen.generate(cfg, path, model=model)
    seconds = time.perf_counter() - t0
    preds, stats_by = metrics.score_generations(gen.read_generations(path)[1])
    c = stats_by["variants"]["cot"]
    return seconds, float(preds.correct.mean()), c["answer_found"], c["mean_new_tokens"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--task", default="capitals")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cot-tokens", type=int, default=0, help="also time chain of thought with this many new tokens")
    args = p.parse_args()

    t0 = time.perf_counter()
    model = load_model(args.model)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s (not counted)")

    def cfg(variant: str, n: int) -> CaptureConfig:
        return CaptureConfig(model=args.model, task=args.task, data_dir=args.data_dir, n=n, variants=(variant,),
                             seed=args.seed, batch_size=args.batch_size, resid=False)

    with tempfile.TemporaryDirectory() as tmp:
        timed_capture(cfg("default", 2), model, Path(tmp) / "warmup.h5")
        best: dict[str, tuple[float, float, int, int]] = {}
        for r in range(args.repeats):
            for variant in ("default", "option"):
                res = timed_capture(cfg(variant, args.n), model, Path(tmp) / f"{variant}-{r}.h5")
                if variant not in best or res[0] < best[variant][0]:
                    best[variant] = res
        cot = None
        if args.cot_tokens > 0:
            cot = timed_generate(gen.GenerateConfig(model=args.model, task=args.task, data_dir=args.data_dir,
                                                    n=args.n, variants=("cot",), seed=args.seed,
                                                    max_new_tokens=args.cot_tokens, batch_size=args.batch_size),
                                 model, Path(tmp) / "cot.jsonl")
    print(f"{args.n} questions of {args.task}, batch size {args.batch_size}, best of {args.repeats}:")
    for variant, label in (("default", "letter scoring (1 row per question)"),
                           ("option", "per-choice log-likelihood (1 row per option)")):
        sec, acc, rows, tokens = best[variant]
        print(f"  {label:<46} {sec:7.2f} s  {rows:4d} rows  {tokens:6d} tokens (unshared)  accuracy {acc:.3f}")
    ratio = best["default"][0] / best["option"][0]
    print(f"letter / per-choice wall time ratio: {ratio:.3f} (per-choice is {1 / ratio:.2f}x the letter time)")
    if cot is not None:
        sec, acc, found, mean_tokens = cot
        print(f"  {'chain of thought (<= ' + str(args.cot_tokens) + ' new tokens, 1 run)':<46} {sec:7.2f} s  "
              f"answer found {found:.2f}  mean {mean_tokens:.0f} new tokens  accuracy {acc:.3f}")
        print(f"letter / chain-of-thought wall time ratio: {best['default'][0] / sec:.4f}")


if __name__ == "__main__":
    main()
