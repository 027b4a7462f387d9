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
    ax.set_title("Frequency against rank (log-log)")
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


# The three uses of attention, one colour each, in the encoder-decoder diagram.
ATTENTION_COLOURS = {"encoder self-attention": "#4C72B0", "masked self-attention": "#DD8452",
                     "cross-attention": "#55A868"}


def draw_encoder_decoder(ax=None):
    """The post-LN encoder-decoder of the 2017 paper as boxes and arrows, with
    its three uses of attention coloured: encoder self-attention, the
    decoder's masked self-attention, and cross-attention, whose keys and
    values come from the encoder's output. Returns the Axes; the box labels
    are its texts."""
    ax = ax or plt.subplots(figsize=(8, 5.2))[1]
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10.4)
    ax.axis("off")
    grey = "#DDDDDD"

    def box(x, y, text, colour=grey, width=3.2):
        ax.add_patch(plt.Rectangle((x - width / 2, y - 0.35), width, 0.7, facecolor=colour, edgecolor="black", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
                color="white" if text in ATTENTION_COLOURS else "black")

    def arrow(start, end, **style):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1, **style))

    encoder = [(1.6, "embedding + positions"), (3.0, "encoder self-attention"), (3.9, "add & LayerNorm"),
               (5.0, "feed-forward"), (5.9, "add & LayerNorm")]
    decoder = [(1.6, "embedding + positions"), (3.0, "masked self-attention"),
               (3.9, "add & LayerNorm"), (5.0, "cross-attention"), (5.9, "add & LayerNorm"),
               (7.0, "feed-forward"), (7.9, "add & LayerNorm"), (9.1, "linear + softmax → next token")]
    for column, x, layers in ((encoder, 2.3, (2.45, 6.45)), (decoder, 7.4, (2.45, 8.45))):
        ax.add_patch(plt.Rectangle((x - 2.0, layers[0]), 4.0, layers[1] - layers[0], fill=False, ls="--", lw=0.8))
        ax.text(x + 2.05, layers[1] - 0.3, "× N", fontsize=9, ha="left")  # outside the frame
        width = 3.4 if x > 5 else 3.0
        for (y, text), (next_y, _) in zip(column, column[1:] + [(None, None)]):
            box(x, y, text, ATTENTION_COLOURS.get(text, grey), width=width)
            if next_y is not None:
                arrow((x, y + 0.35), (x, next_y - 0.35))
            if text == "add & LayerNorm":  # the residual: the sublayer's input goes around it to the sum
                side, start = x - width / 2 - 0.2, y - 1.45
                ax.plot([x, side, side], [start, start, y], color="#777777", lw=0.9)
                arrow((side, y), (x - width / 2, y), color="#777777")
    box(2.3, 0.5, "source tokens", "white", 2.4)
    box(7.4, 0.5, "target so far, shifted right", "white", 2.8)
    arrow((2.3, 0.85), (2.3, 1.25))
    arrow((7.4, 0.85), (7.4, 1.25))
    ax.annotate("keys and values\n(the memory)", xy=(5.7, 5.0), xytext=(2.3, 7.3), fontsize=8, ha="center",
                arrowprops=dict(arrowstyle="->", lw=1.2, color=ATTENTION_COLOURS["cross-attention"],
                                connectionstyle="arc3,rad=-0.25"))
    arrow((2.3, 6.25), (2.3, 6.95))
    ax.text(0.1, 10.0, "grey arrows: residual connections", fontsize=8, color="#777777")
    ax.set_title("The encoder-decoder: three uses of attention", fontsize=10)
    return ax


def _as_numpy(values):
    return values.detach().cpu().numpy() if hasattr(values, "detach") else values
