"""Stored cell outputs compared by value: numbers within a tolerance, all else exactly.

Strict nbval compares a cell's fresh output with the stored one character by
character. A float32 result such as 0.48685 prints as 0.4869 on two threads and
0.4868 on one: the sum is added up in another order, the fifth digit moves and
the rounding tips over. Such a difference says nothing about the lesson, so the
course compares text outputs token by token:

- integers ("64", a shape's "(2, 5, 8)"), words, punctuation and line breaks
  must be identical, so a changed word, shape, count or a missing line fails;
- a decimal number ("0.4869", "1.5e-06") must be within
  ATOL + RTOL * max(|a|, |b|), widened by one unit of its last printed digit,
  since two values that close can still round to neighbouring digits;
- spaces around numbers are ignored (torch and numpy pad columns to the widest
  number, so "-0.0000" for "0.0000" shifts a whole row), and runs of spaces
  between words count as one.

A number that comes out of training is a measurement, not arithmetic: what
it depends on (the data's order, a vocabulary's numbering, the kernels) may
differ on another machine, and after hundreds of steps it moves further than
rounding can (lesson 08's MLM loss printed 5.08 on one machine and 5.12 on
another, until its vocabulary was fixed; see the README). Its cell declares
how far it may move, in a comment:

    # NBVAL_TOLERANCE ±0.05 "MLM loss": moved 0.03 between ... (why this size)
    print(f"MLM loss {loss:.2f}")

Every decimal number on an output line that contains the quoted text (every
line of the cell's output if no text is quoted) then passes within ±0.05 (or
±2% with a percent sign), plus one unit of its last printed digit; the first
band whose text the line contains applies. Integers (counts, steps, shapes)
and words still compare exactly: a verdict printed next to such a number must
be one that cannot flip inside its band. Size the band from a measured spread
(`benchmarks/output_spread.py`) and say why after the colon. Only comments
count, and a comment that names the marker but does not parse is an error.

`reconcile_outputs` applies this to a cell's outputs before nbval's own exact
comparison runs (see `pytest_plugin`): each number that agrees is written back
as stored, so nbval passes the cell when everything agrees and otherwise shows
its usual diff, naming only what really changed.
"""

import copy
import io
import math
import re
import tokenize
from dataclasses import dataclass

# float32 sums in another order differ in about the 7th digit, and a deep
# network or a softmax can grow that to the 5th; 1e-3 leaves a wide margin, yet
# is far below any result a lesson teaches.
RTOL = 1e-3
ATOL = 1e-5

# A decimal number standing alone: not part of a name ("d_k2"), a version
# ("2.13.0") or a hex address. Integers are matched too, so that they are kept
# apart from words, but compared exactly.
_NUMBER = r"(?<![\w.])[-+]?(?:\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)(?![\w]|\.\d)"
_TOKEN = re.compile(rf"(?P<number>{_NUMBER})|(?P<space>[ \t]+)|(?P<newline>\n)|(?P<other>.)", re.DOTALL)
_PLACEHOLDER = "\0"

MARKER = "NBVAL_TOLERANCE"
_DECLARATION = re.compile(rf'^#\s*{MARKER}(?P<rest>\s.*)?$')
_BAND = re.compile(r'^\s*±\s*(?P<size>\d+(?:\.\d+)?)(?P<percent>%?)(?:\s+"(?P<key>[^"\n]+)")?(?:\s*:.*|\s*)$')


@dataclass(frozen=True)
class Band:
    """How far the numbers on some output lines may move: `size` absolute, or
    a share of the value if `relative`; the lines that contain `key`, or all."""

    size: float
    relative: bool = False
    key: str | None = None

    def covers(self, line: str) -> bool:
        return self.key is None or self.key in line

    def allows(self, a: float, b: float) -> float:
        return self.size * max(abs(a), abs(b)) if self.relative else self.size


