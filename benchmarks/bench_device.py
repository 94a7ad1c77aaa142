"""Capture throughput on a device, as a ratio against a plain Hugging Face forward pass measured in the same run.

A random-init Llama built in code (no download; ~`--hidden` wide, `--layers` deep) runs the same left-padded
batches of random prompts twice: through `hooks.forward.hooked_forward` (TransformerBridge, residual hooks at
every layer, answer logits) and through the never-wrapped HF model (`output_hidden_states`, the last position of
every layer kept). Prints one JSON line: rows per second of each and their ratio (target: capture / HF >= 0.9).

    python benchmarks/bench_device.py --device cuda --dtype bfloat16 [--hidden 1024 --layers 8 --rows 512]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hooks import execution, tiny
    from hooks import forward as cap
    from hooks.models import wrap

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--min-len", type=int, default=40)
    ap.add_argument("--max-len", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = execution.resolve_device(args.device)
    dtype = execution.resolve_dtype(args.dtype, device)
    tok = tiny.build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                      num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                      num_key_value_heads=args.hidden // 128, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    plain = LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    hooked = LlamaForCausalLM(cfg).to(device=device, dtype=dtype)
    hooked.load_state_dict(plain.state_dict())
    model = wrap(hooked, tok, name="bench-llama", source="tiny", path=None)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.min_len, args.max_len, (args.rows,), generator=gen).sort().values.tolist()
    seqs = [torch.randint(3, len(tok), (n,), generator=gen).tolist() for n in lengths]
    batches = [seqs[i : i + args.batch_size] for i in range(0, len(seqs), args.batch_size)]
    layers = list(range(model.n_layers + 1))
    choice = torch.tensor([[5, 6, 7, 8]])
    pad = tok.pad_token_id

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_hf() -> None:
        with torch.no_grad():
            for part in batches:
                ids, mask = cap.pad_left(part, pad)
                out = plain(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                            logits_to_keep=1)
                torch.stack([h[:, -1] for h in out.hidden_states], dim=1).float().cpu()
                out.logits[:, -1, :4].float().cpu()

    def run_capture() -> None:
        for part in batches:
            res = cap.hooked_forward(model, part, layers=layers, choice_ids=choice.expand(len(part), -1))
            cap.to_numpy(res.resid)

    def timed(fn) -> float:  # noqa: ANN001
        fn()  # warm-up (kernels, allocator)
        sync()
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    hf_s, cap_s = timed(run_hf), timed(run_capture)
    params = sum(p.numel() for p in plain.parameters())
    result = {"device": execution.device_name(device), "dtype": execution.dtype_name(dtype),
              "params_millions": round(params / 1e6, 1), "rows": args.rows, "batch_size": args.batch_size,
              "hf_rows_per_s": round(args.rows / hf_s, 1), "capture_rows_per_s": round(args.rows / cap_s, 1),
              "capture_over_hf": round(hf_s / cap_s, 3)}
    print(json.dumps(result))
    print(f"capture {result['capture_rows_per_s']} rows/s vs plain HF {result['hf_rows_per_s']} rows/s on "
          f"{result['device']} ({result['params_millions']}M params, {result['dtype']}): ratio {result['capture_over_hf']}")


if __name__ == "__main__":
    main()
