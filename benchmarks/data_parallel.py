"""Does a second process train lesson 10's GPT faster on this CPU?

    .venv/bin/python benchmarks/data_parallel.py             # 50 timed steps each
    .venv/bin/python benchmarks/data_parallel.py --steps 100

Times the GPT recipe's training steps (`gpt.TrainingRecipe`: batch 12,
context 64, the default `GPTConfig`, AdamW, clipping, through the course's
loop `training.train`), one configuration after another:

1. one process, 2 threads;
2. one process, 1 thread;
3. two processes of 1 thread each, data-parallel (`course_utils.distributed`,
   gloo on the loopback address), each on 6 of the 12 windows;

each over --steps steps after 5 warm-up steps; then the time of one
all-reduce of the model's gradients between 2 gloo processes, parameter by
parameter (`all_reduce_gradients`) and as one flat tensor (what DDP's
buckets come closer to). Prints the CPU's model and the vector instructions
PyTorch uses (`torch.backends.cpu.get_cpu_capability()`).

The batches are random tokens: the time of a step does not depend on which.

Run it without OMP_NUM_THREADS=1 in the environment: with it, the 2-thread
process (which raises its threads with `torch.set_num_threads(2)`) ran 0.5
to 1 step/s here instead of about 25; the script warns when it is set.
"""

import argparse
import os
import platform
import statistics
import time

import torch
import torch.distributed as dist

from course_utils import distributed
from course_utils.gpt import GPT, GPTConfig, TrainingRecipe, next_token_loss
from course_utils.training import train

RECIPE = TrainingRecipe()
CONFIG = GPTConfig()
WARMUP = 5
IDS = torch.randint(CONFIG.vocab_size, (100_000,), generator=torch.Generator().manual_seed(0))


def steps_per_second(steps: int, parallel: distributed.DataParallel | None = None, model: GPT | None = None) -> float:
    """Steps per second of the recipe over `steps` steps after WARMUP, in this process."""
    torch.manual_seed(0)
    model = model or GPT(CONFIG)
    trained = model if parallel is None else parallel.module
    optimizer = RECIPE.optimizer(model)

    def batch_at(step: int):
        batch = RECIPE.batch_at(step, IDS, CONFIG.context)
        return batch if parallel is None else parallel.shard(batch)

    def run(first: int, last: int) -> None:
        train(trained, batch_at, next_token_loss, optimizer, last, RECIPE.lr_at(), RECIPE.clip_grad_norm,
              progress=False, first_step=first)

    run(1, WARMUP)
    if parallel is not None:
        dist.barrier()  # start the clock together
    started = time.perf_counter()
    run(WARMUP + 1, WARMUP + steps)
    return steps / (time.perf_counter() - started)


def _data_parallel_rank(rank: int, world_size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = GPT(CONFIG)
    return steps_per_second(steps, distributed.data_parallel(model), model)


def _all_reduce_rank(rank: int, world_size: int, repeats: int) -> dict:
    """Milliseconds of one all-reduce of the GPT's gradients (the median of `repeats`)."""
    model = GPT(CONFIG)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    flat = torch.cat([parameter.grad.flatten() for parameter in model.parameters()])
    timings = {}
    for name, reduce in [("per_parameter_ms", lambda: distributed.all_reduce_gradients(model)),
                         ("one_flat_tensor_ms", lambda: dist.all_reduce(flat))]:
        times = []
        for _ in range(repeats + 3):  # the first 3 set up the connections' buffers: not timed
            dist.barrier()
            started = time.perf_counter()
            reduce()
            times.append(time.perf_counter() - started)
        timings[name] = 1000 * statistics.median(times[3:])
    timings["tensors"] = len(list(model.parameters()))
    timings["bytes"] = flat.numel() * flat.element_size()
    return timings


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per configuration (default 50)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} thread(s) by default, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")
    if os.environ.get("OMP_NUM_THREADS") == "1":
        print("warning: OMP_NUM_THREADS=1 is set; the 2-thread figure will be far too low (see the docstring)")
    print(f"GPT recipe: batch {RECIPE.batch_size}, context {CONFIG.context}, {args.steps} steps after {WARMUP}")
    for threads in (2, 1):
        torch.set_num_threads(threads)
        print(f"1 process,  {threads} thread(s):     {steps_per_second(args.steps):5.1f} steps/s", flush=True)
    rates = distributed.launch(_data_parallel_rank, 2, args.steps, timeout=600, threads=1)
    print(f"2 processes, 1 thread each: {rates[0]:5.1f} steps/s (batch 6 each)", flush=True)
    timings = distributed.launch(_all_reduce_rank, 2, 50, timeout=300, threads=1)[0]
    print(f"all-reduce of the gradients ({timings['tensors']} tensors, {timings['bytes'] / 1e6:.1f} MB) on 2 gloo "
          f"processes: {timings['per_parameter_ms']:.2f} ms one tensor at a time, "
          f"{timings['one_flat_tensor_ms']:.2f} ms as one flat tensor (median of 50)")


if __name__ == "__main__":
    main()
