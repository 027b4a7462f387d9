"""A labelled task built from the plays, for fine-tuning a pretrained BERT
(lesson 09): which kind of play does a passage come from, comedy, history
or tragedy?

The labels come from how the corpus files the plays. The Roman plays are
tragedies; the romances and the "problem plays" are left out, since their
kind is disputed. Whole plays are held out for testing, two of each kind,
so that a model is judged on plays it has never read a line of, and cannot
pass by recognising a play's characters.

The baseline a fine-tuned model must beat is a bag-of-words logistic
regression on the same split: word counts in, one weight per word and kind.
"""

import collections
import random

import torch

from . import data

KINDS = ("comedy", "history", "tragedy")  # label ids 0, 1, 2
_KIND_OF_FOLDER = {"comedies": "comedy", "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
TEST_PLAYS = ("twelfth-night", "much-ado-about-nothing", "henry-v", "richard-ii", "macbeth", "julius-caesar")


def play_kind(play: str) -> str | None:
    """'comedy', 'history' or 'tragedy'; None for a romance or a problem play."""
    return _KIND_OF_FOLDER.get(data.play_kinds()[play])


def passages(play_text: str, words: int) -> list[str]:
    """The spoken text of a play (no speakers' names), cut into consecutive
    passages of `words` words; the last, shorter one is dropped."""
    from .bert import speeches

    spoken = " ".join(speeches(play_text, names=False)).split()
    return [" ".join(spoken[start:start + words]) for start in range(0, len(spoken) - words + 1, words)]


def kind_dataset(words: int = 40) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]}, each row {"text", "label", "play"}:
    every passage of every comedy, history and tragedy, the TEST_PLAYS in
    "test" and the others in "train"."""
    split = {"train": [], "test": []}
    for play, text in data.plays().items():
        kind = play_kind(play)
        if kind is None:
            continue
        rows = split["test" if play in TEST_PLAYS else "train"]
        rows += [{"text": passage, "label": KINDS.index(kind), "play": play} for passage in passages(text, words)]
    return split


def balanced_sample(rows: list[dict], per_kind: int, seed: int = 0) -> list[dict]:
    """`per_kind` rows of each kind, drawn at random, in a random order.
    The training plays hold about twice as many history and tragedy
    passages as comedy; trained on them as they come, a model learns to
    guess comedy least, and the held-out comedies suffer."""
    rng = random.Random(seed)
    sample = [row for label in range(len(KINDS)) for row in rng.sample([r for r in rows if r["label"] == label], per_kind)]
    rng.shuffle(sample)
    return sample


class BagOfWords:
    """Word counts over a vocabulary of the training texts' words seen at
    least `min_count` times, as a (texts, vocabulary) tensor; other words
    are ignored."""

    def __init__(self, texts: list[str], min_count: int = 3):
        counts = collections.Counter(word for text in texts for word in data.words(text))
        self.vocabulary = {word: i for i, word in enumerate(sorted(w for w, n in counts.items() if n >= min_count))}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        counts = torch.zeros(len(texts), len(self.vocabulary))
        for row, text in enumerate(texts):
            for word in data.words(text):
                if word in self.vocabulary:
                    counts[row, self.vocabulary[word]] += 1
        return counts


def logistic_regression(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float = 1e-3,
                        steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on log(1 + count) features, fitted by
    full-batch L-BFGS with an L2 penalty: a deterministic, convex baseline."""
    torch.manual_seed(0)
    model = torch.nn.Linear(features.size(1), classes)
    inputs = torch.log1p(features)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), labels) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


@torch.no_grad()
def predict_kinds(model: torch.nn.Linear, features: torch.Tensor) -> torch.Tensor:
    return model(torch.log1p(features)).argmax(dim=-1)
