"""The probe stage: the scikit-learn reference loop vs the batched torch probes, on the same features, in one run.

Both paths fit every target (option probe, letter probe) at every layer through `probes.fit.sweep_layers`, C chosen
by GroupKFold over train questions and scored per question, then scored once on test questions:
(a) `solver="sklearn"`: one StandardScaler + lbfgs LogisticRegression fit after another (the code path before the
torch solver); (b) a `TorchSolver` on --device: every fold, C and refit of a layer (or of --layer-batch layers)
solved as one batched L-BFGS. The run checks that they agree (chosen C, per-question test correctness, test
probabilities, the ceiling) and prints both wall times and their ratio as its last line.

Features are synthetic by default (no model, no download): --rows option rows (4 options per question, so
rows/4 questions, plus one lettered row per question), --layers layers of --d-model dimensions, anisotropic like a
residual stream (the spectrum of SmolLM2's standardised residuals, a few large-offset dimensions), with a
per-layer answer signal. --store reads a captured activations.h5 instead. --exact also fits in float64 to a
1e-8 gradient and reports how far each path is from that optimum (slow on CPUs: float64 products).

    .venv/bin/python benchmarks/bench_probes.py --rows 10000 --layers 31 --d-model 576
    .venv/bin/python benchmarks/bench_probes.py --store runs/demo/activations.h5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eval.stats import split_ids  # noqa: E402
from probes.fit import Sweep, ceiling, sweep_layers  # noqa: E402
from probes.targets import Target  # noqa: E402
from probes.torch_linear import TorchSolver  # noqa: E402


class SyntheticReader:
    """Option rows then lettered rows; `layer(pos, rows)` like `FeatureReader` (float16 stored, float32 read)."""

    def __init__(self, n_questions: int, n_layers: int, d: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.gold = rng.integers(0, 4, size=n_questions)
        n_opt = 4 * n_questions
        # covariance spectrum shaped like SmolLM2-135M's standardised residual stream (runs/demo, layers 5-25):
        # a power law over the first quarter of the dimensions, then a steep fall to a near-null remainder
        spectrum = (1.0 + np.arange(d)) ** -0.8 * np.exp(-np.maximum(np.arange(d) - d // 4, 0) / 25) + 1e-4
        offset = np.zeros(d)
        offset[rng.choice(d, 3, replace=False)] = 40.0  # a few "massive activation" dimensions
        latent = rng.standard_normal(size=(n_opt + n_questions, d), dtype=np.float32)
        self.feats = []
        for layer in range(n_layers):
            # layers correlated, like a residual stream
            latent = 0.8 * latent + 0.6 * rng.standard_normal(size=latent.shape, dtype=np.float32)
            basis = np.linalg.qr(rng.normal(size=(d, d)))[0].astype(np.float32)
            X = (latent * np.sqrt(spectrum).astype(np.float32)) @ basis.T + offset.astype(np.float32)
            strength = 0.6 * np.sin(np.pi * (layer + 1) / (n_layers + 1))  # the answer is readable mid-stack
            X[np.arange(n_questions) * 4 + self.gold, :] += strength * basis[:, 5]
            X[n_opt + np.arange(n_questions)] += 0.5 * strength * basis[:, 10 + self.gold].T
            self.feats.append(X.astype(np.float16))

    def targets(self) -> list[Target]:
        n_q = len(self.gold)
        qids = np.array([f"q{i:05d}" for i in range(n_q)])
        y_opt = (np.arange(4)[None, :] == self.gold[:, None]).astype(int).ravel()
        option = Target("option", np.arange(4 * n_q), y_opt, np.repeat(qids, 4), np.full(4 * n_q, 4))
        letter = Target("letter", 4 * n_q + np.arange(n_q), self.gold.copy(), qids, np.full(n_q, 4))
        return [option, letter]

    def layer(self, pos: int, rows: np.ndarray) -> np.ndarray:
        return self.feats[pos][rows].astype(np.float32)


def agreement(ref: Sweep, new: Sweep, targets: list[Target], reader: object, train: list[str],
              positions: list[int]) -> dict[str, float]:
    """How far the two sweeps are apart: chosen C, test correctness and probabilities, CV scores, the ceiling."""
    n = same_c = same_correct = 0
    q_total = q_diff = 0
    max_p = max_cv = 0.0
    for t in targets:
        test = ~np.isin(t.groups, train)
        te = t.subset(test)
        for i, pos in enumerate(positions):
            a, b = ref.fits[t.name][i], new.fits[t.name][i]
            n += 1
            same_c += a.C == b.C
            same_correct += bool(np.array_equal(a.test_correct, b.test_correct))
            q_total += len(a.test_correct)
            q_diff += int((a.test_correct != b.test_correct).sum())
            max_cv = max(max_cv, abs(a.cv - b.cv))
            if a.C == b.C:
                X = reader.layer(pos, te.rows)
                pa, pb = a.probe.predict_proba(X), b.probe.predict_proba(X)
                max_p = max(max_p, float(np.abs(pa - pb).max()))
    ca, cb = ceiling(ref, positions), ceiling(new, positions)
    return {"fits": n, "same_C": same_c, "same_test_correct": same_correct, "test_questions": q_total,
            "test_questions_differing": q_diff, "max_abs_dprob_same_C": max_p, "max_abs_dcv": max_cv,
            "same_ceiling": float((ca["target"], ca["layer"]) == (cb["target"], cb["layer"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10000, help="option rows (4 per question), synthetic features")
    p.add_argument("--layers", type=int, default=31)
    p.add_argument("--d-model", type=int, default=576)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--layer-batch", type=int, default=0, help="layers per batched solve (0: solver default)")
    p.add_argument("--kinds", default="probe", help="comma-separated: probe, shuffled")
    p.add_argument("--test-fraction", type=float, default=0.5)
    p.add_argument("--store", default=None, help="a captured activations.h5 instead of synthetic features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=0.0, help="the torch path's tolerance (0: TorchSolver's default)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of the torch path (scikit-learn: 1)")
    p.add_argument("--skip-reference", action="store_true", help="time the torch path only")
    p.add_argument("--exact", action="store_true", help="also compare both paths with a float64 optimum")
    args = p.parse_args()
    kinds = tuple(args.kinds.split(","))

    t0 = time.perf_counter()
    if args.store:
        from hooks.store import Store
        from probes.fit import FeatureReader
        from probes.targets import TARGETS, load_target

        store = Store(args.store).__enter__()
        targets = [load_target(store, t) for t in TARGETS]
        reader = FeatureReader(store, np.concatenate([t.rows for t in targets]))
        positions = list(range(len(store.layers)))
        desc = f"store {args.store}"
    else:
        synth = SyntheticReader(args.rows // 4, args.layers, args.d_model, args.seed)
        reader, targets, positions = synth, synth.targets(), list(range(args.layers))
        desc = f"synthetic: {args.rows} option rows + {args.rows // 4} letter rows, {args.layers} layers x d {args.d_model}"
    train, _ = split_ids(targets[0].groups, 1.0 - args.test_fraction, args.seed)
    print(f"{desc}; {len(train)} train questions; kinds {kinds}; features ready in {time.perf_counter() - t0:.1f} s")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}: other jobs may share this machine, so "
          "wall times can vary between runs (cpu: this process's CPU seconds)")

    solver = TorchSolver(device=args.device, dtype=args.dtype, layer_batch=args.layer_batch, threads=args.threads,
                         **({"tol": args.tol} if args.tol else {}))
    t1, c1 = time.perf_counter(), time.process_time()
    new = sweep_layers(reader, targets, train, positions, kinds=kinds, seed=args.seed, solver=solver, desc="torch")
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    torch_s = time.perf_counter() - t1
    print(f"(b) torch {solver}: {torch_s:.1f} s wall, {time.process_time() - c1:.1f} s cpu")
    if args.skip_reference:
        return
    t2, c2 = time.perf_counter(), time.process_time()
    ref = sweep_layers(reader, targets, train, positions, kinds=kinds, seed=args.seed, solver="sklearn",
                       desc="sklearn")
    sk_s = time.perf_counter() - t2
    print(f"(a) scikit-learn reference loop (1 BLAS thread): {sk_s:.1f} s wall, {time.process_time() - c2:.1f} s cpu")
    for k in kinds:
        agree = agreement(ref[k], new[k], targets, reader, train, positions)
        print(f"agreement ({k}): " + ", ".join(f"{key} {v:.6g}" for key, v in agree.items()))
    if args.exact:
        exact = sweep_layers(reader, targets, train, positions, kinds=kinds, seed=args.seed, desc="float64",
                             solver=TorchSolver(device=args.device, dtype="float64", tol=1e-8, threads=args.threads))
        for k in kinds:
            for name, sweep in (("sklearn", ref), ("torch", new)):
                agree = agreement(exact[k], sweep[k], targets, reader, train, positions)
                print(f"{name} vs float64 optimum ({k}): " + ", ".join(f"{key} {v:.6g}" for key, v in agree.items()))
    print(f"sklearn {sk_s:.1f} s, torch ({args.device}) {torch_s:.1f} s, ratio {sk_s / torch_s:.1f}x")


if __name__ == "__main__":
    main()
