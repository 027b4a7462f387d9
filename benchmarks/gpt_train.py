"""How fast does the course's GPT train, and how close to the machine's limit?

    .venv/bin/python benchmarks/gpt_train.py              # the recipe, start to end
    .venv/bin/python benchmarks/gpt_train.py --ablation   # and what each speed-up is worth
    .venv/bin/python benchmarks/gpt_train.py --steps 200  # a shorter run

The recipe is nanoGPT's CPU recipe (`gpt.TrainingRecipe`: 4 layers, 4 heads,
width 128, context 64, batch 12, 2,000 steps, learning rate 1e-3 after 100
warm-up steps, cosine decay to 1e-4, dropout 0, 20 batches per split
evaluated every 250 steps), on the first 1,115,394 characters of the course's
training text, split 90/10 (`gpt.character_data`). It prints the wall time
from start to end, ms per step, tokens per second, the final validation loss,
and the share of this machine's matrix-multiply throughput that training
reaches: the FLOPs of one step (counted by `torch.utils.flop_counter`) per
second, against float32 and bf16 matrix multiplies timed here.

`measure_training` times a short run of the recipe, for `course bench`.

--ablation times short runs of the model as a plain loop would write it
(lesson 06's layer norm formula, an explicit causal mask, the for-each AdamW,
GPT-2's tanh GELU), then with each speed-up of `course_utils` added in turn.

Measured on the 2-core CPU (AVX2; no AVX-512 or AMX, so bf16 multiplies run
about 70x slower than float32 here): see the closing note of issue 11 and
lesson 10.
"""

import argparse
import time

import torch

from course_utils.attention import causal_mask
from course_utils.gpt import GPT, GPTConfig, TrainingRecipe, character_data, flops_per_step, next_token_loss, train_gpt
from course_utils.training import train
from course_utils.transformer import LayerNorm

VALIDATION_LOSS_TARGET = 1.90


