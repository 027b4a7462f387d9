"""Plots used across lessons. Each returns its Axes so that tests (and
curious learners) can inspect what was drawn."""

import matplotlib.pyplot as plt


def plot_top_words(counts, top: int = 20, ax=None):
    """Bar chart of the `top` most frequent words in a word -> count mapping."""
    ax = ax or plt.subplots(figsize=(9, 3.5))[1]
    words, frequencies = zip(*counts.most_common(top))
    ax.bar(range(top), frequencies, color="#4C72B0")
    ax.set_xticks(range(top), words, rotation=60, ha="right")
    ax.set_ylabel("occurrences")
    ax.set_title(f"The {top} most frequent words")
    return ax


def plot_rank_frequency(counts, ax=None):
    """Zipf's law: frequency against rank, both on log scales."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    frequencies = sorted(counts.values(), reverse=True)
    ax.loglog(range(1, len(frequencies) + 1), frequencies, color="#C44E52")
    ax.set_xlabel("rank of the word")
    ax.set_ylabel("occurrences")
    ax.set_title("Rank against frequency (log-log)")
    return ax
