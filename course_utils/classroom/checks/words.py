"""Checker for the exercise of lesson 00: counting words, and the share of
the text that the commonest words cover."""

import collections

from course_utils import data
from course_utils.data import coverage, word_counts
from . import Checker

# Each sample catches one classic slip in counting words. The hint names the
# slip and where to look, never the code.
_SAMPLES = {
    "case": ("To be or not to be", "'To' and 'to' are one word: lower-case the text first"),
    "punctuation": ("Good night, good night! Parting is such sweet sorrow,",
                    "'night,' and 'night!' are the word 'night': look at what you split on; "
                    "a word ends wherever a character that is not a letter comes"),
    "apostrophes": ("O'er the hill, ne'er to return", "an apostrophe between two letters keeps a word whole: "
                    "\"o'er\" is one word; look at which characters may continue a word"),
    "apostrophes at the edges": ("'Tis the players' cue, and 'tis late",
                                 "a word starts and ends with a letter: in \"'Tis\" and \"players'\" the apostrophe "
                                 "is a quotation mark or an elision, so they count as 'tis' and 'players'; "
                                 "look at how a word may start and end"),
    "letters only": ("Enter 2 lords and 3 ladies_", "digits and underscores are not letters, so they are never part "
                     "of a word (some character classes, such as \\w, include them); look at what counts as a letter"),
    "empty": ("-- ! --", "a text with no letters has no words: return an empty count"),
}

# A count table on which each slip in computing the coverage gives a different number.
_COUNTS = collections.Counter({"the": 5, "and": 4, "to": 3, "thee": 2, "ere": 1, "anon": 1})


def _coverage_slips(counts: dict, n: int) -> dict:
    ordered = sorted(counts.values(), reverse=True)
    running, distinct = sum(ordered), len(ordered)
    return {
        "dividing by the number of distinct words instead of running words; look at the denominator":
            sum(ordered[:n]) / distinct,
        "counting the n words once each instead of their occurrences; look at what you add up": n / running,
        "the n least frequent words instead of the most frequent; look at the order you sort in":
            sum(ordered[-n:]) / running,
        "one word too many (the top n + 1); look at where your selection stops": sum(ordered[:n + 1]) / running,
        "one word too few (the top n - 1); look at where your selection stops": sum(ordered[:max(n - 1, 0)]) / running,
    }


def check_count_words(count_words, coverage_function) -> None:
    """Check a learner's `count_words(text)` against course_utils.data.word_counts
    and their `coverage(counts, n)` against course_utils.data.coverage."""
    with Checker("00.count_words", references=[data.words, word_counts, coverage]) as check:
        first = check.call(count_words, _SAMPLES["case"][0])
        check.require("count_words returns a dict of word -> count (a Counter is one)", isinstance(first, dict),
                      expected="dict or collections.Counter", actual=type(first).__name__)
        for name, (text, hint) in _SAMPLES.items():
            actual = collections.Counter(check.call(count_words, text))
            expected = word_counts(text)
            check.that(f"{name}: {text!r}", actual == expected,
                       expected=dict(sorted(expected.items())), actual=dict(sorted(actual.items())), hint=hint)

        for n in (3, 10):
            actual = check.call(coverage_function, collections.Counter(_COUNTS), n)
            expected = coverage(_COUNTS, n)
            name = f"coverage(counts, {n}) with counts {dict(_COUNTS)}"
            if not isinstance(actual, (int, float)) or isinstance(actual, bool):
                check.that(name, False, "a number between 0 and 1", f"{type(actual).__name__}: {actual!r:.60}")
                continue
            hint = ("the share of all running words: the occurrences of the top n words over the occurrences "
                    "of all words" if n < len(_COUNTS) else
                    "with n larger than the vocabulary, every word is in the top n: the share is 1")
            for mistake, wrong in _coverage_slips(_COUNTS, n).items():
                if abs(actual - wrong) < 1e-9 and abs(wrong - expected) > 1e-9:
                    hint = f"your number is exactly what {mistake} gives"
                    break
            check.that(name, abs(actual - expected) < 1e-9, expected=f"{expected:.4f}", actual=f"{actual:.4f}",
                       hint=hint)
