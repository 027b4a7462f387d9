"""Lesson 13's checker: a data-parallel step written by hand, run in 2 and
3 processes. It accepts the reviewed step and learners' other right ways
(gradients averaged in hooks as DDP does, rows dealt out in turn, the loss
returned as a tensor), names each classic slip, and ends every process it
starts whatever the learner's code does (a crash in one process, a process
left waiting for an all-reduce). Every wrong step below is written the way a
learner would write it, independently of the checker's own list.

Each check starts 5 processes, so only a few tests also run as the grader
runs them (`both_sides`, and the graded test with the grader's watch);
tests/test_sandbox.py judges a step in the real sandbox."""

import json
import sys

import cloudpickle
import pytest
import torch
import torch.distributed as dist

from course_utils import distributed
from course_utils.classroom.checks import distributed as distributed_checks
from course_utils.classroom.checks.distributed import SLIPS, check_data_parallel_step
from course_utils.classroom.pytest_plugin import Watched, processes_left
from course_utils.gpt import next_token_loss

# The answers below go to the processes as a notebook's functions do, by
# value: by name, each process would import this module, and pytest with it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def run(answer, capsys) -> str:
    check_data_parallel_step(answer)
    return capsys.readouterr().out


def step(model, optimizer, batch, slip=None):
    """A learner's data-parallel step, with switches for the classic slips."""
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs, targets = batch
    rows = len(inputs) // world
    if slip == "same_shard":
        rank = 0
    mine = slice(rank * rows, (rank + 1) * rows)
    loss = next_token_loss(model, batch if slip == "whole_batch" else (inputs[mine], targets[mine]))
    if slip == "before_backward":  # on the gradients the model came with
        for parameter in model.parameters():
            dist.all_reduce(parameter.grad)
            parameter.grad /= world
    if slip != "kept":
        optimizer.zero_grad()
    loss.backward()
    if slip not in ("before_backward", "not_reduced"):
        for parameter in model.parameters():
            if slip != "divided_only":
                dist.all_reduce(parameter.grad)
            if slip != "summed":
                parameter.grad /= 2 if slip == "halved" else world
    if slip != "no_step":
        optimizer.step()
    if slip == "two_steps":
        optimizer.step()
    return None if slip == "no_loss" else loss.item()


def test_the_reviewed_step_and_a_learner_s_pass_and_are_recorded(capsys, progress_file):
    out = run(distributed.data_parallel_step, capsys)
    assert "All 14 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("13.data_parallel_step", 1, 1)
    assert "All 14 checks passed" in run(step, capsys)


def in_hooks(model, optimizer, batch):
    """DDP's way: each gradient averaged as soon as backward has made it; rows dealt out in turn; a tensor loss."""
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs, targets = batch

    def average(parameter):
        dist.all_reduce(parameter.grad)
        parameter.grad /= world

    handles = [parameter.register_post_accumulate_grad_hook(average) for parameter in model.parameters()]
    optimizer.zero_grad()
    loss = next_token_loss(model, (inputs[rank::world], targets[rank::world]))
    loss.backward()
    for handle in handles:
        handle.remove()
    optimizer.step()
    return loss.detach()


def flattened(model, optimizer, batch):
    """One all-reduce of every gradient at once, imported by name."""
    from torch.distributed import all_reduce, get_rank, get_world_size

    loss = next_token_loss(model, distributed.shard_of(batch, get_rank(), get_world_size()))
    optimizer.zero_grad()
    loss.backward()
    gradients = [parameter.grad for parameter in model.parameters()]
    flat = torch.cat([gradient.reshape(-1) for gradient in gradients])
    all_reduce(flat)
    flat /= get_world_size()
    for gradient, mean in zip(gradients, torch._utils._unflatten_dense_tensors(flat, gradients)):
        gradient.copy_(mean)
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("answer", [in_hooks, flattened], ids=["averaged-in-hooks", "one-flat-all-reduce"])
def test_other_right_ways_pass(answer, capsys):
    out = run(answer, capsys)
    assert "All 14 checks passed" in out, out


@pytest.mark.parametrize("slip", ["summed", "halved", "not_reduced", "divided_only", "before_backward", "same_shard",
                                  "whole_batch", "kept"])
def test_each_slip_is_named(slip, capsys, progress_file):
    out = run(lambda model, optimizer, batch: step(model, optimizer, batch, slip), capsys)
    assert "✗" in out and SLIPS[slip] in out, out
    assert json.loads(progress_file.read_text())["points"] == 0
    if slip == "halved":  # right on 2 processes: only 3 show it
        assert "✓ 2 processes, float32: the optimizer steps with the whole batch's gradient" in out, out


