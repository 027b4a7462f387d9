"""Checker for lesson 13: one step of data-parallel training, written by hand.

`check_data_parallel_step` runs the learner's `data_parallel_step(model,
optimizer, batch)` where it must run: in several processes that form a real
process group (gloo, on the loopback address; inside the grader's sandbox
when graded). It does so twice, on models and batches the notebook never
uses: 2 processes on a float32 GPT and a batch of 6 rows, then 3 processes
on a float64 GPT and a batch of 9, two SGD steps each (plain SGD, so that a
gradient twice too large is a step twice too large; AdamW would hide it).
In every process it watches what the learner's step does: the rows the
model is given, each `all_reduce` and each gradient the backward pass makes,
in order, and the gradients the optimizer is handed when it steps.

It compares all of that with one process computing the whole batch: the
mean of the shards' mean losses is the whole batch's mean loss, so that
process's gradients are what DistributedDataParallel gives (tests/
test_distributed.py shows the two equal), and it names the slip a wrong
answer matches (SLIPS): the sum without the division, a division by 2
whatever the world size, no all-reduce, an all-reduce before the backward
pass, every process on the same shard or on the whole batch, the last
step's gradients kept, no optimizer step or two.
"""

import pickle

import torch
import torch.distributed as dist

from course_utils import distributed
from course_utils.gpt import GPT, GPTConfig, next_token_loss, random_windows

from .. import harness, remote
from . import Checker, _StopChecking, seeded

SLIPS = {
    "summed": "the gradients summed over the processes but not divided by the world size",
    "halved": "the sum divided by 2, not by the world size (dist.get_world_size())",
    "not_reduced": ("no all-reduce of the gradients backward made: each process steps with the gradient of its own "
                    "shard only, and the copies drift apart"),
    "divided_only": "the gradients divided by the world size but never summed over the processes (no all-reduce)",
    "before_backward": ("the all-reduce made before the backward pass had finished: it averaged gradients that "
                        "backward then replaced or added to, so each process stepped with its own shard's gradient"),
    "reduced_other": ("the loss (or another tensor) all-reduced instead of the gradients: backward does not carry an "
                      "all-reduce back into the gradients, so each process steps with its own shard's gradient"),
    "averaged_weights": ("the weights averaged after the optimizer's step instead of the gradients before it: the "
                         "same for plain SGD, but not for AdamW, whose step is not proportional to the gradient"),
    "same_shard": "every process on the same shard (the same rows), so the rest of the batch is never seen",
    "whole_batch": ("every process on the whole batch: the gradients come out right, but each process does all "
                    "the work and data parallelism gains nothing"),
    "kept": ("the last step's gradients kept: backward adds into .grad, so clear it (the optimizer's zero_grad) "
             "before each backward pass"),
}

# The checks' models: small GPTs of sizes lesson 13 never builds.
CASES = (
    {"world_size": 2, "rows": 6, "config": GPTConfig(vocab_size=11, context=6, width=16, layers=2, heads=2),
     "dtype": torch.float32, "seed": 1313, "learning_rate": 0.5},
    {"world_size": 3, "rows": 9, "config": GPTConfig(vocab_size=13, context=5, width=12, layers=1, heads=3),
     "dtype": torch.float64, "seed": 1331, "learning_rate": 0.3},
)
STEPS = 2
TIMEOUT_SECONDS = 60  # a process that waits for an all-reduce the others never make ends the check after this


def _case_model(case) -> GPT:
    """The case's model, as it is in the middle of a training run: its .grad
    holds the gradient of an earlier batch (so that a step must clear it)."""
    torch.manual_seed(case["seed"])
    model = GPT(case["config"]).to(case["dtype"])
    earlier = torch.randint(case["config"].vocab_size, (200,), generator=torch.Generator().manual_seed(case["seed"]))
    next_token_loss(model, random_windows(earlier, 4, case["config"].context, torch.Generator().manual_seed(1))).backward()
    return model


def _case_batches(case) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seeded(case["seed"]))
    text = torch.randint(case["config"].vocab_size, (500,), generator=generator)
    return [random_windows(text, case["rows"], case["config"].context, generator) for _ in range(STEPS)]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([tensor.detach().reshape(-1).double() for tensor in tensors])


