"""The forms of a task that the rules read: an instruction hidden by look-alike or
invisible characters, accents, leetspeak (`1gn0re a11`), letter spacing (`i g n o r e`),
or an encoding (base64, hex, percent-encoding, ROT13) reads as plain words in one of them.

Every form is bounded by the task's own length: encoded payloads are decoded two levels
deep at most, and only those that decode to printable text are kept."""

from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import re
import unicodedata
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# Zero-width, bidirectional-control, soft-hyphen and Unicode tag characters: they hide
# text from a human reviewer or split a word so that no pattern sees it.
INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)

# Cyrillic and Greek letters that look like Latin ones (after case folding); replaced only
# inside words that mix them with Latin letters, so Russian or Greek text is left alone.
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "і": "i", "ј": "j", "к": "k", "м": "m", "н": "h",  # noqa: RUF001
        "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d",  # noqa: RUF001
        "ԛ": "q", "ԝ": "w", "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",  # noqa: RUF001
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x",  # noqa: RUF001
    }
)  # fmt: skip
_WORD = re.compile(r"\w+")
_LATIN = re.compile(r"[a-z]")

# Leetspeak: what each character can stand for, the likelier reading first.
_LEET: dict[str, str] = {
    "0": "o",
    "1": "il",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "li",
    "+": "t",
}
_LEET_TOKEN = re.compile(r"[\w@$!|+]+")
_MAX_AMBIGUOUS = 6

# Four or more single characters, each followed by one to three separators: `i g n o r e`,
# `i.g.n.o.r.e`, `i-g-n-o-r-e   a-l-l`.
_SPACED_RUN = re.compile(r"(?<![^\W_])(?:[^\W_][ \t.\-_*·•/]{1,3}){3,}[^\W_](?![^\W_])")
_SEPARATORS = re.compile(r"[ \t.\-_*·•/]{1,3}")

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:(?:0x|\\x)?[0-9a-fA-F]{2}[\s:,]?){8,}")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}[^%\s]{0,3}){4,}")
_ROT13_HINT = re.compile(r"(?i)\brot[\s-]?13\b")
_MAX_DEPTH = 2


@dataclass
class Forms:
    """`plain`: the text as a reader sees it (NFKC, without invisible characters, accents
    or case); `folded`: also with look-alikes, leetspeak and letter spacing undone, or None
    when that changed nothing; `decoded`: what embedded encodings decode to, each in its
    plain and folded form; `cased`: `plain` before case folding, for case-sensitive rules."""

    cased: str
    plain: str
    folded: str | None
    decoded: list[str] = field(default_factory=list)
    invisible: bool = False


def forms(text: str, vocabulary: frozenset[str], depth: int = 0) -> Forms:
    visible = INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    cased = _strip_accents(visible)
    plain = cased.casefold()
    folded = _fold(plain, vocabulary)
    result = Forms(
        cased=cased,
        plain=plain,
        folded=folded if folded != plain else None,
        invisible=visible != unicodedata.normalize("NFKC", text),
    )
    if depth < _MAX_DEPTH:
        for payload in _decoded_payloads(visible):
            inner = forms(payload, vocabulary, depth + 1)
            result.decoded.extend(
                [inner.plain, *([inner.folded] if inner.folded else []), *inner.decoded]
            )
    return result


def _strip_accents(text: str) -> str:
    """Accents off Latin letters (`précédentes` -> `precedentes`); other scripts keep
    their marks, which are letters of their own there (Russian `й`)."""
    kept: list[str] = []
    latin = False
    for c in unicodedata.normalize("NFKD", text):
        if unicodedata.category(c) == "Mn":
            if latin:
                continue
        else:
            latin = c < "\u0250"
        kept.append(c)
    return unicodedata.normalize("NFC", "".join(kept))


