"""How much does the KV cache save when a decoder (lesson 10's GPT, lesson 12's modern one) writes?

    .venv/bin/python benchmarks/generation.py [--repeats 3] [--model gpt|modern]

Generates 256 tokens after a 64-token prompt, greedily, with a GPT of
lesson 10's shape whose context holds all 320 positions (with learned
absolute positions, a window that slides past the context makes every
cached key stale, see `gpt.generate`), or with --model modern lesson 12's
Llama-style `modern.ModernDecoder` of its default shape (2 key-value heads
for 4 query heads) and the same context, three ways:

- ours, without the cache: each step runs the whole sequence so far;
- ours, with the cache: the prompt once, then one token per step;
- Hugging Face `generate` on the same weights (`gpt.to_huggingface`, or
  `modern.to_huggingface`: a `LlamaForCausalLM`), which keeps its own cache.

It first checks that the three write the same tokens, then prints the best
of `--repeats` timings, tokens per second, and the cache's size. Targets:
the cache at least 3x faster than no cache, and ours at least as fast as
Hugging Face's. Exits 1 if a target is missed. `time_writers` is the
measurement, which `course bench` runs too.
"""

import argparse
import time

import torch

from course_utils import gpt, modern
from course_utils.gpt import generate

PROMPT, NEW_TOKENS = 64, 256
TARGET_CACHE_SPEEDUP = 3.0


def best_time(write, repeats: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ids = write()
        if ids.is_cuda:  # a GPU queues the work: wait for it before stopping the clock
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), ids


MODELS = {  # --model: (build a model of this context, the module with its to_huggingface)
    "gpt": (lambda context: gpt.GPT(gpt.GPTConfig(context=context)), gpt),
    "modern": (lambda context: modern.ModernDecoder(modern.ModernConfig(context=context)), modern),
}


def time_writers(repeats: int = 3, new_tokens: int = NEW_TOKENS, device: str = "cpu",
                 model_kind: str = "gpt") -> tuple[torch.nn.Module, dict[str, float], torch.Tensor]:
    """(the model, best-of-`repeats` seconds of each way to write `new_tokens`
    tokens, the tokens written). Raises RuntimeError if the three ways write
    different tokens: their timings would compare different work."""
    torch.manual_seed(0)
    build, module = MODELS[model_kind]
    model = build(PROMPT + new_tokens).eval()
    theirs = module.to_huggingface(model).to(device)
    model.to(device)
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT), device=device)
    writers = {
        "ours, no cache": lambda: generate(model, prompt, new_tokens, temperature=0, use_cache=False),
        "ours, KV cache": lambda: generate(model, prompt, new_tokens, temperature=0),
        "Hugging Face generate": lambda: theirs.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                                                         attention_mask=torch.ones_like(prompt), pad_token_id=0),
    }
    results = {name: best_time(write, repeats) for name, write in writers.items()}
    tokens = [ids for _, ids in results.values()]
    if not all(torch.equal(tokens[0], other) for other in tokens[1:]):
        raise RuntimeError("the three did not write the same tokens: the timings would compare different work")
    return model, {name: seconds for name, (seconds, _) in results.items()}, tokens[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        model, seconds, tokens = time_writers(args.repeats, model_kind=args.model)
    except RuntimeError as error:
        print(error)
        return 1

    print(f"greedy generation of {NEW_TOKENS} tokens after a {PROMPT}-token prompt, {type(model).__name__} width "
          f"{model.config.width}, {model.config.layers} layers, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats}\n")
    for name, best in seconds.items():
        print(f"  {name:<24} {best:6.2f} s  {NEW_TOKENS / best:7.0f} tokens/s")
    cache = model.new_cache()
    with torch.no_grad():
        model(tokens[:, :-1], cache)
    config = model.config
    kv_heads = getattr(config, "kv_heads", config.heads)  # GPT: every head keeps its own keys and values
    print(f"\nthe cache at {len(cache[0])} positions: {sum(layer.nbytes for layer in cache) / 2 ** 20:.2f} MiB "
          f"(a key and a value of {kv_heads} key-value heads × {config.width // config.heads} = "
          f"{kv_heads * config.width // config.heads} numbers per position and layer)")
    cached = seconds["ours, KV cache"]
    speedup = seconds["ours, no cache"] / cached
    against_hf = seconds["Hugging Face generate"] / cached
    print(f"cache speed-up: {speedup:.1f}x (target {TARGET_CACHE_SPEEDUP}x); "
          f"ours against Hugging Face: {against_hf:.2f}x (target 1x)")
    return 0 if speedup >= TARGET_CACHE_SPEEDUP and against_hf >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