# --- in each process: the learner's step, watched ------------------------------------


def _steps_in_process(rank: int, world_size: int, pickled_answer: bytes, watched: tuple, case: dict, batches):
    """Run the learner's step on the case's model for each batch, in this
    process of the group, and report what it did (see the module docstring)."""
    # In order: "g" for a gradient the backward pass made; for an all_reduce,
    # "r" of a gradient, "w" of a weight, "o" of anything else (the loss, say).
    events = []
    counted = dist.all_reduce

    def all_reduce(tensor, *args, **kwargs):
        if tensor is None:
            raise TypeError(f"all_reduce was given None, a gradient backward has not made yet: this is {SLIPS['before_backward']}")
        storage = tensor.untyped_storage().data_ptr() if isinstance(tensor, torch.Tensor) else None
        grads = {p.grad.untyped_storage().data_ptr() for p in model.parameters() if p.grad is not None}
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        events.append("r" if storage in grads else "w" if storage in weights else "o")
        return counted(tensor, *args, **kwargs)

    # Both names, before the answer is loaded: an answer that imported all_reduce gets this one.
    dist.all_reduce = dist.distributed_c10d.all_reduce = all_reduce
    answer = pickle.loads(pickled_answer)
    model = _case_model(case)
    rows_seen, handed = [], []
    model.register_forward_pre_hook(lambda module, inputs: rows_seen.append(inputs[0].detach().clone()))
    for parameter in model.parameters():
        parameter.register_post_accumulate_grad_hook(lambda parameter: events.append("g"))
    optimizer = torch.optim.SGD(model.parameters(), lr=case["learning_rate"])
    optimizer.register_step_pre_hook(lambda *_: handed.append(
        [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]))
    watch, steps = harness.Watch(watched), []
    for batch in batches:
        events.clear(), rows_seen.clear(), handed.clear()
        given = tuple(part.clone() for part in batch)
        try:
            with watch:
                loss = answer(model, optimizer, given)
        except NotImplementedError:
            raise  # a stub: not attempted yet
        except Exception as error:  # noqa: BLE001 -- the learner's, said in one line with its own line of code
            raise RuntimeError(f"{type(error).__name__}: {error}{_answer_line(error, answer)}") from None
        steps.append({"loss": _number(loss), "rows_seen": [rows for rows in rows_seen], "events": "".join(events), "handed": handed[:3],
                      "weights": [p.detach().clone() for p in model.parameters()],
                      "batch_unchanged": all(torch.equal(a, b) for a, b in zip(given, batch))})
    # The checker's own hooks (functions defined in here) ran inside the learner's step: not the learner's doing.
    own = f"{__name__}:{_steps_in_process.__qualname__}."
    return {"value": steps, "used": sorted(name for name in watch.used if not name.startswith(own)),
            "unwatched": watch.switched_off}


def _number(loss):
    """The loss as a float, or what it is instead, in words."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss.item()
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    return f"{type(loss).__name__}: {repr(loss)[:60]}"


def _answer_line(error: Exception, answer) -> str:
    """" (line N of your function: code)" where the learner's own code
    raised, if it did; counted from its `def`, as a notebook cell's source is
    not at hand in this process."""
    import traceback

    code = getattr(answer, "__code__", None)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)  # the answer's own frame, not a helper's
              if code is not None and (frame.filename, frame.name) == (code.co_filename, code.co_name)]
    if not frames:
        return ""
    line = frames[-1].lineno - code.co_firstlineno + 1
    return f" (line {line} of your {answer.__name__}" + (f": {frames[-1].line})" if frames[-1].line else ")")


# --- in the checker: what one process computing the whole batch gives ----------------------


def _reference(case, batches) -> list[dict]:
    """Per step: the whole batch's gradient and loss, each shard's gradient,
    and the weights after an SGD step with the whole batch's gradient."""
    model, world_size = _case_model(case), case["world_size"]
    parameters = list(model.parameters())
    kept, steps = _flat(parameter.grad for parameter in parameters), []
    for batch in batches:
        shards = []
        for rank in range(world_size):
            loss = next_token_loss(model, distributed.shard_of(batch, rank, world_size))
            shards.append(_flat(torch.autograd.grad(loss, parameters)))
        loss = next_token_loss(model, batch)
        whole = _flat(torch.autograd.grad(loss, parameters))
        step = {"whole": whole, "shards": shards, "loss": loss.item(), "kept": kept + whole}
        kept = step["kept"]
        with torch.no_grad():
            offset = 0
            for parameter in parameters:
                size = parameter.numel()
                parameter -= case["learning_rate"] * whole[offset:offset + size].view_as(parameter).to(parameter.dtype)
                offset += size
        step["weights"] = _flat(parameters)
        steps.append(step)
    return steps


