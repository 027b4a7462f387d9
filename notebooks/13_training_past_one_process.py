# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python (transformers course)
#     language: python
#     name: transformers-course
# ---

# %% [markdown]
# # 13 · Training past one process
#
# Every run so far fitted in one Python process and about a minute. Real
# training does not. It stops (a time limit, a crash, a borrowed machine
# given back) and must go on exactly where it was; and it is spread over
# many processes, one per GPU, each of which sees part of every batch.
# This lesson does both on the CPU, with the library that training on GPUs
# uses too: PyTorch's `torch.distributed`, started by `torchrun`, with its
# "gloo" backend, which talks over TCP between CPU processes. (Between GPUs
# the backend is "nccl". `distributed.process_group` would pick it on a GPU
# machine, but `course train` keeps its model on the CPU and always uses
# gloo; the README says what is and is not tested.)
#
# **In this lesson you will**
#
# - save a whole training state (weights, optimizer, step, every random
#   generator), check that a run stopped half-way and resumed ends with the
#   very same weights, bit for bit, as a run that never stopped, and see
#   which missing piece breaks that;
# - watch an **all-reduce**, the one collective operation data parallelism
#   needs, and **write a data-parallel training step** by hand, checked in
#   2 and 3 processes and then run beside PyTorch's
#   `DistributedDataParallel`;
# - train lesson 10's GPT with `course train gpt --processes 2`, the way a
#   long run is started, and measure what a second process buys on a
#   2-core CPU, and why;
# - count what each process holds under plain data parallelism, ZeRO and
#   FSDP, for our model and a 7B one, and measure FSDP's share.

# %% [markdown]
# ## Set-up

# %%
import dataclasses
import tempfile
from pathlib import Path

import torch

from course_utils import setup_notebook

device = setup_notebook(seed=0)
folder = Path(tempfile.mkdtemp())  # this lesson's files: checkpoints, a run's results

# %% [markdown]
# ## A checkpoint that resumes bit for bit
#
# A run's state is more than its weights. AdamW keeps two running averages
# for every weight; the learning-rate schedule needs the step; dropout
# draws from PyTorch's random generator at every step. The course keeps all
# of it in one place, `course_utils.checkpoint`: `save_checkpoint` writes
# the weights, the optimizer's state, the step, the run's settings and the
# state of every random generator (PyTorch's, Python's, NumPy's, and any
# `torch.Generator` of the run's own), and `load_checkpoint` puts them back
# into freshly built objects. (It saves a learning-rate scheduler too, for
# a run that has one; lesson 10's recipe computes its learning rate from
# the step number, so there is no scheduler object to save.)
#
# The test of a checkpoint is strict. The next cell trains lesson 10's GPT
# (with dropout 0.2, so that every step draws random numbers) for 60 steps
# straight; then again for 30 steps, saves, builds a new model and
# optimizer, loads the checkpoint into them, and trains 30 more. The two
# runs' weights are compared with `torch.equal`, every bit, not with a
# tolerance. (The batches here do not need a generator of their own: each
# step's batch is drawn from a generator seeded by the step's number,
# `recipe.batch_at`.)

# %%
from course_utils import checkpoint
from course_utils.gpt import GPT, SHORT_RECIPE, GPTConfig, TrainingRun, character_data, train_gpt

