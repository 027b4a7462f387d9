"""The interactive explorations: the data behind each picture is checked
against an independent computation, and building a widget works headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import quiz, widgets
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
    monkeypatch.setenv(quiz.HEADLESS_VARIABLE, "1")
    box = widgets.attention_explorer_widget(SENTENCES, layer=1, head=0)
    (layer_slider, head_slider), sentence_box = box.children[0].children, box.children[1]
    assert (layer_slider.max, head_slider.max) == (5, 11)
    head_slider.value = 8  # each change redraws; none may fail
    sentence_box.value = "Juliet loves Romeo"
    sentence_box.value = ""  # a cleared box draws nothing
    assert plt.get_fignums() == []  # every figure drawn inside the widget was closed


def test_headless_shows_the_default_map_only(monkeypatch):
    monkeypatch.setenv(quiz.HEADLESS_VARIABLE, "1")
    plt.close("all")
    widgets.attention_explorer(SENTENCES, layer=1, head=8)
    figures = [plt.figure(number) for number in plt.get_fignums()]
    assert len(figures) == 1
    assert figures[0].axes[0].get_title() == "layer 1, head 8"
    plt.close("all")
