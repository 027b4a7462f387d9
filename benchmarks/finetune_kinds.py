"""How well, and how fast, can MiniLM learn the kind-of-play task on this
machine? This is how lesson 09's budget choices were measured.

    .venv/bin/python benchmarks/finetune_kinds.py [FROZEN_LAYERS:STEPS ...]

1. Seconds per training step of 32 passages of up to 64 tokens, float32
   against bf16 autocast (whether bf16 pays depends on the CPU's matrix
   units).
2. The bag-of-words baseline, fitted on the balanced training sample and on
   all training passages, scored on lesson 09's balanced held-out sample
   (300 passages of each kind).
3. MiniLM fine-tuned with lesson 09's recipe (balanced sample, batches of
   32, AdamW at 2e-4, 10% linear warm-up then linear decay, clipping at 1,
   embeddings frozen and the lowest FROZEN_LAYERS of the 6 layers too) for
   STEPS steps, on the same held-out sample. With no arguments: 0:50, 2:64
   and 4:80, chosen to take about the same time (freezing saves backward
   work).

Measured on the 2-core CPU (AVX2, no AVX-512 or AMX): a bf16-autocast
step took 34 s, against 1-2 s for float32 (the two were timed while other
work shared the cores; lesson 09's Trainer run, alone, takes 1.2 s a step).
On lesson 09's held-out sample, 900 passages: the bag of words scored 0.540,
0.587 and 0.612 fitted on the 1,602, 2,049 and 2,562 passages of the three
settings, and 0.570 on all 12,784 (unbalanced) passages. MiniLM scored
0.656 in all three settings (590 of 900 right each time), with 109, 83
and 71 s of training. Earlier runs with other orders
of the examples put 0:50 between 0.61 and 0.66 and 2:64 at 0.65 to 0.66.
"""

import sys
import time

import torch

from course_utils import data
from course_utils.bert import interval95
from course_utils.finetuning import KINDS, BagOfWords, balanced_sample, kind_dataset, logistic_regression, predict_kinds

BATCH_SIZE, MAX_LENGTH, LEARNING_RATE = 32, 64, 2e-4


def classifier(frozen_layers: int):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(data.encoder_path(), num_labels=len(KINDS))
    for part in [model.bert.embeddings, *model.bert.encoder.layer[:frozen_layers]]:
        part.requires_grad_(False)
    return model


def encode(tokenizer, rows):
    return tokenizer([row["text"] for row in rows], padding=True, truncation=True, max_length=MAX_LENGTH,
                     return_tensors="pt")


def step_seconds(tokenizer, rows, bf16: bool) -> float:
    """Seconds of a full training step (forward, backward, AdamW), after one to warm up."""
    model = classifier(0).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    inputs, labels = encode(tokenizer, rows[:BATCH_SIZE]), torch.tensor([row["label"] for row in rows[:BATCH_SIZE]])
    for _ in range(2):  # the second is timed
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def bag_of_words(train_rows, test_rows) -> float:
    bag = BagOfWords([row["text"] for row in train_rows], min_count=1 if len(train_rows) < 5000 else 3)
    model = logistic_regression(bag([row["text"] for row in train_rows]),
                                torch.tensor([row["label"] for row in train_rows]), len(KINDS))
    truth = torch.tensor([row["label"] for row in test_rows])
    return (predict_kinds(model, bag([row["text"] for row in test_rows])) == truth).float().mean().item()


def fine_tune(tokenizer, train_rows, test_rows, frozen_layers: int, steps: int) -> tuple[float, float]:
    """(held-out accuracy, seconds of training)."""
    from transformers import get_linear_schedule_with_warmup

    model = classifier(frozen_layers).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)
    started = time.perf_counter()
    for step in range(steps):
        rows = train_rows[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]
        loss = model(**encode(tokenizer, rows), labels=torch.tensor([row["label"] for row in rows])).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(**encode(tokenizer, test_rows[start:start + 100])).logits.argmax(-1)
                               for start in range(0, len(test_rows), 100)])
    return (predicted == torch.tensor([row["label"] for row in test_rows])).float().mean().item(), seconds


def main(argv: list[str]) -> None:
    from transformers import AutoTokenizer

    settings = [tuple(map(int, setting.split(":"))) for setting in argv] or [(0, 50), (2, 64), (4, 80)]
    tokenizer = AutoTokenizer.from_pretrained(data.encoder_path())
    split = kind_dataset()
    test_rows = balanced_sample(split["test"], per_kind=300, seed=1)
    print(f"one training step of {BATCH_SIZE} passages: float32 {step_seconds(tokenizer, split['train'], False):.2f} s, "
          f"bf16 autocast {step_seconds(tokenizer, split['train'], True):.2f} s", flush=True)

    def report(name, accuracy, extra=""):
        low, high = interval95(accuracy, len(test_rows))
        print(f"{name:<48} {accuracy:.3f} (95%: {low:.3f} to {high:.3f}){extra}", flush=True)

    for frozen_layers, steps in settings:
        train_rows = balanced_sample(split["train"], per_kind=steps * BATCH_SIZE // len(KINDS) + 1, seed=0)
        report(f"bag of words, the same {len(train_rows):,} passages", bag_of_words(train_rows, test_rows))
        accuracy, seconds = fine_tune(tokenizer, train_rows, test_rows, frozen_layers, steps)
        report(f"MiniLM, {frozen_layers} of 6 layers frozen, {steps} steps", accuracy, f", {seconds:.0f} s of training")
    report(f"bag of words, all {len(split['train']):,} passages", bag_of_words(split["train"], test_rows))


if __name__ == "__main__":
    main(sys.argv[1:])
