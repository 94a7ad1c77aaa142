"""Compare two `cli.py eval` runs on the metrics they share: per-question agreement of the predictions and the
difference in accuracy (e.g. a bfloat16 run against a float32 run of the same questions).

    .venv/bin/python scripts/compare_evals.py runs/eval-smollm2-mmlu runs/eval-smollm2-mmlu-bf16check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import scoring  # noqa: E402
from hooks.store import Store  # noqa: E402


def predictions(run: Path) -> scoring.Predictions:
    with Store(run / "activations.h5") as s:
        return scoring.score_store(s.rows, s.array("answer_logits"), s.array("option_logprob"),
                                   s.array("option_nchars"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="eval run directory (reference)")
    p.add_argument("b", type=Path, help="eval run directory (compared)")
    args = p.parse_args()
    pa, pb = predictions(args.a), predictions(args.b)
    ka = {(m, q): (pred, ok) for m, q, pred, ok in zip(pa.variant, pa.question_id, pa.pred_orig, pa.correct,
                                                       strict=True)}
    kb = {(m, q): (pred, ok) for m, q, pred, ok in zip(pb.variant, pb.question_id, pb.pred_orig, pb.correct,
                                                       strict=True)}
    shared = sorted({m for m, _ in ka} & {m for m, _ in kb})
    if not shared:
        sys.exit(f"no metric is in both {args.a} and {args.b}")
    print(f"{'metric':<16} {'questions':>9} {'agree':>7} {'acc ' + args.a.name:>28} {'acc ' + args.b.name:>28}")
    agrees, diffs = [], []
    for m in shared:
        qs = sorted(q for mm, q in ka if mm == m and (m, q) in kb)
        agree = float(np.mean([ka[(m, q)][0] == kb[(m, q)][0] for q in qs]))
        acc_a = float(np.mean([ka[(m, q)][1] for q in qs]))
        acc_b = float(np.mean([kb[(m, q)][1] for q in qs]))
        agrees.append(agree)
        diffs.append(abs(acc_a - acc_b))
        print(f"{m:<16} {len(qs):>9} {agree:>7.3f} {acc_a:>28.3f} {acc_b:>28.3f}")
    print(f"agreement {min(agrees):.3f}-{max(agrees):.3f}; largest accuracy difference {max(diffs):.3f}")


if __name__ == "__main__":
    main()
