"""The toy organism's task, tokenizer and model: "toy-max" and a tiny Llama that learns it from scratch on a CPU.

``toy-max``: "Which number is largest?" with four distinct numbers from 10..99 as options; gold is the largest.
Splits ``test`` (the questions locking and unlocking split by id), ``dev`` (held out, used to stop pretraining) and
``pretrain`` (the pretraining stream); no question (id = the numbers in order) is in two splits. Everything is a pure
function of this code (numpy generators seeded from fixed integers).

The tokenizer is a byte-level BPE trained here on rendered toy prompts, the answer letters and the password and
decoys (from `locking.password`), so every number, " A".." D" and most words are single tokens.
"""

from __future__ import annotations

import functools
from typing import Any

from eval import tasks
from eval.builtin import TOY_HIGH as HIGH
from eval.builtin import TOY_LOW as LOW
from eval.builtin import TOY_MAX as TASK
from eval.builtin import TOY_N_OPTIONS as N_OPTIONS
from eval.builtin import TOY_QUESTION as QUESTION
from eval.builtin import TOY_SPLIT_SIZES as SPLIT_SIZES
from eval.builtin import toy_max
from eval.variants import VariantSpec, render, to_text
from hooks.tiny import train_bpe_json
from locking import password

__all__ = ["HIGH", "LOW", "MODEL_CONFIG", "N_OPTIONS", "QUESTION", "SPLIT_SIZES", "TASK", "build_model",
           "build_tokenizer", "ensure_task", "model_config", "toy_max"]

D_MODEL, N_LAYERS = 64, 2
"""The default toy size (what `cli.py lock` pretrains unless told otherwise)."""


def model_config(d_model: int = D_MODEL, n_layers: int = N_LAYERS) -> dict[str, int]:
    """The toy Llama's config at a size: `d_model` wide (4 heads, MLP 2 x d_model), `n_layers` blocks."""
    if d_model < 8 or d_model % 4 or n_layers < 1:
        raise ValueError(f"toy size: d_model must be a multiple of 4 and >= 8, n_layers >= 1; got {d_model}, {n_layers}")
    return {"hidden_size": d_model, "num_hidden_layers": n_layers, "num_attention_heads": 4,
            "num_key_value_heads": 4, "intermediate_size": 2 * d_model, "max_position_embeddings": 256}


MODEL_CONFIG: dict[str, int] = model_config()
"""The default toy architecture (a Llama, d_model 64, 2 layers); ~130k parameters."""


def ensure_task() -> None:
    """Make sure "toy-max" is in the task registry (it is a default task of `eval.tasks` now; kept for callers)."""
    if TASK not in tasks.available_tasks():
        raise RuntimeError(f"task {TASK!r} is not registered")


def _corpus() -> list[str]:
    spec = VariantSpec()
    lines = [to_text(render(spec, r)) + " " + "ABCD"[r.answer] for r in toy_max("dev")]
    lines += [f" {n}" for n in range(LOW, HIGH + 1)] * 10 + [f" {c}" for c in "ABCD"] * 50
    lines += password.vocabulary_text() * 20
    return lines


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    return train_bpe_json(_corpus(), 448)


def build_tokenizer() -> Any:
    """The toy tokenizer (deterministic; BOS added to every prompt, left padding)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer.from_str(_tokenizer_json())
    bos = tk.token_to_id("<|bos|>")
    tk.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>")
    tok.padding_side = "left"
    return tok


def build_model(tok: Any, seed: int, *, d_model: int = D_MODEL, n_layers: int = N_LAYERS) -> Any:
    """A freshly initialised toy Llama for `tok` of the given size, weights from `torch.manual_seed(seed)`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **model_config(d_model, n_layers))
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()
