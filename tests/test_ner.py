"""Lesson 11's names task: labels from the plays' speakers, one label per
token from one per word, the dictionary baseline and the scores, word by
word and entity by entity (the latter checked against the `seqeval` package)."""

from types import SimpleNamespace

import pytest
import torch

from course_utils import data
from course_utils.ner import (IGNORE_INDEX, bio_tags, character_names, dictionary_tagger, encode, entities,
                              entity_scores, is_name, names_dataset, predict_words, scores, tagged_lines, token_labels)


def test_speaker_words_that_are_names_and_words_that_are_not():
    names = character_names("macbeth")
    assert {"Macbeth", "Banquo", "Duncan", "Macduff", "Malcolm"} <= names
    assert not {"Lady", "First", "Witch", "Porter", "Doctor", "All"} & names
    assert is_name("Hamlet") and not is_name("Fool") and not is_name("hamlet")


def test_lines_are_labelled_word_by_word_with_the_plays_own_names():
    rows = tagged_lines("macbeth")
    assert len(rows) == len(data.spoken_lines(data.plays()["macbeth"]))
    words, labels = next(row for row in rows if "Banquo" in row[0])
    assert labels[words.index("Banquo")] == 1 and len(words) == len(labels)
    assert all(label == (word in character_names("macbeth")) for word, label in zip(words, labels))


def test_the_dataset_keeps_held_out_plays_apart_and_is_half_names():
    dataset = names_dataset(train_lines=200, test_lines=100)
    assert {row["play"] for row in dataset["test"]} <= set(data.VALIDATION_PLAYS)
    assert not {row["play"] for row in dataset["train"]} & set(data.VALIDATION_PLAYS)
    assert sum(any(row["labels"]) for row in dataset["train"]) == 100
    assert names_dataset(train_lines=200, test_lines=100) == dataset  # seeded


def test_token_labels_label_first_pieces_and_ignore_the_rest():
    #            [CLS]  To  morrow  Ban ##quo  ##s  , [SEP]
    word_ids = [None, 0, 1, 2, 2, 2, 3, None]
    assert token_labels(word_ids, [0, 0, 1, 0]) == [IGNORE_INDEX, 0, 0, 1, IGNORE_INDEX, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_encode_aligns_labels_with_a_real_fast_tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(data.encoder_path())
    batch = {"words": [["Good", "morrow", ",", "Benvolio"]], "labels": [[0, 0, 0, 1]]}
    encoded = encode(tokenizer, batch)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    labelled = {token: label for token, label in zip(tokens, encoded["labels"][0]) if label != IGNORE_INDEX}
    assert labelled == {"good": 0, "morrow": 0, ",": 0, tokens[tokens.index(",") + 1]: 1}
    assert tokens[-1] == "[SEP]" and encoded["labels"][0][-1] == IGNORE_INDEX


def test_predict_words_reads_the_first_piece_of_each_word():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(data.encoder_path())
    rows = [{"words": ["Good", "morrow", "Benvolio"], "labels": [0, 0, 1]}]

    def model(input_ids, **_):  # tags exactly the pieces of the word "Benvolio"
        word_ids = tokenizer(rows[0]["words"], is_split_into_words=True).word_ids()
        logits = torch.zeros(1, len(word_ids), 2)
        logits[0, :, 1] = torch.tensor([1.0 if w == 2 else -1.0 for w in word_ids])
        return SimpleNamespace(logits=logits)

    model.eval = lambda: None
    assert predict_words(model, tokenizer, rows) == [[0, 0, 1]]


def test_dictionary_baseline_and_scores():
    train = [{"words": ["Hail", "Macbeth"], "labels": [0, 1]}]
    test = [{"words": ["Macbeth", "and", "Banquo"], "labels": [1, 0, 1]}]
    known, tag = dictionary_tagger(train)
    assert known == {"Macbeth"}
    assert scores([tag(row) for row in test], test) == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}


def test_bio_tags_make_a_run_of_name_words_one_entity():
    assert bio_tags([0, 1, 1, 0, 1]) == ["O", "B-NAME", "I-NAME", "O", "B-NAME"]
    assert entities(bio_tags([0, 1, 1, 0, 1])) == {("NAME", 1, 2), ("NAME", 4, 4)}


# Hand-made cases, with the edge cases seqeval's default (CoNLL) mode decides:
EDGE_CASES = [
    ["B-PER", "I-PER", "O", "B-LOC"],  # the plain case
    ["O", "I-PER", "I-PER", "O"],  # an I- with no B- before it starts an entity
    ["B-PER", "I-LOC", "I-LOC"],  # the type changes inside a run: two entities
    ["B-PER", "B-PER", "I-PER"],  # a B- right after an entity starts a new one
    ["O", "O", "B-LOC", "I-LOC"],  # an entity that runs to the end
    ["I-LOC"],  # a one-token sequence, an I- alone
    ["O", "O"],  # nothing
    [],  # an empty sequence
]


def _random_tags(rng, length):
    return [rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) for _ in range(length)]


def test_entities_are_found_as_seqeval_finds_them():
    import random

    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    for tags in EDGE_CASES + [_random_tags(rng, rng.randrange(1, 15)) for _ in range(500)]:
        assert entities(tags) == set(get_entities(tags)), tags


def test_entity_scores_equal_seqevals_on_hand_made_and_random_sequences():
    import random

    from seqeval.metrics import f1_score, precision_score, recall_score

    def theirs(true, predicted):
        return {name: score(true, predicted, zero_division=0) for name, score in
                (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))}

    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-PER", "I-PER"], ["B-LOC", "I-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER"],  # right span, wrong type on the second entity
                 ["O", "B-PER", "O"],  # a span cut short: no credit at all
                 ["I-LOC", "I-LOC"]]  # I- without B-: still the right entity
    assert entity_scores(predicted, true) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert entity_scores(predicted, true) == pytest.approx(theirs(true, predicted))
    edge_true = [tags[::-1] for tags in EDGE_CASES]  # the edge cases against themselves reversed
    assert entity_scores(EDGE_CASES, edge_true) == pytest.approx(theirs(edge_true, EDGE_CASES))
    assert entity_scores([["O", "O"]], [["O", "B-PER"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    rng = random.Random(1)
    for _ in range(200):
        lengths = [rng.randrange(1, 12) for _ in range(rng.randrange(1, 6))]
        true = [_random_tags(rng, n) for n in lengths]
        predicted = [_random_tags(rng, n) for n in lengths]
        assert entity_scores(predicted, true) == pytest.approx(theirs(true, predicted)), (true, predicted)
