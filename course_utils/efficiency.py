"""What attention costs, measured, and the usual remedies (lesson 11).

- `saved_activation_bytes`: the memory a training step keeps for its
  backward pass, counted tensor by tensor as autograd saves them. It is a
  count, not a reading of the allocator, so it is the same on every machine
  and every thread count, and it is the memory that grows with the
  sequence length and the batch.
- `peak_allocated_bytes`: the most memory a step's tensors held at once,
  from PyTorch's profiler: what decides whether a step fits.
- `attention_costs`: time and saved memory of attention as the sequence
  grows, the naive way (lesson 02's formula, which builds the L x L matrix)
  against PyTorch's fused `F.scaled_dot_product_attention`.
- `fitted_exponent`: the k in cost ~ length^k, from a straight line in log-log.
- `gradients`: a model's gradients over a list of micro-batches, for
  gradient accumulation, each micro-batch weighted equally or by its
  number of target tokens.
- `train_in_precision`: a few optimiser steps in float32, or under autocast
  in bf16 or fp16, the latter with or without a gradient scaler.
- `logit_gradient`: the gradient that reaches a model's output in fp16
  autocast, where the smallest values round to zero unless the loss is scaled.
"""

import contextlib
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from .attention import scaled_dot_product_attention


def saved_activation_bytes(step, parameters=()) -> tuple[object, int]:
    """Run `step()` (a forward pass that builds an autograd graph) and count
    the bytes of the tensors autograd saves for the backward pass, each
    storage once. The storage of `parameters` (a model's) is left out, views
    of it such as `weight.t()` included: it is there anyway.
    Returns (what step returned, bytes)."""
    seen = {parameter.untyped_storage().data_ptr() for parameter in parameters}
    total = 0

    def pack(tensor):
        nonlocal total
        storage = tensor.untyped_storage()
        if not isinstance(tensor, torch.nn.Parameter) and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = step()
    return result, total


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide what C++ libraries write to file descriptor 2 (the profiler logs a
    line as it starts and as it stops), and nothing Python raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated_bytes(step) -> int:
    """The most CPU memory held by tensors allocated while `step()` runs (a
    forward and backward pass, say), above what was held before: PyTorch's
    profiler (profile_memory=True) records each operation's allocations and
    frees, and this adds them up in the order the operations started. A
    buffer allocated and freed inside one operation is not seen."""
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    held = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def best_seconds(run, repeats: int = 3) -> float:
    """The fastest of `repeats` timed calls of run(), after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


ATTENTION_KINDS = {
    "naive": scaled_dot_product_attention,  # lesson 02: softmax(QKᵀ/√d)V with the whole score matrix built
    "fused": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),  # one kernel, in blocks: no L x L matrix kept
}


def attention_costs(lengths: list[int], heads: int = 4, head_dim: int = 32, repeats: int = 3,
                    seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """For each kind in ATTENTION_KINDS and each sequence length: the seconds
    of one forward pass (the best of `repeats`) and the bytes saved for the
    backward pass, for one sequence of `heads` heads of width `head_dim`."""
    generator = torch.Generator().manual_seed(seed)
    costs = {kind: {"seconds": [], "saved_bytes": []} for kind in ATTENTION_KINDS}
    for length in lengths:
        q, k, v = torch.randn(3, 1, heads, length, head_dim, generator=generator).unbind(0)
        for kind, attention in ATTENTION_KINDS.items():
            with torch.no_grad():
                costs[kind]["seconds"].append(best_seconds(lambda: attention(q, k, v), repeats))
            trainable = [t.clone().requires_grad_() for t in (q, k, v)]
            _, saved = saved_activation_bytes(lambda: attention(*trainable))
            costs[kind]["saved_bytes"].append(saved)
    return costs


def fitted_exponent(lengths: list[int], values: list[float]) -> float:
    """The slope k of the least-squares line through (log length, log value): value ~ length^k."""
    xs, ys = [math.log(n) for n in lengths], [math.log(v) for v in values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
            / sum((x - mean_x) ** 2 for x in xs))


IGNORE_INDEX = -100  # a target cross-entropy skips: padding


def target_tokens(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    """The number of targets of an (inputs, targets) batch that the loss counts (not padding)."""
    return int((batch[1] != IGNORE_INDEX).sum())


def gradients(model: torch.nn.Module, loss_of, micro_batches: list, by_tokens: bool = False) -> dict[str, torch.Tensor]:
    """Each parameter's gradient of the loss over `micro_batches`, accumulated
    one micro-batch at a time: the gradients add up in .grad. `loss_of` is a
    mean over a micro-batch's target tokens. Each micro-batch's loss is
    divided by the number of micro-batches (a mean of means), or, with
    by_tokens, weighted by its share of all target tokens: the mean over
    every token, the whole batch's loss even when padding leaves the
    micro-batches with different numbers of targets."""
    model.zero_grad(set_to_none=True)
    total = sum(target_tokens(batch) for batch in micro_batches)
    for batch in micro_batches:
        weight = target_tokens(batch) / total if by_tokens else 1 / len(micro_batches)
        (loss_of(model, batch) * weight).backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def relative_difference(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> float:
    """|left - right| / |right| over all the tensors of two gradients, as one vector."""
    difference = sum(float((left[name] - right[name]).double().square().sum()) for name in right)
    size = sum(float(right[name].double().square().sum()) for name in right)
    return math.sqrt(difference / size)


def train_in_precision(model: torch.nn.Module, next_batch, loss_of, steps: int, lr: float = 3e-3,
                       dtype: torch.dtype | None = None, scaler: bool = False) -> dict:
    """Take `steps` AdamW steps on next_batch(step), step 0 first, in float32
    (dtype None) or with the forward pass under autocast to `dtype`; with
    `scaler`, through a `torch.amp.GradScaler`: the loss is multiplied by a
    scale (2^16 to start) before the backward pass, the gradients divided by
    it before the update, a step with an inf or NaN gradient is skipped and
    the scale halved. Returns the losses, the seconds of each step, and the
    scale at the end and the steps skipped (with the scaler)."""
    device_type = next(model.parameters()).device.type
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    grad_scaler = torch.amp.GradScaler(device_type, enabled=scaler)
    run = {"losses": [], "seconds": [], "skipped": 0}
    model.train()
    for step in range(steps):
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_of(model, next_batch(step))
        optimizer.zero_grad(set_to_none=True)
        grad_scaler.scale(loss).backward()
        scale = grad_scaler.get_scale() if scaler else 1.0
        grad_scaler.step(optimizer)
        grad_scaler.update()
        run["skipped"] += scaler and grad_scaler.get_scale() < scale  # the scale falls only after an inf or NaN
        run["seconds"].append(time.perf_counter() - start)
        run["losses"].append(loss.item())
    model.eval()
    run["scale"] = grad_scaler.get_scale() if scaler else None
    return run


def logit_gradient(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype = torch.float16,
                   scale: float = 1.0) -> torch.Tensor:
    """The gradient of scale x (the mean next-token cross-entropy) with respect
    to the logits, as the backward pass carries it into the model under
    autocast to `dtype`: the logits come out of the last matrix multiply in
    `dtype`, so their gradient is rounded to `dtype` there."""
    inputs, targets = batch
    caught = []
    model.zero_grad(set_to_none=True)
    with torch.autocast(next(model.parameters()).device.type, dtype=dtype):
        logits = model(inputs)
        logits.register_hook(caught.append)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    (loss * scale).backward()
    model.zero_grad(set_to_none=True)
    return caught[0]
