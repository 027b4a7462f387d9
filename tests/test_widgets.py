"""The interactive explorations: the data behind each picture is checked
against an independent computation, and building a widget works headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_utils import env, widgets
from course_utils.pretrained import load_encoder

SENTENCES = ["To be, or not to be: that is the question:", "Brutus stabbed Caesar."]


def test_attention_for_is_the_encoders_own_attention():
    tokenizer, model = load_encoder()
    inputs = tokenizer(SENTENCES[1], return_tensors="pt")
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    for layer, head in [(0, 0), (1, 8), (5, 11)]:
        tokens, weights = widgets.attention_for(SENTENCES[1], layer, head)
        assert tokens == tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        torch.testing.assert_close(weights, attentions[layer][0, head])
        torch.testing.assert_close(weights.sum(-1), torch.ones(len(tokens)))


def test_attention_for_returns_a_copy_and_checks_its_arguments():
    _, weights = widgets.attention_for(SENTENCES[0], 1, 0)
    weights.zero_()
    assert widgets.attention_for(SENTENCES[0], 1, 0)[1].sum() > 0  # the cache was not touched
    with pytest.raises(ValueError, match="layers 0..5 and heads 0..11"):
        widgets.attention_for(SENTENCES[0], 6, 0)


def test_the_widget_builds_and_redraws_without_a_kernel(monkeypatch):
    monkeypatch.setenv(env.HEADLESS_VARIABLE, "1")
    box = widgets.attention_explorer_widget(SENTENCES, layer=1, head=0)
    (layer_slider, head_slider), sentence_box = box.children[0].children, box.children[1]
    assert (layer_slider.max, head_slider.max) == (5, 11)
    head_slider.value = 8  # each change redraws; none may fail
    sentence_box.value = "Juliet loves Romeo"
    sentence_box.value = ""  # a cleared box draws nothing
    assert plt.get_fignums() == []  # every figure drawn inside the widget was closed


def test_headless_shows_the_default_map_only(monkeypatch):
    monkeypatch.setenv(env.HEADLESS_VARIABLE, "1")
    plt.close("all")
    widgets.attention_explorer(SENTENCES, layer=1, head=8)
    figures = [plt.figure(number) for number in plt.get_fignums()]
    assert len(figures) == 1
    assert figures[0].axes[0].get_title() == "layer 1, head 8"
    plt.close("all")


# --- lesson 02: the softmax-scale explorer -------------------------------------------

SCORES = [3.0, -1.0, 0.5, 2.0, 0.0]


@pytest.mark.parametrize("divisor", [0.25, 1.0, 3.0, 22.6, 64.0])
def test_the_plotted_weights_are_torch_softmax_of_the_divided_scores(divisor):
    want = torch.softmax(torch.tensor(SCORES, dtype=torch.float64) / divisor, dim=-1).numpy()
    assert np.allclose(widgets.softmax_of_scaled_scores(SCORES, divisor), want, atol=1e-12)


def test_a_larger_divisor_flattens_and_a_smaller_one_sharpens():
    largest = [widgets.softmax_of_scaled_scores(SCORES, d).max() for d in (0.1, 1, 10, 1000)]
    assert largest == sorted(largest, reverse=True)
    assert largest[0] > 0.99 and abs(largest[-1] - 1 / len(SCORES)) < 1e-3
    assert widgets.softmax_of_scaled_scores([1e4, 0.0], 1.0).tolist() == [1.0, 0.0]  # no overflow


def test_adding_a_constant_to_every_score_changes_nothing():
    shifted = np.array(SCORES) + 100
    assert np.allclose(widgets.softmax_of_scaled_scores(shifted, 2.0), widgets.softmax_of_scaled_scores(SCORES, 2.0))


def test_a_divisor_must_be_positive():
    with pytest.raises(ValueError):
        widgets.softmax_of_scaled_scores(SCORES, 0)


def test_the_bar_plot_draws_those_weights():
    ax = widgets.plot_softmax_of_scaled_scores(SCORES, 2.0, labels=list("abcde"))
    heights = [bar.get_height() for bar in ax.patches]
    assert np.allclose(heights, widgets.softmax_of_scaled_scores(SCORES, 2.0))
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    assert f"largest weight {widgets.softmax_of_scaled_scores(SCORES, 2.0).max():.2f}" in ax.get_title()
    plt.close("all")


def test_headless_the_explorer_draws_the_default_state_only(monkeypatch, capsys):
    monkeypatch.setenv(env.HEADLESS_VARIABLE, "1")
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    assert widgets.softmax_scale_explorer(SCORES, default=3.0) is None
    (figure,) = shown
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert np.allclose(heights, widgets.softmax_of_scaled_scores(SCORES, 3.0))
    assert capsys.readouterr().out == ""  # no widget, so no model id in any text output
    plt.close("all")


def test_in_jupyterlab_the_explorer_is_a_slider_that_redraws(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    import IPython.display

    monkeypatch.setattr(widgets, "widgets_can_show", lambda: True)
    displayed = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: displayed.extend(objects))
    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(plt.gca().get_title()))
    widgets.softmax_scale_explorer(SCORES, default=3.0)
    (box,) = displayed
    slider = box.children[0]
    assert isinstance(slider, ipywidgets.FloatLogSlider) and slider.value == pytest.approx(3.0)
    slider.value = 0.5  # what a drag does: the plot is drawn again for the new divisor
    assert any("scores / 0.5)" in title for title in drawn), drawn
    plt.close("all")


def test_sampling_explorer_writes_the_same_text_for_the_same_settings(capsys):
    from course_utils.gpt import GPT, GPTConfig
    from course_utils.tokenization import char_tokenizer

    tokenizer = char_tokenizer("abcdefgh \n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), context=32, width=16, layers=1, heads=2)).eval()
    first = widgets.continuation(model, tokenizer, "abc", 12, 0.8, 0, 0.9)
    assert len(first) == 12 and first == widgets.continuation(model, tokenizer, "abc", 12, 0.8, 0, 0.9)
    greedy = widgets.continuation(model, tokenizer, "abc", 12, 0.0, 0, 1.0)
    assert greedy == widgets.continuation(model, tokenizer, "abc", 12, 0.0, 5, 0.5), "temperature 0 ignores the filters"
    widgets.sampling_explorer(model, tokenizer, "abc", new_tokens=12, temperature=0.0, top_p=1.0)
    out = capsys.readouterr().out
    assert "temperature 0.00, top-k off, top-p off" in out and "abc" + greedy in out
