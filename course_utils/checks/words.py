"""Checkers for the exercises on words and counting (lesson 00)."""

import collections

from ..data import word_counts
from . import Checker

# Each sample catches one classic slip: case, punctuation glued to words,
# apostrophes inside words, and text with no words at all.
_SAMPLES = {
    "case": ("To be or not to be", "'To' and 'to' are one word: lower-case the text first"),
    "punctuation": ("Good night, good night! Parting is such sweet sorrow,",
                    "'night,' and 'night!' are the word 'night': split on anything that is not a letter"),
    "apostrophes": ("'Tis now struck twelve; o'er the hill", "an apostrophe inside a word keeps it whole: \"o'er\" is one word"),
    "empty": ("-- ! --", "a text with no letters has no words: return an empty count"),
}


def check_count_words(count_words) -> None:
    """Check a learner's `count_words(text)` against course_utils.data.word_counts."""
    with Checker("00.count_words") as check:
        first = check.call(count_words, _SAMPLES["case"][0])
        check.require("returns a dict of word -> count (a Counter is one)", isinstance(first, dict),
                      expected="dict or collections.Counter", actual=type(first).__name__)
        for name, (text, hint) in _SAMPLES.items():
            actual = collections.Counter(check.call(count_words, text))
            expected = word_counts(text)
            check.that(f"{name}: {text!r}", actual == expected,
                       expected=dict(sorted(expected.items())), actual=dict(sorted(actual.items())), hint=hint)
