"""Interactive explorations (ipywidgets) for the lessons.

Each exploration has three parts, so that it can be tested and run headless:
a plain function that computes the data behind the picture, a drawing
function, and the widget that redraws on every change. In a headless run
(tests, `course run`: the variable `quiz.HEADLESS_VARIABLE` is set, or no
Jupyter kernel) only the default state is drawn, as a plain figure, so the
stored output holds no widget state to compare.
"""

import functools
import os

import matplotlib.pyplot as plt
import torch

from . import viz
from .pretrained import attention_maps, load_encoder


# --- lesson 04: the attention map of any layer and head of MiniLM -------------

@functools.lru_cache(maxsize=32)
def _attention_maps_of(text: str) -> tuple[tuple[str, ...], torch.Tensor]:
    tokens, maps = attention_maps(text)  # one encoder run gives every layer and head
    return tuple(tokens), maps


def attention_for(text: str, layer: int, head: int) -> tuple[list[str], torch.Tensor]:
    """The tokens of `text` ([CLS] ... [SEP]) and the (tokens, tokens)
    attention weights of one head of one layer of the pretrained MiniLM:
    row i is where token i looks, and sums to 1."""
    tokens, maps = _attention_maps_of(text)
    layers, heads = maps.shape[:2]
    if not (0 <= layer < layers and 0 <= head < heads):
        raise ValueError(f"MiniLM has layers 0..{layers - 1} and heads 0..{heads - 1}, got layer {layer}, head {head}")
    return list(tokens), maps[layer, head].clone()  # a copy: the cached maps stay as computed


def draw_attention(text: str, layer: int, head: int, ax=None):
    """Heatmap of `attention_for(text, layer, head)`; returns the Axes."""
    tokens, weights = attention_for(text, layer, head)
    return viz.plot_attention(weights, tokens, ax=ax, title=f"layer {layer}, head {head}")


def attention_explorer_widget(sentences: list[str], layer: int = 1, head: int = 0):
    """A VBox with a layer slider, a head slider and a sentence box (pick one
    of `sentences` or type your own), above the attention map, which redraws
    on every change."""
    import ipywidgets as widgets
    from IPython.display import display

    config = load_encoder()[1].config
    layer_slider = widgets.IntSlider(value=layer, min=0, max=config.num_hidden_layers - 1, description="layer")
    head_slider = widgets.IntSlider(value=head, min=0, max=config.num_attention_heads - 1, description="head")
    sentence_box = widgets.Combobox(value=sentences[0], options=list(sentences), description="sentence",
                                    ensure_option=False, continuous_update=False,  # typed text: redraw on Enter
                                    layout=widgets.Layout(width="95%"))
    picture = widgets.Output()

    def redraw(change=None):
        if not sentence_box.value.strip():
            return  # nothing to draw while the box is being cleared
        with picture:
            picture.clear_output(wait=True)
            ax = draw_attention(sentence_box.value, layer_slider.value, head_slider.value)
            display(ax.figure)
            plt.close(ax.figure)  # shown once, inside the widget

    for control in (layer_slider, head_slider, sentence_box):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([layer_slider, head_slider]), sentence_box, picture])


def attention_explorer(sentences: list[str], layer: int = 1, head: int = 0) -> None:
    """In JupyterLab, the explorer widget; headless, the default map only."""
    from .quiz import HEADLESS_VARIABLE, _in_jupyter_kernel

    if os.environ.get(HEADLESS_VARIABLE) == "1" or not _in_jupyter_kernel():
        draw_attention(sentences[0], layer, head)
        plt.show()
        return
    from IPython.display import display

    display(attention_explorer_widget(sentences, layer, head))
