"""A labelled task built from the plays, for fine-tuning a pretrained BERT
(lesson 09): which kind of play does a passage come from, comedy, history
or tragedy?

The labels come from how the corpus files the plays. The Roman plays are
tragedies; the romances and the "problem plays" are left out, since their
kind is disputed. Whole plays are held out: two of each kind for the test,
one of each kind for validation (where settings are chosen), so that a
model is judged on plays it was never fine-tuned or fitted on (a pretrained
encoder may well have read their famous lines). That does not stop
characters from walking across plays (Falstaff's friends into Henry V,
Antony from Julius Caesar into Antony and Cleopatra): `shared_names`
measures how many held-out passages name a character of a training play.

The baseline a fine-tuned model must beat is a bag-of-words logistic
regression on the same split: word counts in, one weight per word and kind.
`mcnemar` compares two classifiers on the same passages, `holm` adjusts the
p-values of several such tests, and `by_play_test` asks whether a difference
holds from play to play; `fine_tune` is the plain PyTorch loop that Trainer
runs with lesson 09's arguments.
"""

import collections
import functools
import math
import random
import re

import torch

from . import data

KINDS = ("comedy", "history", "tragedy")  # label ids 0, 1, 2
_KIND_OF_FOLDER = {"comedies": "comedy", "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
TEST_PLAYS = ("twelfth-night", "much-ado-about-nothing", "henry-v", "richard-ii", "macbeth", "julius-caesar")
# one of each kind, where settings are chosen; no character in common with a test play (King John's Salisbury
# and Prince Henry are other men of the titles in Henry V and Richard II)
VALIDATION_PLAYS = ("as-you-like-it", "king-john", "othello")


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
    """{"train": [...], "validation": [...], "test": [...]}, each row
    {"text", "label", "play"}: every passage of every comedy, history and
    tragedy, the TEST_PLAYS in "test", the VALIDATION_PLAYS in "validation"
    and the others in "train"."""
    split = {"train": [], "validation": [], "test": []}
    for play, text in data.plays().items():
        kind = play_kind(play)
        if kind is None:
            continue
        rows = split["test" if play in TEST_PLAYS else "validation" if play in VALIDATION_PLAYS else "train"]
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
    """Bag-of-words features: log(1 + count) of each word of a vocabulary
    (the training texts' words seen at least `min_count` times; other words
    are ignored), as a sparse (texts, vocabulary) tensor. Sparse, because a
    40-word passage holds about 33 different words of a vocabulary of
    thousands: over lesson 09's 11,100 training passages, 8,484 words are
    seen at least 3 times, and a dense float32 tensor of them all would take
    0.38 GB, where the sparse one takes a few megabytes."""

    def __init__(self, texts: list[str], min_count: int = 3):
        counts = collections.Counter(word for text in texts for word in data.words(text))
        self.vocabulary = {word: i for i, word in enumerate(sorted(w for w, n in counts.items() if n >= min_count))}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        rows, columns, values = [], [], []
        for row, text in enumerate(texts):
            counts = collections.Counter(self.vocabulary[word] for word in data.words(text) if word in self.vocabulary)
            for column, count in sorted(counts.items()):
                rows.append(row)
                columns.append(column)
                values.append(math.log1p(count))
        return torch.sparse_coo_tensor(torch.tensor([rows, columns], dtype=torch.long).reshape(2, -1),
                                       torch.tensor(values, dtype=torch.float32), (len(texts), len(self.vocabulary)),
                                       check_invariants=False).coalesce()  # built sorted, within bounds


def _linear(model: torch.nn.Linear, features: torch.Tensor) -> torch.Tensor:
    if features.is_sparse:
        return torch.sparse.mm(features, model.weight.T) + model.bias
    return model(features)


def logistic_regression(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float = 1e-3,
                        steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on `features` (dense, or sparse as
    BagOfWords gives them), fitted by full-batch L-BFGS with an L2 penalty:
    a deterministic, convex baseline."""
    torch.manual_seed(0)
    model = torch.nn.Linear(features.size(1), classes)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(_linear(model, features), labels) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


@torch.no_grad()
def predict_kinds(model: torch.nn.Linear, features: torch.Tensor) -> torch.Tensor:
    return _linear(model, features).argmax(dim=-1)


# --- comparing classifiers ------------------------------------------------------------

def mcnemar(first_correct: torch.Tensor, second_correct: torch.Tensor) -> tuple[int, int, float]:
    """McNemar's exact test (McNemar 1947; Dietterich 1998 for classifiers)
    of "the two classifiers are equally accurate", from their right/wrong on
    the same passages: (passages only the first gets right, only the
    second, two-sided p). Passages both get right or both wrong say nothing
    about which is better; under the null hypothesis each disagreement goes
    either way with probability 1/2, a binomial."""
    only_first = int((first_correct & ~second_correct).sum())
    only_second = int((~first_correct & second_correct).sum())
    n, k = only_first + only_second, min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if n else 1.0
    return only_first, only_second, min(1.0, 2 * tail)


def paired_difference_interval95(first_correct: torch.Tensor, second_correct: torch.Tensor) -> tuple[float, float, float]:
    """(difference, low, high): the first classifier's accuracy minus the
    second's on the same passages, with its 95% interval from the paired
    differences (the normal approximation: each passage contributes +1, -1
    or 0, and only the disagreements vary). Where McNemar's test says
    whether there is evidence of a difference, this says how large a
    difference the data still allow."""
    n = len(first_correct)
    only_first = int((first_correct & ~second_correct).sum())
    only_second = int((~first_correct & second_correct).sum())
    difference = (only_first - only_second) / n
    half = 1.96 * math.sqrt(max(0.0, (only_first + only_second) / n - difference ** 2) / n)
    return difference, difference - half, difference + half


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979) of the p-values of several
    tests, in their order: the smallest is multiplied by the number of tests
    m, the next by m - 1, and so on, each kept at least as large as the one
    before it and at most 1. Rejecting where an adjusted p is below 5% keeps
    the chance of any false rejection among the m tests at 5% or less,
    whatever their dependence."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def by_play_test(first_correct: torch.Tensor, second_correct: torch.Tensor, plays: list[str]) -> dict:
    """The difference of two classifiers' accuracies play by play, the play
    being the unit: {"differences": {play: first - second}, "mean", "t"
    (the one-sample t statistic of the differences), "p" (two-sided, with
    plays - 1 degrees of freedom), "wins" (plays where the first is ahead),
    "sign_p" (two-sided exact sign test of the wins, ties left out)}. Unlike
    McNemar's test, which treats passages as independent draws, this asks
    whether the difference holds from one play to another."""
    first, second = accuracy_by_play(first_correct, plays), accuracy_by_play(second_correct, plays)
    differences = {play: first[play] - second[play] for play in first}
    values = torch.tensor(list(differences.values()), dtype=torch.float64)
    n = len(values)
    t = (values.mean() / (values.std() / math.sqrt(n))).item()
    wins, losses = int((values > 0).sum()), int((values < 0).sum())
    k, m = min(wins, losses), wins + losses
    sign_p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return {"differences": differences, "mean": values.mean().item(), "t": t,
            "p": _t_two_sided(t, n - 1), "wins": wins, "sign_p": sign_p}


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with a whole number `df` of degrees of
    freedom, in closed form (Abramowitz and Stegun 1964, 26.7.3 and 26.7.4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    term, total = (math.cos(theta), math.cos(theta)) if df % 2 else (1.0, 1.0)
    for j in range(3 if df % 2 else 2, df - 1, 2):  # the series in cos(theta)^2
        term *= (j - 1) / j * math.cos(theta) ** 2
        total += term
    if df % 2:
        inside = theta + (math.sin(theta) * total if df > 1 else 0.0)
        return max(0.0, 1 - 2 / math.pi * inside)
    return max(0.0, 1 - math.sin(theta) * total)


def accuracy_by_play(correct: torch.Tensor, plays: list[str]) -> dict[str, float]:
    """The share right of each play's passages, in the order plays first appear."""
    result = {}
    for play in dict.fromkeys(plays):
        chosen = torch.tensor([p == play for p in plays])
        result[play] = correct[chosen].float().mean().item()
    return result


def character_names(play_text: str) -> set[str]:
    """The proper names among a play's speakers: the words of its speakers'
    names ("Lady Macbeth", "Second Murderer") that the plays never write in
    lower case, so that "lady", "second" and "king" are left out. Places
    that name a speaker stay ("France", "York"), and so do words of three
    letters or more only ("Henry V" gives "henry")."""
    return {word for speaker, _ in data.spoken_lines(play_text) for word in data.words(speaker)
            if len(word) > 2} - _lower_case_words()


@functools.cache
def _lower_case_words() -> frozenset[str]:
    return frozenset(word for text in data.plays().values()
                     for word in re.findall(r"(?<![A-Za-z'])[a-z]+(?:'[a-z]+)*", text))


def shared_names(rows: list[dict], train_plays: list[str]) -> list[set[str]]:
    """For each row, the names it mentions of characters who speak in one of
    the `train_plays`: where a model could recognise a character it was
    trained on rather than read the passage."""
    plays = data.plays()
    known = set().union(*(character_names(plays[play]) for play in train_plays))
    return [set(data.words(row["text"])) & known for row in rows]


# --- the fine-tuning loop, by hand ----------------------------------------------------

def fine_tune(model, rows, collator, steps: int, batch_size: int, learning_rate: float, warmup_steps: int,
              max_grad_norm: float = 1.0):
    """Train `model` (a Hugging Face classifier whose output has `.loss`) for
    `steps` steps, as Trainer does with lesson 09's TrainingArguments, and
    return it: batches of `batch_size` rows in the order of `rows`, padded by
    `collator`, the last one shorter, and from the first again when the rows
    run out; AdamW with no weight decay on the trainable weights; a linear
    warm-up over `warmup_steps` steps, then a linear decay to 0 at `steps`;
    gradients clipped to norm `max_grad_norm`; every batch on the model's
    device."""
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    device = next(model.parameters()).device
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
    batches = DataLoader(rows, batch_size=batch_size, collate_fn=collator)
    step = 0
    while step < steps:
        for batch in batches:
            optimizer.zero_grad()
            model(**batch.to(device)).loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, max_norm=max_grad_norm)
            optimizer.step()
            schedule.step()
            step += 1
            if step == steps:
                break
    return model


# --- the ways of fine-tuning lesson 14 compares ------------------------------------------

def adapted_kind_classifier(method: str, seed: int = 0, layer=None):
    """MiniLM with a new head for the three kinds, its new head (BERT's
    pooler and the classifier) trained whole, and, by `method`: "head",
    nothing else (the encoder frozen); "lora-rR", a LoRA update of rank R
    with alpha = 2R on the query and value projections of every layer
    (`lora.add_lora`, with the class `layer` if given); "full", every
    weight. `seed` draws the head's first weights (and LoRA's A)."""
    from transformers import AutoModelForSequenceClassification

    from .lora import add_lora, query_or_value

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        data.encoder_path(), num_labels=len(KINDS), id2label=dict(enumerate(KINDS)),
        label2id={kind: label for label, kind in enumerate(KINDS)})
    if method.startswith("lora-r"):
        rank = int(method.removeprefix("lora-r"))
        add_lora(model, query_or_value, rank=rank, alpha=2 * rank, **({"layer": layer} if layer else {}))
    elif method == "head":
        model.requires_grad_(False)
    elif method != "full":
        raise ValueError(f"a method is 'head', 'lora-r' and a rank, or 'full', not {method!r}")
    for head in (model.bert.pooler, model.classifier):
        head.requires_grad_(True)
    return model
