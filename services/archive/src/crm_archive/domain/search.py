"""What a name or a city is searched by, and what an agent's `q` asks for. Pure: the adapter turns
these plaintext fragments into keyed hashes (`adapters/pii.py`) before anything is stored or sent
to the database.

A name gives every bigram of its Chinese (CJK) characters and every prefix, from `MIN_PREFIX` to
`MAX_PREFIX` letters, of each of its Latin (or other alphabetic) words, case- and
accent-insensitive. A query asks for the fragments of what was typed: all of them must be present,
so a longer Chinese fragment matches when each of its bigrams does.
"""

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

MIN_PREFIX = 2
"""Letters of a Latin word a search needs (one letter matches too many to be useful)."""
MAX_PREFIX = 12
"""Longer prefixes are not stored: a longer word in a query is matched on its first 12 letters."""
MAX_NAME_TOKENS = 128
"""At most this many fragments per name (a 200-character name would give about 200)."""

_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # CJK Extensions B-G
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(f"[^\\W\\d_{_CJK}]+")
_SEPARATORS = re.compile(r"[\s\W_]+")
_PHONE_CHARACTERS = re.compile(r"[\s+\-().]")
_APOSTROPHES = re.compile("['\u2019]")

TOO_SHORT = (
    "q: type at least two Chinese characters or two letters of a name, a phone number or an "
    "e-mail address"
)


class SearchTextError(ValueError):
    """A query that cannot be searched for (the message says why)."""


def _fold(text: str) -> str:
    """Width, case and accents folded, apostrophes dropped: `Ｊｏｓé O'Neil` -> `jose oneil`."""
    folded = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    decomposed = unicodedata.normalize("NFKD", folded)
    # Recomposed, so that Hangul syllables (decomposed into jamo above) are whole again.
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def _bigrams(text: str) -> list[str]:
    """The CJK bigrams of `text`; white space and punctuation between characters are ignored
    (`王 芳`, `王·芳` and `王芳` give the same), letters and digits break a run."""
    runs = _CJK_RUN.findall(_SEPARATORS.sub("", text))
    return [run[i : i + 2] for run in runs for i in range(len(run) - 1)]


def _words(text: str) -> list[str]:
    """The alphabetic words (not CJK, no digits) of `text`, folded."""
    return _WORD.findall(text)


def name_tokens(name: str | None) -> list[str]:
    """What a name is found by, in plaintext (the adapter hashes each): CJK bigrams and Latin
    word prefixes, distinct, in order, at most `MAX_NAME_TOKENS`."""
    if not name:
        return []
    folded = _fold(name)
    tokens = _bigrams(folded)
    for word in _words(folded):
        tokens += [word[:n] for n in range(MIN_PREFIX, min(len(word), MAX_PREFIX) + 1)]
    return list(dict.fromkeys(tokens))[:MAX_NAME_TOKENS]


def city_token(city: str | None) -> str | None:
    """A city as compared: folded, without spaces or punctuation, and without a trailing 市
    (`杭州市` = `杭州`, ` Hang-zhou ` = `hangzhou`); None when nothing is left."""
    if not city:
        return None
    compact = _SEPARATORS.sub("", _fold(city))
    if compact.endswith("市") and len(compact) > 2:
        compact = compact[:-1]
    return compact or None


@dataclass(frozen=True)
class SearchText:
    """What an agent typed in `q`, understood: an e-mail address (it holds `@`), a phone number
    (nothing but digits and `+ - ( ) .` or spaces), else a name or part of one."""

    kind: Literal["email", "phone", "name"]
    text: str
    """The e-mail or phone as typed (the adapter normalises it)."""
    name_tokens: tuple[str, ...] = ()
    """For a name: every fragment that must be present."""


def parse_search(q: str) -> SearchText:
    """`q` understood (see `SearchText`); `SearchTextError` when it holds nothing searchable."""
    text = q.strip()
    if "@" in text:
        return SearchText("email", text)
    compact = _PHONE_CHARACTERS.sub("", text)
    if compact.isascii() and compact.isdigit():
        return SearchText("phone", text)
    folded = _fold(text)
    tokens = _bigrams(folded)
    tokens += [word[:MAX_PREFIX] for word in _words(folded) if len(word) >= MIN_PREFIX]
    if not tokens:
        raise SearchTextError(TOO_SHORT)
    return SearchText("name", text, tuple(dict.fromkeys(tokens)))
