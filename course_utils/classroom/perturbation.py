"""A check on every notebook test run: training with the last bit of the
weights nudged after every optimizer step, as other kernels' rounding would.

A number that comes out of training could depend on the order in which each
kernel adds things up, which differs between CPUs (AVX2, AVX-512, AMX, an ARM
Mac's NEON) and thread counts: if a training run grew such a difference, its
printed result would hold only on the machine that stored it. The switches
that select other kernels on one machine (`ATEN_CPU_CAPABILITY`, `MKL_CBWR`,
`ONEDNN_MAX_CPU_ISA`) changed nothing measurable on the course's machine, so
the tests make the difference themselves. With COURSE_PERTURB_TRAINING=v
(v = 1, 2, 3, ...), every optimizer step is followed by a change in the last
bit of about half the weights it changed: the lowest bit of each float32
weight is flipped where its bit v is set. That is the size of a rounding
difference, and like one it touches only what the step computed (a row of an
embedding that got no update stays as it was, as lesson 01 counts), in a
pattern that depends only on the weights, so two identical trainings in one
notebook stay identical (lesson 09 checks `Trainer` against a plain loop
weight for weight). v = 0 (or unset) leaves training alone.

What it showed (README, "Numbers that reproduce"): the course's small models
forget such a difference rather than grow it; every lesson's stored outputs
hold under it. It does not reproduce everything another machine may change:
lesson 08's results moved between machines because its vocabulary was
numbered differently, which no nudge imitates. The tests set it in every
notebook kernel (`pytest_plugin`); `benchmarks/output_spread.py` runs lessons
under several v.
"""

import os
import weakref
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

VARIABLE = "COURSE_PERTURB_TRAINING"

_installed = None
# Each optimizer's weights before the step being taken (gone with the optimizer).
_before_step: "weakref.WeakKeyDictionary[torch.optim.Optimizer, list[torch.Tensor]]" = weakref.WeakKeyDictionary()


def variant() -> int:
    """The perturbation this process asks for: 0 for none."""
    value = os.environ.get(VARIABLE, "0").strip() or "0"
    if not value.isdigit() or not 0 <= int(value) <= 22:
        raise ValueError(f"{VARIABLE}={value!r}: give a whole number from 0 (no perturbation) to 22")
    return int(value)


def nudge_last_bits(tensor: torch.Tensor, bit: int, where: torch.Tensor | None = None) -> None:
    """Flip the lowest mantissa bit of each float32 element whose bit `bit` is
    set (and `where` is True, if given): a change of one unit in the last
    place, in place, where it happens depending on the value alone."""
    if tensor.dtype != torch.float32 or bit == 0:
        return
    bits = tensor.data.view(torch.int32)
    flips = bits.bitwise_right_shift(bit).bitwise_and_(1)
    if where is not None:
        flips.mul_(where)
    bits.bitwise_xor_(flips)


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def _remember(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    _before_step[optimizer] = [parameter.detach().clone() for parameter in _parameters(optimizer)]


def _nudge(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    before = _before_step.pop(optimizer, None)
    if before is None:
        return
    with torch.no_grad():
        for parameter, old in zip(_parameters(optimizer), before):
            nudge_last_bits(parameter, _installed, where=parameter != old)


def install() -> None:
    """Nudge the weights after every optimizer step of this process, if
    COURSE_PERTURB_TRAINING asks for it (once, however often it is called)."""
    global _installed
    bit = variant()
    if bit and _installed is None:
        register_optimizer_step_pre_hook(_remember)
        register_optimizer_step_post_hook(_nudge)
        _installed = bit


def kernel_startup(folder: Path) -> dict[str, str]:
    """The environment that makes every IPython kernel started with it call
    `install()` before its first cell, whatever the notebook does: an IPython
    profile in `folder` whose start-up file does it. The profile keeps its
    history in memory: kernels of one test run start and stop close together,
    and need not share a history database on disk."""
    profile = Path(folder) / "profile_default"
    (profile / "startup").mkdir(parents=True, exist_ok=True)
    (profile / "ipython_config.py").write_text("c.HistoryManager.hist_file = ':memory:'\n")
    (profile / "startup" / "00-perturb-training.py").write_text(
        "from course_utils.classroom import perturbation\nperturbation.install()\n")
    return {"IPYTHONDIR": str(folder)}
