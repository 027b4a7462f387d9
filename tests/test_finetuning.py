"""The kind-of-play task (course_utils.finetuning): whole plays held out,
two of each kind for the test and one of each for validation; labels from
the corpus's folders; a sparse bag-of-words baseline that learns something
real; McNemar's exact test, Holm's adjustment and the test by play; the names that cross plays; and the plain loop
that gives Trainer's weights."""

import math

import pytest
import torch

from course_utils import data
from course_utils.finetuning import KINDS, TEST_PLAYS, VALIDATION_PLAYS, BagOfWords, accuracy_by_play, \
    balanced_sample, by_play_test, character_names, fine_tune, holm, kind_dataset, logistic_regression, mcnemar, \
    passages, play_kind, predict_kinds, shared_names


def test_labels_follow_the_corpus_and_disputed_kinds_are_left_out():
    assert (play_kind("hamlet"), play_kind("julius-caesar"), play_kind("henry-v"), play_kind("twelfth-night")) == (
        "tragedy", "tragedy", "history", "comedy")
    assert play_kind("the-tempest") is None and play_kind("measure-for-measure") is None
    assert sorted(play_kind(play) for play in TEST_PLAYS) == sorted(KINDS * 2)
    assert sorted(play_kind(play) for play in VALIDATION_PLAYS) == sorted(KINDS)


def test_passages_are_consecutive_spoken_words_without_names():
    text = "Hamlet:\nTo be, or not to be\n\nHoratio:\nMy lord\n"
    assert passages(text, 3) == ["To be, or", "not to be"]
    assert passages(text, 4) == ["To be, or not", "to be My lord"]


def test_the_split_holds_out_whole_plays_for_validation_and_test():
    split = kind_dataset()
    plays = {part: {row["play"] for row in rows} for part, rows in split.items()}
    assert plays["test"] == set(TEST_PLAYS) and plays["validation"] == set(VALIDATION_PLAYS)
    assert not plays["train"] & plays["test"] and not plays["train"] & plays["validation"]
    assert {row["label"] for row in split["validation"]} == {0, 1, 2}
    assert all(len(row["text"].split()) == 40 for row in split["train"][:100])


def test_the_validation_plays_share_no_character_with_the_test_plays():
    texts = data.plays()
    validation = set().union(*(character_names(texts[play]) for play in VALIDATION_PLAYS))
    test = set().union(*(character_names(texts[play]) for play in TEST_PLAYS))
    assert not {"cassio", "iago", "orlando", "rosalind"} - validation
    # King John's Salisbury and Prince Henry are other men of the same titles as Henry V's and Richard II's
    assert validation & test == {"salisbury", "henry", "french"}


def test_character_names_are_proper_names_only():
    names = character_names(data.plays()["macbeth"])
    assert {"macbeth", "banquo", "macduff", "duncan"} <= names
    assert not {"lady", "first", "murderer", "doctor", "porter"} & names


def test_shared_names_finds_the_characters_of_training_plays():
    rows = [{"text": "Brutus is an honourable man"}, {"text": "So are they all, all honourable men"}]
    assert shared_names(rows, ["coriolanus"]) == [{"brutus"}, set()]  # Junius Brutus speaks in Coriolanus
    assert shared_names(rows, ["twelfth-night"]) == [set(), set()]


def test_the_bag_of_words_is_sparse_and_counts_each_word():
    bag = BagOfWords(["the cat sat", "the dog"], min_count=1)
    features = bag(["the the cat", "a bird", "dog"])
    assert features.is_sparse and features.shape == (3, 4) and features.dtype == torch.float32
    dense = features.to_dense()
    assert dense[0, bag.vocabulary["the"]] == pytest.approx(math.log(3))
    assert dense[0, bag.vocabulary["cat"]] == pytest.approx(math.log(2))
    assert dense[1].sum() == 0 and dense[2, bag.vocabulary["dog"]] == pytest.approx(math.log(2))
    assert BagOfWords(["the cat sat", "the dog"], min_count=2).vocabulary == {"the": 0}


def test_sparse_and_dense_fits_agree():
    rows = balanced_sample(kind_dataset()["train"], per_kind=60, seed=0)
    bag = BagOfWords([row["text"] for row in rows], min_count=1)
    features, labels = bag([row["text"] for row in rows]), torch.tensor([row["label"] for row in rows])
    sparse, dense = logistic_regression(features, labels, 3, steps=50), logistic_regression(features.to_dense(), labels, 3, steps=50)
    assert torch.allclose(sparse.weight, dense.weight, atol=1e-3)  # L-BFGS steps amplify rounding a little
    assert torch.equal(predict_kinds(sparse, features), predict_kinds(dense, features.to_dense()))


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


