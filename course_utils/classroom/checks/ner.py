"""Checker for the exercise of lesson 11: one label per token from one label
per word, for token classification.

The expected labels come from `course_utils.ner.token_labels`: the first
piece of each word carries the word's label, and the later pieces and the
special tokens (word id None) get -100, which the loss skips.
"""

from course_utils.ner import IGNORE_INDEX, token_labels
from . import Checker

#        [CLS]  Good  morrow  Ben ##vol ##io  ,  [SEP]  then padding
CASES = [([None, 0, 1, 2, 2, 2, 3, None], [0, 0, 1, 0], "a name cut into three pieces"),
         ([None, 0, 0, 1, None, None, None], [1, 0], "a batch row padded at the end (padding has no word either)"),
         ([None, 0, 1, 2, None], [0, 0, 0], "a line without a name")]


def _slips(word_ids: list, word_labels: list) -> dict[str, list]:
    """What each classic slip gives on one case."""
    every_piece = [IGNORE_INDEX if word is None else word_labels[word] for word in word_ids]
    last_piece = [IGNORE_INDEX if word is None or (i + 1 < len(word_ids) and word_ids[i + 1] == word)
                  else word_labels[word] for i, word in enumerate(word_ids)]
    special_as_o = [0 if label == IGNORE_INDEX and word is None else label
                    for word, label in zip(word_ids, token_labels(word_ids, word_labels))]
    return {
        "labelling every piece of a word (score each word once: give the later pieces -100)": every_piece,
        "labelling the last piece of a word instead of the first": last_piece,
        "labelling the special tokens O (they are no word: give them -100, so the loss skips them)": special_as_o,
        "labelling the special tokens O and every piece of a word": [0 if word is None else label
                                                                     for word, label in zip(word_ids, every_piece)],
    }


def check_token_labels(token_labels_answer) -> None:
    """Check a learner's `token_labels(word_ids, word_labels)` on three rows."""
    with Checker("11.token_labels", references=[token_labels]) as check:
        for word_ids, word_labels, what in CASES:
            out = check.call(token_labels_answer, word_ids, word_labels)
            if not check.that(f"{what}: the inputs are left as they were", not check.wrote_into, "inputs unchanged",
                              "your function changed word_ids or word_labels", "build a new list"):
                return
            out = out.tolist() if hasattr(out, "tolist") else out
            expected = token_labels(word_ids, word_labels)
            check.require(f"{what}: one label per token", isinstance(out, list) and len(out) == len(word_ids),
                          expected=f"a list of {len(word_ids)} labels", actual=repr(out)[:80],
                          hint="go through word_ids: one label for each entry, None included")
            if out == expected:
                check.that(f"{what}: labels {expected}", True)
                continue
            named = [slip for slip, wrong in _slips(word_ids, word_labels).items() if out == wrong]
            check.fail(f"{what}", expected=expected, actual=out,
                       hint=f"your labels are exactly what {named[0]} gives" if named else
                       "a token takes its word's label when it is the first token of that word; otherwise -100")
