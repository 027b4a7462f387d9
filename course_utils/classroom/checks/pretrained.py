"""Checkers for the exercises of lesson 09: a pretrained encoder in practice.

09.fine_tune: the plain PyTorch fine-tuning loop that Trainer runs with the
lesson's arguments. The expected weights come from
`course_utils.finetuning.fine_tune`, which tests/test_finetuning.py shows
gives Trainer's weights. The checker trains a tiny BERT classifier of its
own (two layers, width 8, its embeddings frozen as the lesson freezes
MiniLM's) on made-up rows whose number, batch size, steps, warm-up,
learning rate and clipping norm the notebook never uses, so that an
argument left at the lesson's value, or at Trainer's default, shows. The
classifier comes in evaluation mode, as `from_pretrained` gives a model,
and counts the forward passes it makes in training mode: a loop that
never calls `model.train()` trains with dropout off, which gives the same
weights here (the tiny model has no dropout) but not on MiniLM.
"""

import functools
import warnings

import torch

from course_utils import finetuning
from . import Checker, remote, seeded

VOCABULARY = 50  # token ids of the made-up rows: 1 to 49 (0 is [PAD])

# The slips a hand-written loop makes, each a variant of the reference loop below.
SLIPS = {
    "no zero_grad": "gradients never cleared, so they pile up from step to step",
    "weight decay": "AdamW's default weight decay (0.01) left on",
    "no clipping": "no gradient clipping (or clipping after optimizer.step, when it no longer acts)",
    "clip at 1": "clipping at norm 1, not at max_grad_norm",
    "no schedule step": "the learning-rate schedule never stepped",
    "schedule first": "the schedule stepped before the optimizer (each step one learning rate ahead)",
    "no warm-up": "no warm-up (warmup_steps ignored)",
    "one pass": "one pass over the rows, stopping when they run out rather than after `steps` steps",
    "drop last": "the last, shorter batch of a pass dropped",
    "batch of 8": "batches of 8 (Trainer's default), not batch_size",
    "lr 5e-5": "learning rate 5e-5 (Trainer's default), not learning_rate",
    "summed loss": "the loss summed over the batch rather than averaged",
    "sgd": "plain SGD rather than AdamW",
}


@functools.cache
def _tokenizer():
    from transformers import AutoTokenizer

    from course_utils.data import encoder_path

    return AutoTokenizer.from_pretrained(encoder_path())


def _collator():
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(_tokenizer())


class _ModeRecorder(torch.nn.Module):
    """Stands in for the classifier's dropout (whose probability is 0 here):
    passes its input through, and counts the forward passes made in training
    mode and in evaluation mode, in buffers that come back with the state."""

    def __init__(self):
        super().__init__()
        self.register_buffer("passes_training", torch.zeros(()))  # float, as every other tensor of the model
        self.register_buffer("passes_evaluation", torch.zeros(()))  # float, as every other tensor of the model

    def forward(self, x):
        (self.passes_training if self.training else self.passes_evaluation).add_(1)
        return x