def test_mcnemar_counts_the_disagreements_and_gives_the_exact_binomial_p():
    first = torch.tensor([True] * 10 + [False] * 2 + [True] * 5 + [False] * 3)
    second = torch.tensor([False] * 10 + [True] * 2 + [True] * 5 + [False] * 3)
    only_first, only_second, p = mcnemar(first, second)
    assert (only_first, only_second) == (10, 2)
    assert p == pytest.approx(2 * sum(math.comb(12, k) for k in range(3)) / 2 ** 12)  # 0.0386
    assert mcnemar(second, first)[2] == pytest.approx(p)
    assert mcnemar(first, first) == (0, 0, 1.0)
    assert mcnemar(torch.tensor([True]), torch.tensor([False]))[2] == 1.0  # one disagreement proves nothing


def test_holm_matches_a_hand_computation():
    # sorted: 0.01 x 4 = 0.04; 0.02 x 3 = 0.06; 0.03 x 2 = 0.06; 0.5 x 1 = 0.5. The third (0.06 by hand) stays
    # 0.06, at least the one before it; given in another order, each keeps its place.
    assert holm([0.5, 0.02, 0.01, 0.03]) == pytest.approx([0.5, 0.06, 0.04, 0.06])
    # lesson 09's three tests: 0.042 x 3 = 0.126; 0.37 x 2 = 0.74; 0.74 x 1 = 0.74
    assert holm([0.042, 0.74, 0.37]) == pytest.approx([0.126, 0.74, 0.74])
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # never above 1
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_by_play_test_takes_the_play_as_the_unit():
    plays = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    first = torch.tensor([True, True, True, False, True, True, False, False, True, False])
    second = torch.tensor([True, False, False, False, True, False, False, False, True, True])
    result = by_play_test(first, second, plays)
    # differences 3/4 - 1/4 = 0.5, 2/4 - 1/4 = 0.25, 1/2 - 1 = -0.5: mean 1/12, sd 0.5204, t = 0.2774 with 2 df
    assert result["differences"] == pytest.approx({"a": 0.5, "b": 0.25, "c": -0.5})
    assert result["mean"] == pytest.approx(1 / 12)
    sd = math.sqrt(((0.5 - 1 / 12) ** 2 + (0.25 - 1 / 12) ** 2 + (-0.5 - 1 / 12) ** 2) / 2)
    assert result["t"] == pytest.approx(1 / 12 / (sd / math.sqrt(3)))
    # with 2 degrees of freedom, P(|T| >= t) = 1 - t / sqrt(2 + t^2) exactly
    assert result["p"] == pytest.approx(1 - result["t"] / math.sqrt(2 + result["t"] ** 2))
    assert (result["wins"], result["sign_p"]) == (2, 1.0)  # 2 of 3: two-sided sign test p = 2 x 4/8, capped at 1


def test_the_t_tail_matches_known_values():
    from course_utils.finetuning import _t_two_sided

    assert _t_two_sided(2.571, 5) == pytest.approx(0.05, abs=1e-4)  # the 5% point of t with 5 df
    assert _t_two_sided(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    assert _t_two_sided(2.776, 4) == pytest.approx(0.05, abs=1e-4)
    assert _t_two_sided(0.0, 3) == pytest.approx(1.0)


def test_accuracy_by_play_keeps_the_order_of_the_plays():
    correct = torch.tensor([True, False, True, True])
    assert accuracy_by_play(correct, ["b", "b", "a", "b"]) == {"b": pytest.approx(2 / 3), "a": 1.0}


def test_the_loop_gives_trainers_weights_across_a_pass_and_a_shorter_batch(tmp_path):
    from transformers import Trainer, TrainingArguments

    from course_utils.classroom.checks.pretrained import _collator, _rows, _tiny_classifier

    rows, collator = _rows(11, torch.Generator().manual_seed(0)), _collator()
    ours = fine_tune(_tiny_classifier(3), rows, collator, steps=4, batch_size=4, learning_rate=1e-2, warmup_steps=1,
                     max_grad_norm=0.5)
    theirs = _tiny_classifier(3)
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2,
                                  lr_scheduler_type="linear", warmup_steps=1, weight_decay=0.0, max_grad_norm=0.5,
                                  optim="adamw_torch", train_sampling_strategy="sequential", seed=0, save_strategy="no",
                                  report_to="none", dataloader_pin_memory=False, disable_tqdm=True, use_cpu=True)
    Trainer(model=theirs, args=arguments, train_dataset=rows, data_collator=collator).train()
    for (name, mine), their in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(mine, their, atol=1e-6), name
    assert not torch.equal(ours.classifier.weight, _tiny_classifier(3).classifier.weight)


def test_sentence_embeddings_cut_at_the_models_own_length():
    from course_utils.pretrained import max_sequence_length, sentence_embeddings

    assert max_sequence_length() == 256
    long = " ".join(["Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day."] * 15)  # > 256 tokens
    cut = sentence_embeddings([long])
    assert torch.allclose(cut, sentence_embeddings([long], max_length=256), atol=1e-6)
    assert not torch.allclose(cut, sentence_embeddings([long], max_length=128), atol=1e-3)
