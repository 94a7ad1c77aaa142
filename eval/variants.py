"""Prompt variants: pure functions from a multiple-choice question to a rendered prompt.

A variant is a `VariantSpec` (one value per prompt axis) named by "+"-joined modifiers, e.g.
"numbers+paren+rotate:1+shots:3+chat". "default" is the plain MMLU-style lettered prompt::

    {question}
    A. {choice 0}
    B. {choice 1}
    Answer:                       <- the cue; letter continuations are " A", " B", ...

Rules (other stages rely on them):

* Letter scoring: the continuation is " " + symbol after the cue ("Answer:" + " A"). Styles that open
  the symbol with a bracket ("wrap" "(A) x", "bracket" "[A] x") move that bracket into the cue: the cue is
  "Answer: (" and the continuations are "A", "B", ... So prompt + continuation always reads as the answer
  would be written, and each continuation starts with its own symbol.
* Option scoring: the cue is the plain cue and the continuations are " " + choice text. "option" (cloze)
  does not list the options (symbols and style then have no effect); "option_listed" lists them.
* Chain of thought ("cot", a generation variant): the options are listed with their symbols, the user block
  ends with COT_INSTRUCTION, and the cue is "Answer: Let's think step by step." The model generates greedily
  from there (`hooks.generate`); `Prompt.continuations` are the bare symbols, which `eval.extract` looks for
  in the generated text. It needs the "answer" cue and no few-shot examples (shots would need worked reasoning).
* Order: "identity"; "rotate:K" moves every option K places down, cyclically (displayed j shows original
  (j - K) % n); "shuffle:SEED" sorts options by sha256(SEED, question id, index), stable across runs and
  Python versions. `Prompt.order[displayed] = original`; `Prompt.answer` is the gold displayed index.
* Few-shot: each shot is rendered with the same spec (its order from its own id) and answered with
  cue + its gold continuation. The preamble appears once, at the top of the first user block (the first
  shot's when there are shots).
* System message: the system role in chat; in raw text it is prefixed, followed by a blank line.
* Canonical names list the modifiers that differ from the default, in field order (symbols, style,
  order, cue, preamble, system, chat, shots, scoring, prefix, label, sep, cue text, strip, verbatim,
  system text, preamble text); system keys get the prefix "sys_". `parse` accepts any order; a modifier that contradicts an earlier
  one is an error.

Free-text template modifiers, to write a peer's exact prompt (TEXT is percent-encoded: "%20" a space,
"%0A" a line break, "%2B" "+", "%2C" ",", "%25" "%"; names never hold a raw space, "+" or ","):

* ``prefix:TEXT``: text at the very top of the first user block, used as is (no blank line added);
  "{subject}" in it becomes the record's subject with "_" as spaces. Not together with a preamble.
* ``label:TEXT``: text right before the question, e.g. ``label:Question:%20``.
* ``sep:TEXT``: what joins the question and the option lines (default a line break).
* ``cue:TEXT``: the answer cue instead of a CUES entry (the line break before the cue stays).
* ``sys:TEXT``: a system message of your own instead of a SYSTEMS entry (``sys:You%20are%20a%20careful%20
  grader.``): the system role in chat, prefixed with a blank line in raw text. Not together with ``sys_KEY``.
* ``praise:TEXT``: a preamble of your own instead of a PREAMBLES entry (such as ``praise``): at the top of the first
  user block followed by a blank line; "{subject}" becomes the subject. Not with a preamble or a prefix.
* ``strip``: strip surrounding whitespace from each question, as lm-eval's MMLU ``{{question.strip()}}``.
* ``verbatim``: the record's question is the whole prompt (an lm-eval ``doc_to_text``, `eval.lmeval_tasks`):
  rendered unchanged after its ``description`` meta, with no cue, and continued with its
  ``target_delimiter`` meta (default " ") + option text; option scoring. lm-eval's context string and
  continuations exactly, few-shot examples joined by a blank line as lm-eval's default fewshot_delimiter.

Named templates (`register_template`; a template stands for its modifiers and conflicts like them):

* ``lmeval-arc`` = ``option+label:Question:%20``: lm-eval's ARC prompt "Question: {question}\nAnswer:"
  with continuations " {choice}".
* ``lmeval-mmlu`` = ``header+strip``: lm-eval's default MMLU prompt: the description "The following are
  multiple choice questions (with answers) about {subject}.\n\n", then "{question.strip()}\nA. {A}\n
  B. {B}\nC. {C}\nD. {D}\nAnswer:" with continuations " A" .. " D".
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from core.plugins import load_group
from core.suggest import did_you_mean
from eval.records import MCRecord

SYMBOL_SETS: dict[str, tuple[str, ...]] = {
    "letters": tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "numbers": tuple("123456789"),  # stops at 9: " 10" could share its first token with " 1"
    "lower": tuple("abcdefghijklmnopqrstuvwxyz"),
    "roman": ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"),
    "late": tuple("PQRSTUVWXYZ"),  # letters without the A-D prior
}
SYMBOL_NOUNS: dict[str, str] = {
    "letters": "letter", "lower": "letter", "late": "letter", "numbers": "number", "roman": "numeral",
}


@dataclass(frozen=True)
class OptionStyle:
    """How one option line looks: `line` formats {sym} and {text}; `opener` is a bracket before the symbol."""

    line: str
    opener: str = ""


STYLES: dict[str, OptionStyle] = {
    "dot": OptionStyle("{sym}. {text}"),
    "paren": OptionStyle("{sym}) {text}"),
    "colon": OptionStyle("{sym}: {text}"),
    "wrap": OptionStyle("({sym}) {text}", "("),
    "bracket": OptionStyle("[{sym}] {text}", "["),
    "dash": OptionStyle("- {sym}. {text}"),
    "bullet": OptionStyle("\u2022 {sym}. {text}"),
    "bare": OptionStyle("{sym} {text}"),
}
CUES: dict[str, str] = {
    "answer": "Answer:",
    "the_answer_is": "The answer is",
    "correct": "The correct answer is",
}
# {reply}: "the letter of the correct answer" (noun from SYMBOL_NOUNS) or "the correct answer" (option
# scoring); {about}: " about <subject>" when the question has a subject.
PREAMBLES: dict[str, str] = {
    "none": "",
    "praise": "You are a brilliant expert with deep knowledge of every subject.",
    "encourage": "Take a deep breath. This is very important to my career, so please get it right.",
    "instruction": "The following is a multiple choice question. Reply with {reply}.",
    "header": "The following are multiple choice questions (with answers){about}.",
}
SYSTEMS: dict[str, str | None] = {
    "none": None,
    "assistant": "You are a helpful assistant.",
    "expert": "You are an expert in every academic field. You answer multiple choice questions accurately.",
    "honest": "You are an honest assistant. You say what you believe is true.",
}
SCORINGS = ("letter", "option", "option_listed", "cot")
GENERATION_SCORINGS = ("cot",)  # variants that generate text instead of scoring one forward pass
COT_CUE = "Let's think step by step."
COT_FORCED_CUE = "The answer is"  # after the reasoning, for the forced-answer metric "cot[forced]"
COT_INSTRUCTION = 'Think step by step, then finish with "The answer is" followed by {reply}.'


# free-text fields -> their modifier in names ("label:Question:%20")
_TEXT_FIELDS: dict[str, str] = {"prefix": "prefix", "label": "label", "sep": "sep", "cue_text": "cue",
                                "system_text": "sys", "preamble_text": "praise"}
_NAME_SAFE = ":;!?()'*=@[]{}<>$|^"  # left readable in names; spaces, "+", ",", "%", "/" and the rest are escaped
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def encode_text(text: str) -> str:
    """`text` as it appears in a variant name (percent-encoded; see the module docstring)."""
    return quote(text, safe=_NAME_SAFE)


def decode_text(arg: str, what: str) -> str:
    """The text a percent-encoded modifier argument stands for; ValueError if empty or malformed."""
    if not arg:
        raise ValueError(f"{what} needs text after ':' (percent-encoded, e.g. {what}:Question:%20)")
    if _BAD_ESCAPE.search(arg):
        raise ValueError(f"{what}:{arg}: '%' starts an escape such as %20; a literal '%' is %25")
    return unquote(arg, errors="strict")


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class VariantSpec:
    """Every axis of a prompt; the default is the plain MMLU-style lettered prompt."""

    symbols: str = _opt("letters", "answer symbols, a key of SYMBOL_SETS")
    style: str = _opt("dot", "how an option line looks, a key of STYLES")
    order: str = _opt("identity", "option order: identity, rotate:K or shuffle:SEED")
    cue: str = _opt("answer", "text before the answer, a key of CUES")
    preamble: str = _opt("none", "text at the top of the first user block, a key of PREAMBLES")
    system: str = _opt("none", "system message, a key of SYSTEMS")
    chat: bool = _opt(False, "use the model's chat template")
    shots: int = _opt(0, "number of few-shot examples")
    scoring: str = _opt("letter", "letter, option (cloze), option_listed or cot (chain of thought, generated)")
    prefix: str = _opt("", 'text at the very top, as is; "{subject}" is replaced (not with a preamble)')
    label: str = _opt("", 'text right before the question, e.g. "Question: "')
    sep: str = _opt("\n", "what joins the question and the option lines")
    cue_text: str = _opt("", "answer cue text instead of the CUES entry of `cue`")
    strip: bool = _opt(False, "strip whitespace around the question (lm-eval's MMLU template)")
    verbatim: bool = _opt(False, "the question is the whole prompt (lm-eval doc_to_text); option scoring")
    system_text: str = _opt("", "system message text instead of the SYSTEMS entry of `system`")
    preamble_text: str = _opt("", 'preamble text instead of a PREAMBLES entry (a blank line follows; "{subject}" '
                              "is replaced)")

    def __post_init__(self) -> None:
        tables: dict[str, Any] = {
            "symbols": SYMBOL_SETS, "style": STYLES, "cue": CUES, "preamble": PREAMBLES,
            "system": SYSTEMS, "scoring": SCORINGS,
        }
        for name, table in tables.items():
            value = getattr(self, name)
            if value not in table:
                raise ValueError(f"VariantSpec.{name}={value!r} is unknown; known: {', '.join(table)}")
        if not isinstance(self.chat, bool):
            raise TypeError(f"VariantSpec.chat={self.chat!r} must be a bool")
        if isinstance(self.shots, bool) or not isinstance(self.shots, int):
            raise TypeError(f"VariantSpec.shots={self.shots!r} must be an int")
        if self.shots < 0:
            raise ValueError(f"VariantSpec.shots={self.shots} must be >= 0")
        _parse_order(self.order)
        if self.scoring == "cot" and (self.cue != "answer" or self.shots):
            raise ValueError("VariantSpec: chain of thought (cot) needs the 'answer' cue and no few-shot examples")
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"VariantSpec.{name}={getattr(self, name)!r} must be a str")
        for name in ("strip", "verbatim"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"VariantSpec.{name}={getattr(self, name)!r} must be a bool")
        if not self.sep:
            raise ValueError("VariantSpec.sep must not be empty")
        if self.prefix and self.preamble != "none":
            raise ValueError(f"VariantSpec: prefix and preamble {self.preamble!r} both set; use one")
        if self.cue_text and self.cue != "answer":
            raise ValueError(f"VariantSpec: cue text {self.cue_text!r} and cue {self.cue!r} both set; use one")
        if self.system_text and self.system != "none":
            raise ValueError(f"VariantSpec: system text {self.system_text!r} and system {self.system!r} both set; "
                             "use one")
        if self.preamble_text and (self.preamble != "none" or self.prefix):
            raise ValueError(f"VariantSpec: preamble text {self.preamble_text!r} and "
                             + (f"preamble {self.preamble!r}" if self.preamble != "none" else "a prefix")
                             + " both set; use one")
        if self.verbatim:
            if self.scoring != "option":
                raise ValueError(f"VariantSpec: verbatim needs option scoring, got {self.scoring!r}")
            if self.label or self.sep != "\n" or self.cue_text or self.cue != "answer" or self.strip:
                raise ValueError("VariantSpec: verbatim renders the question as is; label, sep, cue and strip "
                                 "have no place in it")

    @property
    def generates(self) -> bool:
        """Whether the variant is answered by generating text (scored by `eval.extract`), not by one pass."""
        return self.scoring in GENERATION_SCORINGS

    def name(self) -> str:
        """Canonical name: "+"-joined modifiers that differ from the default; "default" if none."""
        default = VariantSpec()
        tokens = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            if f.name == "system":
                tokens.append("sys_" + value)
            elif f.name == "chat":
                tokens.append("chat")
            elif f.name == "shots":
                tokens.append(f"shots:{value}")
            elif f.name in _TEXT_FIELDS:
                tokens.append(f"{_TEXT_FIELDS[f.name]}:{encode_text(value)}")
            elif f.name in ("strip", "verbatim"):
                tokens.append(f.name)
            else:
                tokens.append(value)
        return "+".join(tokens) or "default"


@dataclass(frozen=True)
class Prompt:
    """One rendered question; see the module docstring for the layout rules."""

    question_id: str
    variant: str
    system: str | None
    shots: tuple[tuple[str, str], ...]
    user: str
    cue: str
    chat: bool
    scoring: str
    continuations: tuple[str, ...]
    answer: int
    order: tuple[int, ...]
    cue_sep: str = "\n"  # between the user block and the cue (and a shot and its answer); "" for verbatim


def _int_arg(arg: str, what: str) -> int:
    if not (arg.isascii() and arg.isdigit()) or str(int(arg)) != arg:
        raise ValueError(f"{what} needs a non-negative integer without leading zeros, got {arg!r}")
    return int(arg)


def _parse_order(order: str) -> tuple[str, int]:
    kind, sep, arg = order.partition(":")
    if order == "identity":
        return kind, 0
    if sep and kind in ("rotate", "shuffle"):
        value = _int_arg(arg, f"VariantSpec.order={order!r}")
        if kind == "shuffle" or value >= 1:
            return kind, value
    raise ValueError(
        f"VariantSpec.order={order!r}: expected 'identity', 'rotate:K' (K >= 1) or 'shuffle:SEED'"
    )


def display_order(order: str, question_id: str, n: int) -> tuple[int, ...]:
    """Displayed position -> original choice index for `n` options of question `question_id`."""
    kind, k = _parse_order(order)
    if kind == "rotate":
        return tuple((j - k) % n for j in range(n))
    if kind == "shuffle":
        def key(i: int) -> bytes:
            return hashlib.sha256(f"{k}\0{question_id}\0{i}".encode()).digest()
        return tuple(sorted(range(n), key=key))
    return tuple(range(n))


def answer_symbols(spec: VariantSpec, n: int) -> tuple[str, ...]:
    """The display symbols for `n` options; ValueError if the symbol set is too short."""
    symbols = SYMBOL_SETS[spec.symbols]
    if n > len(symbols):
        raise ValueError(
            f"symbol set {spec.symbols!r} has {len(symbols)} symbols, a question with {n} options needs more"
        )
    return symbols[:n]


def _cue(spec: VariantSpec) -> str:
    if spec.verbatim:
        return ""
    base = spec.cue_text or CUES[spec.cue]
    if spec.scoring == "cot":
        return f"{base} {COT_CUE}"
    opener = STYLES[spec.style].opener
    return f"{base} {opener}" if spec.scoring == "letter" and opener else base


def _preamble(spec: VariantSpec, record: MCRecord) -> str:
    if spec.preamble_text:
        return spec.preamble_text.replace("{subject}", record.subject.replace("_", " "))
    noun = SYMBOL_NOUNS.get(spec.symbols, "label")
    reply = f"the {noun} of the correct answer" if spec.scoring in ("letter", "cot") else "the correct answer"
    about = f" about {record.subject.replace('_', ' ')}" if record.subject else ""
    return PREAMBLES[spec.preamble].format(reply=reply, about=about)


def _top(spec: VariantSpec, record: MCRecord) -> str:
    """Everything above the first question block: preamble + blank line, prefix, verbatim description."""
    preamble = _preamble(spec, record)
    top = f"{preamble}\n\n" if preamble else ""
    top += spec.prefix.replace("{subject}", record.subject.replace("_", " "))
    if spec.verbatim:
        top += dict(record.meta).get("description", "")
    return top


def _question(spec: VariantSpec, record: MCRecord) -> tuple[str, tuple[str, ...], int, tuple[int, ...]]:
    """(question block, continuations, gold displayed index, order) for one record, no preamble."""
    order = display_order(spec.order, record.id, len(record.choices))
    shown = [record.choices[i] for i in order]
    if spec.verbatim:
        delimiter = dict(record.meta).get("target_delimiter", " ")
        return record.question, tuple(delimiter + t for t in shown), order.index(record.answer), order
    lines = [spec.label + (record.question.strip() if spec.strip else record.question)]
    symbols: tuple[str, ...] = ()
    if spec.scoring != "option":
        try:
            symbols = answer_symbols(spec, len(shown))
        except ValueError as e:
            raise ValueError(f"question {record.source or record.id}: {e}") from None
        style = STYLES[spec.style]
        lines += [style.line.format(sym=s, text=t) for s, t in zip(symbols, shown, strict=False)]
    if spec.scoring == "letter":
        prefix = "" if STYLES[spec.style].opener else " "
        continuations = tuple(prefix + s for s in symbols)
    elif spec.scoring == "cot":
        noun = SYMBOL_NOUNS.get(spec.symbols, "label")
        lines.append(COT_INSTRUCTION.format(reply=f"the {noun} of the correct answer"))
        continuations = symbols
    else:
        continuations = tuple(" " + t for t in shown)
    return spec.sep.join(lines), continuations, order.index(record.answer), order


def render(spec: VariantSpec, record: MCRecord, shots: Sequence[MCRecord] = ()) -> Prompt:
    """Render `record` (and its few-shot examples, drawn by the caller) under `spec`."""
    if len(shots) != spec.shots:
        raise ValueError(f"variant {spec.name()} needs {spec.shots} few-shot examples, got {len(shots)}")
    cue = _cue(spec)
    shot_blocks: list[tuple[str, str]] = []
    for shot in shots:
        if shot.id == record.id:
            raise ValueError(f"few-shot example {shot.id!r} is the question itself")
        delimiter = dict(shot.meta).get("fewshot_delimiter", "\n\n")
        if spec.verbatim and delimiter != "\n\n":
            raise ValueError(f"few-shot example {shot.id!r}: fewshot_delimiter {delimiter!r} is not the blank "
                             "line gaplens puts between examples")
        block, conts, gold, _ = _question(spec, shot)
        shot_blocks.append((block, cue + conts[gold]))
    user, continuations, answer, order = _question(spec, record)
    top = _top(spec, record)
    if top and shot_blocks:
        shot_blocks[0] = (top + shot_blocks[0][0], shot_blocks[0][1])
    elif top:
        user = top + user
    return Prompt(
        question_id=record.id, variant=spec.name(), system=spec.system_text or SYSTEMS[spec.system],
        shots=tuple(shot_blocks),
        user=user, cue=cue, chat=spec.chat, scoring=spec.scoring, continuations=continuations,
        answer=answer, order=order, cue_sep="" if spec.verbatim else "\n",
    )


def forced_answer_tail(reasoning: str) -> str:
    """What follows a chain-of-thought prompt to force an answer: the model's reasoning (cut before its own
    answer, `eval.extract.reasoning_before_answer`), a new line and COT_FORCED_CUE; the symbols are then scored
    as " A", " B", ... like a lettered prompt."""
    return f"{reasoning.rstrip()}\n{COT_FORCED_CUE}"


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Chat messages: [system?] + (user shot, assistant answer)* + [user question]; no cue."""
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    for user, answer in prompt.shots:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": prompt.user})
    return messages


