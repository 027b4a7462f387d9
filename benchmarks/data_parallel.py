"""Does a second process train lesson 10's GPT faster on this CPU?

    .venv/bin/python benchmarks/data_parallel.py             # 50 timed steps each
    .venv/bin/python benchmarks/data_parallel.py --steps 100

Times the GPT recipe's training steps (`gpt.TrainingRecipe`: batch 12,
context 64, the default `GPTConfig`, AdamW, clipping, through the course's
loop `training.train`) with `distributed.training_speed`, which lesson 13
runs too, one configuration after another, each in new processes:

1. one process, 2 threads;
2. one process, 1 thread;
3. two processes of 1 thread each, data-parallel (gloo on the loopback
   address), each on 6 of the 12 windows;

each over --steps steps after 5 warm-up steps; then the time of one
all-reduce of the model's gradients between 2 gloo processes, tensor by
tensor (`all_reduce_gradients`) and as one flat tensor (what DDP's buckets
come closer to), with `distributed.all_reduce_milliseconds`. Prints the
CPU's model and the vector instructions PyTorch uses
(`torch.backends.cpu.get_cpu_capability()`).
"""

import argparse
import platform

import torch

from course_utils import distributed


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
    print(f"CPU: {cpu_model()}, capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")
    print(f"GPT recipe: batch 12, context 64, {args.steps} steps after 5")
    for processes, threads in [(1, 2), (1, 1), (2, 1)]:
        rate = distributed.training_speed(processes, threads, args.steps)
        print(f"{processes} process(es) of {threads} thread(s): {rate:5.1f} steps/s", flush=True)
    timings = distributed.all_reduce_milliseconds(50)
    print(f"all-reduce of the gradients ({timings['tensors']} tensors, {timings['bytes'] / 1e6:.1f} MB) on 2 gloo "
          f"processes: {timings['per_tensor_ms']:.2f} ms one tensor at a time, "
          f"{timings['one_flat_tensor_ms']:.2f} ms as one flat tensor (median of 50)")


if __name__ == "__main__":
    main()
