"""The softmax-scale explorer of lesson 02: the data behind its plot, and the
widget built both headless (a plain figure) and as in JupyterLab (a slider)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import quiz, widgets  # noqa: E402

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
    monkeypatch.setenv(quiz.HEADLESS_VARIABLE, "1")
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

    monkeypatch.setattr(widgets, "_widgets_can_show", lambda: True)
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
