"""Pretty, unique slugs: ``section-title-nnll``.

A record's *wanted* slug is made from its slug columns plus its NNLL code.
When two visible records want the same slug (possible only when they were made
on different nodes), one keeps it and the others get their fallbacks,
``wanted-rrrrrrrr`` from their own IDs; which one keeps it, the masters settle
(slug_settlement.py).
"""

from __future__ import annotations

import re

from .lazy import lazy

# Loaded by the first slug made (it reads its tables as it goes): reads never load it.
anyascii = lazy("anyascii")

MAX_WORDS_LEN = 60
_NON_WORD = re.compile(r"[^a-z0-9]+")
# A wanted slug as a master's claim names it (words, then the code).
WANTED_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
MAX_WANTED_LEN = MAX_WORDS_LEN + 1 + 8


def words(values: list[object], empty: str) -> str:
    """Lowercase ASCII words joined by ``-``, at most MAX_WORDS_LEN characters.

    ``empty`` is used when the values leave no letters or digits at all.
    """
    text = " ".join("" if v is None else str(v) for v in values)
    text = anyascii.anyascii(text).lower().replace("'", "")
    parts = [p for p in _NON_WORD.split(text) if p]
    out = ""
    for part in parts:
        candidate = f"{out}-{part}" if out else part
        if len(candidate) > MAX_WORDS_LEN:
            if not out:  # one very long word: cut it
                out = part[:MAX_WORDS_LEN]
            break
        out = candidate
    return out or empty


def wanted(values: list[object], code: str, empty: str) -> str:
    """The slug a record asks for: its words plus its code, lowercased."""
    return f"{words(values, empty)}-{code.lower()}"


def fallback(wanted_slug: str, random_part: str) -> str:
    """The slug of a record that lost a clash: unique because its ID is."""
    return f"{wanted_slug}-{random_part.lower()}"
