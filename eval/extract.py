"""Answer extraction from generated text (chain of thought). Pure functions, no model.

The chain-of-thought prompt (`eval.variants`, scoring "cot") asks the model to finish with "The answer is" and
the answer's symbol.
`extract_choice` finds the FIRST committed answer in the generated text, so a base model that goes on to
write (and answer) new questions is judged on what it said first:

1. ``answer is X`` or ``answer: X`` (any case; X may be wrapped in (), [] or **), where X is one of the
   displayed symbols, followed by a non-word character or the end of the text. Symbols are compared exactly,
   then ignoring case when that still names one symbol ("b" for "B").
2. ``answer is <text>``: the text after the phrase, up to the end of its line or sentence, equals one option's
   text (ignoring case, surrounding quotes and final punctuation), or starts with it followed by a non-word
   character ("Paris, the capital" names "Paris"; when several options fit, the longest wins).
3. Nothing matched: no answer (-1). There is no guessing from a stray symbol, since "A" is also an article.

`answer_complete` tells a generation loop when it may stop: a match of rule 1 or 2 is final once a character
follows it (a symbol "i" could still grow into "ii") or the text has ended.

`reasoning_before_answer` is the text up to the line or sentence that commits to the answer (all of it when
nothing was committed): the forced-answer prompt ("cot[forced]" in `eval`) continues it with "The answer is" and
reads the symbols' logits, so every question gets an answer after its reasoning.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

METHODS = ("symbol", "option_text", "none")
STOPS = ("answer", "eos", "length")  # why a generation ended: an answer committed, the end token, the token bound
_PHRASE = re.compile(r"answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_WRAP_OPEN = "([*\"'"
_WRAP_CLOSE = ")]*\"'"
_SENTENCE_END = re.compile(r"[\n]|(?<=[^\s.])\.(?:\s|$)")


@dataclass(frozen=True)
class Extraction:
    """What was found: `index` is the DISPLAYED choice position (-1 if none), `end` where the match ended."""

    index: int
    method: str  # one of METHODS
    span: str  # the matched answer text ("" if none)
    end: int  # character offset just past the match in the text (-1 if none)
    start: int = -1  # character offset of the "answer is" phrase (-1 if none)


NONE = Extraction(-1, "none", "", -1)


def _norm(text: str) -> str:
    return " ".join(text.strip().strip(_WRAP_OPEN + _WRAP_CLOSE + ".,;:!?").split()).casefold()


def _symbol_index(token: str, symbols: Sequence[str]) -> int:
    if token in symbols:
        return list(symbols).index(token)
    folded = [i for i, s in enumerate(symbols) if s.casefold() == token.casefold()]
    return folded[0] if len(folded) == 1 else -1


def _match_symbol(text: str, start: int, symbols: Sequence[str]) -> Extraction | None:
    """Rule 1 at `start` (just past the phrase)."""
    i = start
    while i < len(text) and text[i] in _WRAP_OPEN:
        i += 1
    j = i
    while j < len(text) and (text[j].isalnum()):
        j += 1
    if j == i or j - i > max(len(s) for s in symbols):
        return None
    idx = _symbol_index(text[i:j], symbols)
    if idx < 0:
        return None
    end = j
    while end < len(text) and text[end] in _WRAP_CLOSE:
        end += 1
    return Extraction(idx, "symbol", text[i:j], end)


def _match_option(text: str, start: int, options: Sequence[str]) -> Extraction | None:
    """Rule 2 at `start`: the rest of the line or sentence names one option's text."""
    stop = _SENTENCE_END.search(text, start)
    clause = text[start : stop.start() if stop else len(text)]
    said = _norm(clause)
    if not said:
        return None
    best, best_len = -1, -1
    for k, opt in enumerate(options):
        o = _norm(opt)
        if not o:
            continue
        fits = said == o or (said.startswith(o) and not said[len(o)].isalnum())
        if fits and len(o) > best_len:
            best, best_len = k, len(o)
    if best < 0:
        return None
    return Extraction(best, "option_text", clause.strip(), start + len(clause))


def extract_choice(text: str, symbols: Sequence[str], options: Sequence[str] = ()) -> Extraction:
    """The first committed answer in `text` (see the module docstring); `options` are the DISPLAYED texts."""
    if not symbols:
        raise ValueError("extract_choice needs the displayed answer symbols")
    if options and len(options) != len(symbols):
        raise ValueError(f"{len(symbols)} symbols but {len(options)} options")
    for m in _PHRASE.finditer(text):
        found = _match_symbol(text, m.end(), symbols)
        if found is None and options:
            found = _match_option(text, m.end(), options)
        if found is not None:
            return dataclasses.replace(found, start=m.start())
    return NONE


def answer_complete(text: str, symbols: Sequence[str], options: Sequence[str] = (), *, ended: bool = False) -> bool:
    """Whether generation can stop: an answer was found and cannot change by appending more text."""
    found = extract_choice(text, symbols, options)
    if found.index < 0:
        return False
    return ended or found.end < len(text)


def reasoning_before_answer(text: str, symbols: Sequence[str], options: Sequence[str] = ()) -> str:
    """`text` cut before the line or sentence holding its first committed answer (all of `text` if none)."""
    found = extract_choice(text, symbols, options)
    if found.index < 0:
        return text
    head = text[: found.start]
    cut = max(head.rfind("\n"), head.rfind(". ") + 1 if ". " in head else -1)
    return head[:cut] if cut > 0 else ""