def _names(case) -> list[str]:
    return [name for name, _ in _case_model(case).named_parameters()]


def _close(a: torch.Tensor, b: torch.Tensor, case) -> bool:
    tolerance = 1e-10 if case["dtype"] == torch.float64 else 2e-5
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tolerance, rtol=1e-4))


def _gradient_slip(handed: torch.Tensor, rank: int, step: dict, events: str, case) -> str | None:
    """The name (SLIPS) of the slip whose gradients these are, if one's are;
    `events` says what the step all-reduced, and when (see _steps_in_process)."""
    world_size, whole, own = case["world_size"], step["whole"], step["shards"][rank]
    if "w" in events:
        unreduced = "averaged_weights"
    elif "o" in events and "r" not in events:
        unreduced = "reduced_other"
    elif "r" in events and events.rfind("r") < events.rfind("g"):
        unreduced = "before_backward"
    else:
        unreduced = "not_reduced"
    candidates = [("summed", world_size * whole),
                  ("reduced_other" if unreduced == "reduced_other" else "divided_only", own / world_size),
                  (unreduced, own), ("same_shard", step["shards"][0]), ("kept", step["kept"])]
    if world_size != 2:
        candidates.append(("halved", world_size / 2 * whole))
    return next((slip for slip, gradient in candidates if _close(handed, gradient, case)), None)


def _first_difference(got: torch.Tensor, want: torch.Tensor, case) -> str:
    """The parameter where two flat vectors first differ, by name."""
    offset = 0
    for name, parameter in _case_model(case).named_parameters():
        size = parameter.numel()
        if not _close(got[offset:offset + size], want[offset:offset + size], case):
            return name
        offset += size
    return "?"


