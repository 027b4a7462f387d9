"""The one training loop of the course, and the learning-rate schedules it uses.

Every lesson that trains calls `train`: a progress bar with the running loss,
an optional schedule that sets the learning rate before each step, optional
gradient clipping, and the loss of every step returned for plotting.
"""

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm


def train(model: torch.nn.Module, next_batch: Callable[[int], object], loss_of: Callable, optimizer: torch.optim.Optimizer,
          steps: int, lr_at: Callable[[int], float] | None = None, clip_grad_norm: float | None = None,
          desc: str = "training", progress: bool = True, first_step: int = 1,
          after_step: Callable[[int], None] | None = None) -> list[float]:
    """Take optimizer steps `first_step` to `steps` and return the loss of each.

    next_batch(step) gives the batch of a step; loss_of(model, batch) its
    scalar loss; lr_at(step), if given, the learning rate of that step (steps
    count from 1, as the schedules below expect). A run resumed from a
    checkpoint passes the step it stopped after + 1 as first_step.
    after_step(step), if given, runs after each step (to evaluate, or to
    print a sample with `tqdm.write` so that the bar stays whole)."""
    model.train()
    losses = []
    bar = tqdm(range(first_step, steps + 1), desc=desc, disable=not progress, mininterval=0.5,
               initial=first_step - 1, total=steps)
    for step in bar:
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        loss = loss_of(model, next_batch(step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == steps:
            bar.set_postfix(loss=f"{sum(losses[-25:]) / len(losses[-25:]):.3f}")
        if after_step is not None:
            after_step(step)
            model.train()  # in case it evaluated
    model.eval()
    return losses


def linear_warmup(peak_lr: float, warmup_steps: int) -> Callable[[int], float]:
    """The learning rate climbs linearly from peak_lr / warmup_steps to peak_lr,
    then stays there."""
    return lambda step: peak_lr * min(1.0, step / warmup_steps)


def transformer_schedule(d_model: int, warmup_steps: int, factor: float = 1.0) -> Callable[[int], float]:
    """The schedule of the 2017 paper (§5.3):
    lr = factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5):
    a linear climb for `warmup_steps`, then a decay as 1/√step."""
    return lambda step: factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float) -> Callable[[int], float]:
    """A linear climb to peak_lr over `warmup_steps`, then half a cosine down
    to final_lr at `total_steps` (GPT-2 and most models since)."""
    def lr_at(step: int) -> float:
        if step <= warmup_steps:
            return peak_lr * step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return final_lr + (peak_lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return lr_at


def with_cooldown(schedule: Callable[[int], float], total_steps: int, fraction: float = 0.3) -> Callable[[int], float]:
    """`schedule`, multiplied over the last `fraction` of `total_steps` by a
    ramp that falls linearly to almost zero at the final step: a short run
    ends on small steps instead of where a slowly decaying schedule leaves it."""
    cooldown = max(1, round(total_steps * fraction))
    return lambda step: schedule(step) * min(1.0, (total_steps - step + 1) / cooldown)


def smooth(values: list[float], window: int = 25) -> list[float]:
    """The mean of every run of `window` consecutive values (len(values) -
    window + 1 of them), for plotting a noisy loss: entry i covers steps
    i + 1 to i + window, so plot it against step i + window."""
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    return [(sums[i + window] - sums[i]) / window for i in range(len(values) - window + 1)]
