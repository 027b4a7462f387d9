"""Interactive explorations (ipywidgets) for the lessons.

Each exploration has three parts, so that it can be tested and run headless:
a plain function that computes the data behind the picture, a drawing
function, and the widget that redraws on every change. In a headless run
(tests, `course run`: the variable `env.HEADLESS_VARIABLE` is set, or no
Jupyter kernel) only the default state is drawn, as a plain figure, so the
stored output holds no widget state to compare.
"""

import functools

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import viz
from .env import widgets_can_show
from .pretrained import attention_maps, load_encoder

# A slider's label at its own width: ipywidgets' default cuts "temperature" to "temperat…".
LABELS_IN_FULL = {"description_width": "initial"}


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
    if not widgets_can_show():
        plot_softmax_of_scaled_scores(scores, default, labels)
        plt.show()
        return
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.FloatLogSlider(value=default, base=2, min=np.log2(smallest), max=np.log2(largest), step=0.05,
                                    description="divide by", continuous_update=True, readout_format=".3g",
                                    style=LABELS_IN_FULL)

    def draw(divisor):
        plot_softmax_of_scaled_scores(scores, divisor, labels)
        plt.show()

    display(widgets.VBox([slider, widgets.interactive_output(draw, {"divisor": slider})]))



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
    layer_slider = widgets.IntSlider(value=layer, min=0, max=config.num_hidden_layers - 1, description="layer", style=LABELS_IN_FULL)
    head_slider = widgets.IntSlider(value=head, min=0, max=config.num_attention_heads - 1, description="head", style=LABELS_IN_FULL)
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
    if not widgets_can_show():
        draw_attention(sentences[0], layer, head)
        plt.show()
        return
    from IPython.display import display

    display(attention_explorer_widget(sentences, layer, head))


# --- lesson 10: sampling settings, and what the GPT writes with them ----------------

def continuation(model, tokenizer, prompt: str, new_tokens: int, temperature: float, top_k: int, top_p: float,
                 seed: int = 0) -> str:
    """What `model` writes after `prompt` with these settings (top_k = 0 and
    top_p = 1 switch those filters off), from a fixed seed: the same
    settings always give the same text."""
    from .gpt import generate
    from .tokenization import encode_chars

    ids = encode_chars(tokenizer, prompt)[None]
    written = generate(model, ids, new_tokens, temperature, top_k or None, top_p if top_p < 1 else None,
                       torch.Generator().manual_seed(seed))
    return tokenizer.decode(written[0, ids.size(1):].tolist())


def sampling_explorer(model, tokenizer, prompt: str, new_tokens: int = 200, temperature: float = 0.8,
                      top_k: int = 0, top_p: float = 0.9) -> None:
    """Sliders for temperature, top-k and top-p; the continuation of `prompt`
    is rewritten on every change. Headless: the default settings' text only."""
    def show(temperature, top_k, top_p):
        print(f"temperature {temperature:.2f}, top-k {top_k or 'off'}, top-p {top_p if top_p < 1 else 'off'}:\n")
        print(prompt + continuation(model, tokenizer, prompt, new_tokens, temperature, top_k, top_p))

    if not widgets_can_show():
        show(temperature, top_k, top_p)
        return
    import ipywidgets as widgets
    from IPython.display import display

    sliders = {"temperature": widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                                  description="temperature", continuous_update=False, style=LABELS_IN_FULL),
               "top_k": widgets.IntSlider(value=top_k, min=0, max=tokenizer.get_vocab_size(),
                                          description="top-k (0: off)", continuous_update=False, style=LABELS_IN_FULL),
               "top_p": widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05,
                                            description="top-p (1: off)", continuous_update=False, style=LABELS_IN_FULL)}
    display(widgets.VBox([*sliders.values(), widgets.interactive_output(show, sliders)]))
