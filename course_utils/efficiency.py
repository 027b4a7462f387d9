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
  gradient accumulation.
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


def gradients(model: torch.nn.Module, loss_of, micro_batches: list) -> dict[str, torch.Tensor]:
    """Each parameter's gradient of the mean loss over `micro_batches`,
    accumulated one micro-batch at a time: each loss is divided by their
    number before its backward pass, and the gradients add up in .grad.
    Micro-batches of equal size give the gradient of the whole batch."""
    model.zero_grad(set_to_none=True)
    for batch in micro_batches:
        (loss_of(model, batch) / len(micro_batches)).backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
