"""How fast is the course's MultiHeadAttention next to PyTorch's?

    python benchmarks/mha_fast_path.py            # the comparison
    python benchmarks/mha_fast_path.py --profile  # and where the time goes, op by op

Times one forward + backward pass of self-attention, batch 8, sequence 256,
width 256, 8 heads, on the CPU, for:

- ours:  course_utils.attention.MultiHeadAttention, fast path (need_weights=False:
         one fused F.scaled_dot_product_attention call, no (B, H, L, L) weights kept);
- torch, default call: nn.MultiheadAttention(x, x, x), which returns the
         attention weights (need_weights=True) averaged over heads;
- torch, need_weights=False: the same module told not to return them.

Both modules hold the same weights (copied with load_from_torch) and the script
first checks that they give the same outputs. Each measurement is the median
of several repeats after a warm-up; the candidates take turns within every
repeat, so a background load slows them all alike. The speed-up printed is
torch's time / ours: above 1 means ours is faster; the target is 1.2x over
the default call. `time_candidates` and `speedups` are the measurement, which
`course bench` runs too.
"""

import argparse
import statistics
import time

import torch
from torch import nn

from course_utils.attention import MultiHeadAttention

BATCH, LENGTH, WIDTH, HEADS = 8, 256, 256, 8
TARGET_SPEEDUP = 1.2
OURS = "ours (need_weights=False)"
DEFAULT_CALL = "torch, default (need_weights=True)"
WITHOUT_WEIGHTS = "torch, need_weights=False"


def make_candidates(seed: int, device: str = "cpu"):
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True).to(device)
    ours = MultiHeadAttention(WIDTH, HEADS).load_from_torch(reference).to(device)
    x = torch.randn(BATCH, LENGTH, WIDTH, device=device)
    with torch.no_grad():  # same weights, same numbers: otherwise timing them means nothing
        torch.testing.assert_close(ours(x)[0], reference(x, x, x)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(x)[0], reference(x, x, x, need_weights=False)[0], atol=1e-5, rtol=0)
    return {
        OURS: (ours, lambda inp: ours(inp)[0]),
        DEFAULT_CALL: (reference, lambda inp: reference(inp, inp, inp)[0]),
        WITHOUT_WEIGHTS: (reference, lambda inp: reference(inp, inp, inp, need_weights=False)[0]),
    }, x


def step(module, forward, x):
    """One training step's worth of attention: forward, then backward."""
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    forward(x).sum().backward()
    if x.is_cuda:  # a GPU queues the work: wait for it before stopping the clock
        torch.cuda.synchronize()


def measure(candidates, x, warmup: int, repeats: int) -> dict[str, list[float]]:
    times = {name: [] for name in candidates}
    for _ in range(warmup):
        for module, forward in candidates.values():
            step(module, forward, x)
    for _ in range(repeats):
        for name, (module, forward) in candidates.items():
            start = time.perf_counter()
            step(module, forward, x)
            times[name].append(time.perf_counter() - start)
    return times


def time_candidates(repeats: int = 30, warmup: int = 5, seed: int = 0, device: str = "cpu") -> dict[str, list[float]]:
    """Seconds of each repeat of each candidate's step, after checking that
    they compute the same outputs."""
    candidates, x = make_candidates(seed, device)
    return measure(candidates, x, warmup, repeats)


def speedups(times: dict[str, list[float]]) -> dict[str, float]:
    """Torch's median time / ours, for each of torch's two calls: above 1, ours is faster."""
    ours = statistics.median(times[OURS])
    return {name: statistics.median(times[name]) / ours for name in (DEFAULT_CALL, WITHOUT_WEIGHTS)}


def profile(candidates, x) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, (module, forward) in candidates.items():
        step(module, forward, x)  # warm
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step(module, forward, x)
        print(f"\n=== {name}: 5 steps, top operators by self CPU time ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--profile", action="store_true", help="also print the top operators of each candidate")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    times = time_candidates(args.repeats, args.warmup, args.seed)
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"multi-head self-attention, forward + backward, CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"batch {BATCH}, sequence {LENGTH}, width {WIDTH}, {HEADS} heads; "
          f"median of {args.repeats} repeats after {args.warmup} warm-up steps\n")
    print(f"{'candidate':<36} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, values in times.items():
        print(f"{name:<36} {median[name] * 1e3:>10.2f} {min(values) * 1e3:>8.2f} {max(values) * 1e3:>8.2f}")

    print()
    # The target is against the call most code makes (the default, which
    # builds the weights); with need_weights=False both run the same fused
    # kernel, so about 1.0 is the honest expectation there.
    ratios = speedups(times)
    for name, speedup in ratios.items():
        print(f"speed-up over {name:<36} {speedup:5.2f}x")
    default = ratios[DEFAULT_CALL]
    print(f"target: {TARGET_SPEEDUP}x over the default call: {'met' if default >= TARGET_SPEEDUP else 'NOT met'}")
    if args.profile:
        profile(*make_candidates(args.seed))
    return 0 if default >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    raise SystemExit(main())
