"""The lesson 09 checker passes the reference and another correct way of
writing the loop, names each slip of a hand-written fine-tuning loop, and
never crashes on a learner's code."""

import json

import pytest
import torch

from course_utils import finetuning
from course_utils.classroom.checks import pretrained as checks
from course_utils.classroom.checks.pretrained import SLIPS, check_fine_tune

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_fine_tune(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(finetuning.fine_tune, capsys)
    assert "All 12 checks passed" in out and "✗" not in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("09.fine_tune", 2, 2)


def test_another_correct_loop_passes(capsys):
    def by_steps(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm):
        from transformers import get_scheduler

        model.train()
        weights = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(weights, lr=learning_rate, weight_decay=0)
        schedule = get_scheduler("linear", optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
        starts = list(range(0, len(rows), batch_size))
        for step in range(steps):
            start = starts[step % len(starts)]
            batch = collator(rows[start:start + batch_size])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(weights, max_grad_norm)
            optimizer.step()
            schedule.step()
        return model

    out = run(by_steps, capsys)
    assert "All 12 checks passed" in out, out


@pytest.mark.parametrize("key", sorted(SLIPS))
def test_each_slip_is_named(key, capsys, progress_file):
    def slipped(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm):
        return checks._slipped(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm,
                               slip=key)

    out = run(slipped, capsys)
    assert "✗" in out and f"exactly what {SLIPS[key]} gives" in out, (key, out)
    assert json.loads(progress_file.read_text().splitlines()[-1])["points"] == 0


def test_a_shuffled_order_fails_with_a_hint_that_does_not_restate_the_code(capsys):
    def shuffled(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm):
        return finetuning.fine_tune(model, rows[::-1], collator, steps, batch_size, learning_rate, warmup_steps,
                                    max_grad_norm)

    out = run(shuffled, capsys)
    assert "✗ 13 rows, batches of 4" in out and "which rows make the batch" in out
    assert "zero_grad" not in out.split("hint:")[-1]


def test_not_returning_the_model_is_reported(capsys):
    def in_place(*args, **kwargs):
        finetuning.fine_tune(*args, **kwargs)

    out = run(in_place, capsys)
    assert "✗ 13 rows, batches of 4, 5 steps" in out and "returns the model it trained" in out and "return model" in out


def test_forgetting_training_mode_is_reported(capsys):
    def in_eval_mode(model, *args, **kwargs):
        trained = finetuning.fine_tune(model, *args, **kwargs)  # the reference switches training mode on...
        return trained

    def never_trains(model, rows, collator, steps, batch_size, learning_rate, warmup_steps, max_grad_norm):
        model.train = lambda mode=True: model  # ...this one leaves the model as it came, in evaluation mode
        return finetuning.fine_tune(model, rows, collator, steps, batch_size, learning_rate, warmup_steps,
                                    max_grad_norm)

    assert "All 12 checks passed" in run(in_eval_mode, capsys)
    out = run(never_trains, capsys)
    assert "✗ 13 rows, batches of 4, 5 steps (the rows run out after 4), warm-up 2, learning rate 0.01, clipped at 0.5: " \
           "every step in training mode (dropout on)" in out and "evaluation mode" in out, out
    assert "model.train" not in out.split("hint:")[-1]


def test_switching_back_to_evaluation_mode_after_training_passes(capsys):
    def evaluates_after(*args, **kwargs):
        return finetuning.fine_tune(*args, **kwargs).eval()

    assert "All 12 checks passed" in run(evaluates_after, capsys)


def test_unfreezing_the_embeddings_is_reported(capsys):
    def unfrozen(model, *args, **kwargs):
        model.requires_grad_(True)
        return finetuning.fine_tune(model, *args, **kwargs)

    out = run(unfrozen, capsys)
    assert "✗ 13 rows, batches of 4, 5 steps (the rows run out after 4), warm-up 2, learning rate 0.01, clipped at 0.5: " \
           "the frozen embeddings stay as they were" in out


def test_a_model_turned_to_another_precision_is_reported(capsys):
    def in_double(model, *args, **kwargs):
        return finetuning.fine_tune(model.double(), *args, **kwargs)

    out = run(in_double, capsys)
    assert "float32 weights stay float32" in out and "torch.float64" in out


def test_writing_into_the_rows_is_reported(capsys):
    def edits_rows(model, rows, *args, **kwargs):
        for row in rows:
            row["labels"] = row.pop("label")
        return finetuning.fine_tune(model, rows, *args, **kwargs)

    out = run(edits_rows, capsys)
    assert "✗ 13 rows, batches of 4, 5 steps (the rows run out after 4), warm-up 2, learning rate 0.01, clipped at 0.5: " \
           "the rows and the collator left as they were" in out


def test_a_stub_a_crash_and_a_non_function_are_reported_not_raised(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert "not attempted yet" in run(stub, capsys)
    assert "it raised TypeError" in run(lambda model, rows: model, capsys)
    assert "your answer is a function" in run(None, capsys)
