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
    """Each slip in computing the coverage: (the number it gives, where to look)."""
    ordered = sorted(counts.values(), reverse=True)
    running, distinct = sum(ordered), len(ordered)
    return {
        "dividing by the number of distinct words instead of running words": (sum(ordered[:n]) / distinct,
                                                                              "look at the denominator"),
        "counting the n words once each instead of their occurrences": (n / running, "look at what you add up"),
        "the n least frequent words instead of the most frequent": (sum(ordered[-n:]) / running,
                                                                    "look at the order you sort in"),
        "one word too many (the top n + 1)": (sum(ordered[:n + 1]) / running, "look at where your selection stops"),
        "one word too few (the top n - 1)": (sum(ordered[:max(n - 1, 0)]) / running,
                                             "look at where your selection stops"),
    }


def _named_slip(actual: float, expected: float, slips: dict) -> str | None:
    """The hint for the slip whose number `actual` is, if it is one (and not also the right number)."""
    for mistake, (wrong, where) in slips.items():
        if abs(actual - wrong) < 1e-9 and abs(wrong - expected) > 1e-9:
            return f"your number is exactly what {mistake} gives; {where}"
    return None


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
            hint = _named_slip(actual, expected, _coverage_slips(_COUNTS, n)) or hint
            check.that(name, abs(actual - expected) < 1e-9, expected=f"{expected:.4f}", actual=f"{actual:.4f}",
                       hint=hint)


# --- part 3: the words a vocabulary has never seen ----------------------------

# A vocabulary and two texts on which each slip gives a different number.
_KNOWN = collections.Counter({"the": 3, "king": 1, "queen": 2, "and": 5})
_NEW_TEXTS = [collections.Counter({"the": 4, "king": 2, "ariel": 3, "caliban": 1}),
              collections.Counter({"and": 6, "miranda": 1, "the": 2})]


def _unseen_slips(known: dict, counts: dict) -> dict:
    """Each slip in computing the unseen share: (the number it gives, where to look)."""
    running = sum(counts.values())
    unseen = [word for word in counts if word not in known]
    unseen_running = sum(counts[word] for word in unseen)
    return {
        "the share of distinct words instead of running words": (len(unseen) / len(counts),
                                                                 "every occurrence of an unseen word counts"),
        "the share of the words that are known instead of unseen": (1 - unseen_running / running,
                                                                    "look at which words you add up"),
        "the share of the vocabulary missing from the new text, the other way round": (
            sum(count for word, count in known.items() if word not in counts) / sum(known.values()),
            "look at which table you go through and which you look words up in"),
        "dividing by the vocabulary's running words instead of the new text's": (unseen_running / sum(known.values()),
                                                                                 "look at the denominator"),
        "a percentage instead of a share": (100 * unseen_running / running, "return a number between 0 and 1"),
    }


def check_unseen_share(unseen_share_function) -> None:
    """Check a learner's `unseen_share(known, counts)` against course_utils.data.unseen_share."""
    with Checker("00.unseen_share", references=[data.unseen_share]) as check:
        for counts in _NEW_TEXTS:
            for known in (_KNOWN, dict(_KNOWN)):  # a Counter, and a plain dict as dict(...most_common(n)) makes
                actual = check.call(unseen_share_function, known, counts)
                expected = data.unseen_share(known, counts)
                name = f"known {dict(known)} (a {type(known).__name__}), counts {dict(counts)}"
                if not isinstance(actual, (int, float)) or isinstance(actual, bool):
                    check.that(name, False, "a number between 0 and 1", f"{type(actual).__name__}: {actual!r:.60}")
                    continue
                hint = _named_slip(actual, expected, _unseen_slips(known, counts)) or (
                    "the occurrences in counts of the words that known lacks, over all the occurrences in counts")
                right = check.that(name, abs(actual - expected) < 1e-9, expected=f"{expected:.4f}",
                                   actual=f"{actual:.4f}", hint=hint)
                if right and counts is _NEW_TEXTS[0] and known is _KNOWN:  # once is enough to see a write
                    check.that("...and leaves known and counts as they were", not check.wrote_into,
                               expected="both tables unchanged", actual="your function changed "
                               + " and ".join(["known", "counts"][i] for i in check.wrote_into if i in (0, 1)),
                               hint="only read the two tables: the lesson uses them again")
        for name, known, counts, expected in [
            ("every word known: 0", _KNOWN, collections.Counter({"the": 2, "and": 1}), 0.0),
            ("an empty vocabulary: every word unseen, 1", {}, _NEW_TEXTS[0], 1.0),
        ]:
            actual = check.call(unseen_share_function, known, counts)
            check.that(name, isinstance(actual, (int, float)) and abs(actual - expected) < 1e-9,
                       expected=expected, actual=actual)
