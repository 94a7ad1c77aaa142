"""Tests for eval.extract: answers read from generated chain-of-thought text (pure)."""

from __future__ import annotations

import pytest

from eval.extract import answer_complete, extract_choice

ABCD = ("A", "B", "C", "D")
CITIES = ("Lima", "Paris", "Paris, Texas", "Quito")


@pytest.mark.parametrize(
    ("text", "index", "method"),
    [
        ("Paris is in France. The answer is B.", 1, "symbol"),
        ("so the answer is (C)", 2, "symbol"),
        ("Answer: **D**", 3, "symbol"),
        ("The answer is [a].", 0, "symbol"),  # case folded: one symbol fits
        ("The answer is X, the letter. Then the answer is C.", 2, "symbol"),  # first VALID answer
        ("The answer is B. Next question ... The answer is D.", 1, "symbol"),  # first answer, not the last
        ("The correct answer is Quito.", 3, "option_text"),
        ("The answer is paris, the capital of France", 1, "option_text"),
        ("The answer is Paris, Texas.", 2, "option_text"),  # the longest fitting option wins
        ("The answer is Parisian.", -1, "none"),  # a prefix of a word is not the option
        ("A dog is an animal. B is a letter.", -1, "none"),  # no stray-symbol guessing
        ("The answer is Alpha", -1, "none"),
        ("", -1, "none"),
    ],
)
def test_extract_choice(text: str, index: int, method: str) -> None:
    got = extract_choice(text, ABCD, CITIES)
    assert (got.index, got.method) == (index, method)


def test_symbols_compare_exactly_before_ignoring_case() -> None:
    mixed = ("a", "A")  # folding would be ambiguous, so only exact matches count
    assert extract_choice("the answer is A", mixed).index == 1
    assert extract_choice("the answer is a", mixed).index == 0
    assert extract_choice("the answer is 3", tuple("1234")).index == 2
    assert extract_choice("the answer is iii.", ("i", "ii", "iii", "iv")).index == 2


def test_without_options_only_symbols_count() -> None:
    assert extract_choice("The answer is Paris.", ABCD).index == -1


def test_answer_complete_waits_for_a_character_after_the_answer() -> None:
    roman = ("i", "ii", "iii", "iv")
    assert not answer_complete("The answer is i", roman)  # could still become "ii"
    assert answer_complete("The answer is ii.", roman)
    assert answer_complete("The answer is ii", roman, ended=True)
    assert not answer_complete("Let me think", roman, ended=True)
    assert not answer_complete("The answer is Paris", ABCD, CITIES)  # "Paris, Texas" is still possible
    assert answer_complete("The answer is Paris.\n", ABCD, CITIES)


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="symbols"):
        extract_choice("The answer is A", ())
    with pytest.raises(ValueError, match="4 symbols but 3 options"):
        extract_choice("The answer is A", ABCD, CITIES[:3])


@pytest.mark.parametrize(
    ("text", "reasoning"),
    [
        ("\nA light-year is a distance.\n\nThe answer is: A.", "\nA light-year is a distance.\n"),
        ("It is a distance. So the correct answer is C. More text", "It is a distance."),
        ("The answer is B.", ""),
        ("I am not sure about this one", "I am not sure about this one"),
    ],
)
def test_reasoning_before_answer(text: str, reasoning: str) -> None:
    from eval.extract import reasoning_before_answer

    assert reasoning_before_answer(text, ABCD, CITIES) == reasoning
