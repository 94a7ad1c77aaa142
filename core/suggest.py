"""'Did you mean' hints for names a user typed (commands, models, tasks, variants)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name` (difflib's ratio of at least 0.6, else the one `name` starts or is part of);
    None when none is close."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    low = name.lower()
    part = [k for k in known if low and low in k.lower()]
    return min(part, key=lambda k: (not k.lower().startswith(low), len(k))) if part else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'X'?)' for the closest of `known` to `name` (`closest`), or '' when none is close."""
    match = closest(name, known)
    return f" (did you mean {match!r}?)" if match is not None and match != name else ""