def to_text(prompt: Prompt, chat_template: Callable[[list[dict[str, str]]], str] | None = None) -> str:
    """The full text scored before each continuation.

    Raw: [system + "\\n\\n"] + (shot_user + "\\n" + shot_answer + "\\n\\n")* + user + "\\n" + cue
    (`Prompt.cue_sep` in place of each "\\n" before an answer or the cue: "" for verbatim prompts).
    Chat: chat_template(to_messages(prompt)) + cue; the template must add the generation prompt.
    """
    if prompt.chat:
        if chat_template is None:
            raise ValueError(f"variant {prompt.variant} needs a chat template; the model has none")
        return chat_template(to_messages(prompt)) + prompt.cue
    parts = [prompt.system + "\n\n"] if prompt.system else []
    parts += [f"{user}{prompt.cue_sep}{answer}\n\n" for user, answer in prompt.shots]
    parts.append(f"{prompt.user}{prompt.cue_sep}{prompt.cue}")
    return "".join(parts)


# ---- modifier registry and names ----

MODIFIERS: dict[str, Callable[[VariantSpec], VariantSpec]] = {}
PARAM_MODIFIERS: dict[str, Callable[[VariantSpec, str], VariantSpec]] = {}  # used as "name:ARG"
_RESERVED = ("default", "all")


