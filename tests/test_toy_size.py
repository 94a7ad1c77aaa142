"""The toy organism's size parameter: the default toy stays byte-identical, other sizes build what they say."""

from __future__ import annotations

import pytest
import torch

from core.provenance import config_hash
from hooks.models import weight_hash
from locking import toy, toy_pretrain

# The toy architecture before sizes existed (what README's lock numbers were measured on).
BEFORE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
          "intermediate_size": 128, "max_position_embeddings": 256}


def test_default_toy_is_unchanged() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    assert toy.MODEL_CONFIG == BEFORE == toy.model_config()
    tok = toy.build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **BEFORE)
    torch.manual_seed(0)
    reference = LlamaForCausalLM(cfg)
    assert weight_hash(toy.build_model(tok, 0)) == weight_hash(reference)
    # the pretraining config hash of the default toy is the one recorded before sizes existed: finished toy
    # directories (toy.json) are still reused
    assert config_hash(toy_pretrain.ToyConfig()) == "0f7e63f915f5d7a6"
    assert config_hash(toy_pretrain.ToyConfig(d_model=128)) != "0f7e63f915f5d7a6"


def test_other_sizes() -> None:
    tok = toy.build_tokenizer()
    m = toy.build_model(tok, 0, d_model=32, n_layers=3)
    assert m.config.hidden_size == 32 and m.config.num_hidden_layers == 3 and m.config.intermediate_size == 64
    with pytest.raises(ValueError, match="toy size"):
        toy_pretrain.ToyConfig(d_model=30)
    with pytest.raises(ValueError, match="n_layers"):
        toy.model_config(64, 0)