tokenizer, train_ids, validation_ids = character_data()
config = GPTConfig(dropout=0.2)
recipe = dataclasses.replace(SHORT_RECIPE, steps=60, eval_every=30, eval_batches=2)
settings = {"config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe)}


def new_run():
    """A model and optimizer as a run starts them: the same first weights every time."""
    torch.manual_seed(0)
    model = GPT(config)
    return model, recipe.optimizer(model)


model, optimizer = new_run()
train_gpt(model, train_ids, validation_ids, recipe, optimizer=optimizer, progress=False)
straight = {name: tensor.clone() for name, tensor in model.state_dict().items()}

model, optimizer = new_run()
half = train_gpt(model, train_ids, validation_ids, recipe, optimizer=optimizer, last_step=30, progress=False)
checkpoint.save_checkpoint(folder / "step30.pt", model, optimizer, 30, settings,
                           extra={"losses": half.losses, "evaluations": half.evaluations})


def resumed_equals_straight(restore_random_states: bool) -> bool:
    """Load the step-30 checkpoint into a new model and optimizer, train to
    step 60, and compare every weight with the straight run's."""
    model, optimizer = new_run()
    torch.manual_seed(1234)  # whatever ran since the save has moved PyTorch's generator
    saved = checkpoint.load_checkpoint(folder / "step30.pt", model, optimizer, settings)
    if not restore_random_states:
        torch.manual_seed(1234)  # undo what the load restored: as if the generator had not been saved
    run = TrainingRun(losses=list(saved.extra["losses"]), evaluations=[tuple(e) for e in saved.extra["evaluations"]])
    train_gpt(model, train_ids, validation_ids, recipe, optimizer=optimizer, run=run, progress=False)
    return all(torch.equal(model.state_dict()[name], tensor) for name, tensor in straight.items())


print("30 steps, a checkpoint, 30 more: the same weights, bit for bit, as 60 straight:",
      resumed_equals_straight(restore_random_states=True))
print("the same, without the random generator's state:", resumed_equals_straight(restore_random_states=False))

# %% [markdown]
# With every piece of the state put back, the resumed run **is** the run
# that never stopped: the same floating-point operations on the same
# numbers, so the same bits. Without the generator's state, dropout after
# the resume silences other units than it would have, and the weights
# differ from the first step after it; on a long run such a difference
# never closes again, and a result can no longer be reproduced from its
# checkpoints. (Bit for bit holds on the same machine and the same
# software; another CPU's kernels add in another order, as lesson 12's
# stored results showed.)
#
# A checkpoint is a zip file of tensors and plain values, read back with
# `torch.load(weights_only=True)`, which builds nothing else (a pickled
# object could run code as it loads). Here is what this one holds:

# %%
state = torch.load(folder / "step30.pt", weights_only=True)
for key, value in state.items():
    if key in ("model", "optimizer"):
        # The model's tensors by name; the optimizer's per parameter: AdamW's averages and its step count.
        tensors = list(value.values()) if key == "model" else [t for per_parameter in value["state"].values()
                                                                for t in per_parameter.values()]
        what = f"{len(tensors)} tensors, {sum(t.numel() * t.element_size() for t in tensors):,} bytes"
    elif key == "random":
        what = ", ".join(name for name in value if value[name] is not None)
    elif key == "extra":
        what = ", ".join(f"{name} ({len(items)} entries)" for name, items in value.items())
    else:
        what = repr(value)[:70]
    print(f"{key:<10} {what}")

# %% [markdown]
# The optimizer's tensors are twice the model's bytes plus 4 bytes per
# tensor: AdamW's two running averages for every weight, and a step count
# (one float32 number) for each of the 52 tensors. A
# checkpoint without them resumes with a fresh optimizer, whose first
# steps are not the ones the run would have taken.
#
# Two more things make a checkpoint safe to rely on. It is written to a
# temporary file and then renamed over the old one (`checkpoint.atomic_write`):
# a run killed while it saves leaves the previous checkpoint whole. And a
# file that cannot be resumed is refused with what is wrong and what to do.
# The next cell cuts a copy short, as a full disk would, and asks to
# resume a run of another config from the good one:

# %%
damaged = folder / "damaged.pt"
damaged.write_bytes((folder / "step30.pt").read_bytes()[:100_000])
other_config = {"config": dataclasses.asdict(GPTConfig(dropout=0.1)), "recipe": settings["recipe"]}
for path, given in [(damaged, settings), (folder / "step30.pt", other_config)]:
    try:
        checkpoint.load_checkpoint(path, *new_run(), given)
    except checkpoint.CheckpointError as error:
        print(str(error).replace(str(folder), "…"), end="\n\n")

# %% [markdown]
# `course train gpt` (and `bert`, and `modern`) saves this way every
# `--checkpoint-every` steps and resumes from the last checkpoint when run
# again; `--fresh` starts over.
#
# ## Data parallelism
#
# With N processes, each holds a whole copy of the model and takes 1/N of
# every batch. Each computes the mean loss of its shard and the gradient of
# that loss. When the shards are of equal size, the mean of the N shard
# losses is the mean loss of the whole batch, so the mean of the N
# gradients is the whole batch's gradient. If every process replaces its
# gradient by that mean and takes the same optimizer step, the copies stay
# equal, and N processes train exactly as one process with the whole batch
# would, up to the order in which floats are added.
#
# `distributed.shard_of` cuts a batch: process r of N takes the r-th of N
# equal, consecutive slices.

# %%
from course_utils import distributed

batch = torch.arange(12).reshape(12, 1)  # 12 rows, numbered
for rank in range(2):
    print(f"process {rank} of 2 takes rows {distributed.shard_of(batch, rank, 2).flatten().tolist()}")
for rank in range(3):
    print(f"process {rank} of 3 takes rows {distributed.shard_of(batch, rank, 3).flatten().tolist()}")

# %% [markdown]
# The mean over the processes is an **all-reduce**: every process gives a
# tensor, and every process gets back their sum, in place
# (`dist.all_reduce(tensor)`, whose default operation is the sum). The
# processes form a *process group*: each knows its rank (0 to N-1) and the
# world size N (`dist.get_rank()`, `dist.get_world_size()`) and reaches the
# others through the backend, gloo over TCP here.
#
# `distributed.launch(function, N)` starts N new processes on this
# machine, joins them into a group on the loopback address, runs
# `function(rank, world_size)` in each and returns their results by rank.
# Watch three processes each give a tensor of their own:

# %%
import torch.distributed as dist


def show_all_reduce(rank, world_size):
    mine = torch.tensor([float(rank + 1), 10.0 * (rank + 1)])
    before = mine.clone()
    dist.all_reduce(mine)  # the sum over the processes, written into `mine` in every process
    return f"process {rank}: gave {before.tolist()}, holds {mine.tolist()} after the all-reduce"


for line in distributed.launch(show_all_reduce, 3):
    print(line)

# %% [markdown]
# Every process holds the same sum, [6, 60]; divided by the world size, it
# is the mean. That is all data parallelism needs. `launch` could run a
# function written in this notebook because it sends the function to the
# new processes by value with cloudpickle; `torchrun`, below, starts
# processes that import their code from files instead.
#
# ### Exercise: a data-parallel training step
#
# Write `data_parallel_step(model, optimizer, batch)`, the step each
# process runs. `batch` is the whole step's batch, `(inputs, targets)`, the
# same in every process. The step must:
#
# - take this process's shard of the batch (its rank's slice, as above:
#   `distributed.shard_of` cuts a tuple of tensors alike) and compute the
#   mean next-token loss on it (`next_token_loss(model, shard)`);
# - make the gradients of that loss, starting from clear ones: the model
#   comes from earlier steps, and its `.grad` may still hold their
#   gradients;
# - replace every parameter's gradient by its mean over the processes, once
#   the backward pass has made it;
# - take one optimizer step, and return this shard's loss as a number.
#
# The checker runs your function in 2 processes and then in 3, each on a
# small GPT and a batch this lesson never uses (one in float64), for two
# steps; it watches what your step does in every process (the rows it
# gives the model, each `all_reduce`, each gradient backward makes, the
# gradients the optimizer steps with) and names the classic slips: the sum
# without the division, the division by a fixed count, an all-reduce
# before the backward pass, two processes on the same shard, the last
# step's gradients kept.

# %%
from course_utils.gpt import next_token_loss


def data_parallel_step(model, optimizer, batch):
    """One training step in one process of a data-parallel group; returns this process's loss."""
    # BEGIN SOLUTION
    rank, world_size = dist.get_rank(), dist.get_world_size()
    loss = next_token_loss(model, distributed.shard_of(batch, rank, world_size))
    optimizer.zero_grad()
    loss.backward()
    for parameter in model.parameters():
        dist.all_reduce(parameter.grad)
        parameter.grad /= world_size
    optimizer.step()
    return loss.item()
    # END SOLUTION


# %%
from course_utils.classroom.checks.distributed import check_data_parallel_step

check_data_parallel_step(data_parallel_step)

# %% [markdown]
# The next cell runs your step if it passed (the course's
# `distributed.data_parallel_step` otherwise) in 2 processes on lesson
# 10's GPT and its batches of 12 windows, beside a second copy of the same
# model wrapped in PyTorch's `DistributedDataParallel` (DDP), for 20 steps
# of AdamW. DDP averages the gradients itself, during the backward pass:
# it gathers them into buckets (of up to 25 MB by default, the first one
# smaller) and all-reduces each bucket as soon as backward has filled it,
# so that talking overlaps computing (Li et al., 2020, "PyTorch
# Distributed").

# %%
from course_utils.classroom.checks import yours_if_passed

# NBVAL_TOLERANCE ±0.001 "hand-written": 20 steps in new processes: other kernels and 1 thread (ATEN_CPU_CAPABILITY=default) moved no loss at 4 decimals
step = yours_if_passed(data_parallel_step, "13.data_parallel_step", distributed.data_parallel_step)
compared = distributed.compare_with_ddp(step, world_size=2, steps=20)
print(f"largest difference from DDP's gradients at step 1: {compared['first_step_gradients']:.1e}")
print(f"largest difference from DDP's weights after 20 steps: {compared['weights']:.1e}")
print("training loss, averaged over the 2 processes, every 5 steps:")
for number in range(0, 20, 5):
    print(f"  step {number + 1:>2}: hand-written {compared['losses']['yours'][number]:.4f}, "
          f"DDP {compared['losses']['ddp'][number]:.4f}")

# %% [markdown]
# Zero, not merely small. The two do not compute quite alike: DDP divides
# each gradient by the world size before it sums (a/2 + b/2), your step
# sums and then divides ((a + b)/2). On 2 processes both are exact
# rearrangements: halving a float only changes its exponent, and a + b is
# the same float as b + a. So the two copies stay identical, step after
# step. (On 3 processes the division by 3 rounds, at a different place in
# each, and the sums may be added in other orders: the two would agree to
# about 1e-7 instead.)
#
# ## Two processes from the command line
#
# A long run is started from a terminal, not a notebook, and every process
# runs the same program. `torchrun` starts them: it gives each its rank
# and the world size in environment variables (`RANK`, `WORLD_SIZE`,
# `LOCAL_RANK`, and the address of rank 0, `MASTER_ADDR` and
# `MASTER_PORT`), and ends them all if one fails. `course train gpt
# --processes 2` starts itself under torchrun, on this machine's loopback
# address; inside, each process wraps the model in DDP and trains lesson
# 10's recipe on its shard of every batch, and only rank 0 prints, writes
# checkpoints and writes results.
#
# The next cell trains 40 steps of lesson 10's short recipe with two
# processes and then again with one (`--fresh` starts over where an earlier
# run of the same settings left a checkpoint), and compares their
# validation losses. It runs the command as a terminal would, with the
# `course_utils` this notebook imports (a practice copy's, say) on the
# new processes' path.

# %%
import json
import os
import subprocess
import sys

import course_utils

# The course this kernel runs (a practice copy's, say), for the command to run too.
course = {**os.environ, "PYTHONPATH": str(Path(course_utils.__file__).parents[1])}


def course_train(*arguments):
    """Run `course train gpt --recipe short` with these arguments, as from a terminal; return its results."""
    command = [sys.executable, "-m", "course_utils.classroom.cli", "train", "gpt", "--recipe", "short", *arguments]
    finished = subprocess.run(command, capture_output=True, text=True, env=course)
    if finished.returncode:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{finished.stderr[-2000:]}")
    return json.loads(Path(arguments[arguments.index("--results") + 1]).read_text())


# NBVAL_TOLERANCE ±0.001 "validation loss": 40 steps in new processes: other kernels and 1 thread (ATEN_CPU_CAPABILITY=default) moved no loss at 4 decimals
common = ["--steps", "40", "--checkpoint-every", "20", "--fresh"]
two = course_train(*common, "--processes", "2", "--results", str(folder / "two.json"))
one = course_train(*common, "--processes", "1", "--results", str(folder / "one.json"))
for mine, theirs in zip(two["curve"], one["curve"]):
    print(f"step {mine['step']:>2}: validation loss {mine['validation_loss']:.4f} with 2 processes, "
          f"{theirs['validation_loss']:.4f} with 1")
print("the two curves agree within 1e-5:", max(abs(a["validation_loss"] - b["validation_loss"])
                                                for a, b in zip(two["curve"], one["curve"])) < 1e-5)

# %% [markdown]
# The same run, to within float rounding, whether one process takes the 12
# windows of a step or two take 6 each. That holds because lesson 10's
# recipe trains without dropout: with dropout, two processes would draw
# other masks than one process does, and the runs would agree only on
# average. (DDP's all-reduce and the single
# process's backward pass add the two halves' contributions in different
# orders, so the last digits may differ on another machine.) The
# checkpoint rank 0 writes holds the model that DDP wraps, whose weights
# have the names and values of a 1-process run's, so a run may resume with
# another number of processes; the course's tests
# (`tests/test_distributed.py`) resume a 2-process checkpoint in 1 process
# and back.
#
# ## What a second process buys on two cores
#
# The point of data parallelism is speed: N GPUs take N shards at once. On
# this CPU the two processes share 2 cores. The next cell times lesson 10's
# training step four ways, each in new processes, three times over in
# turn: one process with 2 threads (PyTorch splits each matrix product over
# both cores), one process with 1 thread, two data-parallel processes of 1
# thread each on 6 of the 12 windows, and, as the yardstick for those two,
# one process of 1 thread on a batch of 6 windows: what each of the two
# processes computes, without the other and without talking to it. Then it
# times one all-reduce of the model's 3.2 MB of gradients between two
# processes, tensor by tensor as your step does it, and as one flat tensor.

# %%
# NBVAL_IGNORE_OUTPUT
setups = {"1 process × 2 threads, 12 windows": (1, 2, 12), "1 process × 1 thread, 12 windows": (1, 1, 12),
          "2 processes × 1 thread, 6 windows each": (2, 1, 12), "1 process × 1 thread, 6 windows": (1, 1, 6)}
rates = {name: [] for name in setups}
for _ in range(3):  # in turn, so that a busy moment of the machine touches every set-up alike
    for name, (processes, threads, windows) in setups.items():
        rates[name].append(distributed.training_speed(processes, threads, steps=20, batch_size=windows))
for name, measured in rates.items():
    print(f"{name:<40} {min(measured):5.1f} to {max(measured):5.1f} steps per second")
reduce = distributed.all_reduce_milliseconds()
print(f"one all-reduce of the gradients ({reduce['tensors']} tensors, {reduce['bytes'] / 1e6:.1f} MB): "
      f"{reduce['per_tensor_ms']:.1f} ms tensor by tensor, {reduce['one_flat_tensor_ms']:.1f} ms as one tensor")
two_threads, one_thread, two_processes, yardstick = (sorted(measured)[1] for measured in rates.values())  # medians
print(f"medians: 6 windows against 12 in one process of 1 thread, {yardstick / one_thread:.2f}× the steps per second; "
      f"2 processes against 1 process of 1 thread {two_processes / one_thread:.2f}×, of 2 threads "
      f"{two_processes / two_threads:.2f}×, against their yardstick {two_processes / yardstick:.2f}×")
print("CPU:", torch.backends.cpu.get_cpu_capability())

# %% [markdown]
# Your figures are printed above; they move with the machine and with
# whatever else runs on it. On the 2-core AVX-512 machine that stored
# these outputs, two processes were about 1.5 times as fast as one process
# of one thread, and no faster than one process of two threads (a little
# slower at the median); they ran at three quarters to four fifths of
# their yardstick, the speed each would have alone; and
# the all-reduce cost tens of times more tensor by tensor than in one
# piece. What the numbers say, and where they come from:
#
# - **Cores, not processes, do the work.** One process with 2 threads
#   already keeps both cores busy; a second process only moves the
#   splitting from inside each matrix product to the batch. Data
#   parallelism pays when each process brings its own device: its own GPU,
#   or its own machine.
# - **Half the batch is about half the time.** Compare the two rows of one
#   process with 1 thread: a step on 6 windows ran nearly twice as fast as
#   on 12 (the medians' ratio is printed). So the part of a step that does
#   not depend on the batch (the optimizer's update of 52 tensors, the
#   launch of every small operation), which each process pays in full, is
#   small at this size: it is not what holds the two processes back.
# - **Talking and waiting.** The gap between the two processes and their
#   yardstick, a fifth to a quarter, is what being two costs. Sending the
#   3.2 MB of gradients is only part of it: in one piece the all-reduce
#   took a few milliseconds, under a tenth of a step. The rest most likely
#   comes from the two processes sharing one machine's memory and caches,
#   and from each waiting at every all-reduce for the slower of the two
#   (not measured apart here). Tensor by tensor, as your step does it, each
#   of the 52 calls pays gloo's fixed cost, tens of milliseconds in all;
#   DDP's buckets pay it once per bucket. On GPUs, NCCL does the same over
#   NVLink or InfiniBand, and DDP overlaps it with the backward pass.
#
# ## What sharding buys
#
# Plain data parallelism copies everything into every process: the
# weights, the gradients and the optimizer's state. With AdamW in float32
# that is 4 + 4 + 8 = 16 bytes per parameter in each process. The ZeRO
# paper (Rajbhandari et al., 2020) counts mixed precision the same way:
# 2 bytes of fp16 weights, 2 of fp16 gradients, and 12 of Adam's state
# (an fp32 copy of the weights, the momentum and the variance). So a 7.5B
# model needs 120 GB in every process before a single activation, more
# than any GPU of 2020 had.
#
# ZeRO (for Zero Redundancy Optimizer) notices that data parallelism keeps
# N copies of state that each process only needs a part of, and splits it
# in stages: stage 1 gives each process the optimizer state of 1/N of the
# parameters (it updates only those, then the processes exchange the new
# weights); stage 2 splits the gradients too (each process keeps the
# reduced gradients of its own part: a reduce-scatter instead of an
# all-reduce); stage 3 splits the weights as well, gathering each layer's
# whole weights only while it computes. PyTorch's FSDP (Fully Sharded Data
# Parallel; Zhao et al., 2023) is stage 3 in its default, full-shard mode. `distributed.memory_per_process`
# counts the bytes; the next cell checks it against the ZeRO paper's
# Figure 1 (7.5B parameters, 64 GPUs, mixed precision) and prints the table
# for our GPT on 2 processes and for a 7B model on 8 GPUs.

# %%
strategies = {"ddp": "plain data parallel", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3 / FSDP"}
print("The ZeRO paper's Figure 1 (7.5B, 64 GPUs, mixed precision), GB per GPU:",
      ", ".join(f"{distributed.memory_per_process(7.5e9, 64, s, 'mixed').total / 1e9:.1f}" for s in strategies))
our_parameters = sum(p.numel() for p in GPT(GPTConfig()).parameters())
for title, parameters, processes, precision, (unit, size) in [
        (f"Our GPT ({our_parameters:,} parameters), 2 processes, fp32", our_parameters, 2, "fp32", ("MB", 1e6)),
        ("A 7B model, 8 GPUs, mixed precision", 7e9, 8, "mixed", ("GB", 1e9))]:
    print(f"\n{title}: {unit} per process\n{'':<20}{'weights':>9}{'gradients':>11}{'optimizer':>11}{'total':>9}")
    for strategy, name in strategies.items():
        memory = distributed.memory_per_process(parameters, processes, strategy, precision)
        print(f"{name:<20}" + "".join(f"{part / size:>{width}.2f}" for part, width in zip(memory + (memory.total,),
                                                                                         (9, 11, 11, 9))))

# %% [markdown]
# The same table for the 7B model as a picture: each bar is one GPU's
# memory under one strategy, split into its three parts, beside the 80 GB
# an H100 holds.

# %%
import matplotlib.pyplot as plt

parts = {name: distributed.memory_per_process(7e9, 8, strategy, "mixed") for strategy, name in strategies.items()}
figure, axes = plt.subplots(figsize=(7, 3.2))
bottom = [0.0] * len(parts)
for index, part in enumerate(("weights", "gradients", "optimizer state")):
    heights = [memory[index] / 1e9 for memory in parts.values()]
    axes.bar(list(parts), heights, bottom=bottom, label=part)
    bottom = [b + h for b, h in zip(bottom, heights)]
axes.axhline(80, color="black", linestyle="--", linewidth=1)
axes.text(3.45, 82, "80 GB: one H100", ha="right", va="bottom")
axes.set_ylabel("GB per GPU")
axes.set_title("A 7B model on 8 GPUs, mixed precision with Adam (activations not counted)")
axes.legend(loc="center right", bbox_to_anchor=(1.0, 0.42))
plt.show()

# %% [markdown]
# The ZeRO paper's Figure 1 numbers (120, 31.4, 16.6 and 1.9 GB, the first
# line above) come out of the arithmetic exactly. For
# the 7B model on 8 GPUs, plain data parallelism needs 112 GB in each, more
# than an 80 GB H100 holds; ZeRO-2 needs 26.25 GB and ZeRO-3 14 GB, before
# activations. Our GPT holds 13 MB in all: sharding it buys nothing that
# matters, which is why the course trains it with plain DDP. What sharding
# costs is communication: ZeRO-1 and 2 send about as many bytes per step as
# plain data parallelism (a reduce-scatter and an all-gather instead of an
# all-reduce), and ZeRO-3 about 1.5 times as many, since every layer's
# weights are gathered for the forward pass and again for the backward
# (Rajbhandari et al., 2020, §7).
#
# FSDP runs on the CPU too. `distributed.fsdp_parameter_bytes` shards our
# GPT with `torch.distributed.fsdp.fully_shard` over 2 processes (each
# block a unit, then the rest), takes one AdamW step, and reports the bytes
# of weights and of AdamW's moments that each process holds, against the
# table:

# %%
held = distributed.fsdp_parameter_bytes(GPTConfig(), world_size=2)
whole = held[0]["full_parameter_bytes"]
table = distributed.memory_per_process(whole / 4, 2, "fsdp", "fp32")  # 4 bytes per float32 parameter
print(f"the whole model's weights: {whole:,} bytes; ZeRO-3 / FSDP's table: {table.weights:,.0f} per process")
for rank, measured in enumerate(held):
    print(f"process {rank} holds {measured['local_parameter_bytes']:,} bytes of weights "
          f"({measured['local_parameter_bytes'] / whole:.1%}) and {measured['local_optimizer_bytes']:,} of AdamW's moments")

# %% [markdown]
# Each process holds half the weights, to within a few hundred bytes
# (FSDP cuts every tensor along its first dimension, and a tensor whose
# rows do not divide by 2 leaves one process a row more), and AdamW's two
# moments for its half only: twice its weights' bytes, as the table's
# optimizer column says.
#
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("13")

# %%
# BEGIN SOLUTION
answer("13.what-to-save", "C")
answer("13.mean-of-means", "B")
answer("13.zero2-optimizer-bytes", 10.5)
answer("13.two-cores", "D")
answer("13.where-to-reduce", "A")
answer("13.checkpoint-rank", "B")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A checkpoint that resumes exactly holds the weights, the optimizer's
#   state, the step, the settings and every random generator; 30 + 30
#   steps from a checkpoint gave the same bits as 60 straight, and without
#   the generator's state they did not. Write it to a temporary file and
#   rename it, and refuse a damaged or foreign one with a message that
#   says what to do.
# - Data parallelism: each process a copy of the model and a shard of
#   every batch, the gradients averaged by an all-reduce once backward has
#   made them, the same step everywhere. You wrote that step; on 2
#   processes it matched DDP exactly.
# - `torchrun` starts the processes and tells each its rank; `course train
#   gpt --processes 2` trained the same curve as one process, and its
#   checkpoint resumes with any number of processes.
# - On 2 cores a second process was no faster here than a second thread:
#   cores, not processes, do the work. Data parallelism pays when each process has a device of its own,
#   and its all-reduce is cheaper in buckets than tensor by tensor.
# - ZeRO and FSDP split the optimizer's state, the gradients and the
#   weights over the processes: under ZeRO-3 / FSDP the 16 bytes per
#   parameter in each process become 16/N on N processes (1/64 of them in
#   the ZeRO paper's Figure 1); FSDP on 2 processes held half of our GPT's
#   weights, and of AdamW's moments, in each.
#
# Lesson 14 adapts a trained model: chat templates, instruction tuning
# with the loss on the answers only, and LoRA.