def _fold(text: str, vocabulary: frozenset[str]) -> str:
    text = _WORD.sub(_unmix, text)
    text = _SPACED_RUN.sub(lambda m: _unspace(m.group(0), vocabulary), text)
    return _LEET_TOKEN.sub(lambda m: _unleet(m.group(0), vocabulary), text)


def _unmix(match: re.Match[str]) -> str:
    word = match.group(0)
    return word.translate(_HOMOGLYPHS) if _LATIN.search(word) else word


def _unspace(run: str, vocabulary: frozenset[str]) -> str:
    """`i g n o r e   a l l` -> `ignore all`: the commonest gap joins letters, any other
    gap breaks words; with one gap throughout, the letters are split into words of the
    vocabulary."""
    gaps = _SEPARATORS.findall(run)
    letters = _SEPARATORS.split(run)
    joining = Counter(gaps).most_common(1)[0][0]
    if all(gap == joining for gap in gaps):
        return _segment("".join(letters), vocabulary)
    words = [letters[0]]
    for gap, letter in zip(gaps, letters[1:], strict=True):
        if gap == joining:
            words[-1] += letter
        else:
            words.append(letter)
    return " ".join(words)


def _segment(squashed: str, vocabulary: frozenset[str]) -> str:
    """Splits letters run together into vocabulary words, covering as many letters with
    words as it can; letters no word covers stay together."""
    n = len(squashed)
    # cost[i]: the cheapest split of squashed[:i], a word costing 0.1 and a letter outside
    # one 1; start[i]: where its last piece begins.
    cost = [0.0] + [float("inf")] * n
    start = [0] * (n + 1)
    for end in range(1, n + 1):
        for begin in range(max(0, end - 20), end):
            known = squashed[begin:end] in vocabulary
            if not known and end - begin > 1:
                continue
            candidate = cost[begin] + (0.1 if known else 1.0)
            if candidate < cost[end]:
                cost[end], start[end] = candidate, begin
    pieces: list[str] = []
    end = n
    while end > 0:
        pieces.append(squashed[start[end] : end])
        end = start[end]
    words: list[str] = []
    previous_known = True
    for piece in reversed(pieces):
        known = piece in vocabulary
        if not known and not previous_known:
            words[-1] += piece
        else:
            words.append(piece)
        previous_known = known
    return " ".join(words)


def _unleet(token: str, vocabulary: frozenset[str]) -> str:
    core = token.strip("!|+")
    if not core or core.isdigit() or not any(c.isalpha() for c in core):
        return token
    if not any(c in _LEET for c in core):
        return token
    options = [_LEET.get(c, c) for c in core]
    ambiguous = sum(len(o) > 1 for o in options)
    if ambiguous > _MAX_AMBIGUOUS:
        return "".join(o[0] for o in options)
    readings = ("".join(chars) for chars in itertools.product(*options))
    first = None
    for reading in readings:
        first = first or reading
        if reading in vocabulary:
            return reading
    return first or token


def _decoded_payloads(text: str) -> Iterable[str]:
    for match in _BASE64.finditer(text):
        decoded = _printable(_b64(match.group(0)))
        if decoded:
            yield decoded
    for match in _HEX.finditer(text):
        digits = re.sub(r"0x|\\x|[^0-9a-fA-F]", "", match.group(0))
        if len(digits) % 2 == 0:
            decoded = _printable(binascii.unhexlify(digits))
            if decoded:
                yield decoded
    if _PERCENT.search(text):
        yield urllib.parse.unquote(text)
    if _ROT13_HINT.search(text):
        yield codecs.decode(text, "rot13")


def _b64(candidate: str) -> bytes:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        if "-" in candidate or "_" in candidate:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _printable(raw: bytes) -> str | None:
    """The bytes as text when they are text: UTF-8, nearly all printable, with letters."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 4:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    letters = sum(c.isalpha() for c in decoded)
    if printable < 0.95 * len(decoded) or letters < 0.5 * len(decoded.replace(" ", "")):
        return None
    return decoded
