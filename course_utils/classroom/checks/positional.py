"""Checkers for the exercises on positions (lesson 05)."""

import torch

from course_utils.positional import BASE, sinusoidal_encoding
from . import Checker

# Two sizes: 50 positions of width 16 (more positions than features, so that
# confusing the two arguments shows), then 8 of width 64 (no hard-coded sizes).
_SIZES = [(50, 16), (8, 64)]

_HINT = "PE[pos, 2i] = sin(pos / 10000^(2i/d_model)) and PE[pos, 2i+1] = cos(the same angle), pos = 0, 1, 2, ..."


def _from_angles(num_positions: int, d_model: int, exponent: torch.Tensor, start: int = 0,
                 swap: bool = False, halves: bool = False) -> torch.Tensor:
    """The encoding with the given exponents (one per pair), maybe with a classic slip."""
    angles = torch.arange(start, start + num_positions, dtype=torch.float64)[:, None] / BASE ** exponent
    first, second = (angles.cos(), angles.sin()) if swap else (angles.sin(), angles.cos())
    if halves:
        return torch.cat([first, second], dim=-1).float()
    encoding = torch.empty(num_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2], encoding[:, 1::2] = first, second
    return encoding.float()


def _column_index_exponent(num_positions: int, d_model: int) -> torch.Tensor:
    """Each column j uses j/d_model: the cosine columns get (2i+1)/d_model."""
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] / BASE ** (torch.arange(d_model) / d_model)
    encoding = angles.clone()
    encoding[:, 0::2], encoding[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
    return encoding.float()


def classic_mistakes(num_positions: int, d_model: int) -> dict[str, torch.Tensor]:
    """What each classic slip returns for these sizes, keyed by what went wrong."""
    pair = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i
    right = pair / d_model
    return {
        "swapping sine and cosine (cos on the even columns, sin on the odd ones)":
            _from_angles(num_positions, d_model, right, swap=True),
        "using i instead of 2i in the exponent (10000^(i/d_model), i the pair number)":
            _from_angles(num_positions, d_model, pair / 2 / d_model),
        "using the column number j in the exponent (10000^(j/d_model): the cosine columns get (2i+1)/d_model)":
            _column_index_exponent(num_positions, d_model),
        "dividing the exponent by num_positions instead of d_model":
            _from_angles(num_positions, d_model, pair / num_positions),
        "dividing the exponent by d_model/2 instead of d_model":
            _from_angles(num_positions, d_model, pair / (d_model / 2)),
        "concatenating [all sines | all cosines] instead of interleaving them":
            _from_angles(num_positions, d_model, right, halves=True),
        "counting positions from 1 instead of 0":
            _from_angles(num_positions, d_model, right, start=1),
    }


def check_sinusoidal_encoding(sinusoidal_encoding_fn) -> None:
    """Check a learner's `sinusoidal_encoding(num_positions, d_model)` against
    course_utils.positional.sinusoidal_encoding."""
    with Checker("05.sinusoidal_encoding", references=[sinusoidal_encoding]) as check:
        outputs = {size: check.call(sinusoidal_encoding_fn, *size) for size in _SIZES}
        wrong_type = next((type(out).__name__ for out in outputs.values() if not isinstance(out, torch.Tensor)), None)
        check.require("returns a torch.Tensor", wrong_type is None, expected="torch.Tensor", actual=wrong_type,
                      hint="build it with torch (torch.arange, torch.sin, ...)")
        for (num_positions, d_model), actual in outputs.items():
            expected = sinusoidal_encoding(num_positions, d_model)
            check.require(f"shape for ({num_positions}, {d_model}): (num_positions, d_model)",
                          tuple(actual.shape) == tuple(expected.shape), expected=tuple(expected.shape),
                          actual=tuple(actual.shape), hint="one row per position, one column per feature")
            check.require(f"dtype for ({num_positions}, {d_model}) is torch.float32", actual.dtype == torch.float32,
                          expected="torch.float32", actual=actual.dtype,
                          hint="model weights are float32: look at the dtype your table ends with")
            check.close(f"values for {num_positions} positions, d_model={d_model}", actual, expected, atol=1e-4,
                        rtol=0, hint=_HINT, mistakes=classic_mistakes(num_positions, d_model))
