"""Tests for eval.variants: pure prompt rendering, names, registry."""

from __future__ import annotations

import dataclasses

import pytest

from eval import variants as V
from eval.records import MCRecord
from eval.variants import (
    CUES,
    PREAMBLES,
    STYLES,
    SYMBOL_SETS,
    SYSTEMS,
    VariantSpec,
    answer_symbols,
    builtin_variants,
    parse,
    register_modifier,
    render,
    to_messages,
    to_text,
    variant_set,
)

CHOICES = ("apple", "banana", "cherry", "date", "elderberry")


def rec(qid: str = "q1", n: int = 4, answer: int = 1, subject: str = "") -> MCRecord:
    return MCRecord(
        id=qid, question=f"Question {qid}?", choices=tuple(f"{c} {qid}" for c in CHOICES[:n]),
        answer=answer, subject=subject,
    )


def shots_for(spec: VariantSpec, n: int = 4) -> list[MCRecord]:
    return [rec(f"s{i}", n=n, answer=i % n) for i in range(spec.shots)]


def fake_template(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def test_default_exact_text() -> None:
    r = MCRecord(id="m1", question="What is 2 + 2?", choices=("3", "4", "5", "22"), answer=1)
    p = render(VariantSpec(), r)
    assert to_text(p) == "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    assert p.variant == "default"
    assert p.continuations == (" A", " B", " C", " D")
    assert p.answer == 1 and p.order == (0, 1, 2, 3)
    assert p.system is None and p.shots == () and p.scoring == "letter" and not p.chat


def test_wrap_moves_bracket_into_cue() -> None:
    r = MCRecord(id="m1", question="What is 2 + 2?", choices=("3", "4", "5"), answer=1)
    p = render(parse("wrap"), r)
    assert to_text(p) == "What is 2 + 2?\n(A) 3\n(B) 4\n(C) 5\nAnswer: ("
    assert p.continuations == ("A", "B", "C")
    # option scoring keeps the plain cue even with a wrapping style
    p = render(parse("wrap+option_listed"), r)
    assert p.cue == "Answer:" and p.continuations == (" 3", " 4", " 5")


def test_cloze_does_not_list_options() -> None:
    r = MCRecord(id="m1", question="The sky is", choices=("blue", "green"), answer=0)
    p = render(parse("option"), r)
    assert to_text(p) == "The sky is\nAnswer:"
    assert p.continuations == (" blue", " green")


@pytest.mark.parametrize("name", builtin_variants())
@pytest.mark.parametrize("n", [3, 4, 5])
def test_every_builtin_renders(name: str, n: int) -> None:
    spec = parse(name)
    r = rec(n=n, answer=n - 1)
    p = render(spec, r, shots_for(spec, n=5 - n + 2))
    assert p.variant == name
    assert len(p.continuations) == n == len(p.order)
    assert len(set(p.continuations)) == n, "continuations must be distinct"
    assert sorted(p.order) == list(range(n))
    assert r.choices[p.order[p.answer]] == r.choices[r.answer]
    assert len(p.shots) == spec.shots
    text = to_text(p, fake_template)
    assert text.endswith(p.cue) and r.question in text
    if spec.scoring != "option":
        for i in p.order:
            assert r.choices[i] in p.user


@pytest.mark.parametrize("name", builtin_variants())
def test_parse_round_trip(name: str) -> None:
    spec = parse(name)
    assert spec.name() == name
    assert parse(spec.name()) == spec


def test_builtins_cover_every_axis() -> None:
    names = builtin_variants()
    assert names[0] == "default" and len(names) >= 24 and len(set(names)) == len(names)
    specs = [parse(n) for n in names]
    for table, field in (
        (SYMBOL_SETS, "symbols"), (STYLES, "style"), (CUES, "cue"), (PREAMBLES, "preamble"), (SYSTEMS, "system")
    ):
        assert set(table) <= {getattr(s, field) for s in specs}, field
    orders = {s.order for s in specs}
    assert {"rotate:1", "rotate:2", "rotate:3"} <= orders and sum(o.startswith("shuffle:") for o in orders) >= 2
    assert {1, 3, 5} <= {s.shots for s in specs}
    assert {"letter", "option", "option_listed"} <= {s.scoring for s in specs}
    assert any(s.chat for s in specs)


def test_parse_any_order_and_params() -> None:
    spec = parse("chat+shots:3+rotate:1+paren+numbers")
    assert spec == VariantSpec(symbols="numbers", style="paren", order="rotate:1", shots=3, chat=True)
    assert spec.name() == "numbers+paren+rotate:1+chat+shots:3"
    assert parse("default") == VariantSpec() == parse("letters+dot")
    assert VariantSpec().name() == "default"


@pytest.mark.parametrize("bad", ["numbers+lower", "rotate:1+shuffle:2", "rotate:0", "rotate:01", "shots:x", ""])
def test_parse_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        parse(bad)


def test_unknown_modifier_lists_known() -> None:
    with pytest.raises(ValueError, match="numbrs") as err:
        parse("numbrs+paren")
    msg = str(err.value)
    for known in ("numbers", "paren", "chat", "rotate:N", "shuffle:N", "shots:N", "sys_expert"):
        assert known in msg


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_modifier("numbers", lambda spec: spec)
    with pytest.raises(ValueError, match="already registered"):
        register_modifier("rotate", lambda spec: spec)
    with pytest.raises(ValueError):
        register_modifier("a+b", lambda spec: spec)


def test_register_custom_modifier() -> None:
    register_modifier("zz_combo", lambda spec: dataclasses.replace(spec, symbols="numbers", style="paren"))
    try:
        assert variant_set("zz_combo,default") == ["numbers+paren", "default"]
    finally:
        del V.MODIFIERS["zz_combo"]


def test_rotation_maps_gold() -> None:
    r = rec(n=4, answer=0)
    for k in (1, 2, 3, 5):
        p = render(parse(f"rotate:{k}"), r)
        assert p.order == tuple((j - k) % 4 for j in range(4))
        assert p.answer == k % 4
        assert r.choices[p.order[p.answer]] == r.choices[r.answer]
        assert f"{answer_symbols(VariantSpec(), 4)[p.answer]}. {r.choices[0]}" in p.user


def test_shuffle_deterministic_and_per_question() -> None:
    spec = parse("shuffle:7")
    a = render(spec, rec("q1", n=5, answer=2))
    assert a == render(spec, rec("q1", n=5, answer=2))
    assert a.order == V.display_order("shuffle:7", "q1", 5)
    orders = {render(spec, rec(f"q{i}", n=5)).order for i in range(30)}
    assert len(orders) > 5
    assert len({render(parse(f"shuffle:{s}"), rec("q1", n=5)).order for s in range(10)}) > 3
    for i in range(30):
        r = rec(f"q{i}", n=5, answer=i % 5)
        p = render(spec, r)
        assert r.choices[p.order[p.answer]] == r.choices[r.answer]
        assert p.continuations[p.answer] == " " + "ABCDE"[p.answer]


def test_few_shot_count_and_gold_answers() -> None:
    spec = parse("rotate:1+shots:3")
    with pytest.raises(ValueError, match="needs 3 few-shot"):
        render(spec, rec(), shots_for(parse("shots:2")))
    with pytest.raises(ValueError, match="needs 0 few-shot"):
        render(VariantSpec(), rec(), [rec("s0")])
    with pytest.raises(ValueError, match="question itself"):
        render(parse("shots:1"), rec("q1"), [rec("q1")])
    shots = [rec("s0", n=3, answer=0), rec("s1", n=4, answer=3), rec("s2", n=5, answer=2)]
    p = render(spec, rec(), shots)
    for shot, (user, answer) in zip(shots, p.shots, strict=True):
        displayed = V.display_order(spec.order, shot.id, len(shot.choices)).index(shot.answer)
        assert answer == "Answer: " + "ABCDE"[displayed]
        assert f"{'ABCDE'[displayed]}. {shot.choices[shot.answer]}" in user
    p = render(parse("option+shots:1"), rec(), [rec("s0", answer=2)])
    assert p.shots[0][1] == "Answer: " + "cherry s0"


def test_raw_text_layout_with_system_shots_preamble() -> None:
    spec = parse("instruction+sys_assistant+shots:1")
    p = render(spec, rec("q1", n=2, answer=1), [rec("s0", n=2, answer=0)])
    preamble = "The following is a multiple choice question. Reply with the letter of the correct answer."
    assert to_text(p) == (
        "You are a helpful assistant.\n\n"
        f"{preamble}\n\nQuestion s0?\nA. apple s0\nB. banana s0\nAnswer: A\n\n"
        "Question q1?\nA. apple q1\nB. banana q1\nAnswer:"
    )
    assert p.user.count(preamble) == 0  # once, at the top of the first shot
    assert render(parse("instruction"), rec()).user.startswith(preamble + "\n\n")
    header = render(parse("header+numbers"), rec(subject="high_school_physics")).user
    assert header.startswith("The following are multiple choice questions (with answers) about high school physics.")


def test_chat_text_order_and_messages() -> None:
    spec = parse("sys_expert+chat+shots:2")
    p = render(spec, rec("q1"), [rec("s0", answer=0), rec("s1", answer=3)])
    roles = [m["role"] for m in to_messages(p)]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    text = to_text(p, fake_template)
    marks = [SYSTEMS["expert"], "Question s0?", "Answer: A", "Question s1?", "Answer: D", "Question q1?"]
    positions = [text.index(m) for m in marks]
    assert positions == sorted(positions)
    assert text.endswith("<|assistant|>Answer:")
    assert "Answer:" not in p.user
    with pytest.raises(ValueError, match="needs a chat template; the model has none"):
        to_text(p)
    # a raw variant ignores the template
    raw = render(VariantSpec(), rec())
    assert to_text(raw, fake_template) == to_text(raw)


def test_symbols_and_sizes() -> None:
    assert answer_symbols(parse("roman"), 4) == ("i", "ii", "iii", "iv")
    assert answer_symbols(parse("numbers"), 3) == ("1", "2", "3")
    with pytest.raises(ValueError, match="symbol set 'numbers'"):
        answer_symbols(parse("numbers"), 10)
    ten = MCRecord(id="big", question="Q?", choices=tuple(str(i) for i in range(10)), answer=9)
    with pytest.raises(ValueError, match="big"):
        render(parse("numbers"), ten)
    assert render(parse("numbers+option"), ten).continuations[9] == " 9"  # cloze needs no symbols
    p = render(parse("lower+bare"), rec(n=2))
    assert p.user.splitlines()[1:] == ["a apple q1", "b banana q1"] and p.continuations == (" a", " b")


def test_variant_set() -> None:
    assert variant_set("all") == builtin_variants()
    assert variant_set("default") == ["default"]
    assert variant_set("default, paren+numbers ,chat,letters") == ["default", "numbers+paren", "chat"]
    assert variant_set("numbers,all")[:2] == ["numbers", "default"]
    with pytest.raises(ValueError, match="numbrs"):
        variant_set("default,numbrs")
    with pytest.raises(ValueError, match="empty"):
        variant_set("default,,chat")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="symbols"):
        VariantSpec(symbols="klingon")
    with pytest.raises(ValueError, match="order"):
        VariantSpec(order="reverse")
    with pytest.raises(ValueError, match="shots"):
        VariantSpec(shots=-1)


