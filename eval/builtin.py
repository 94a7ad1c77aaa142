"""Built-in generated multiple-choice tasks that need no download.

Every task is a pure function of this code: all "randomness" (which items go to which
split, which distractors are drawn, where the gold answer sits) comes from SHA-256 of
fixed strings, so the output is identical on every machine and Python version.

Tasks (each with splits ``"test"``, the main set, and ``"dev"``, a disjoint few-shot set):

- ``capitals``: "What is the capital of France?" with the gold capital and three
  distractor capitals (from the same region where possible).
- ``arithmetic``: two-digit addition / subtraction with four numeric options whose
  distractors are near the answer (off by 1, 2, 9, 10 or 11).

In both, the gold position is balanced across A-D within each split (counts differ by at
most one) and not in a sequential pattern.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

from eval.records import MCRecord, TaskError

SEED = 0
"""Fixed seed mixed into every hash; changing it changes every generated task."""

SPLITS: tuple[str, ...] = ("test", "dev")
N_OPTIONS = 4

# (country, capital, region). Only countries whose capital is uncontroversial.
CAPITALS: tuple[tuple[str, str, str], ...] = (
    # Europe
    ("Albania", "Tirana", "Europe"),
    ("Austria", "Vienna", "Europe"),
    ("Belarus", "Minsk", "Europe"),
    ("Belgium", "Brussels", "Europe"),
    ("Bosnia and Herzegovina", "Sarajevo", "Europe"),
    ("Bulgaria", "Sofia", "Europe"),
    ("Croatia", "Zagreb", "Europe"),
    ("Cyprus", "Nicosia", "Europe"),
    ("Czech Republic", "Prague", "Europe"),
    ("Denmark", "Copenhagen", "Europe"),
    ("Estonia", "Tallinn", "Europe"),
    ("Finland", "Helsinki", "Europe"),
    ("France", "Paris", "Europe"),
    ("Germany", "Berlin", "Europe"),
    ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"),
    ("Iceland", "Reykjavik", "Europe"),
    ("Ireland", "Dublin", "Europe"),
    ("Italy", "Rome", "Europe"),
    ("Latvia", "Riga", "Europe"),
    ("Lithuania", "Vilnius", "Europe"),
    ("Malta", "Valletta", "Europe"),
    ("Moldova", "Chisinau", "Europe"),
    ("Montenegro", "Podgorica", "Europe"),
    ("North Macedonia", "Skopje", "Europe"),
    ("Norway", "Oslo", "Europe"),
    ("Poland", "Warsaw", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    ("Romania", "Bucharest", "Europe"),
    ("Russia", "Moscow", "Europe"),
    ("Serbia", "Belgrade", "Europe"),
    ("Slovakia", "Bratislava", "Europe"),
    ("Slovenia", "Ljubljana", "Europe"),
    ("Spain", "Madrid", "Europe"),
    ("Sweden", "Stockholm", "Europe"),
    ("Switzerland", "Bern", "Europe"),
    ("Ukraine", "Kyiv", "Europe"),
    ("United Kingdom", "London", "Europe"),
    # Asia
    ("Afghanistan", "Kabul", "Asia"),
    ("Armenia", "Yerevan", "Asia"),
    ("Azerbaijan", "Baku", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"),
    ("Bhutan", "Thimphu", "Asia"),
    ("Cambodia", "Phnom Penh", "Asia"),
    ("China", "Beijing", "Asia"),
    ("Georgia", "Tbilisi", "Asia"),
    ("India", "New Delhi", "Asia"),
    ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"),
    ("Japan", "Tokyo", "Asia"),
    ("Jordan", "Amman", "Asia"),
    ("Kuwait", "Kuwait City", "Asia"),
    ("Kyrgyzstan", "Bishkek", "Asia"),
    ("Laos", "Vientiane", "Asia"),
    ("Lebanon", "Beirut", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Myanmar", "Naypyidaw", "Asia"),
    ("Nepal", "Kathmandu", "Asia"),
    ("North Korea", "Pyongyang", "Asia"),
    ("Oman", "Muscat", "Asia"),
    ("Pakistan", "Islamabad", "Asia"),
    ("Philippines", "Manila", "Asia"),
    ("Qatar", "Doha", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"),
    ("South Korea", "Seoul", "Asia"),
    ("Syria", "Damascus", "Asia"),
    ("Tajikistan", "Dushanbe", "Asia"),
    ("Thailand", "Bangkok", "Asia"),
    ("Turkey", "Ankara", "Asia"),
    ("Turkmenistan", "Ashgabat", "Asia"),
    ("United Arab Emirates", "Abu Dhabi", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"),
    ("Vietnam", "Hanoi", "Asia"),
    ("Yemen", "Sanaa", "Asia"),
    # Africa
    ("Algeria", "Algiers", "Africa"),
    ("Angola", "Luanda", "Africa"),
    ("Botswana", "Gaborone", "Africa"),
    ("Burkina Faso", "Ouagadougou", "Africa"),
    ("Cameroon", "Yaoundé", "Africa"),
    ("Chad", "N'Djamena", "Africa"),
    ("Egypt", "Cairo", "Africa"),
    ("Eritrea", "Asmara", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"),
    ("Gabon", "Libreville", "Africa"),
    ("Ghana", "Accra", "Africa"),
    ("Guinea", "Conakry", "Africa"),
    ("Kenya", "Nairobi", "Africa"),
    ("Liberia", "Monrovia", "Africa"),
    ("Libya", "Tripoli", "Africa"),
    ("Madagascar", "Antananarivo", "Africa"),
    ("Malawi", "Lilongwe", "Africa"),
    ("Mali", "Bamako", "Africa"),
    ("Mauritania", "Nouakchott", "Africa"),
    ("Morocco", "Rabat", "Africa"),
    ("Mozambique", "Maputo", "Africa"),
    ("Namibia", "Windhoek", "Africa"),
    ("Niger", "Niamey", "Africa"),
    ("Nigeria", "Abuja", "Africa"),
    ("Rwanda", "Kigali", "Africa"),
    ("Senegal", "Dakar", "Africa"),
    ("Sierra Leone", "Freetown", "Africa"),
    ("Somalia", "Mogadishu", "Africa"),
    ("Sudan", "Khartoum", "Africa"),
    ("Tunisia", "Tunis", "Africa"),
    ("Uganda", "Kampala", "Africa"),
    ("Zambia", "Lusaka", "Africa"),
    ("Zimbabwe", "Harare", "Africa"),
    # Americas
    ("Argentina", "Buenos Aires", "Americas"),
    ("Brazil", "Brasília", "Americas"),
    ("Canada", "Ottawa", "Americas"),
    ("Chile", "Santiago", "Americas"),
    ("Colombia", "Bogotá", "Americas"),
    ("Costa Rica", "San José", "Americas"),
    ("Cuba", "Havana", "Americas"),
    ("Dominican Republic", "Santo Domingo", "Americas"),
    ("Ecuador", "Quito", "Americas"),
    ("El Salvador", "San Salvador", "Americas"),
    ("Guatemala", "Guatemala City", "Americas"),
    ("Haiti", "Port-au-Prince", "Americas"),
    ("Honduras", "Tegucigalpa", "Americas"),
    ("Jamaica", "Kingston", "Americas"),
    ("Mexico", "Mexico City", "Americas"),
    ("Nicaragua", "Managua", "Americas"),
    ("Panama", "Panama City", "Americas"),
    ("Paraguay", "Asunción", "Americas"),
    ("Peru", "Lima", "Americas"),
    ("Trinidad and Tobago", "Port of Spain", "Americas"),
    ("United States", "Washington, D.C.", "Americas"),
    ("Uruguay", "Montevideo", "Americas"),
    ("Venezuela", "Caracas", "Americas"),
    # Oceania
    ("Australia", "Canberra", "Oceania"),
    ("Fiji", "Suva", "Oceania"),
    ("New Zealand", "Wellington", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"),
    ("Samoa", "Apia", "Oceania"),
)

# Country names read with "the" in a sentence.
_WITH_ARTICLE = frozenset(
    {
        "Czech Republic",
        "Dominican Republic",
        "Philippines",
        "United Arab Emirates",
        "United Kingdom",
        "United States",
    }
)

CAPITALS_DEV_SIZE = 16
"""Countries held out for the capitals "dev" split; the rest form "test"."""

ARITHMETIC_TEST_SIZE = 200
ARITHMETIC_DEV_SIZE = 40
_NEAR_OFFSETS = (-11, -10, -9, -2, -1, 1, 2, 9, 10, 11)


def _h(*parts: object) -> int:
    """A stable 64-bit hash of `parts` (with the module seed): the only source of randomness."""
    blob = ":".join([str(SEED), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def _check_split(task: str, split: str) -> None:
    if split not in SPLITS:
        raise TaskError(f"builtin task {task!r}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _balanced_positions(task: str, split: str, keys: Sequence[str]) -> list[int]:
    """Gold positions for `keys`: each of 0..3 used equally often (±1), in a hashed order."""
    order = sorted(range(len(keys)), key=lambda i: _h(task, split, "position", keys[i]))
    positions = [0] * len(keys)
    for rank, i in enumerate(order):
        positions[i] = rank % N_OPTIONS
    return positions


def _place(gold: str, distractors: Sequence[str], position: int) -> tuple[str, ...]:
    """Options with `gold` at `position` and the distractors, in their given order, around it."""
    options = list(distractors)
    options.insert(position, gold)
    return tuple(options)


def _country_key(country: str) -> str:
    return country.replace(" ", "_")


def capital_of(country: str) -> str:
    """The capital of `country` according to the fact table (KeyError if absent)."""
    for name, capital, _ in CAPITALS:
        if name == country:
            return capital
    raise KeyError(country)


def _capitals_split(split: str) -> list[tuple[str, str, str]]:
    """Table rows in `split`: the CAPITALS_DEV_SIZE lowest-hashing countries are dev."""
    ranked = sorted(CAPITALS, key=lambda row: _h("capitals", "split", row[0]))
    dev = {row[0] for row in ranked[:CAPITALS_DEV_SIZE]}
    return [row for row in CAPITALS if (row[0] in dev) == (split == "dev")]


def _capital_distractors(country: str, capital: str, region: str) -> list[str]:
    """Three other capitals, from the same region first, in a hashed order."""
    same = [c for n, c, r in CAPITALS if r == region and n != country and c != capital]
    other = [c for n, c, r in CAPITALS if r != region and c != capital]
    same.sort(key=lambda c: _h("capitals", "distractor", country, c))
    other.sort(key=lambda c: _h("capitals", "distractor", country, c))
    return (same + other)[: N_OPTIONS - 1]


def capitals(split: str = "test") -> list[MCRecord]:
    """The "capitals" task: one question per country in `split` ("test" or "dev")."""
    _check_split("capitals", split)
    rows = _capitals_split(split)
    keys = [_country_key(country) for country, _, _ in rows]
    positions = _balanced_positions("capitals", split, keys)
    records = []
    for i, ((country, capital, region), key, pos) in enumerate(zip(rows, keys, positions, strict=True)):
        name = f"the {country}" if country in _WITH_ARTICLE else country
        records.append(
            MCRecord(
                id=f"capitals/{key}",
                question=f"What is the capital of {name}?",
                choices=_place(capital, _capital_distractors(country, capital, region), pos),
                answer=pos,
                subject="capitals",
                split=split,
                source=f"builtin:capitals/{split}:{i + 1}",
                meta=(("country", country), ("region", region)),
            )
        )
    return records


def _arithmetic_problems() -> list[tuple[int, str, int]]:
    """ARITHMETIC_TEST_SIZE + ARITHMETIC_DEV_SIZE distinct (a, op, b) with 10 <= a, b <= 99 and a - b > 0."""
    total = ARITHMETIC_TEST_SIZE + ARITHMETIC_DEV_SIZE
    seen: set[tuple[int, str, int]] = set()
    problems: list[tuple[int, str, int]] = []
    k = 0
    while len(problems) < total:
        a = 10 + _h("arithmetic", "a", k) % 90
        b = 10 + _h("arithmetic", "b", k) % 90
        op = "+" if _h("arithmetic", "op", k) % 2 == 0 else "-"
        k += 1
        if op == "-":
            if a == b:
                continue
            a, b = max(a, b), min(a, b)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        problems.append((a, op, b))
    return problems


def _arithmetic_value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def _number_distractors(expr: str, value: int) -> list[str]:
    """Three distinct non-negative numbers near `value` (off by 1, 2, 9, 10 or 11), hashed order."""
    cands = [value + d for d in _NEAR_OFFSETS if value + d >= 0]
    cands.sort(key=lambda c: _h("arithmetic", "distractor", expr, c))
    return [str(c) for c in cands[: N_OPTIONS - 1]]


def arithmetic(split: str = "test") -> list[MCRecord]:
    """The "arithmetic" task: "What is 23 + 48?" with four numeric options."""
    _check_split("arithmetic", split)
    problems = _arithmetic_problems()
    chosen = problems[:ARITHMETIC_TEST_SIZE] if split == "test" else problems[ARITHMETIC_TEST_SIZE:]
    keys = [f"{a}{op}{b}" for a, op, b in chosen]
    positions = _balanced_positions("arithmetic", split, keys)
    records = []
    for i, ((a, op, b), key, pos) in enumerate(zip(chosen, keys, positions, strict=True)):
        expr = f"{a} {op} {b}"
        value = _arithmetic_value(a, op, b)
        records.append(
            MCRecord(
                id=f"arithmetic/{key}",
                question=f"What is {expr}?",
                choices=_place(str(value), _number_distractors(expr, value), pos),
                answer=pos,
                subject="arithmetic",
                split=split,
                source=f"builtin:arithmetic/{split}:{i + 1}",
                meta=(("expression", expr),),
            )
        )
    return records


BUILTIN_TASKS: dict[str, Callable[[str], list[MCRecord]]] = {
    "capitals": capitals,
    "arithmetic": arithmetic,
}
"""Built-in task name -> generator taking a split name ("test" or "dev")."""

BUILTIN_DESCRIPTIONS: dict[str, str] = {
    "capitals": f"world capitals, {len(CAPITALS) - CAPITALS_DEV_SIZE} test / {CAPITALS_DEV_SIZE} dev questions",
    "arithmetic": (
        f"two-digit addition/subtraction, {ARITHMETIC_TEST_SIZE} test / {ARITHMETIC_DEV_SIZE} dev questions"
    ),
}


# --------------------------------------------------------------------------- toy-max (the locking toy organism's task)
# "Which number is largest?" with four distinct numbers from 10..99; gold is the largest. Splits ``test``, ``dev``
# (held out) and ``pretrain`` (the toy's pretraining stream); no option tuple is in two splits. Seeded numpy
# generators, so the output is fixed. Registered as a default task by `eval.tasks` (not in `BUILTIN_TASKS`, whose
# tasks have test/dev splits with balanced gold positions).

TOY_MAX = "toy-max"
TOY_QUESTION = "Which number is largest?"
TOY_LOW, TOY_HIGH, TOY_N_OPTIONS = 10, 99, 4
TOY_SPLIT_SIZES: dict[str, int] = {"test": 4000, "dev": 200, "pretrain": 80_000}
_TOY_SPLIT_SEEDS: dict[str, int] = {"test": 11, "dev": 12, "pretrain": 13}


def _toy_numbers(split: str) -> list[tuple[int, ...]]:
    """The option tuples of `split`, distinct within and across splits (earlier splits claim a tuple first)."""
    import numpy as np

    taken: set[tuple[int, ...]] = set()
    out: dict[str, list[tuple[int, ...]]] = {}
    for name in ("test", "dev", "pretrain"):  # fixed order: test and dev never depend on the pretrain size
        rng = np.random.default_rng(_TOY_SPLIT_SEEDS[name])
        rows: list[tuple[int, ...]] = []
        while len(rows) < TOY_SPLIT_SIZES[name]:
            draw = rng.choice(np.arange(TOY_LOW, TOY_HIGH + 1), size=(TOY_SPLIT_SIZES[name], TOY_N_OPTIONS), replace=True)
            for row in map(tuple, draw.tolist()):
                if len(set(row)) == TOY_N_OPTIONS and row not in taken:
                    taken.add(row)
                    rows.append(row)
                    if len(rows) == TOY_SPLIT_SIZES[name]:
                        break
        out[name] = rows
        if name == split:
            return rows
    raise TaskError(f"task {TOY_MAX!r}: unknown split {split!r}; choose one of {', '.join(TOY_SPLIT_SIZES)}")


@functools.lru_cache(maxsize=4)
def _toy_records(split: str) -> tuple[MCRecord, ...]:
    return tuple(
        MCRecord(
            id=f"{TOY_MAX}/" + "-".join(map(str, nums)),
            question=TOY_QUESTION,
            choices=tuple(str(n) for n in nums),
            answer=max(range(len(nums)), key=nums.__getitem__),
            subject=TOY_MAX,
            split=split,
            source=f"builtin:{TOY_MAX}/{split}:{i + 1}",
        )
        for i, nums in enumerate(_toy_numbers(split))
    )


def toy_max(split: str = "test") -> list[MCRecord]:
    """The records of one split of toy-max."""
    if split not in TOY_SPLIT_SIZES:
        raise TaskError(f"task {TOY_MAX!r}: unknown split {split!r}; choose one of {', '.join(TOY_SPLIT_SIZES)}")
    return list(_toy_records(split))