def test_an_all_reduce_of_gradients_backward_has_not_made_is_named(capsys):
    def reduces_first(model, optimizer, batch):
        optimizer.zero_grad()
        for parameter in model.parameters():
            dist.all_reduce(parameter.grad)
        loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
        loss.backward()
        optimizer.step()
        return loss.item()

    out = run(reduces_first, capsys)
    assert "all_reduce was given None" in out and SLIPS["before_backward"] in out and "(line 4 of your reduces_first" in out, out


@pytest.mark.parametrize("slip, said", [
    ("no_step", "called [0, 0] times by process"),
    ("two_steps", "called [2, 2] times by process"),
    ("no_loss", "the losses returned average to the whole batch's loss"),
])
def test_the_optimizer_step_and_the_loss_are_checked(slip, said, capsys):
    out = run(lambda model, optimizer, batch: step(model, optimizer, batch, slip), capsys)
    assert "✗" in out and said in out, out


def test_the_loss_all_reduced_instead_of_the_gradients_is_named(capsys):
    def reduces_the_loss(model, optimizer, batch):
        loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
        dist.all_reduce(loss)
        loss = loss / dist.get_world_size()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    out = run(reduces_the_loss, capsys)
    assert "✗" in out and SLIPS["reduced_other"] in out, out


def test_weights_averaged_after_the_step_are_named(capsys):
    def averages_the_weights(model, optimizer, batch):
        loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for parameter in model.parameters():
                dist.all_reduce(parameter)
                parameter /= dist.get_world_size()
        return loss.item()

    out = run(averages_the_weights, capsys)
    assert "✗" in out and SLIPS["averaged_weights"] in out, out


def test_writing_into_the_batch_is_caught(capsys):
    def scrambles(model, optimizer, batch):
        batch[0].fill_(0)
        return step(model, optimizer, batch)

    assert "your step wrote into the batch it was given" in run(scrambles, capsys)


@pytest.mark.usefixtures("both_sides")
def test_a_stub_is_not_attempted(capsys, progress_file):
    def stub(model, optimizer, batch):
        raise NotImplementedError

    out = run(stub, capsys)
    assert "not attempted yet" in out and "✗" not in out, out
    assert not progress_file.exists()


@pytest.mark.usefixtures("both_sides")
def test_a_crash_in_one_process_names_it_and_ends_them_all(capsys):
    def fails_in_one(model, optimizer, batch):
        if dist.get_rank() == 1:
            raise ValueError("only process 1")
        return step(model, optimizer, batch)

    out = run(fails_in_one, capsys)
    assert "it raised ProcessFailed: in process 1 of 2: RuntimeError: ValueError: only process 1 (line 3 of" in out, out
    assert not processes_left()


def test_a_process_left_waiting_ends_the_check(capsys, monkeypatch):
    monkeypatch.setattr(distributed_checks, "TIMEOUT_SECONDS", 8)

    def one_process_reduces(model, optimizer, batch):
        loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
        optimizer.zero_grad()
        loss.backward()
        if dist.get_rank() == 0:
            distributed.all_reduce_gradients(model)
        optimizer.step()
        return loss.item()

    out = run(one_process_reduces, capsys)
    assert ("in process 0 of 2: it waited in a collective call (an all-reduce) that another process never made" in out
            or "did not end within 8 s: one of them waits for an all-reduce that another never makes" in out), out
    assert not processes_left()


def test_graded_an_answer_that_runs_the_course_s_own_earns_nothing():
    from course_utils.classroom.checks import judging

    def by_the_course_s_reduce(model, optimizer, batch):
        loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
        optimizer.zero_grad()
        loss.backward()
        distributed.all_reduce_gradients(model)
        optimizer.step()
        return loss.item()

    session = Watched({"answer": by_the_course_s_reduce})
    with judging(seed=3) as judged:
        check_data_parallel_step(session.lookup("answer"))
    (_, earned, _, report), = judged
    assert earned == 0 and "your answer runs the course's own course_utils.distributed.all_reduce_gradients" in report
    session = Watched({"answer": step})  # the same, written out: full points, judged as the grader judges
    with judging(seed=3) as judged:
        check_data_parallel_step(session.lookup("answer"))
    (_, earned, _, report), = judged
    assert earned == 1, report