def register_modifier(name: str, fn: Callable[..., VariantSpec], *, takes_arg: bool = False,
                      beside: bool = False) -> None:
    """Register a modifier `name` (spec -> spec), or with takes_arg `name:ARG` ((spec, ARG) -> spec).

    A name is registered once; `beside=True` registers `name:ARG` beside an existing plain `name` (the built-in
    preamble "praise" and the free text "praise:TEXT")."""
    if not name or name in _RESERVED or any(c in name for c in "+:, \t\n"):
        raise ValueError(f"bad modifier name {name!r}: no '+', ':', ',' or spaces; not {_RESERVED}")
    if name in (PARAM_MODIFIERS if takes_arg else MODIFIERS) or (
            not beside and name in (MODIFIERS if takes_arg else PARAM_MODIFIERS)):
        raise ValueError(f"modifier {name!r} is already registered")
    (PARAM_MODIFIERS if takes_arg else MODIFIERS)[name] = fn


def _setter(field_name: str, value: Any) -> Callable[[VariantSpec], VariantSpec]:
    return lambda spec: dataclasses.replace(spec, **{field_name: value})


def _register_builtins() -> None:
    for table, field_name, prefix in (
        (SYMBOL_SETS, "symbols", ""), (STYLES, "style", ""), (CUES, "cue", ""),
        (PREAMBLES, "preamble", ""), (SYSTEMS, "system", "sys_"),
    ):
        for key in table:
            if not (field_name == "preamble" and key == "none"):
                register_modifier(prefix + key, _setter(field_name, key))
    register_modifier("chat", _setter("chat", True))
    register_modifier("option", _setter("scoring", "option"))
    register_modifier("option_listed", _setter("scoring", "option_listed"))
    register_modifier("cot", _setter("scoring", "cot"))
    register_modifier(
        "rotate", lambda spec, arg: dataclasses.replace(spec, order=f"rotate:{arg}"), takes_arg=True
    )
    register_modifier(
        "shuffle", lambda spec, arg: dataclasses.replace(spec, order=f"shuffle:{arg}"), takes_arg=True
    )
    register_modifier(
        "shots", lambda spec, arg: dataclasses.replace(spec, shots=_int_arg(arg, "shots")), takes_arg=True
    )
    for field_name, modifier in _TEXT_FIELDS.items():
        register_modifier(modifier, _text_setter(field_name, modifier), takes_arg=True, beside=modifier == "praise")
    register_modifier("strip", _setter("strip", True))
    register_modifier("verbatim", lambda spec: dataclasses.replace(spec, verbatim=True, scoring="option"))


