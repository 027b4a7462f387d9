"""The kind-of-play task (course_utils.finetuning): whole plays held out,
two of each kind; labels from the corpus's folders; and a bag-of-words
baseline that learns something real."""

import torch

from course_utils.finetuning import KINDS, TEST_PLAYS, BagOfWords, balanced_sample, kind_dataset, logistic_regression, \
    passages, play_kind, predict_kinds


def test_labels_follow_the_corpus_and_disputed_kinds_are_left_out():
    assert (play_kind("hamlet"), play_kind("julius-caesar"), play_kind("henry-v"), play_kind("twelfth-night")) == (
        "tragedy", "tragedy", "history", "comedy")
    assert play_kind("the-tempest") is None and play_kind("measure-for-measure") is None
    assert sorted(play_kind(play) for play in TEST_PLAYS) == sorted(KINDS * 2)


def test_passages_are_consecutive_spoken_words_without_names():
    text = "Hamlet:\nTo be, or not to be\n\nHoratio:\nMy lord\n"
    assert passages(text, 3) == ["To be, or", "not to be"]
    assert passages(text, 4) == ["To be, or not", "to be My lord"]


def test_the_split_holds_out_whole_plays():
    split = kind_dataset()
    train_plays = {row["play"] for row in split["train"]}
    test_plays = {row["play"] for row in split["test"]}
    assert test_plays == set(TEST_PLAYS) and not train_plays & test_plays
    assert {row["label"] for row in split["test"]} == {0, 1, 2}
    assert all(len(row["text"].split()) == 40 for row in split["train"][:100])


def test_the_bag_of_words_baseline_beats_the_majority_class_on_held_out_plays():
    split = kind_dataset()
    bag = BagOfWords([row["text"] for row in split["train"]])
    train_labels = torch.tensor([row["label"] for row in split["train"]])
    model = logistic_regression(bag([row["text"] for row in split["train"]]), train_labels, len(KINDS))
    test_labels = torch.tensor([row["label"] for row in split["test"]])
    accuracy = (predict_kinds(model, bag([row["text"] for row in split["test"]])) == test_labels).float().mean()
    majority = (test_labels == train_labels.mode().values).float().mean()
    assert accuracy > majority + 0.1, (accuracy, majority)


def test_a_balanced_sample_has_as_many_rows_of_each_kind_in_a_mixed_order():
    rows = [{"text": f"{label}/{i}", "label": label} for label in range(len(KINDS)) for i in range(50 * (label + 1))]
    sample = balanced_sample(rows, per_kind=20, seed=3)
    assert [sum(row["label"] == label for row in sample) for label in range(len(KINDS))] == [20, 20, 20]
    assert len({row["text"] for row in sample}) == 60
    assert len({row["label"] for row in sample[:20]}) > 1  # mixed, not in blocks of one kind
    assert balanced_sample(rows, 20, seed=3) == sample and balanced_sample(rows, 20, seed=4) != sample
