"""Interactive explorers for the lessons: a slider in JupyterLab, the default
state drawn as a plain figure in a headless run (`course run`, the tests), so
that the stored output holds no widget model id.

Each explorer gets its data from a plain function, which the unit tests check;
the widget only draws what that function returns.
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from .quiz import HEADLESS_VARIABLE, _in_jupyter_kernel


# --- lesson 02: the softmax of one row of scores, divided by a slider's value ---------

def softmax_of_scaled_scores(scores, divisor: float) -> np.ndarray:
    """softmax(scores / divisor) of one row: the attention weights that the row
    of scores gives when divided by √d_k (or by a temperature). A large divisor
    flattens the weights towards uniform; a small one sharpens them towards
    one-hot on the largest score."""
    if divisor <= 0:
        raise ValueError(f"the divisor must be positive, got {divisor}")
    scaled = np.asarray(scores, dtype=np.float64) / divisor
    exps = np.exp(scaled - scaled.max())  # minus the maximum: no overflow, same result
    return exps / exps.sum()


def plot_softmax_of_scaled_scores(scores, divisor: float, labels=None, ax=None):
    """Bar plot of `softmax_of_scaled_scores(scores, divisor)`; returns the Axes."""
    weights = softmax_of_scaled_scores(scores, divisor)
    labels = [f"key {j}" for j in range(len(weights))] if labels is None else list(labels)
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    ax.bar(range(len(weights)), weights, color="#4C72B0")
    ax.axhline(1 / len(weights), color="gray", linestyle=":", label=f"uniform: 1/{len(weights)}")
    ax.set_xticks(range(len(weights)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight")
    ax.set_title(f"softmax(scores / {divisor:.3g}): largest weight {weights.max():.2f}")
    ax.legend(loc="upper right")
    return ax


def softmax_scale_explorer(scores, default: float, labels=None, smallest: float = 0.25, largest: float = 64.0) -> None:
    """A slider for the number the scores are divided by (√d_k, or a
    temperature), on a log scale from `smallest` to `largest`, and the bar plot
    of the row's softmax, redrawn as the learner drags. Headless: the plot at
    `default` only."""
    if not _widgets_can_show():
        plot_softmax_of_scaled_scores(scores, default, labels)
        plt.show()
        return
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.FloatLogSlider(value=default, base=2, min=np.log2(smallest), max=np.log2(largest), step=0.05,
                                    description="divide by", continuous_update=True, readout_format=".3g")

    def draw(divisor):
        plot_softmax_of_scaled_scores(scores, divisor, labels)
        plt.show()

    display(widgets.VBox([slider, widgets.interactive_output(draw, {"divisor": slider})]))


def _widgets_can_show() -> bool:
    """True in an interactive Jupyter kernel; False headless or in plain Python (as for the quizzes)."""
    return os.environ.get(HEADLESS_VARIABLE) != "1" and _in_jupyter_kernel()
