"""gaplens' capture against a plain Hugging Face computation of the same outputs, in one run.

Both sides compute, for the same questions and the same tokenized prompts (gaplens' `plan_rows`, so both read the
same token ids):

- lettered rows (variant `default`): the answer-symbol logits at the answer position;
- option rows (variant `option`): each option's summed log-probability, the question prefix run once and its KV
  cache reused for the options;
- every layer's residual at those positions (each block's input; the last one is the final block's output before
  the final norm).

gaplens runs `hooks.capture.capture` (TransformerLens bridge hooks, planning, batching, the HDF5 store on disk).
The reference is a plain loop over a model that was never wrapped: `output_hidden_states=True`, a KV cache for the
prefixes, nothing stored. Each side runs in its own subprocess (so peak memory is each side's own), the reference
first. The script then checks that gaplens' outputs equal the reference's (float32: float tolerance, residuals at the
store's float16 precision; bfloat16/float16, where rounding differs with batching: the median residual difference and
the answers picked, letter and option, on at least 97% of rows) and prints the time and peak-memory ratios; on a GPU also rows/s and tokens/s. The last line is
`gaplens capture time / reference time = R`.

    python benchmarks/bench_reference.py --model smollm2-135m-instruct --task arc-easy --n 400 \\
        --data-dir ../shared/data [--dtype bfloat16] [--device cpu] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--task", default="arc-easy")
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--data-dir", default=os.environ.get("GAPLENS_DATA_DIR"))
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: every available core)")
    p.add_argument("--batch-size", type=int, default=16, help="gaplens --batch-size (the reference batches alike)")
    p.add_argument("--side", choices=("gaplens", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _capture_config(a: argparse.Namespace):  # noqa: ANN202 - built lazily (heavy imports)
    from hooks.capture import CaptureConfig

    return CaptureConfig(model=a.model, task=a.task, data_dir=a.data_dir, n=a.n, variants=("default", "option"),
                         dtype=a.dtype, device=a.device, batch_size=a.batch_size, threads=a.threads)


def _gaplens(a: argparse.Namespace, out: Path) -> dict:
    """The gaplens side: one capture into a fresh store (the model load is not timed)."""
    from hooks.capture import capture
    from hooks.execution import torch_threads
    from hooks.models import load_model
    from hooks.store import Store

    cfg = _capture_config(a)
    model = load_model(a.model, dtype=a.dtype, device=a.device)
    with torch_threads(a.threads):
        t0 = time.perf_counter()
        path = capture(cfg, out / "activations.h5", model=model)
        seconds = time.perf_counter() - t0
    with Store(path) as s:
        r = s.rows
        key = [f"{q}|{v}|{o}" for q, v, o in zip(r["question_id"], r["variant_id"], r["option_index"], strict=True)]
        np.savez(out / "gaplens.npz", key=np.array(key), n_tokens=r["n_tokens"], resid=s.resid_rows(),
                 answer=s.array("answer_logits"), option=s.array("option_logprob"))
    return {"seconds": seconds}


def _reference(a: argparse.Namespace, out: Path) -> dict:
    """The plain HF side: the same token ids through a never-wrapped model, batched like gaplens."""
    import torch

    from eval import variants
    from hooks.capture import select_records
    from hooks.execution import resolve_device, resolve_dtype, torch_threads
    from hooks.models import load_hf, load_tokenizer
    from hooks.rows import option_groups, plan_rows, prefix_batches, row_order

    cfg = _capture_config(a)
    info = load_tokenizer(a.model)
    records = select_records(cfg)
    rows = sorted(plan_rows(info, records, variants.variant_set("default,option"), [], cfg.seed), key=row_order)
    device = resolve_device(a.device)
    hf = load_hf(a.model, dtype=resolve_dtype(a.dtype, device), device=device).model
    pad = info.tokenizer.pad_token_id
    n_layers = hf.config.num_hidden_layers
    final_in: dict[str, torch.Tensor] = {}
    hf.model.norm.register_forward_pre_hook(lambda m, args: final_in.__setitem__("x", args[0]))
    keys, resid, answer, option = [], [], [], []

    def states(out_hidden: tuple, at: torch.Tensor) -> torch.Tensor:
        rows_ = torch.arange(len(at), device=at.device)
        layers = [h[rows_, at] for h in out_hidden[:n_layers]] + [final_in["x"][rows_, at]]
        return torch.stack(layers, dim=1).float().cpu()

    lettered = [r for r in rows if r.option_index < 0]
    opts = [r for r in rows if r.option_index >= 0]
    with torch_threads(a.threads), torch.no_grad():
        t0 = time.perf_counter()
        for start in range(0, len(lettered), a.batch_size):
            part = lettered[start : start + a.batch_size]
            width = max(len(r.ids) for r in part)
            ids = torch.full((len(part), width), pad)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for i, r in enumerate(part):
                ids[i, width - len(r.ids) :] = torch.tensor(r.ids)
                mask[i, width - len(r.ids) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            o = hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                   output_hidden_states=True, logits_to_keep=1)
            last = torch.full((len(part),), width - 1, device=device)
            resid.append(states(o.hidden_states, last))
            for i, r in enumerate(part):
                answer.append(o.logits[i, -1, list(r.choice_ids)].float().cpu().numpy())
                keys.append(f"{r.question_id}|{r.variant}|{r.option_index}")
        groups = option_groups(opts)
        for g0, g1 in prefix_batches(opts, groups, a.batch_size, 4096):
            batch = [opts[s:e] for s, e in groups[g0:g1]]
            prefixes = [q[0].ids[: len(q[0].ids) - q[0].n_cont] for q in batch]
            pw = max(len(p) for p in prefixes)
            pids = torch.full((len(batch), pw), pad)
            pmask = torch.zeros((len(batch), pw), dtype=torch.long)
            for i, p in enumerate(prefixes):
                pids[i, pw - len(p) :] = torch.tensor(p)
                pmask[i, pw - len(p) :] = 1
            pids, pmask = pids.to(device), pmask.to(device)
            first = hf(input_ids=pids, attention_mask=pmask, position_ids=(pmask.cumsum(1) - 1).clamp(min=0),
                       use_cache=True, logits_to_keep=1)
            cache = getattr(first, "cache", None) or first.past_key_values
            owner = torch.tensor([g for g, q in enumerate(batch) for _ in q], device=device)
            cache.batch_select_indices(owner)
            conts = [r.ids[len(r.ids) - r.n_cont :] for q in batch for r in q]
            cw = max(len(c) for c in conts)
            cids = torch.full((len(conts), cw), pad)
            cmask = torch.zeros((len(conts), cw), dtype=torch.long)
            for i, c in enumerate(conts):
                cids[i, : len(c)] = torch.tensor(c)
                cmask[i, : len(c)] = 1
            cids, cmask = cids.to(device), cmask.to(device)
            plen = pmask.sum(1)[owner]
            o = hf(input_ids=cids, attention_mask=torch.cat([pmask[owner], cmask], 1),
                   position_ids=plen[:, None] + torch.arange(cw, device=device)[None], use_cache=True,
                   output_hidden_states=True, **({"cache": cache} if hasattr(first, "cache") else
                                                 {"past_key_values": cache}))
            preds = torch.cat([first.logits[owner][:, -1:].float(), o.logits[:, :-1].float()], 1)
            logp = (preds.gather(2, cids[:, :, None])[:, :, 0] - torch.logsumexp(preds, -1)) * cmask
            resid.append(states(o.hidden_states, cmask.sum(1) - 1))
            flat = [r for q in batch for r in q]
            for i, r in enumerate(flat):
                option.append(float(logp[i].sum()))
                keys.append(f"{r.question_id}|{r.variant}|{r.option_index}")
        seconds = time.perf_counter() - t0
    width = max(len(x) for x in answer) if answer else 0
    ans = np.full((len(keys), max(width, 1)), np.nan, dtype=np.float32)
    for i, x in enumerate(answer):
        ans[i, : len(x)] = x
    opt = np.full(len(keys), np.nan, dtype=np.float32)
    opt[len(answer):] = option
    np.savez(out / "reference.npz", key=np.array(keys), resid=np.concatenate(resid), answer=ans, option=opt,
             n_tokens=np.array([len(r.ids) for r in lettered + opts]))
    return {"seconds": seconds}


def _child(a: argparse.Namespace) -> None:
    out = Path(a.out)
    res = (_gaplens if a.side == "gaplens" else _reference)(a, out)
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / f"{a.side}.json").write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    a = _args(argv)
    if a.side:
        return _child(a)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for side in ("reference", "gaplens"):
            cmd = [sys.executable, __file__, "--side", side, "--out", str(out), "--model", a.model, "--task", a.task,
                   "--n", str(a.n), "--dtype", a.dtype, "--device", a.device, "--threads", str(a.threads),
                   "--batch-size", str(a.batch_size)] + (["--data-dir", a.data_dir] if a.data_dir else [])
            subprocess.run(cmd, check=True, cwd=ROOT)
        ref, gap = (json.loads((out / f"{s}.json").read_text()) for s in ("reference", "gaplens"))
        r, g = np.load(out / "reference.npz"), np.load(out / "gaplens.npz")
        order = {k: i for i, k in enumerate(g["key"].tolist())}
        idx = np.array([order[k] for k in r["key"].tolist()])
        lettered = ~np.isnan(r["answer"][:, 0])
        tol = 1e-3 if a.dtype == "float32" else 5e-2
        width = r["answer"].shape[1]
        dans = np.nanmax(np.abs(g["answer"][idx][lettered][:, :width] - r["answer"][lettered]))
        dopt = np.nanmax(np.abs(g["option"][idx][~lettered] - r["option"][~lettered]))
        gres, rres = g["resid"][idx].astype(np.float32), r["resid"]
        rel = np.linalg.norm(gres - rres, axis=-1) / np.maximum(np.linalg.norm(rres, axis=-1), 1e-6)
        print(f"{a.model} on {a.task}, {a.n} questions, {len(r['key'])} rows ({int(lettered.sum())} lettered, "
              f"{int((~lettered).sum())} option), dtype {a.dtype}, device {a.device}, threads {a.threads or 'all'}")
        print(f"equal to the reference: answer logits max |diff| {dans:.2e}, option log-prob max |diff| {dopt:.2e}, "
              f"residuals max relative diff {rel.max():.2e} (store float16)")
        if a.dtype == "float32":
            ok = dans < tol * 10 and dopt < tol * 10 * max(1, np.abs(r["option"][~lettered]).max() / 100) and \
                rel.max() < 2e-3
        else:
            # Half precision: two correct implementations differ by rounding (8 mantissa bits: batching and padding
            # change the summation order), so the maximum difference grows with depth and length. Checked instead:
            # the typical residual difference and the answers the outputs pick.
            agree = _agreement(r["key"], r["answer"], r["option"], lettered, g["answer"][idx][:, :width],
                               g["option"][idx])
            print(f"half precision: median residual relative diff {np.median(rel):.2e}; the same answer on "
                  f"{agree['letter']:.1%} of lettered rows and {agree['option']:.1%} of questions' option choices")
            ok = np.median(rel) < 2e-2 and agree["letter"] >= 0.97 and agree["option"] >= 0.97
        if not ok:
            raise SystemExit("gaplens' outputs differ from the reference beyond float tolerance")
        tokens = int(r["n_tokens"].sum())
        for name, side in (("reference (plain HF)", ref), ("gaplens capture", gap)):
            extra = ""
            if a.device.startswith("cuda"):
                extra = f", {len(r['key']) / side['seconds']:.0f} rows/s, {tokens / side['seconds']:.0f} tokens/s"
            print(f"{name:22s} {side['seconds']:8.1f} s, peak RSS {side['peak_rss_mib']:7.0f} MiB{extra}")
        print(f"peak memory gaplens / reference = {gap['peak_rss_mib'] / ref['peak_rss_mib']:.2f}")
        print(f"gaplens capture time / reference time = {gap['seconds'] / ref['seconds']:.2f}")


def _agreement(keys: np.ndarray, ref_answer: np.ndarray, ref_option: np.ndarray, lettered: np.ndarray,
               answer: np.ndarray, option: np.ndarray) -> dict[str, float]:
    """Fraction of lettered rows whose argmax symbol agrees, and of questions whose best option (summed log-prob)
    agrees, between the reference and gaplens (rows aligned)."""
    letter = float(np.mean(np.nanargmax(ref_answer[lettered], axis=1) == np.nanargmax(answer[lettered], axis=1)))
    best: dict[str, list[tuple[float, float, str]]] = {}
    for k, ro, go in zip(keys[~lettered].tolist(), ref_option[~lettered].tolist(), option[~lettered].tolist(),
                         strict=True):
        q, _, o = k.rsplit("|", 2)
        best.setdefault(q, []).append((ro, go, o))
    same = [max(v, key=lambda t: t[0])[2] == max(v, key=lambda t: t[1])[2] for v in best.values()]
    return {"letter": letter, "option": float(np.mean(same)) if same else 1.0}


if __name__ == "__main__":
    main()