# ---- chain of thought (generation variants) ----


def test_cot_renders_listed_options_instruction_and_reasoning_cue() -> None:
    spec = parse("cot")
    assert spec.generates and not parse("default").generates and spec.name() == "cot"
    p = render(spec, rec(answer=2))
    assert p.continuations == ("A", "B", "C", "D") and p.answer == 2
    assert p.user.splitlines()[1:5] == [f"{s}. {c} q1" for s, c in zip("ABCD", CHOICES, strict=False)]
    assert p.user.splitlines()[-1] == V.COT_INSTRUCTION.format(reply="the letter of the correct answer")
    assert to_text(p).endswith("\nAnswer: Let's think step by step.")
    numbers = render(parse("numbers+rotate:1+cot"), rec(answer=2))
    assert numbers.continuations == ("1", "2", "3", "4") and numbers.answer == 3
    assert "followed by the number of the correct answer" in numbers.user


def test_cot_rejects_other_cues_and_shots_and_stays_out_of_all() -> None:
    with pytest.raises(ValueError, match="chain of thought"):
        parse("cot+the_answer_is")
    with pytest.raises(ValueError, match="chain of thought"):
        parse("cot+shots:1")
    assert not any(parse(v).generates for v in variant_set("all"))
    assert all(parse(v).generates for v in V.generation_variants())
    assert variant_set("cot+chat") == ["chat+cot"] and all(parse(v).name() == v for v in V.generation_variants())


