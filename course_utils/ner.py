"""Lesson 11's token-classification task, built offline from the plays:
find the characters' names in Shakespeare's lines.

The labels come from the plays themselves. Every play lists its speakers
("Lady Macbeth:", "Sir Toby Belch:"); a word of a speaker's name that
Shakespeare almost never writes in lower case ("Macbeth", "Toby", not
"Lady", "Sir", "Fool" or "Shallow") is a character's name, and each word
of a line is labelled NAME when it is one of that play's names. The labels
are "silver", right by construction most of the time: a name nobody speaks
under (Macbeth's "Graymalkin") stays O.
"""

import collections
import functools
import random
import re

import torch

from . import data

LABELS = ("O", "NAME")  # label ids 0 and 1
IGNORE_INDEX = -100  # the label cross-entropy skips: special tokens and the later pieces of a word
WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[^\sA-Za-z]")  # words (with inner apostrophes) and single marks
LOWER_CASE_SHARE = 0.05  # a speaker's word is a name when at most 5% of its uses are in lower case


@functools.cache
def _word_counts() -> collections.Counter:
    return collections.Counter(re.findall(r"[A-Za-z']+", data.shakespeare()))


def is_name(word: str) -> bool:
    """True for a capitalised word that the plays almost never write in lower case."""
    counts = _word_counts()
    return word[:1].isupper() and counts[word.lower()] <= LOWER_CASE_SHARE * counts[word]


def character_names(play: str) -> set[str]:
    """The words of `play`'s speaker names that are names ("Macbeth", "Banquo")."""
    speakers = {speaker for speaker, _ in data.spoken_lines(data.plays()[play])}
    return {word for speaker in speakers for word in re.findall(r"[A-Za-z']+", speaker) if is_name(word)}


def tagged_lines(play: str) -> list[tuple[list[str], list[int]]]:
    """(words, labels) for every spoken line of `play`: label 1 (NAME) on the
    words that are one of the play's character names, 0 (O) elsewhere."""
    names = character_names(play)
    rows = []
    for _, line in data.spoken_lines(data.plays()[play]):
        words = WORD.findall(line)
        rows.append((words, [int(word in names) for word in words]))
    return rows


def names_dataset(train_lines: int = 2000, test_lines: int = 1000, seed: int = 0) -> dict[str, list[dict]]:
    """Lines for training (from every play but data.VALIDATION_PLAYS) and for
    testing (from those four held-out plays): half of each with a name in
    them, half without, in random order. Rows are {"words", "labels", "play"}."""
    rng = random.Random(seed)
    split = {"train": [], "test": []}
    for play in data.play_names():
        rows = [{"words": words, "labels": labels, "play": play} for words, labels in tagged_lines(play)]
        split["test" if play in data.VALIDATION_PLAYS else "train"].extend(rows)
    sized = {}
    for name, count in (("train", train_lines), ("test", test_lines)):
        with_name = [row for row in split[name] if any(row["labels"])]
        without = [row for row in split[name] if not any(row["labels"])]
        rows = rng.sample(with_name, count // 2) + rng.sample(without, count - count // 2)
        rng.shuffle(rows)
        sized[name] = rows
    return sized


def token_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """One label per token, from one label per word: `word_ids` (a fast
    tokenizer's `encoding.word_ids()`) says which word each token came from
    (None for [CLS], [SEP] and padding). The first piece of a word carries
    its label; the later pieces and the special tokens get IGNORE_INDEX, so
    that each word is scored once."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def encode(tokenizer, batch: dict, max_length: int = 64, label_tokens=None) -> dict:
    """A batch of {"words", "labels"} rows tokenised as pre-split words, with
    one label per token (for `datasets.Dataset.map(..., batched=True)`),
    aligned by `label_tokens(word_ids, word_labels)`, by default `token_labels`."""
    label_tokens = label_tokens or token_labels
    encoded = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=max_length)
    encoded["labels"] = [label_tokens(encoded.word_ids(i), labels) for i, labels in enumerate(batch["labels"])]
    return encoded


@torch.no_grad()
def predict_words(model, tokenizer, rows: list[dict], batch_size: int = 100) -> list[list[int]]:
    """The model's label for every word of every row: the label of the word's first piece."""
    model.eval()
    predictions = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        inputs = tokenizer([row["words"] for row in chunk], is_split_into_words=True, truncation=True,
                           max_length=512, padding=True, return_tensors="pt")
        best = model(**inputs).logits.argmax(dim=-1)
        for i, row in enumerate(chunk):
            words, previous = [0] * len(row["words"]), None
            for position, word in enumerate(inputs.word_ids(i)):
                if word is not None and word != previous:  # the word's first piece
                    words[word] = int(best[i, position])
                previous = word
            predictions.append(words)
    return predictions


def dictionary_tagger(rows: list[dict]):
    """The baseline: the set of words labelled NAME anywhere in `rows`, and a
    function that tags a row's words by looking each one up in it."""
    known = {word for row in rows for word, label in zip(row["words"], row["labels"]) if label}
    return known, lambda row: [int(word in known) for word in row["words"]]


def scores(predicted: list[list[int]], rows: list[dict]) -> dict[str, float]:
    """Precision, recall and F1 of the NAME label, word by word."""
    pairs = [(p, label) for guess, row in zip(predicted, rows) for p, label in zip(guess, row["labels"])]
    true_positives = sum(1 for p, label in pairs if p and label)
    precision = true_positives / max(1, sum(1 for p, _ in pairs if p))
    recall = true_positives / max(1, sum(1 for _, label in pairs if label))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --- entities: the view that named-entity recognition is scored in ---------------

def bio_tags(labels: list[int], kind: str = "NAME") -> list[str]:
    """Word labels (0 = O, 1 = a word of a name) as BIO tags: a run of name
    words is one entity, "B-NAME" on its first word and "I-NAME" on the
    rest ("Sir Toby Belch" -> O B-NAME I-NAME: "Sir" is no name here)."""
    return ["O" if not label else f"I-{kind}" if i and labels[i - 1] else f"B-{kind}"
            for i, label in enumerate(labels)]


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """The entities of one sequence of BIO tags as (type, first position,
    last position), found as seqeval finds them in its default mode (the
    CoNLL scorer's): an entity starts at a B- tag, or at an I- tag that does
    not continue an entity of its type (an I- without a B- before it counts),
    and ends before an O, a B- or a tag of another type."""
    found, start, kind = set(), None, ""
    for position, tag in enumerate([*tags, "O"]):  # the extra O closes an entity that runs to the end
        prefix, _, tag_kind = tag.partition("-")
        if start is not None and (prefix != "I" or tag_kind != kind):
            found.add((kind, start, position - 1))
            start = None
        if start is None and prefix in ("B", "I"):
            start, kind = position, tag_kind
    return found


def entity_scores(predicted: list[list[str]], true: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 over many sequences of BIO tags:
    a predicted entity counts only when one true entity has its type and
    exactly its span (seqeval's micro average; 0 where nothing is predicted)."""
    found = [entities(tags) for tags in predicted]
    wanted = [entities(tags) for tags in true]
    hits = sum(len(guess & truth) for guess, truth in zip(found, wanted))
    precision = hits / max(1, sum(map(len, found)))
    recall = hits / max(1, sum(map(len, wanted)))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