def _text_setter(field_name: str, modifier: str) -> Callable[[VariantSpec, str], VariantSpec]:
    return lambda spec, arg: dataclasses.replace(spec, **{field_name: decode_text(arg, modifier)})


TEMPLATES: dict[str, str] = {}  # named template -> the canonical variant name it stands for


def register_template(name: str, variant: str) -> VariantSpec:
    """Register `name` as a modifier that stands for the modifiers of `variant` (e.g. "option+label:Q:%20").

    Canonical names spell out the modifiers, so a template never appears in results; combining a template
    with a modifier that sets the same axis is an error, as for any two modifiers.
    """
    target = parse(variant)
    default = VariantSpec()
    changes = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)
               if getattr(target, f.name) != getattr(default, f.name)}
    if not changes:
        raise ValueError(f"template {name!r}: variant {variant!r} is the default prompt")
    register_modifier(name, lambda spec: dataclasses.replace(spec, **changes))
    TEMPLATES[name] = target.name()
    return target


_register_builtins()


def _load_plugins() -> bool:
    """Load the gaplens.variants plug-ins (once); whether any was loaded now."""
    return bool(load_group("gaplens.variants"))


def known_modifiers() -> list[str]:
    """Every modifier a name may use; parametrised ones as "name:N" or "name:TEXT"."""
    _load_plugins()
    text = set(_TEXT_FIELDS.values())
    return sorted(MODIFIERS) + [f"{name}:{'TEXT' if name in text else 'N'}" for name in sorted(PARAM_MODIFIERS)]


