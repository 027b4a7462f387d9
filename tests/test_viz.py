"""nbval compares only the text of figures, so plots are tested here."""

import collections
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_utils import viz  # noqa: E402

COUNTS = collections.Counter({"the": 50, "and": 40, "i": 30, "to": 20, "of": 10, "ho": 1})


def test_top_words_draws_one_bar_per_word_in_order():
    ax = viz.plot_top_words(COUNTS, top=4)
    assert [bar.get_height() for bar in ax.patches] == [50, 40, 30, 20]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["the", "and", "i", "to"]
    plt.close("all")


def test_rank_frequency_is_log_log_and_sorted():
    ax = viz.plot_rank_frequency(COUNTS)
    x, y = ax.lines[0].get_data()
    assert list(x) == [1, 2, 3, 4, 5, 6] and list(y) == [50, 40, 30, 20, 10, 1]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    plt.close("all")


def test_attention_heatmap_shows_the_matrix_with_token_labels():
    import torch

    weights = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    ax = viz.plot_attention(weights, ["a", "b"], title="demo")
    assert (ax.images[0].get_array() == weights.numpy()).all()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"] and ax.get_title() == "demo"
    plt.close("all")


def test_encoder_decoder_diagram_names_the_three_attentions_in_their_colours():
    ax = viz.draw_encoder_decoder()
    texts = {text.get_text() for text in ax.texts}
    assert set(viz.ATTENTION_COLOURS) <= texts and "feed-forward" in texts
    coloured = {patch.get_facecolor()[:3] for patch in ax.patches}
    assert {matplotlib.colors.to_rgb(colour) for colour in viz.ATTENTION_COLOURS.values()} <= coloured
    plt.close("all")


def test_block_comparison_numbers_every_change_on_the_modern_side_only():
    ax = viz.draw_block_comparison()
    texts = [text.get_text() for text in ax.texts]
    assert "RMSNorm (scale only; gain)" in texts and "LayerNorm (re-centre, scale; gain and bias)" in texts
    labels = [text for text in ax.texts if re.fullmatch(r"\d+(, \d+)*", text.get_text())]
    numbers = {part for text in labels for part in text.get_text().split(", ")}
    numbers |= {text[0] for text in texts if re.match(r"\d: ", text)}  # a change drawn as a note, not on a box
    assert numbers == {str(change) for change in viz.BLOCK_CHANGES}  # every change drawn, none unlisted
    assert all(text.get_position()[0] > 6 for text in labels)  # numbers sit beside the modern column
    plt.close("all")