def matmul_throughput(dtype: torch.dtype, size: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """FLOP/s of a (size x size) @ (size x size) multiply in `dtype`."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    synchronize(device)  # a GPU queues the multiplies: wait for the last one
    return count * 2 * size ** 3 / (time.perf_counter() - start)


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work, so that a timer stops when it is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --- the plain versions, for --ablation ----------------------------------------------

class FormulaLayerNorm(LayerNorm):
    """Lesson 06's layer norm written out: five passes over the data."""

    def forward(self, x):
        mean, variance = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias


def with_formula_layer_norms(model: GPT) -> GPT:
    for block in model.blocks:
        for name in ("norm1", "norm2"):
            formula = FormulaLayerNorm(model.config.width)
            formula.load_state_dict(getattr(block, name).state_dict())
            setattr(block, name, formula)
    return model


class MaskedGPT(GPT):
    """The GPT with the causal mask built and passed to every block, as a plain
    loop would write it, instead of is_causal=True."""

    def forward(self, ids, cache=None):
        positions = torch.arange(ids.size(1))
        x = self.token_embedding(ids) + self.position_embedding(positions)
        mask = causal_mask(ids.size(1))
        for block in self.blocks:
            x, _ = block(x, mask=mask)
        return torch.nn.functional.linear(self.final_norm(x), self.token_embedding.weight)


def ms_per_step(model: GPT, train_ids: torch.Tensor, recipe: TrainingRecipe, steps: int, device: str = "cpu") -> float:
    """The mean time of `steps` training steps, after 10 warm-up steps."""
    model.to(device)
    optimizer = recipe.optimizer(model)
    batch_at = lambda step: tuple(ids.to(device) for ids in recipe.batch_at(step, train_ids, model.config.context))
    run = lambda last: train(model, batch_at, next_token_loss, optimizer, last, recipe.lr_at(), recipe.clip_grad_norm,
                             progress=False)
    run(10)
    synchronize(device)
    start = time.perf_counter()
    run(steps)
    synchronize(device)
    return (time.perf_counter() - start) / steps * 1e3


def training_figures(step_seconds: float, config: GPTConfig, recipe: TrainingRecipe, matmul_flops: float) -> dict:
    """What a step time means: tokens per second, and the FLOPs per second
    reached, as a share of the float32 multiply's `matmul_flops`."""
    flops = flops_per_step(config, recipe.batch_size)
    return {"ms_per_step": step_seconds * 1e3, "tokens_per_second": recipe.batch_size * config.context / step_seconds,
            "flops_per_step": flops, "flops_per_second": flops / step_seconds,
            "matmul_share": flops / step_seconds / matmul_flops}


def measure_training(steps: int = 100, device: str = "cpu", matmul_flops: float | None = None) -> dict:
    """The recipe's training speed from a short run (the steps after 10
    warm-up steps, no evaluations): `training_figures` of its mean step."""
    recipe = TrainingRecipe()
    _, train_ids, _ = character_data()
    torch.manual_seed(recipe.seed)
    model = GPT(GPTConfig())
    step_seconds = ms_per_step(model, train_ids, recipe, steps, device) / 1e3
    return training_figures(step_seconds, model.config, recipe,
                            matmul_flops or matmul_throughput(torch.float32, device=device))


def ablation(train_ids: torch.Tensor, recipe: TrainingRecipe, steps: int = 150) -> None:
    tanh = GPTConfig(activation="gelu_tanh")  # GPT-2's GELU
    plain = TrainingRecipe(fused_optimizer=False)
    variants = [
        ("plain: formula layer norm, mask, for-each AdamW, tanh GELU",
         lambda: with_formula_layer_norms(MaskedGPT(tanh)), plain),
        ("+ fused layer norm", lambda: MaskedGPT(tanh), plain),
        ("+ is_causal=True instead of a mask", lambda: GPT(tanh), plain),
        ("+ fused AdamW", lambda: GPT(tanh), recipe),
        ("+ exact GELU (the course's GPT)", lambda: GPT(GPTConfig()), recipe),
    ]
    print(f"\nablation: ms per training step, mean of {steps} steps after 10 warm-up steps")
    first = None
    for name, make, variant_recipe in variants:
        torch.manual_seed(0)
        ms = ms_per_step(make(), train_ids, variant_recipe, steps)
        first = first or ms
        print(f"  {name:<60} {ms:6.1f} ms  ({ms / first:.2f}x the plain loop)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainingRecipe.steps)
    parser.add_argument("--ablation", action="store_true", help="also time each speed-up on short runs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    recipe = TrainingRecipe(steps=args.steps)
    _, train_ids, validation_ids = character_data()
    torch.manual_seed(recipe.seed)
    model = GPT(GPTConfig())
    training_start = time.perf_counter()
    run = train_gpt(model, train_ids, validation_ids, recipe)
    training_seconds = time.perf_counter() - training_start
    wall = time.perf_counter() - start

    step_seconds = training_seconds / recipe.steps  # evaluations included, as a trainer's wall time has them
    fp32, bf16 = matmul_throughput(torch.float32), matmul_throughput(torch.bfloat16)
    figures = training_figures(step_seconds, model.config, recipe, fp32)
    achieved = figures["flops_per_second"]
    validation_loss = run.evaluations[-1][2]
    print(f"\nGPT {sum(p.numel() for p in model.parameters()):,} weights, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"wall time, start to end:   {wall:.1f} s (training and evaluation {training_seconds:.1f} s)")
    print(f"per step:                  {figures['ms_per_step']:.1f} ms, {figures['tokens_per_second']:,.0f} tokens/s")
    print(f"final validation loss:     {validation_loss:.3f} (target at most {VALIDATION_LOSS_TARGET} after "
          f"{TrainingRecipe.steps} steps)")
    print(f"FLOPs per step:            {figures['flops_per_step'] / 1e9:.2f} G -> {achieved / 1e9:.1f} GFLOP/s")
    print(f"matrix multiply, 1024^3:   float32 {fp32 / 1e9:.1f} GFLOP/s, bf16 {bf16 / 1e9:.1f} GFLOP/s")
    print(f"training reaches:          {figures['matmul_share']:.0%} of the float32 multiply's throughput, "
          f"{achieved / bf16:.2g}x the bf16 multiply's")
    if args.ablation:
        ablation(train_ids, recipe)
    full_recipe = args.steps == TrainingRecipe.steps
    return 0 if not full_recipe or validation_loss <= VALIDATION_LOSS_TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
