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


def plot_attention(weights, query_tokens, key_tokens=None, ax=None, title: str = ""):
    """Heatmap of one (queries, keys) attention matrix: row i shows where
    query i looks; each row sums to 1."""
    key_tokens = query_tokens if key_tokens is None else key_tokens
    size = max(2.5, 0.35 * len(key_tokens))
    ax = ax or plt.subplots(figsize=(size + 1, max(2.5, 0.35 * len(query_tokens))))[1]
    image = ax.imshow(_as_numpy(weights), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(key_tokens)), key_tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(query_tokens)), query_tokens, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def _as_numpy(values):
    return values.detach().cpu().numpy() if hasattr(values, "detach") else values