def parse(name: str) -> VariantSpec:
    """The spec for a variant name ("default" or "+"-joined modifiers, any order)."""
    if name.strip() == "default":
        return VariantSpec()
    spec, set_by = VariantSpec(), {}
    for token in name.strip().split("+"):
        head, sep, arg = token.partition(":")
        if not (sep and head in PARAM_MODIFIERS) and not (not sep and token in MODIFIERS):
            _load_plugins()  # an installed plug-in may register it (entry-point group gaplens.variants)
        try:
            if sep and head in PARAM_MODIFIERS:
                new = PARAM_MODIFIERS[head](spec, arg)
            elif not sep and token in MODIFIERS:
                new = MODIFIERS[token](spec)
            else:
                hint = did_you_mean(head, ["default", *MODIFIERS, *PARAM_MODIFIERS])
                raise ValueError(f"unknown modifier {token!r}{hint}; known: {', '.join(known_modifiers())}")
        except ValueError as e:
            raise ValueError(f"variant {name!r}: {e}") from None
        for f in dataclasses.fields(spec):
            if getattr(new, f.name) != getattr(spec, f.name):
                if f.name in set_by:
                    raise ValueError(f"variant {name!r}: {token!r} conflicts with {set_by[f.name]!r}")
                set_by[f.name] = token
        spec = new
    return spec


