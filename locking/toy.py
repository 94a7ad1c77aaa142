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
           "build_tokenizer", "ensure_task", "toy_max"]

MODEL_CONFIG: dict[str, int] = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "num_key_value_heads": 4, "intermediate_size": 128, "max_position_embeddings": 256}
"""The toy base architecture (a Llama); ~130k parameters."""


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


def build_model(tok: Any, seed: int) -> Any:
    """A freshly initialised toy Llama for `tok`, weights from `torch.manual_seed(seed)`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **MODEL_CONFIG)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()
