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


# Lesson 12: GPT-2's block and a Llama-style block, side by side. Each entry
# is (height, GPT-2's box, the modern box, the numbers of its changes or None).
_BLOCK_ROWS = [(0.6, "tokens", "tokens", None),
               (1.6, "token + learned position embedding", "token embedding (no position table)", 1),
               (2.9, "LayerNorm (re-centre, scale; gain and bias)", "RMSNorm (scale only; gain)", 2),
               (3.9, "masked multi-head attention\n(every head its own K and V)",
                "masked grouped-query attention, rotary q and k\n(query heads share K and V)", "3, 4"),
               (4.9, "+", "+", None),
               (5.9, "LayerNorm", "RMSNorm", 2),
               (6.9, "MLP: GELU, 2 matrices of 4·d", "SwiGLU: SiLU gate, 3 matrices of ≈ 8/3·d", 5),
               (7.9, "+", "+", None),
               (9.0, "LayerNorm, head = token table (tied)", "RMSNorm, head of its own (often untied)", "2, 6")]
BLOCK_CHANGES = {1: "positions move from the input into attention",
                 2: "RMSNorm instead of LayerNorm",
                 3: "rotary positions on queries and keys, at each token's position",
                 4: "grouped-query attention: fewer key-value heads",
                 5: "a gated feed-forward network (SwiGLU)",
                 6: "no biases anywhere; the head is often its own matrix"}


def draw_block_comparison(ax=None):
    """GPT-2's decoder (left) and a Llama-style decoder (right), box by box,
    every difference numbered as in `BLOCK_CHANGES` and coloured (change 6,
    no biases, holds for every box). Returns the
    Axes; the box labels and the numbers are its texts."""
    ax = ax or plt.subplots(figsize=(11, 5.6))[1]
    ax.set_xlim(0, 12)
    ax.set_ylim(-0.5, 10.6)
    ax.axis("off")
    changed = "#F2C57C"

    def box(x, y, text, colour, width=4.6):
        tall = 0.8 if "\n" in text else 0.55
        ax.add_patch(plt.Rectangle((x - width / 2, y - tall / 2), width, tall, facecolor=colour, edgecolor="black", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    for x, side, title in ((3.0, 1, "GPT-2 (2019), lessons 06 and 10"), (9.0, 2, "Llama-style (2023-), this lesson")):
        ax.add_patch(plt.Rectangle((x - 2.7, 2.35), 5.4, 6.05, fill=False, ls="--", lw=0.8))
        ax.text(x + 2.75, 8.1, "× N", fontsize=9, ha="left")
        ax.text(x, 10.3, title, ha="center", fontsize=10, weight="bold")
        rows = [(row[0], row[side], row[3]) for row in _BLOCK_ROWS]
        for (y, text, number), (next_y, next_text, _) in zip(rows, rows[1:] + [(None, None, None)]):
            is_sum = text == "+"
            if is_sum:
                ax.add_patch(plt.Circle((x, y), 0.25, facecolor="white", edgecolor="black", lw=0.8))
                ax.text(x, y, "+", ha="center", va="center", fontsize=10)
            else:
                box(x, y, text, changed if side == 2 and number else "#DDDDDD" if text != "tokens" else "white")
            if side == 2 and number:
                ax.text(x + 2.45, y, str(number), fontsize=9, color="#B5541B", weight="bold", va="center")
            if next_y is not None:
                top = y + (0.25 if is_sum else 0.4 if "\n" in text else 0.28)
                bottom = next_y - (0.25 if next_text == "+" else 0.4 if "\n" in next_text else 0.28)
                ax.annotate("", xy=(x, bottom), xytext=(x, top), arrowprops=dict(arrowstyle="->", lw=1))
        if side == 2:
            ax.text(x, -0.2, "6: no bias in any linear layer or norm", ha="center", fontsize=8, color="#B5541B")
        for start, end in ((2.4, 4.9), (5.4, 7.9)):  # residual connections: around each sublayer, into its sum
            side_x = x - 2.55
            ax.plot([x, side_x, side_x], [start, start, end], color="#777777", lw=0.9)
            ax.annotate("", xy=(x - 0.25, end), xytext=(side_x, end), arrowprops=dict(arrowstyle="->", lw=0.9, color="#777777"))
    return ax
