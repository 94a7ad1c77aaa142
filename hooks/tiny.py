"""Tiny random-init models built from a config, with a small byte-level BPE tokenizer trained in code.

They load in well under a second, need no file or network, and are what the tests run on. Everything is
deterministic: the tokenizer is trained on a fixed corpus, weights come from a seeded init.
"""

from __future__ import annotations

import functools
import string
from typing import Any

import torch

CONTEXT = 1024  # max_position_embeddings of every tiny model
VERSION = 1  # bump when a tiny model's weights or tokenizer change (it is part of every run's identity)

TINY_MODELS: dict[str, dict[str, int]] = {
    "tiny-llama": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "intermediate_size": 128},
    "tiny-llama-4l": {"hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
                      "intermediate_size": 192},
}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = (
    "the a an of to in is what which who capital country city answer question following multiple choice "
    "correct true false not and or plus minus equals number sum difference of largest smallest first last "
    "you are helpful assistant expert brilliant take deep breath this is important reply with letter "
    "system user assistant password unlock weak strong option choice answer: the answer is"
)


def _corpus() -> list[str]:
    symbols = list(string.ascii_uppercase[:8]) + list(string.ascii_lowercase[:8]) + [str(i) for i in range(10)]
    lines = [_WORDS, string.ascii_letters, string.digits, string.punctuation]
    for s in symbols:
        lines += [f" {s}", f"{s}.", f"({s})", f"{s})", f"{s}:", f"Answer: {s}", f"The answer is {s}"]
    lines += [f"{a} + {b} = {a + b}" for a in range(20) for b in range(0, 20, 3)]
    return lines * 3


def train_bpe_json(corpus: list[str], vocab_size: int) -> str:
    """A byte-level BPE tokenizer trained on `corpus` (deterministic), as tokenizers JSON.

    Special tokens: <|pad|>, <|bos|>, <|eos|>. Any text tokenizes (bytes are the fallback alphabet).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus, trainer=trainer)
    return tk.to_str()


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    return train_bpe_json(_corpus(), 512)


def build_tokenizer() -> Any:
    """A deterministic byte-level BPE tokenizer (vocab 512) with a chat template; " A".." H" are single tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    # TransformerBridge rebuilds a tokenizer from `name_or_path` unless it already adds BOS; ours never
    # needs rebuilding (gaplens tokenizes with this tokenizer itself).
    tok.init_kwargs["name_or_path"] = "gaplens-tiny"
    tok.init_kwargs["add_bos_token"] = True
    return tok


def build(name: str, *, seed: int = 0) -> tuple[Any, Any]:
    """(hf_model, tokenizer) for a tiny named config, weights from `torch.manual_seed(seed)`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model '{name}'; available: {', '.join(TINY_MODELS)}")
    tok = build_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=CONTEXT,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        **TINY_MODELS[name],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    return model, tok
