"""Checker for the exercise of lesson 11: one label per token from one label
per word, for token classification.

The expected labels come from `course_utils.ner.token_labels`: the first
piece of each word carries the word's label, and the later pieces and the
special tokens (word id None) get -100, which the loss skips. A word is a
run of tokens with the same word id: in a sentence pair the ids start again
at 0 after [SEP], and that 0 begins a new word. The labels are class ids, so
integers (Python ints, or an integer tensor).
"""

import numbers

from course_utils.ner import IGNORE_INDEX, token_labels
from . import Checker

CASES = [
    #  [CLS] good morrow ben ##vo ##lio ,  [SEP]   ("Good morrow, Benvolio")
    ([None, 0, 1, 2, 2, 2, 3, None], [0, 0, 1, 0], "a name cut into three pieces"),
    ([None, 0, 0, 1, None, None, None], [1, 0], "a batch row padded at the end (padding has no word either)"),
    ([None, 0, 1, 2, None], [0, 0, 0], "a line without a name"),
    # Two texts in one input, as for next-sentence prediction: the second text's word ids start at 0 again.
    ([None, 0, 1, 2, None, 0, 1, None], [0, 1, 0], "a sentence pair (the word ids start again at 0 after [SEP])"),
    #  [CLS] ben ##vo ##lio [SEP] ben ##vo ##lio !  [SEP]   ("Benvolio" paired with "Benvolio!")
    ([None, 0, 0, 0, None, 0, 0, 0, 1, None], [1, 0],
     "a pair whose first text is one word (the same id on both sides of [SEP])"),
]


def _slips(word_ids: list, word_labels: list) -> dict[str, list]:
    """What each classic slip gives on one case, named as the learner will read it."""
    right = token_labels(word_ids, word_labels)
    every_piece = [IGNORE_INDEX if word is None else word_labels[word] for word in word_ids]
    last_piece = [IGNORE_INDEX if word is None or (i + 1 < len(word_ids) and word_ids[i + 1] == word)
                  else word_labels[word] for i, word in enumerate(word_ids)]
    seen, once_per_id = set(), []
    for word in word_ids:
        once_per_id.append(IGNORE_INDEX if word is None or word in seen else word_labels[word])
        seen.add(word)
    previous, across_sep = None, []
    for word in word_ids:
        across_sep.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word if word is not None else previous
    return {
        "labelling every piece of a word (score each word once: its later pieces get -100)": every_piece,
        "labelling the last piece of a word instead of the first": last_piece,
        "labelling the special tokens O (they are no word: they get -100, so the loss skips them)":
            [0 if word is None else label for word, label in zip(word_ids, right)],
        "labelling the special tokens O and every piece of a word":
            [0 if word is None else label for word, label in zip(word_ids, every_piece)],
        "giving -100 to a word whose id appeared earlier in the row (after [SEP] the ids start again: "
        "a word is a run of the same id, and a new run is a new word)": once_per_id,
        "comparing a token's word id with the last word id before [SEP] (a special token ends a word: "
        "the word after it is new even when its id is the same)": across_sep,
        "giving each token its word id instead of the word's label":
            [label if label == IGNORE_INDEX else word for word, label in zip(word_ids, right)],
    }


def _first_difference(word_ids: list, expected: list, out: list) -> str:
    """Where the learner's labels first part from the right ones, in the terms of the exercise."""
    i = next(i for i, (want, got) in enumerate(zip(expected, out)) if want != got)
    word = word_ids[i]
    if word is None:
        token = "a special token or padding (word id None)"
    elif i and word_ids[i - 1] == word:
        token = f"a later piece of word {word}"
    else:
        token = f"the first token of word {word}" + (" after [SEP]" if None in word_ids[1:i] else "")
    return f"token {i}, {token}, should have label {expected[i]}; yours has {out[i]}"


def _integer(label) -> bool:
    return isinstance(label, numbers.Integral) and not isinstance(label, bool)


def check_token_labels(token_labels_answer) -> None:
    """Check a learner's `token_labels(word_ids, word_labels)` on five rows."""
    with Checker("11.token_labels", references=[token_labels]) as check:
        answered = []  # (word_ids, word_labels, the learner's labels) of the cases so far
        for word_ids, word_labels, what in CASES:
            out = check.call(token_labels_answer, word_ids, word_labels)
            if not check.that(f"{what}: the inputs are left as they were", not check.wrote_into, "inputs unchanged",
                              "your function changed word_ids or word_labels", "build a new list"):
                return
            kind = str(getattr(out, "dtype", ""))
            out = out.tolist() if hasattr(out, "tolist") else out
            expected = token_labels(word_ids, word_labels)
            check.require(f"{what}: one label per token", isinstance(out, list) and len(out) == len(word_ids),
                          expected=f"a list of {len(word_ids)} labels", actual=repr(out)[:80],
                          hint="one label for each entry of word_ids, the None entries included")
            odd = [label for label in out if not _integer(label)]
            if None in odd:
                check.require(f"{what}: a number for every token", False, expected=expected, actual=out,
                              hint="a token the loss must skip still needs a label: -100, not None")
            if odd:
                what_came = f"{type(odd[0]).__name__} labels" + (f" (a {kind} tensor)" if kind else "")
                check.require(f"{what}: the labels are integers", False, expected=f"ints, such as {expected}",
                              actual=f"{what_came}: {out}"[:120],
                              hint="labels are class ids: cross-entropy takes them as integers, and refuses "
                                   "floating-point ids (a floating-point target must be probabilities, one row per token)")
            answered.append((word_ids, word_labels, out))
            if out == expected:
                check.that(f"{what}: labels {expected}", True)
                continue
            named = [slip for slip, wrong in _slips(word_ids, word_labels).items() if out == wrong]
            # Two slips can give the same labels on one row: name the one that also fits the rows before it.
            named.sort(key=lambda slip: not all(_slips(ids, labels)[slip] == theirs for ids, labels, theirs in answered))
            check.fail(f"{what}", expected=expected, actual=out,
                       hint=f"your labels are exactly what {named[0]} gives" if named else
                       _first_difference(word_ids, expected, out))