# ---- template modifiers (prefix, label, sep, cue text, strip, verbatim) and named templates ----


def _pinned_records() -> list[MCRecord]:
    subjects = ["", "high_school_physics"]
    return [
        MCRecord(id=f"q{i}", question=(" " if i % 2 else "") + f"Question {i}?\n" * (1 + i % 2),
                 choices=tuple(f"opt {j} of {i}" for j in range(2 + i % 4)), answer=i % (2 + i % 4),
                 subject=subjects[i % 2])
        for i in range(6)
    ]


def test_builtin_renders_are_pinned() -> None:
    """Every curated variant renders byte for byte as before the template modifiers were added."""
    import hashlib

    h = hashlib.sha256()
    recs = _pinned_records()
    for name in builtin_variants() + V.generation_variants():
        spec = parse(name)
        for r in recs:
            p = render(spec, r, [s for s in recs if s.id != r.id][: spec.shots])
            h.update(repr((name, to_text(p, fake_template), p.continuations, p.answer, p.order, p.variant, p.user,
                           p.cue, p.shots)).encode())
    assert h.hexdigest() == "8336dcc61a2a2a65d292c673bc3ad016697477108284324944b6b84d74e4de9a"


def test_text_modifiers_render_and_round_trip() -> None:
    r = MCRecord(id="m1", question="  What is 2 + 2? ", choices=("3", "4"), answer=1, subject="basic_math")
    name = "prefix:Quiz%20on%20{subject}:%0A+label:Q:%20+sep:%20|%20+cue:A:+strip"
    spec = parse(name)
    assert spec == VariantSpec(prefix="Quiz on {subject}:\n", label="Q: ", sep=" | ", cue_text="A:", strip=True)
    assert spec.name() == name and parse(spec.name()) == spec
    p = render(spec, r)
    assert to_text(p) == "Quiz on basic math:\nQ: What is 2 + 2? | A. 3 | B. 4\nA:"
    assert p.continuations == (" A", " B")
    # a literal "+", "," and "%" survive the name; the canonical form never holds a raw space, "+" or ","
    odd = VariantSpec(label="1+1, 50% ")
    assert odd.name() == "label:1%2B1%2C%2050%25%20" and parse(odd.name()) == odd
    assert variant_set(f"default,{odd.name()}") == ["default", odd.name()]
    # the cue text keeps wrap's bracket rule, and cot appends its reasoning cue
    assert render(parse("wrap+cue:Pick:"), r).cue == "Pick: ("
    assert to_text(render(parse("cot+cue:Reply:"), r)).endswith("\nReply: Let's think step by step.")


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        ("label:", r"label needs text"),
        ("label:50%", r"a literal '%' is %25"),
        ("label:%zz", r"'%' starts an escape"),
        ("prefix:Hi+header", r"prefix and preamble 'header' both set"),
        ("correct+cue:So", r"cue text 'So' and cue 'correct' both set"),
        ("label:A+label:B", r"'label:B' conflicts with 'label:A'"),
        ("verbatim+label:Q", r"verbatim renders the question as is"),
        ("verbatim+option_listed", r"verbatim needs option scoring, got 'option_listed'"),
        ("lmeval-mmlu+instruction", r"'instruction' conflicts with 'lmeval-mmlu'"),
    ],
)
def test_text_modifier_errors(bad: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse(bad)


def test_named_templates_are_their_modifiers() -> None:
    assert V.TEMPLATES == {"lmeval-arc": "option+label:Question:%20", "lmeval-mmlu": "header+strip"}
    for template, name in V.TEMPLATES.items():
        assert parse(template) == parse(name) and parse(template).name() == name
    assert parse("lmeval-arc+the_answer_is+numbers").name() == "numbers+the_answer_is+option+label:Question:%20"
    assert "lmeval-arc" in str(V.known_modifiers()) and "label:TEXT" in V.known_modifiers()
    V.register_template("zz_q", "label:Q:%20")
    try:
        assert to_text(render(parse("zz_q+option"), rec())) == "Q: Question q1?\nAnswer:"
        with pytest.raises(ValueError, match="already registered"):
            V.register_template("zz_q", "numbers")
    finally:
        del V.MODIFIERS["zz_q"], V.TEMPLATES["zz_q"]
    with pytest.raises(ValueError, match="is the default prompt"):
        V.register_template("zz_default", "letters")


def test_lmeval_arc_and_mmlu_exact_strings() -> None:
    r = MCRecord(id="a1", question="Which gas do plants absorb? ", choices=("oxygen", "carbon dioxide", "helium"),
                 answer=1, subject="high_school_biology")
    arc = render(parse("lmeval-arc"), r)
    assert to_text(arc) == "Question: Which gas do plants absorb? \nAnswer:"
    assert arc.continuations == (" oxygen", " carbon dioxide", " helium") and arc.scoring == "option"
    shot = MCRecord(id="s1", question=" 1 + 1 =", choices=("2", "3", "4", "5"), answer=0, subject="high_school_biology")
    mmlu = render(parse("lmeval-mmlu+shots:1"), r, [shot])
    assert to_text(mmlu) == (
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
        "1 + 1 =\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer: A\n\n"
        "Which gas do plants absorb?\nA. oxygen\nB. carbon dioxide\nC. helium\nAnswer:"
    )
    assert mmlu.continuations == (" A", " B", " C")
    # the same prompt spelled with free text: prefix + strip
    spelled = "prefix:The%20following%20are%20multiple%20choice%20questions%20(with%20answers)%20about%20{subject}.%0A%0A"
    assert to_text(render(parse(spelled + "+strip+shots:1"), r, [shot])) == to_text(mmlu)
    # without strip the default MMLU loader's whitespace stays (today's output)
    assert "absorb? \nA." in to_text(render(parse("header"), r))


def test_verbatim_uses_question_description_and_delimiters() -> None:
    meta = (("description", "Intro.\n\n"), ("target_delimiter", " "), ("fewshot_delimiter", "\n\n"))
    r = MCRecord(id="v1", question="Question: Sky colour?\nAnswer:", choices=("blue", "red"), answer=0, meta=meta)
    s = MCRecord(id="v0", question="Question: Grass colour?\nAnswer:", choices=("green", "pink"), answer=0, meta=meta)
    p = render(parse("verbatim"), r)
    assert p.variant == "option+verbatim" and p.cue == "" and p.cue_sep == ""
    assert to_text(p) == "Intro.\n\nQuestion: Sky colour?\nAnswer:" and p.continuations == (" blue", " red")
    p = render(parse("verbatim+shots:1"), r, [s])
    assert to_text(p) == "Intro.\n\nQuestion: Grass colour?\nAnswer: green\n\nQuestion: Sky colour?\nAnswer:"
    plain = MCRecord(id="p1", question="The sky is", choices=("blue", "red"), answer=0)
    assert to_text(render(parse("verbatim"), plain)) == "The sky is"
    odd = dataclasses.replace(s, meta=(("fewshot_delimiter", "\n"),))
    with pytest.raises(ValueError, match="fewshot_delimiter"):
        render(parse("verbatim+shots:1"), r, [odd])
    nodelim = dataclasses.replace(r, meta=(("target_delimiter", ""),))
    assert render(parse("verbatim"), nodelim).continuations == ("blue", "red")


# ---- sys:TEXT and praise:TEXT (free-text system messages and preambles)


def test_system_text_renders_raw_and_chat() -> None:
    p = render(parse("sys:You%20are%20a%20careful%20grader."), rec())
    assert p.system == "You are a careful grader."
    assert to_text(p).startswith("You are a careful grader.\n\nQuestion q1?\nA. apple q1")
    chat = render(parse("sys:Be%20brief.+chat"), rec())
    assert to_messages(chat)[0] == {"role": "system", "content": "Be brief."}
    assert parse("sys:Be%20brief.+chat").name() == "chat+sys:Be%20brief."  # field order: system text is late


def test_praise_text_is_a_preamble_with_subject() -> None:
    r = rec(subject="high_school_physics")
    p = render(parse("praise:You%20are%20a%20{subject}%20expert."), r)
    assert to_text(p).startswith("You are a high school physics expert.\n\nQuestion q1?\n")
    spec = parse("praise:Think.+shots:2")
    text = to_text(render(spec, rec(), shots_for(spec)))
    assert text.startswith("Think.\n\nQuestion s0?") and text.count("Think.") == 1  # once, above the first shot
    # the same text as the built-in preamble renders the same prompt
    builtin = to_text(render(parse("praise"), rec()))
    spelled = to_text(render(parse("praise:" + V.encode_text(PREAMBLES["praise"])), rec()))
    assert builtin == spelled


@pytest.mark.parametrize(("name", "match"), [
    ("sys:Hi+sys_expert", "system text 'Hi' and system 'expert' both set"),
    ("praise:Hi+encourage", "preamble text 'Hi' and preamble 'encourage' both set"),
    ("praise:Hi+prefix:Top", "preamble text .* a prefix"),
    ("sys:", "needs text"),
    ("praise:50%", "escape"),
])
def test_text_modifiers_refuse_contradictions(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse(name)


def test_text_modifier_names_round_trip() -> None:
    for name in ("sys:Be%20brief.", "praise:You%20know%20{subject}.", "numbers+sys:A%2BB%2CC+praise:x%0Ay"):
        spec = parse(name)
        assert parse(spec.name()) == spec
    assert "praise" in V.MODIFIERS and "praise" in V.PARAM_MODIFIERS  # the built-in preamble and the free text
    assert "sys:TEXT" in V.known_modifiers() and "praise:TEXT" in V.known_modifiers()


def test_unknown_modifier_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown modifier 'numbrs' \(did you mean 'numbers'\?\)"):
        parse("numbrs")
    with pytest.raises(ValueError, match=r"unknown modifier 'rotat:1' \(did you mean 'rotate'\?\)"):
        parse("rotat:1")