def _judge_case(check: Checker, case, batches, reports: list[list[dict]]) -> None:
    """One line per property, over both steps and every process: the first
    step and process where it fails is named."""
    world_size = case["world_size"]
    what = f"{world_size} processes, {str(case['dtype']).replace('torch.', '')}"
    reference = _reference(case, batches)
    steps = [(number, step, [report[number] for report in reports]) for number, step in enumerate(reference)]
    changed = [f"step {number + 1}, process {rank}" for number, _, per_rank in steps
               for rank, report in enumerate(per_rank) if not report["batch_unchanged"]]
    check.require(f"{what}: the batch left as it was", not changed, "the batch unchanged",
                  f"your step wrote into the batch it was given ({changed[0] if changed else ''})",
                  "take your shard as a slice, or copy it, before changing it")
    problems = [(number, _rows_problem(per_rank, batches[number], world_size)) for number, _, per_rank in steps]
    number, problem = next(((number, problem) for number, problem in problems if problem), (0, None))
    check.require(f"{what}: each process runs its own shard of the batch", problem is None,
                  f"{world_size} shards of {len(batches[0][0]) // world_size} different rows",
                  f"at step {number + 1}, {problem[0]}" if problem else None, problem[1] if problem else "")
    counts = [(number, [len(report["handed"]) for report in per_rank]) for number, _, per_rank in steps]
    wrong = [(number, taken) for number, taken in counts if any(count != 1 for count in taken)]
    check.require(f"{what}: one optimizer step per call, in every process", not wrong,
                  "optimizer.step() called once", f"at step {wrong[0][0] + 1}, called {wrong[0][1]} times by process"
                  if wrong else None)
    missing = [(f"step {number + 1}, process {rank}", name) for number, _, per_rank in steps
               for rank, report in enumerate(per_rank)
               for name, gradient in zip(_names(case), report["handed"][0]) if gradient is None]
    check.require(f"{what}: every parameter has a gradient when the optimizer steps", not missing,
                  "a gradient for every parameter", f"{missing[0][0]}: none for {missing[0][1]}" if missing else None)
    for number, step, per_rank in steps:
        for rank, report in enumerate(per_rank):
            where, got = f"step {number + 1}, process {rank}", _flat(report["handed"][0])
            if not _close(got, step["whole"], case):
                slip = _gradient_slip(got, rank, step, report["events"], case)
                check.fail(f"{what}: the optimizer steps with the whole batch's gradient, in every process",
                           "the mean over the processes of each shard's gradient",
                           f"{where}: another gradient for {_first_difference(got, step['whole'], case)}",
                           f"your gradients are exactly what this slip gives: {SLIPS[slip]}" if slip else
                           "average every gradient over the processes once backward has made it")
                raise _StopChecking
    check.that(f"{what}: the optimizer steps with the whole batch's gradient, in every process", True)
    drifted = [f"step {number + 1}, process {rank}" for number, step, per_rank in steps
               for rank, report in enumerate(per_rank) if not _close(_flat(report["weights"]), step["weights"], case)]
    check.require(f"{what}: the weights, equal in every process, are one process's step on the whole batch",
                  not drifted, "the weights after an SGD step with the whole batch's gradient",
                  f"other weights ({drifted[0] if drifted else ''})",
                  "the optimizer's step on the averaged gradients is the only change to the weights")
    losses = [(number, step["loss"], [report["loss"] for report in per_rank]) for number, step, per_rank in steps]
    off = [(number, want, got) for number, want, got in losses
           if not all(isinstance(loss, float) for loss in got) or abs(sum(got) / world_size - want) > 1e-5 * max(1, want)]
    check.that(f"{what}: the losses returned average to the whole batch's loss", not off,
               f"{off[0][1]:.6f} at step {off[0][0] + 1} (the mean over the processes)" if off else None,
               f"{off[0][2]} by process" if off else None,
               "return the mean loss of this process's shard, as a number (loss.item())")


def _rows_problem(per_rank: list[dict], batch, world_size: int) -> tuple[str, str] | None:
    """(what the processes ran, the hint) unless they ran equal shards that cover the batch once."""
    inputs = batch[0]
    seen = [torch.cat(report["rows_seen"]) if report["rows_seen"] else inputs[:0] for report in per_rank]
    counts = [len(rows) for rows in seen]
    if all(count == len(inputs) for count in counts):
        return f"all {len(inputs)} rows in every process", f"this is {SLIPS['whole_batch']}"
    if sorted(torch.cat(seen).tolist()) == sorted(inputs.tolist()) and len(set(counts)) == 1:
        return None
    if all(torch.equal(seen[0], rows) for rows in seen[1:]):
        return f"{counts} rows by process, the same rows in every process", f"this is {SLIPS['same_shard']}"
    return (f"{counts} rows by process",
            "process r of N takes the r-th of N equal slices of the batch (distributed.shard_of)")


def check_data_parallel_step(data_parallel_step) -> None:
    """Check a learner's `data_parallel_step(model, optimizer, batch)` in 2
    processes (a float32 GPT, batch 6) and 3 (a float64 GPT, batch 9), two
    SGD steps each, against one process on the whole batch: the rows each
    process runs, the gradients its optimizer steps with, the weights after
    each step, the losses returned, the batch left unchanged."""
    with Checker("13.data_parallel_step", references=[distributed.data_parallel_step,
                                                       distributed.all_reduce_gradients]) as check:
        for case in CASES:
            batches = _case_batches(case)
            reports = check.in_processes(data_parallel_step, case["world_size"], _steps_in_process,
                                         case, batches, timeout=TIMEOUT_SECONDS)
            _judge_case(check, case, batches, reports)