def _tiny_classifier(seed: int):
    """A two-layer BERT classifier for three classes, dropout off (so that
    two correct loops agree), its embeddings frozen, in evaluation mode,
    with a `_ModeRecorder` in place of the dropout before its head. Its
    gradient norms are above 1, so that clipping at 1 differs from clipping
    at another norm, and from none."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCABULARY, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=3,
                        initializer_range=0.5)  # larger weights than BERT's 0.02: gradient norms above 1
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.bert.embeddings.requires_grad_(False)
    model.dropout = _ModeRecorder()
    return model.eval()  # as from_pretrained gives it: the loop must switch training mode on


def _rows(count: int, generator: torch.Generator) -> list[dict]:
    """Tokenized rows as `Dataset.map` gives them: lists of ids of 3 to 12
    tokens, and a label."""
    rows = []
    for _ in range(count):
        length = int(torch.randint(3, 13, (), generator=generator))
        rows.append({"input_ids": torch.randint(1, VOCABULARY, (length,), generator=generator).tolist(),
                     "token_type_ids": [0] * length, "attention_mask": [1] * length,
                     "label": int(torch.randint(0, 3, (), generator=generator))})
    return rows


def _slipped(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm, slip):
    """The reference loop with one slip in it (see SLIPS)."""
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    batch_size = 8 if slip == "batch of 8" else batch_size
    learning_rate = 5e-5 if slip == "lr 5e-5" else learning_rate
    max_grad_norm = 1.0 if slip == "clip at 1" else max_grad_norm
    warmup_steps = 0 if slip == "no warm-up" else warmup_steps
    model.train()
    weights = [weight for weight in model.parameters() if weight.requires_grad]
    optimizer = (torch.optim.SGD(weights, lr=learning_rate) if slip == "sgd" else
                 torch.optim.AdamW(weights, lr=learning_rate, weight_decay=0.01 if slip == "weight decay" else 0.0))
    schedule = get_linear_schedule_with_warmup(optimizer, warmup_steps, steps)
    batches = DataLoader(rows, batch_size=batch_size, collate_fn=collator, drop_last=slip == "drop last")
    step = 0
    while step < steps:
        for batch in batches:
            if slip != "no zero_grad":
                optimizer.zero_grad()
            output = model(**batch)
            loss = (torch.nn.functional.cross_entropy(output.logits, batch["labels"], reduction="sum")
                    if slip == "summed loss" else output.loss)
            loss.backward()
            if slip != "no clipping":
                torch.nn.utils.clip_grad_norm_(weights, max_grad_norm)
            if slip == "schedule first":
                with warnings.catch_warnings():  # PyTorch warns of exactly this slip
                    warnings.simplefilter("ignore")
                    schedule.step()
            optimizer.step()
            if slip not in ("no schedule step", "schedule first"):
                schedule.step()
            step += 1
            if step == steps:
                break
        if slip == "one pass":
            break
    return model


def _trainable(state: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([torch.as_tensor(state[name]).detach().cpu().double().flatten() for name in names])


def _cases(generator: torch.Generator):
    """(what, rows, model seed, settings): 13 rows in batches of 4 wrap
    round (batches of 4, 4, 4, 1, then 4 again), with a warm-up and a
    clipping norm that bites; 20 rows in batches of 6 end before one pass."""
    return [
        ("13 rows, batches of 4, 5 steps (the rows run out after 4), warm-up 2, learning rate 0.01, clipped at 0.5",
         _rows(13, generator), seeded(90),
         {"steps": 5, "batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 2, "max_grad_norm": 0.5}),
        ("20 rows, batches of 6, 3 steps, no warm-up, learning rate 0.003, clipped at 0.2",
         _rows(20, generator), seeded(91),
         {"steps": 3, "batch_size": 6, "learning_rate": 3e-3, "warmup_steps": 0, "max_grad_norm": 0.2}),
    ]


def check_fine_tune(fine_tune) -> None:
    """Check a learner's `fine_tune(model, rows, collator, steps, batch_size,
    learning_rate, warmup_steps, max_grad_norm)` against
    `finetuning.fine_tune`, on a tiny classifier and made-up rows."""
    with Checker("09.fine_tune", points=2, references=[finetuning.fine_tune]) as check:
        collator = _collator()
        for what, rows, seed, settings in _cases(torch.Generator().manual_seed(seeded(9))):
            model = _tiny_classifier(seed)
            names = [name for name, weight in model.named_parameters() if weight.requires_grad]
            frozen = {name: weight.detach().clone() for name, weight in model.named_parameters() if not weight.requires_grad}
            out = check.call(fine_tune, model, rows, collator, **settings)
            check.require(f"{what}: returns the model it trained", remote.is_instance(out, torch.nn.Module),
                          "the model (an nn.Module)", f"{type(out).__name__}", "end with `return model`")
            state = out.state_dict()
            check.require(f"{what}: the rows and the collator left as they were",
                          not {1, 2, "rows", "collator"} & set(check.wrote_into), "inputs unchanged",
                          "your function wrote into the rows", "let the collator build each batch; never edit a row")
            check.require(f"{what}: float32 weights stay float32",
                          all(torch.as_tensor(weight).dtype == torch.float32 for weight in state.values()),
                          "every weight torch.float32",
                          f"{sorted({str(torch.as_tensor(weight).dtype) for weight in state.values()})}",
                          "train the model in the precision it came in")
            check.require(f"{what}: the frozen embeddings stay as they were",
                          all(torch.equal(torch.as_tensor(state[name]).cpu(), weight) for name, weight in frozen.items()),
                          "the weights with requires_grad=False unchanged", "some frozen weights changed",
                          "give the optimizer only the weights that require a gradient")
            expected = _trainable(finetuning.fine_tune(_tiny_classifier(seed), rows, collator, **settings).state_dict(),
                                  names)
            mistakes = {name: _trainable(_slipped(_tiny_classifier(seed), rows, collator, slip=key, **settings)
                                         .state_dict(), names) for key, name in SLIPS.items()}
            if not check.close(f"{what}: the trainable weights after {settings['steps']} steps",
                               _trainable(state, names), expected, atol=2e-5, rtol=1e-4, mistakes=mistakes,
                               hint="go through one step against the spec: which rows make the batch, when the "
                                    "gradients are cleared and clipped, and what learning rate the step uses"):
                return
            passes = int(torch.as_tensor(state.get("dropout.passes_training", 0)))
            check.require(f"{what}: every step in training mode (dropout on)", passes >= settings["steps"],
                          f"at least {settings['steps']} forward passes in training mode",
                          f"{passes} (the model came in evaluation mode, as from_pretrained gives it)",
                          "Trainer switches the model to training mode before its first step, so that dropout acts; "
                          "a model loaded for use starts in evaluation mode")
