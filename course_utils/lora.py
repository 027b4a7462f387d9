"""LoRA: adapting a pretrained model by training a low-rank update only.

Fine-tuning every weight of a large model needs, per weight, its gradient and
the optimizer's state: for AdamW three more numbers per weight, which is what
runs out of memory first (lesson 13 counted it). LoRA (Hu et al., 2021,
"LoRA: Low-Rank Adaptation of Large Language Models") keeps a pretrained
linear layer's weight W (out × in) frozen and learns an update of low rank r
beside it:

    y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ,   A: r × in,  B: out × r

A starts random and B at zero, so the adapted model starts as the
pretrained one, exactly; only A and B train: r · (in + out) numbers instead
of in · out. After training, B A can be added into W (`merged`): the
adapted model then costs nothing more to run than the original.

`LoRALinear` follows Hugging Face `peft`'s LoRA layer: the same
initialisation (A as nn.Linear initialises its weight, Kaiming-uniform with
a = √5; B zero), the same scale α / r, dropout on the input of the update,
and the same names (`lora_A`, `lora_B`), so that the same A and B give the
same outputs (tests/test_lora.py).
"""

import math
from collections.abc import Callable

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear (`base`) plus a trainable update of rank `rank`,
    scaled by alpha / rank."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.base = base.requires_grad_(False)
        factory = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise it
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))  # zero: no change at first
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear whose weight is W + (α / r) · B A: the same
        function as this layer (without dropout), at the original's cost."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           dtype=self.base.weight.dtype, device="meta")  # no initialisation: no random numbers drawn
        merged = merged.to_empty(device=self.base.weight.device)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def add_lora(model: nn.Module, targets: Callable[[str], bool], rank: int = 8, alpha: float = 16.0,
             dropout: float = 0.0, layer: Callable[..., nn.Module] = LoRALinear) -> nn.Module:
    """Freeze every weight of `model` and wrap each nn.Linear whose name
    `targets(name)` accepts in a LoRALinear (or in `layer(linear, rank,
    alpha)`, a class written the same way: lesson 14's exercise), in place;
    returns the model.
    E.g. targets=lambda name: name.endswith(("query", "value")), as LoRA's
    paper adapted W_Q and W_V. Modules that should still train whole (a new
    classification head) can be unfrozen afterwards."""
    model.requires_grad_(False)
    chosen = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and targets(name)]
    if not chosen:
        raise ValueError("no nn.Linear of the model matches `targets`: name some of "
                         + ", ".join(name for name, m in model.named_modules() if isinstance(m, nn.Linear))[:300])
    for name in chosen:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        wrapped = layer(getattr(owner, child), rank, alpha, dropout) if dropout else layer(getattr(owner, child), rank, alpha)
        setattr(owner, child, wrapped)
    return model


def query_or_value(name: str) -> bool:
    """The targets of LoRA's paper: the query and value projections (W_Q,
    W_V) of every attention layer, as BERT names them."""
    return name.endswith(("query", "value"))


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear of `model` by its merged nn.Linear, in place; returns the model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.merged())
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many numbers the optimizer will update."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
