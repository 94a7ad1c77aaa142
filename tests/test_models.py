"""Model loading: names, local directories, errors, hashes, and the bridge against Hugging Face."""

from __future__ import annotations

import pytest
import torch

from hooks.models import ModelError, available_models, load_hf, load_model, weight_hash


@pytest.mark.numerics
def test_bridge_logits_equal_hf_logits(tiny_model):
    tok = tiny_model.tokenizer
    enc = tok(["What is the capital of France?", "Answer: A"], return_tensors="pt", padding=True).to(tiny_model.device)
    with torch.no_grad():
        bridge = tiny_model.bridge(enc.input_ids, attention_mask=enc.attention_mask)
        hf = tiny_model.hf_model(**enc).logits
    assert torch.allclose(bridge, hf, atol=1e-5)


def test_unknown_name_lists_available():
    with pytest.raises(ModelError) as err:
        load_model("no-such-model")
    for name in available_models():
        assert name in str(err.value)


def _save_tiny(path):
    plain = load_hf("tiny-llama")  # never wrapped by a bridge, so it can be saved
    plain.model.save_pretrained(path)
    plain.tokenizer.save_pretrained(path)


def test_local_dir_round_trip_keeps_weight_hash(tiny_model, tmp_path):
    _save_tiny(tmp_path / "ckpt")
    again = load_model(str(tmp_path / "ckpt"))
    assert again.source == "local"
    assert again.weight_hash == tiny_model.weight_hash


def test_missing_config_and_corrupt_weights_are_named(tiny_model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model(str(tmp_path / "empty"))
    ckpt = tmp_path / "corrupt"
    _save_tiny(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not load checkpoint"):
        load_model(str(ckpt))


def test_random_init_changes_weights_but_not_architecture(tiny_model):
    control = load_model("tiny-llama", random_init=True, seed=1)
    assert control.random_init
    assert control.weight_hash != tiny_model.weight_hash
    assert control.n_layers == tiny_model.n_layers and control.d_model == tiny_model.d_model


def test_weight_hash_sees_a_single_changed_value(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model.hf_model)
    before = weight_hash(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert weight_hash(model) != before


def test_wrapped_model_saves_as_plain_checkpoint(tmp_path):
    model = load_model("tiny-llama", seed=3)
    with torch.no_grad():  # an update made through the wrapped model must reach the saved file
        model.hf_model.lm_head.weight.add_(0.5)
    model.save(tmp_path / "saved")
    again = load_model(str(tmp_path / "saved"))
    assert again.weight_hash == weight_hash_of_plain(again)
    assert torch.allclose(again.hf_model.lm_head.weight, model.hf_model.lm_head.weight)


def weight_hash_of_plain(loaded):
    plain = load_hf(loaded.path)
    return weight_hash(plain.model)


def test_cache_litter_of_killed_runs_is_cleaned_and_a_damaged_cache_is_refused(tiny_model, tmp_path):
    import json
    import os
    import socket
    import subprocess

    from hooks import model_files as models

    parent = tmp_path / "models"
    parent.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = parent / ".smollm2.abc"
    killed.mkdir()
    (killed / models.OWNER).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    running = parent / ".smollm2.def"
    running.mkdir()
    (running / models.OWNER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert models.clean_litter(parent) == [killed] and running.exists()
    # a cache directory is used only while its files hash to its record
    target = parent / "tiny"
    with models.atomic_dir(target) as tmp:
        tiny_model.save(tmp)
        (tmp / models.CACHE_RECORD).write_text(json.dumps({"files_hash": models.files_hash(tmp)}))
    assert models.cache_ok(target) and not (target / models.OWNER).exists()
    weights = next(target.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    assert not models.cache_ok(target)
def test_model_kind_is_decided_from_records_registry_and_template_never_the_name(tmp_path) -> None:
    from types import SimpleNamespace

    from hooks.models import FINETUNE_RECORDS, model_kind

    chat, plain = SimpleNamespace(chat_template="{{ x }}"), SimpleNamespace(chat_template=None)
    assert model_kind("gemma-3-270m", None, chat) == ("base", "registry")  # its tokenizer has a template anyway
    assert model_kind("smollm2-135m-instruct", None, plain) == ("instruct", "registry")
    assert model_kind("org/some-instruct-model", None, plain) == ("base", "default")  # the name says nothing
    assert model_kind("org/base-model", None, chat) == ("instruct", "chat-template")
    for record, source in FINETUNE_RECORDS.items():
        ckpt = tmp_path / source
        ckpt.mkdir()
        (ckpt / record).write_text("{}")
        assert model_kind(str(ckpt), str(ckpt), chat) == ("fine-tuned", source)
    from commands import unlock
    from locking import checkpoint

    assert {checkpoint.LOCK_META, unlock.MODEL_META} == set(FINETUNE_RECORDS)  # the files locking writes