def _comments(source: str) -> list[str]:
    """The comments of a cell's source (not text in strings), or, for a cell
    that is not plain Python (a magic), its lines that start with #."""
    try:
        return [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return [line.strip() for line in source.splitlines() if line.strip().startswith("#")]


def declared_bands(source: str) -> list[Band]:
    """The `# NBVAL_TOLERANCE ±size ["text"]: why` comments of a cell's source.
    A malformed one, or a misspelt marker, is an error, so that a typo cannot
    leave a number unchecked or hide a band."""
    bands = []
    for comment in _comments(source):
        if "NBVAL_TOL" not in comment.upper():
            continue
        declaration = _DECLARATION.match(comment)
        band = _BAND.match(declaration.group("rest") or "") if declaration else None
        if band is None:
            raise ValueError(f"malformed {MARKER} comment: {comment!r}; write it as "
                             f'# {MARKER} ±0.05 "text on the output line": why (or ±2% for a share of the value)')
        size = float(band.group("size")) / (100 if band.group("percent") else 1)
        bands.append(Band(size, bool(band.group("percent")), band.group("key")))
    return bands


def _split(text: str) -> tuple[str, list[str], list[str]]:
    """(the text with each number replaced by a placeholder and spacing
    normalised, the numbers in order, the line each number stands on)."""
    pieces, numbers, lines = [], [], []
    for match in _TOKEN.finditer(text):
        if match.lastgroup == "number":
            numbers.append(match.group())
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            lines.append(text[start:end if end >= 0 else len(text)])
            pieces.append(_PLACEHOLDER)
        elif match.lastgroup == "space":
            pieces.append(" ")
        else:
            pieces.append(match.group())
    skeleton = "".join(pieces)
    skeleton = re.sub(r" *\0 *", _PLACEHOLDER, skeleton)  # padding next to a number
    skeleton = re.sub(r" +", " ", skeleton)
    skeleton = re.sub(r" *\n *", "\n", skeleton).strip(" ")
    return skeleton, numbers, lines


def _is_integer(number: str) -> bool:
    return not any(mark in number for mark in ".eE")


def _last_digit_unit(number: str) -> float:
    """The value of one unit in the last printed digit: 1e-4 for "0.4869",
    1e-7 for "1.5e-06"."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_agree(fresh: str, stored: str, band: Band | None = None) -> bool:
    """Whether two printed numbers agree: integers exactly, decimals within the
    arithmetic tolerance or a declared band."""
    if _is_integer(fresh) and _is_integer(stored):
        return int(fresh) == int(stored)
    a, b = float(fresh), float(stored)
    rounding = (_last_digit_unit(fresh) + _last_digit_unit(stored)) / 2
    if band is not None and abs(a - b) <= band.allows(a, b) + rounding:
        return True
    return math.isclose(a, b, rel_tol=0, abs_tol=ATOL + RTOL * max(abs(a), abs(b)) + rounding)


def _band_for(line: str, bands: list[Band]) -> Band | None:
    return next((band for band in bands if band.covers(line)), None)


def reconcile_text(fresh: str, stored: str, bands: list[Band] = ()) -> str:
    """`stored` itself if the two texts agree (numbers within tolerance, all
    else exactly); otherwise `fresh`, with each number that agrees with its
    stored counterpart written as stored, so that a diff shows only the rest.
    Texts whose words or number of numbers differ come back unchanged.
    `bands` are the cell's declared tolerances, matched on the stored line."""
    fresh_skeleton, fresh_numbers, _ = _split(fresh)
    stored_skeleton, stored_numbers, stored_lines = _split(stored)
    if fresh_skeleton != stored_skeleton:
        return fresh
    agree = [numbers_agree(a, b, _band_for(line, bands))
             for a, b, line in zip(fresh_numbers, stored_numbers, stored_lines)]
    if all(agree):
        return stored
    replacements = iter(b if ok else a for a, b, ok in zip(fresh_numbers, stored_numbers, agree))
    return _TOKEN.sub(lambda m: next(replacements) if m.lastgroup == "number" else m.group(), fresh)


def reconcile_outputs(fresh: list, stored: list, sanitize=lambda text: text, bands: list[Band] = ()) -> list:
    """A copy of a cell's fresh outputs in which every text that agrees with the
    stored output at the same place (same kind, same stream) is replaced by the
    stored text. `sanitize` is nbval's, applied to both sides first; `bands`
    are the cell's declared tolerances (`declared_bands`)."""
    fresh = copy.deepcopy(fresh)
    for new, old in zip(fresh, stored):
        if new.get("output_type") != old.get("output_type"):
            continue
        if new["output_type"] == "stream":
            if new.get("name") == old.get("name"):
                new["text"] = _reconcile_sanitized(new["text"], old["text"], sanitize, bands)
        elif "data" in new and "data" in old:
            for mime, value in new["data"].items():
                if isinstance(value, str) and isinstance(old["data"].get(mime), str) and not mime.startswith("image/"):
                    new["data"][mime] = _reconcile_sanitized(value, old["data"][mime], sanitize, bands)
    return fresh


def _reconcile_sanitized(fresh: str, stored: str, sanitize, bands: list[Band]) -> str:
    clean_fresh, clean_stored = sanitize(fresh), sanitize(stored)
    reconciled = reconcile_text(clean_fresh, clean_stored, bands)
    return stored if reconciled == clean_stored else reconciled
