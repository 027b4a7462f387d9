"""How much does the KV cache save when the GPT writes?

    .venv/bin/python benchmarks/generation.py [--repeats 3]

Generates 256 tokens after a 64-token prompt, greedily, with a GPT of
lesson 10's shape whose context holds all 320 positions (with learned
absolute positions, a window that slides past the context makes every
cached key stale, see `gpt.generate`), three ways:

- ours, without the cache: each step runs the whole sequence so far;
- ours, with the cache: the prompt once, then one token per step;
- Hugging Face `generate` on the same weights (`gpt.to_huggingface`), which
  keeps its own cache.

It first checks that the three write the same tokens, then prints the best
of `--repeats` timings, tokens per second, and the cache's size. Targets:
the cache at least 3x faster than no cache, and ours at least as fast as
Hugging Face's. Exits 1 if a target is missed.
"""

import argparse
import time

import torch

from course_utils.gpt import GPT, GPTConfig, generate, to_huggingface

PROMPT, NEW_TOKENS = 64, 256
TARGET_CACHE_SPEEDUP = 3.0


def best_time(write, repeats: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ids = write()
        times.append(time.perf_counter() - start)
    return min(times), ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = GPT(GPTConfig(context=PROMPT + NEW_TOKENS)).eval()
    theirs = to_huggingface(model)
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT))
    writers = {
        "ours, no cache": lambda: generate(model, prompt, NEW_TOKENS, temperature=0, use_cache=False),
        "ours, KV cache": lambda: generate(model, prompt, NEW_TOKENS, temperature=0),
        "Hugging Face generate": lambda: theirs.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False,
                                                         attention_mask=torch.ones_like(prompt), pad_token_id=0),
    }
    results = {name: best_time(write, args.repeats) for name, write in writers.items()}
    tokens = [ids for _, ids in results.values()]
    if not all(torch.equal(tokens[0], other) for other in tokens[1:]):
        print("the three did not write the same tokens: the timings would compare different work")
        return 1

    print(f"greedy generation of {NEW_TOKENS} tokens after a {PROMPT}-token prompt, GPT width "
          f"{model.config.width}, {model.config.layers} layers, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats}\n")
    for name, (seconds, _) in results.items():
        print(f"  {name:<24} {seconds:6.2f} s  {NEW_TOKENS / seconds:7.0f} tokens/s")
    cache = model.new_cache()
    with torch.no_grad():
        model(tokens[0][:, :-1], cache)
    print(f"\nthe cache at {len(cache[0])} positions: {sum(layer.nbytes for layer in cache) / 2 ** 20:.2f} MiB "
          f"(a key and a value of {model.config.width} numbers per position and layer)")
    cached = results["ours, KV cache"][0]
    speedup = results["ours, no cache"][0] / cached
    against_hf = results["Hugging Face generate"][0] / cached
    print(f"cache speed-up: {speedup:.1f}x (target {TARGET_CACHE_SPEEDUP}x); "
          f"ours against Hugging Face: {against_hf:.2f}x (target 1x)")
    return 0 if speedup >= TARGET_CACHE_SPEEDUP and against_hf >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