_BUILTINS = (
    "default",
    "numbers", "lower", "roman", "late",
    "paren", "colon", "wrap", "bracket", "dash", "bullet", "bare",
    "rotate:1", "rotate:2", "rotate:3", "shuffle:0", "shuffle:1",
    "the_answer_is", "correct",
    "praise", "encourage", "instruction", "header",
    "sys_assistant", "sys_expert", "sys_honest",
    "chat", "sys_assistant+chat", "sys_expert+chat", "instruction+chat",
    "shots:1", "shots:3", "shots:5", "chat+shots:3",
    "option", "option_listed",
    "numbers+paren",
)


register_template("lmeval-arc", "option+label:Question:%20")
register_template("lmeval-mmlu", "header+strip")

GENERATION_BUILTINS = ("cot", "chat+cot")  # not in "all": generation is slow on CPU (see `--cot` of eval)


def builtin_variants() -> list[str]:
    """The curated canonical single-pass variant names, "default" first; every axis is covered."""
    return list(_BUILTINS)


def generation_variants() -> list[str]:
    """The curated chain-of-thought (generation) variants, which "all" leaves out."""
    return list(GENERATION_BUILTINS)


def variant_set(arg: str) -> list[str]:
    """Canonical names from "all" (the builtins) or a comma list; "all" may be an item; duplicates dropped."""
    out: list[str] = []
    for item in (s.strip() for s in arg.split(",")):
        if not item:
            raise ValueError(f"variant list {arg!r} has an empty entry")
        for name in builtin_variants() if item == "all" else [parse(item).name()]:
            if name not in out:
                out.append(name)
    return out
