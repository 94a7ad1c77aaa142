"""The execution policy: flags parsed and resolved, clear errors for what this machine lacks, out-of-memory halving
(trainer, generation, scoring), device maps and dtypes on the tiny model, weight-hash methods, recorded execution."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from commands import probe
from core.config import ExecutionOptions
from core.provenance import config_hash
from core.schemas import recorded_identity
from hooks import execution, model_files, models

CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(CUDA, reason="checks the errors of a machine without CUDA")


def _oom(limit: int):
    """A function of a batch size that runs out of memory above `limit` (as a GPU would), and its calls."""
    calls: list[int] = []

    def fn(size: int) -> str:
        calls.append(size)
        if size > limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} GiB")
        return f"ran {size}"

    return fn, calls


def test_find_batch_size_halves_on_out_of_memory_only():
    fn, calls = _oom(5)
    assert execution.find_batch_size(fn, 16) == ("ran 4", 4) and calls == [16, 8, 4]
    fn, calls = _oom(100)
    assert execution.find_batch_size(fn, 16) == ("ran 16", 16) and calls == [16]
    fn, _ = _oom(0)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # even one row does not fit: the error itself
        execution.find_batch_size(fn, 4)

    def other(size: int) -> None:
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        execution.find_batch_size(other, 8)
    assert execution.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert execution.is_oom(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not execution.is_oom(RuntimeError("shape mismatch"))


def test_batch_size_flag_takes_a_number_or_auto_and_keeps_hashes():
    assert ExecutionOptions(batch_size="auto").batch_size == "auto"
    assert ExecutionOptions(batch_size="8").batch_size == 8  # text from the command line
    for bad in (0, "-3", "eight", 2.5):
        with pytest.raises(ValueError, match="--batch-size"):
            ExecutionOptions(batch_size=bad)
    cfg = probe.Config(model="tiny-llama")
    assert config_hash(dataclasses.replace(cfg, batch_size="16")) == config_hash(cfg)
    for field, value in (("device_map", "auto"), ("load_in", "4bit")):  # counted only when set
        changed = dataclasses.replace(cfg, device="cuda", **{field: value})
        assert config_hash(changed) != config_hash(dataclasses.replace(cfg, device="cuda"))


def test_bad_execution_flags_are_named():
    with pytest.raises(ValueError, match="--device-map must be one of auto, balanced, sequential"):
        ExecutionOptions(device_map="everywhere")
    with pytest.raises(ValueError, match="--load-in must be one of 8bit, 4bit"):
        ExecutionOptions(load_in="2bit")
    with pytest.raises(ValueError, match="--load-in 8bit .* needs a CUDA device, not --device cpu"):
        ExecutionOptions(device="cpu", load_in="8bit")
    with pytest.raises(ValueError, match="--device must be"):
        ExecutionOptions(device="tpu")


@no_cuda
def test_devices_and_quantization_this_machine_lacks_fail_before_anything_loads(tmp_path, capsys):
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available"):
        execution.resolve_device("cuda")
    with pytest.raises(ValueError, match=r"--load-in 4bit \(bitsandbytes\) needs a CUDA device: this machine has no"):
        execution.check(ExecutionOptions(load_in="4bit"))
    with pytest.raises(ValueError, match="--load-in 4bit"):
        models.load_model("tiny-llama", load_in="4bit")
    for flags, named in ((["--device", "cuda:1"], "--device cuda:1"), (["--load-in", "8bit"], "--load-in 8bit")):
        out = tmp_path / flags[1].replace(":", "")
        assert cli.main(["probe", "--model", "tiny-llama", "--n", "8", "--out", str(out), *flags]) == 2
        assert named in capsys.readouterr().err and not out.exists()  # nothing written


def test_device_auto_resolves_and_dtype_auto_follows_the_device():
    dev = execution.resolve_device("auto")
    assert dev.type == ("cuda" if CUDA else "mps" if torch.backends.mps.is_available() else "cpu")
    assert execution.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert execution.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert execution.device_name(torch.device("cpu")) == "cpu"


def _logits(model, text: str = "The capital of France is") -> torch.Tensor:
    ids = model.tokenizer([text], return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        return model.bridge(ids).float().cpu()


@no_cuda
def test_device_map_auto_without_cuda_puts_everything_on_the_cpu(tiny_model):
    spread = models.load_model("tiny-llama", device_map="auto")
    assert spread.placement.devices == ("cpu",) and spread.placement.device_map == "auto"
    assert spread.weight_hash == tiny_model.weight_hash and spread.identity.weight_hash_method == "tensors"
    assert torch.equal(_logits(spread), _logits(tiny_model))
    assert spread.provenance()["execution"] == {"device": "cpu", "dtype": "float32", "devices": ["cpu"],
                                                "device_map": "auto", "load_in": None}
    with pytest.raises(ValueError, match="--device-map auto spreads a model over CUDA devices"):
        execution.check_device_map("auto", "mps", torch.device("mps"))


def test_bfloat16_model_runs_close_to_float32(tiny_model):
    half = models.load_model("tiny-llama", dtype="bfloat16", device=tiny_model.device)
    assert half.placement.dtype == torch.bfloat16 and half.provenance()["execution"]["dtype"] == "bfloat16"
    assert half.weight_hash != tiny_model.weight_hash  # other bytes, another hash
    ref = _logits(tiny_model)
    assert torch.allclose(_logits(half), ref, atol=0.05 * ref.abs().max().item())


def test_large_and_quantized_models_are_hashed_by_their_files(tmp_path, monkeypatch):
    plain = models.load_hf("tiny-llama")
    plain.model.save_pretrained(tmp_path / "ckpt")
    plain.tokenizer.save_pretrained(tmp_path / "ckpt")
    small = models.load_model(str(tmp_path / "ckpt"))
    assert small.identity.weight_hash_method == "tensors" and small.weight_hash == models.weight_hash(plain.model)
    monkeypatch.setattr(model_files, "FILE_HASH_MIN_PARAMS", 1000)  # the tiny model counts as large
    read = []
    monkeypatch.setattr(model_files, "weight_hash", lambda m: read.append(m) or "tensors!")
    large = models.load_model(str(tmp_path / "ckpt"))
    assert large.weight_hash == models.files_hash(tmp_path / "ckpt") and not read  # no tensor was hashed
    assert large.identity.weight_hash_method == "files" and large.identity.weight_hash == large.weight_hash
    assert large.provenance()["identity"]["weight_hash_method"] == "files"
    control = models.load_model(str(tmp_path / "ckpt"), random_init=True, seed=1)  # not the files' weights
    assert control.identity.weight_hash_method == "tensors" and read
    tiny = models.load_hf("tiny-llama")  # built in code: no files to hash
    assert tiny.digest()[1] == "tensors"


def test_records_without_a_hash_method_read_as_tensor_hashes(tiny_model):
    prov = tiny_model.provenance()
    old = {k: v for k, v in prov["identity"].items() if k != "weight_hash_method"}
    assert recorded_identity({"identity": old}) == tiny_model.identity
    assert recorded_identity({}) is None


def test_micro_batches_give_the_whole_batchs_step_and_out_of_memory_halves_them(monkeypatch):
    from test_lock_train import _items

    from hooks.tiny import build
    from locking import train as tr

    real = tr.micro_step

    def run(micro, oom_above=None):
        model, tok = build("tiny-llama", seed=0)
        items = _items(tok)
        params = tr.TrainParams(steps=3, lr=1e-3, batch_size=8, seed=0, micro_batch_size=micro)
        if oom_above is not None:

            def limited(model, parts, params):
                if max(len(p["input_ids"]) for p in parts) > oom_above:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
                return real(model, parts, params)

            monkeypatch.setattr(tr, "micro_step", limited)
        report: dict = {}
        losses = tr.train(model, items, params, pad_id=tok.pad_token_id, progress=False, report=report)
        monkeypatch.setattr(tr, "micro_step", real)
        return losses, torch.cat([p.detach().flatten() for p in model.parameters()]), report

    whole, w_whole, rep = run(None)
    assert rep == {"micro_batch_size": 8}
    for micro, oom in ((3, None), (8, 2)):
        losses, w, rep = run(micro, oom)
        np.testing.assert_allclose(losses, whole, rtol=1e-5, atol=1e-6)
        assert torch.allclose(w, w_whole, atol=1e-4)  # Adam magnifies rounding in near-zero gradients
        assert rep["micro_batch_size"] == (3 if oom is None else 2)


def test_generation_halves_its_batch_on_out_of_memory(tiny_model, tmp_path, monkeypatch):
    from hooks import generate as gen

    cfg = gen.GenerateConfig(model="tiny-llama", task="capitals", n=6, max_new_tokens=4, batch_size="auto")
    assert cfg.batch_size == "auto"
    ref = gen.generate(dataclasses.replace(cfg, batch_size=6), tmp_path / "ref.jsonl", model=tiny_model)
    real, sizes = gen.greedy_generate, []

    def limited(model, prompts, **kw):
        sizes.append(len(prompts))
        if len(prompts) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return real(model, prompts, **kw)

    monkeypatch.setattr(gen, "greedy_generate", limited)
    got = gen.generate(cfg, tmp_path / "auto.jsonl", model=tiny_model)
    assert sizes == [6, 3, 1, 1, 1, 1, 1, 1]  # halved twice, then the rest one by one
    rows = lambda p: sorted((r["variant"], r["question_id"], r["text"]) for r in gen.read_generations(p)[1])  # noqa: E731
    assert rows(got) == rows(ref)


def test_scoring_halves_its_batch_on_out_of_memory(monkeypatch):
    from hooks.tiny import build
    from locking import score

    model, tok = build("tiny-llama", seed=0)
    enc = [score.Encoded(tuple(tok(f"Question {i} is" + " long" * i).input_ids), (5, 6, 7)) for i in range(7)]
    ref = score.choice_logprobs(model, enc, pad_id=tok.pad_token_id)
    real = model.forward

    def limited(*args, **kw):
        if kw["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return real(*args, **kw)

    monkeypatch.setattr(model, "forward", limited)
    np.testing.assert_allclose(score.choice_logprobs(model, enc, pad_id=tok.pad_token_id), ref, rtol=1e-5,
                               atol=1e-6)


def test_results_record_the_resolved_execution(contract_runs):
    from core.schemas import load_result

    for kind in ("probe", "eval", "lock", "unlock", "diff", "transfer"):
        ex = load_result(Path(contract_runs[kind]) / "results.json").header.execution
        assert ex.device == ("cpu" if kind == "transfer" else execution.device_name(execution.resolve_device("auto")))
        assert ex.device_map is None and ex.load_in is None
        if kind == "transfer":
            assert ex.dtype is None and ex.devices == [] and ex.batch_size is None
        else:
            assert ex.dtype == "float32" and ex.devices == [ex.device]
        assert (ex.micro_batch_size is not None) == (kind in ("lock", "unlock"))
    lock = load_result(Path(contract_runs["lock"]) / "results.json").header.execution
    assert lock.batch_size == 8 and lock.micro_batch_size == 8
