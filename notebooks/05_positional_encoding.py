# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (transformers course)
#     language: python
#     name: transformers-course
# ---

# %% [markdown]
# # 05 · Positional encoding
#
# "Brutus stabbed Caesar" and "Caesar stabbed Brutus" use the same words; only
# their order tells who dies. Attention without a mask, as in an encoder,
# cannot see that order: it compares every token with every other one and
# averages, and none of that arithmetic knows which token came first. This
# lesson shows the problem on the real MiniLM encoder, then the main ways
# transformers are told where each token sits.
#
# **In this lesson you will**
#
# - show that attention without positions treats a sentence as a bag of words:
#   shuffle the tokens and its outputs are shuffled the same way, nothing more;
# - write the sinusoidal encoding of *Attention Is All You Need* yourself and
#   read its heatmap;
# - measure how the similarity of two positions falls off with their distance,
#   and check that moving k positions ahead is one fixed rotation matrix;
# - look at the learned position embeddings of the pretrained MiniLM encoder,
#   and what they cost;
# - rotate queries and keys with rotary embeddings (RoPE), the modern form, and
#   check that attention scores then depend only on the relative offset;
# - train four tiny models (no positions, sinusoidal, learned, rotary) and
#   measure which of them still work on sequences twice as long as in training.

# %% [markdown]
# ## Set-up
#
# As in every lesson: seeds, quiet warnings, offline libraries, and the device.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Attention does not know where a token is
#
# Recall self-attention from lessons 02 to 04: the rows of the input X (one per
# token) are projected to queries, keys and values, every query is compared with
# every key, and each output row is a weighted average of the values. Shuffle
# the rows of X with a permutation P, and the queries, keys and values are
# shuffled the same way; the score matrix becomes P S Pᵀ, the same scores with
# rows and columns reordered together; the softmax works row by row, so the
# output is P times the old output. In symbols, Attention(PX) = P · Attention(X):
# attention is *permutation-equivariant*. Every token gets the same answer
# wherever it stands.
#
# That holds for attention without a mask, the bidirectional attention of an
# encoder such as MiniLM or BERT. A causal mask (lesson 03) breaks the
# symmetry: query i sees exactly the i + 1 keys up to itself, so what a token
# gets depends on how many tokens came before it. Decoder language models
# trained with no positional encoding at all still learn positional
# information that way (Haviv et al., 2022, *Transformer Language Models
# without Positional Encodings Still Learn Positional Information*); an
# encoder has no such way in, and needs to be told.
#
# Let us see it on real data. We take Hamlet's most famous line from the corpus,
# split it into tokens with the MiniLM tokenizer, and look up each token's vector
# in MiniLM's word-embedding table: 384 numbers per token, and nothing about
# where the token stands.

# %%
import torch

from course_utils import data
from course_utils.pretrained import load_encoder

tokenizer, encoder = load_encoder()
line = next(text for text in data.plays()["hamlet"].splitlines() if text.startswith("To be, or not to be"))
ids = tokenizer(line, add_special_tokens=False, return_tensors="pt")["input_ids"]
tokens = tokenizer.convert_ids_to_tokens(ids[0])
with torch.no_grad():
    x = encoder.embeddings.word_embeddings(ids)  # (1, tokens, 384): token vectors only

print(line)
print(tokens)
print("x:", tuple(x.shape))

# %% [markdown]
# Now one multi-head attention layer, the reviewed `MultiHeadAttention` of
# lesson 04 with 12 heads and random weights (any weights would do). We run it
# on the line, then on the same tokens in a shuffled order, and compare the
# second output with the first one shuffled the same way. If attention could
# see order, these would differ.

# %%
from course_utils.attention import MultiHeadAttention

torch.manual_seed(0)
attention = MultiHeadAttention(384, num_heads=12).eval()
shuffle = torch.randperm(len(tokens))
with torch.no_grad():
    out = attention(x)[0]
    out_of_shuffled = attention(x[:, shuffle])[0]

print("shuffled:", [tokens[i] for i in shuffle])
difference = (out_of_shuffled - out[:, shuffle]).abs().max().item()
print(f"largest |attention(shuffled x) - shuffled attention(x)| = {difference:.6f}")

# %% [markdown]
# Zero, up to rounding: the shuffled sentence gives exactly the shuffled
# outputs. The same holds for a whole encoder, because its other parts (the
# feed-forward network, LayerNorm, the residual additions) work on each token
# separately. Here is the real, pretrained, 6-layer MiniLM encoder on two
# sentences with the same tokens in a different order. Run normally, it adds
# its position embeddings to the tokens (more on those below). To blind it, we
# pass `position_ids` of all zeros: every token is told it sits at position 0,
# so the positions say nothing. For each token we compare the encoder's output
# vector in the first sentence with its output vector in the second one.

# %%
first, second = "Brutus stabbed Caesar.", "Caesar stabbed Brutus."


@torch.no_grad()
def encode(text, blind):
    """The encoder's output vector for each token of `text`, by token."""
    inputs = tokenizer(text, return_tensors="pt")
    if blind:
        inputs["position_ids"] = torch.zeros_like(inputs["input_ids"])
    hidden = encoder(**inputs).last_hidden_state[0]
    return dict(zip(tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]), hidden))


blind_a, blind_b = encode(first, blind=True), encode(second, blind=True)
seeing_a, seeing_b = encode(first, blind=False), encode(second, blind=False)
print(f"{'token':<10} largest difference between the two sentences")
print(f"{'':<10} {'no positions':>14} {'with positions':>16}")
for token in blind_a:
    blind_gap = (blind_a[token] - blind_b[token]).abs().max().item()
    seeing_gap = (seeing_a[token] - seeing_b[token]).abs().max().item()
    print(f"{token:<10} {blind_gap:>14.4f} {seeing_gap:>16.4f}")

# %% [markdown]
# Without positions, every token, `caesar` included, comes out of six layers of
# attention with the very same vector in both sentences: to the model they are
# one sentence, a bag of words, and "who stabbed whom" is a question it cannot
# even represent. With its positions, `caesar` the object and `caesar` the
# subject get vectors that differ by up to 0.59 in a coordinate. Everything a
# transformer knows about word order comes from what we add to say where
# each token sits. The rest of the lesson is about how.
#
# ## Sinusoidal positional encoding
#
# The original transformer (Vaswani et al., 2017) adds to each token's
# embedding a fixed vector that depends only on its position. For position
# `pos` and feature pair `i` (from 0 to d_model/2 − 1):
#
# $$PE_{pos,\,2i} = \sin\!\left(\frac{pos}{10000^{2i/d_\text{model}}}\right), \qquad
#   PE_{pos,\,2i+1} = \cos\!\left(\frac{pos}{10000^{2i/d_\text{model}}}\right)$$
#
# Read each pair of features as a point on a circle, (sin, cos) of an angle
# `pos · θᵢ` with θᵢ = 1 / 10000^(2i/d_model). As the position grows, every pair
# turns around its circle at its own speed: pair 0 by one radian per position
# (a full turn every 2π ≈ 6.3 positions), the last pair so slowly that it would
# need about 54,000 positions for one turn at d_model = 128 (never more than
# 2π·10,000 ≈ 63,000). Like the hands of a clock, the fast
# pairs tell nearby positions apart and the slow ones tell far-apart positions
# apart; together they give every position its own vector.
#
# ## Exercise: the sinusoidal encoding
#
# Write `sinusoidal_encoding(num_positions, d_model)`: it returns a float32
# tensor of shape `(num_positions, d_model)` whose row `pos` is the encoding of
# position `pos`, positions counted from 0, sines in the even columns and
# cosines in the odd columns. Assume `d_model` is even.
#
# Hints: no loop is needed. A column of positions times a row of the
# frequencies θᵢ broadcasts to the whole table of angles, one column per pair;
# the even and the odd columns of the result are slices with a step of 2. The
# checker tries other sizes than this lesson's and names the classic slips
# (sine and cosine swapped, i instead of 2i, the halves concatenated instead of
# interleaved, positions counted from 1, ...).

# %%
import math


def sinusoidal_encoding(num_positions, d_model):
    """(num_positions, d_model): PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(...)."""
    # BEGIN SOLUTION
    positions = torch.arange(num_positions, dtype=torch.float32)[:, None]
    angles = positions / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    encoding = torch.zeros(num_positions, d_model)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding
    # END SOLUTION


# %%
from course_utils.classroom.checks.positional import check_sinusoidal_encoding

check_sinusoidal_encoding(sinusoidal_encoding)

# %% [markdown]
# The picture below is drawn with your function when it passed its checks
# (`yours_if_passed` says which one runs), and the rest of the lesson uses the
# reviewed version, `positional.sinusoidal_encoding`, which later lessons
# import too: it computes the angles in float64, so that positions in the
# thousands keep their precision. Here are the first rows for a width of 8:
# position 0 is (sin 0, cos 0) = (0, 1) in every pair; down the rows, the first
# pair changes fast and the last pair barely moves.

# %%
from course_utils import positional
from course_utils.classroom.checks import yours_if_passed

encode = yours_if_passed(sinusoidal_encoding, "05.sinusoidal_encoding", positional.sinusoidal_encoding)
print(encode(5, 8))
wavelengths = 2 * math.pi / positional.frequencies(128)
print("wavelengths (positions per turn) for d_model=128, pairs 0, 1, 10, 32, 63:",
      [round(wavelengths[i].item(), 1) for i in (0, 1, 10, 32, 63)])

# %% [markdown]
# ### The picture
#
# The heatmap shows the whole table for 100 positions and d_model = 128, one row
# per position. On the left the features oscillate fast (the stripes are thin),
# to the right they slow down until the last columns are almost constant over
# these 100 positions. The curves on the right are four single columns, all
# sines, labelled with their wavelength: over 100 positions the fast one turns
# about 16 times, the slow ones look like a gentle slope.

# %%
import matplotlib.pyplot as plt

pe = encode(100, 128)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.2, 1]})
image = left.imshow(pe, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
left.set_xlabel("feature (column)")
left.set_ylabel("position")
left.set_title("Sinusoidal encoding, 100 positions × 128 features")
left.grid(False)
fig.colorbar(image, ax=left, fraction=0.046, pad=0.04)
for column in (0, 20, 50, 80):
    wavelength = 2 * math.pi * 10000 ** (column / 128)  # column 2i has wavelength 2π · 10000^(2i/d_model)
    right.plot(pe[:, column], label=f"column {column} (wavelength {wavelength:,.0f})")
right.set_xlabel("position")
right.set_title("Columns are sines of growing wavelength")
right.legend(fontsize=8, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Nearby positions look alike
#
# How similar are the encodings of two positions? The dot product of the pair
# `i` parts of positions p and p + k is sin·sin + cos·cos of two angles, which is
# the cosine of their difference, cos(k θᵢ). Summed over the pairs:
#
# $$PE_{p} \cdot PE_{p+k} = \sum_i \cos(k\,\theta_i)$$
#
# It depends on the distance k only, never on p, and it is largest (d_model/2,
# every cosine equal to 1) at k = 0. Let us check it numerically, and then
# plot the dot product of three positions with all the others.

# %%
pe = positional.sinusoidal_encoding(1000, 128)
for p in (10, 300, 900):
    print(f"PE[{p}] · PE[{p + 5}] = {(pe[p] @ pe[p + 5]).item():.4f}")
print(f"sum of cos(5 θ_i)  = {torch.cos(5 * positional.frequencies(128)).sum().item():.4f}")

fig, ax = plt.subplots(figsize=(9, 3.5))
for p in (20, 50, 80):
    ax.plot(pe[:100] @ pe[p], label=f"PE[{p}] · PE[pos]")
ax.set_xlabel("pos")
ax.set_ylabel("dot product")
ax.set_title("Similarity of positions falls off with their distance (d_model = 128)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Each curve peaks at 64 (= 128 / 2) on its own position and falls off on both
# sides, the same shape wherever it stands: the encoding makes "near" look
# "similar". The fall is not monotonic (there are ripples), and far away the
# curve settles around a floor of about 30 rather than at zero: the slow pairs
# have barely turned over 100 positions, so each still adds almost 1. The model
# does not need a clean distance, only one it can learn to read.
#
# ### Moving k positions is a rotation
#
# The authors chose sinusoids because "for any fixed offset k, PE(pos+k) can be
# represented as a linear function of PE(pos)". The angle-sum formulas show it,
# one pair at a time. With a = pos·θᵢ and b = k·θᵢ:
#
# $$\begin{pmatrix}\sin(a+b)\\ \cos(a+b)\end{pmatrix} =
#   \begin{pmatrix}\cos b & \sin b\\ -\sin b & \cos b\end{pmatrix}
#   \begin{pmatrix}\sin a\\ \cos a\end{pmatrix}$$
#
# The 2×2 matrix is a rotation, and it depends on k, not on pos. Put one such
# block per pair on the diagonal of a d_model × d_model matrix and you get
# M_k, with M_k · PE(pos) = PE(pos + k) for every position.
# `positional.shift_matrix(k, d_model)` builds it. Below we print its first
# block for k = 5 (pair 0 turns 5 radians) and check the claim for positions
# near and far.

# %%
k = 5
M = positional.shift_matrix(k, 128)
print(f"first 2x2 block of M_{k}:\n{M[:2, :2]}")
print(f"cos({k}) = {math.cos(k):.4f}, sin({k}) = {math.sin(k):.4f}")
for p in (0, 7, 42, 500, 990):
    error = (M @ pe[p] - pe[p + k]).abs().max().item()
    print(f"pos {p:>3}: max |M_{k} @ PE[{p}] - PE[{p + k}]| = {error:.5f}")
assert all((M @ pe[p] - pe[p + k]).abs().max() < 1e-4 for p in range(995))  # every position up to 994

# %% [markdown]
# One matrix moves every position 5 steps ahead. This matters for attention:
# the query and key projections are linear maps, so a head can learn weights
# that compare a token with "the token k places back" wherever in the sentence
# it stands. Rotary embeddings, at the end of this lesson, are built on this
# same rotation.
#
# ### Positions break the symmetry
#
# Back to Hamlet's line. The original transformer multiplies the token
# embeddings by √d_model before adding the encoding: the paper says so in
# section 3.4, in one sentence, and gives no reason. A common reading is that
# the factor brings the embeddings to a size comparable with the encoding
# (the sines and cosines run from −1 to 1, while small embeddings, such as
# MiniLM's, have entries of a few hundredths; the cell prints both), so that
# neither drowns the other; that is a reading, not something the authors
# wrote. We follow the paper. `positional.SinusoidalPositionalEncoding` is
# the module that later lessons use: it holds the table for up to `max_len`
# positions and adds its first L rows to a (batch, L, d_model) input. We repeat
# the shuffling experiment with positions added after the shuffle, which is
# what a model sees when it is fed the shuffled sentence.

# %%
add_positions = positional.SinusoidalPositionalEncoding(384, max_len=512)
scaled = x * math.sqrt(384)
with torch.no_grad():
    out = attention(add_positions(scaled))[0]
    out_of_shuffled = attention(add_positions(scaled[:, shuffle]))[0]
difference = (out_of_shuffled - out[:, shuffle]).abs().max().item()
print(f"with positions: largest |attention(shuffled) - shuffled attention| = {difference:.4f}")
print(f"for scale: the largest |output| is {out.abs().max().item():.4f}, the mean |output| {out.abs().mean().item():.4f}")
print(f"standard deviation of the entries: token vectors {x.std().item():.3f}, times √384 {scaled.std().item():.2f}, "
      f"encoding {add_positions.encoding[:x.shape[1]].std().item():.2f}")
print("trainable parameters in the encoding:", sum(p.numel() for p in add_positions.parameters()))

# %% [markdown]
# Without positions this difference was 0.000000; now it is about a tenth of
# the largest output value and almost half the mean one, far beyond rounding
# noise: each token's output depends on where it stands. (This layer has
# random weights; a trained one learns to make much more of positions.) The encoding
# costs nothing: no parameter, only a table computed once (and left out of saved
# checkpoints, since it is a formula). And since it is a formula, it is
# defined at positions no training sentence ever reached; whether a trained
# model can make sense of them is another question, which we measure at the
# end of the lesson.
#
# ## Learned position embeddings
#
# BERT and GPT-2 take the simpler road: a table with one trainable vector per
# position, learned with the rest of the model, exactly like word embeddings
# but looked up with the position 0, 1, 2, ... instead of the token id.
# MiniLM, a BERT, has one such table: 512 positions × 384 features. Its
# embedding layer adds three lookups (word, position, and segment, "token type",
# which lesson 08 explains) and normalises the sum. `positional.LearnedPositionalEmbedding`,
# an `nn.Embedding` over positions, is the module later lessons use; loaded with
# MiniLM's table, it reproduces Hugging Face's embedding layer to the last
# digit.

# %%
table = encoder.embeddings.position_embeddings.weight  # (512, 384), trained with the model
learned = positional.LearnedPositionalEmbedding(max_len=512, d_model=384)
print("parameters:", sum(p.numel() for p in learned.parameters()))

inputs = tokenizer(first, return_tensors="pt")["input_ids"]
with torch.no_grad():
    learned.embedding.weight.copy_(table)
    words_and_segment = (encoder.embeddings.word_embeddings(inputs)
                         + encoder.embeddings.token_type_embeddings(torch.zeros_like(inputs)))
    ours = encoder.embeddings.LayerNorm(learned(words_and_segment))
    theirs = encoder.embeddings(input_ids=inputs)
print(f"max |ours - Hugging Face's BertEmbeddings| = {(ours - theirs).abs().max().item():.6f}")

# %% [markdown]
# What did training put in that table? Nobody told BERT that position 7 is
# near position 8, yet the cosine similarity of its learned vectors (left) shows
# a bright band along the diagonal, like the sinusoidal table's (right): it
# learned from data that neighbours matter. It also shows stripes parallel to
# the diagonal, so the similarity of two learned positions rises and falls
# with their distance: training produced partly periodic vectors, as if the
# model had rediscovered waves of its own.

# %%
def cosine_similarities(vectors):
    unit = torch.nn.functional.normalize(vectors.detach(), dim=-1)
    return unit @ unit.T


fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
for ax, vectors, title in [(axes[0], table[:128], "MiniLM's learned positions"),
                           (axes[1], positional.sinusoidal_encoding(128, 384), "sinusoidal encoding")]:
    image = ax.imshow(cosine_similarities(vectors), cmap="viridis", vmin=-1, vmax=1)
    ax.set_title(f"{title}: cosine similarity", fontsize=10)
    ax.set_xlabel("position")
    ax.set_ylabel("position")
    ax.grid(False)
fig.colorbar(image, ax=axes, fraction=0.025, pad=0.02)
plt.show()

# %% [markdown]
# The numbers along one row make the same point: similarity to position 50
# falls with distance in both tables.

# %%
learned_similarity = cosine_similarities(table[:128])[50]
sinusoidal_similarity = cosine_similarities(positional.sinusoidal_encoding(128, 384))[50]
for other in (50, 51, 53, 60, 80, 120):
    print(f"position 50 vs {other:>3}: learned {learned_similarity[other].item():.4f}   "
          f"sinusoidal {sinusoidal_similarity[other].item():.4f}")

# %% [markdown]
# The price of a learned table: 196,608 more parameters to train, and no
# vector at all beyond the last row. A sequence longer than `max_len` has no
# position to look up; our module says so. MiniLM's tokenizer knows the limit
# (`model_max_length` is 512) but cuts a longer text only when asked to, with
# `truncation=True`; by default it returns every token, and the model would
# then fail on positions 512 and beyond. The first 3,000 characters of Hamlet's
# text from the soliloquy on show it.

# %%
try:
    learned(torch.zeros(1, 600, 384))
except ValueError as error:
    print("ValueError:", error)

hamlet = data.plays()["hamlet"]
passage = hamlet[hamlet.find("To be, or not to be"):][:3000]
print("\ntokenizer.model_max_length:", tokenizer.model_max_length)
print("tokens of the 3,000 characters, default:       ", len(tokenizer(passage)["input_ids"]))
print("tokens of the 3,000 characters, truncation=True:", len(tokenizer(passage, truncation=True)["input_ids"]))

# %% [markdown]
# ## Rotary position embeddings (RoPE)
#
# Most recent language models (LLaMA, Mistral, Qwen, and others) add nothing
# to the token embeddings. Rotary embeddings (Su et al., 2021) put the position
# inside attention instead: in every layer, after the projections, the query
# and key of the token at position m are rotated, each feature pair i by the
# angle m·θᵢ, with θᵢ = 10000^(−2i/d_head): the sinusoidal formula with the
# width of one head (d_head = 32 below) in place of d_model (384), since the
# rotation acts on each head's query and key. Write R_m for that
# block-diagonal rotation. Because rotations compose (R_mᵀ R_n = R_{n−m}), the
# attention score between a query at m and a key at n is
#
# $$(R_m q) \cdot (R_n k) = q \cdot R_{n-m}\, k,$$
#
# a function of the offset n − m only. Positions become relative by
# construction, and the values are left alone: position decides who is
# attended to, not what is carried.
#
# We take a query and a key made by real weights: the first head of MiniLM's
# first attention layer (384 features in 12 heads, so features 0 to 31)
# applied to the bare word vectors of "stabbed" (the query) and "caesar" (the
# key), without the LayerNorm and the position vectors that the encoder adds
# first.
# `positional.RotaryEmbedding` rotates queries and keys of shape
# (batch, heads, L, head_dim) by the positions 0 .. L−1 (plus an `offset`);
# `positional.apply_rotary` does the rotation for any table of angles, which
# lets us place the two tokens at any positions we like.

# %%
head_dim = encoder.config.hidden_size // encoder.config.num_attention_heads  # 384 / 12 = 32
self_attention = encoder.encoder.layer[0].attention.self
vocabulary = tokenizer.get_vocab()
with torch.no_grad():
    q = self_attention.query(encoder.embeddings.word_embeddings.weight[vocabulary["stabbed"]])[:head_dim]
    k = self_attention.key(encoder.embeddings.word_embeddings.weight[vocabulary["caesar"]])[:head_dim]

cos, sin = positional.rotary_angles(2048, head_dim)


def rope_score(m, n):
    """Score of the query placed at position m against the key placed at position n."""
    q_m = positional.apply_rotary(q[None], cos[m:m + 1], sin[m:m + 1])[0]
    k_n = positional.apply_rotary(k[None], cos[n:n + 1], sin[n:n + 1])[0]
    return (q_m @ k_n).item()


print(f"without rotation: q · k = {(q @ k).item():.4f}")
for m, n in [(3, 0), (10, 7), (100, 97), (1500, 1497), (3, 1), (3, 2)]:
    print(f"query at {m:>4}, key at {n:>4} (offset {m - n}): score {rope_score(m, n):.4f}")

# %% [markdown]
# The score changes with the offset and with nothing else: 3 positions apart
# gives the same score at the start of a text and 1,500 tokens into it. The
# plot draws the score against the offset for the query placed at position 100
# and at position 1,000: the two curves lie on top of each other.

# %%
offsets = range(-60, 61)
fig, ax = plt.subplots(figsize=(9, 3.5))
for m, style in [(100, "-"), (1000, ":")]:
    ax.plot(offsets, [rope_score(m, m - offset) for offset in offsets], style, linewidth=2,
            label=f"query at position {m}")
ax.axhline((q @ k).item(), color="gray", linewidth=0.8, label="q · k without rotation")
ax.set_xlabel("offset m − n (query position − key position)")
ax.set_ylabel("score")
ax.set_title('RoPE: the score of "stabbed" against "caesar" depends on the offset only')
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Two more properties, checked on whole tensors. A rotation keeps lengths, so
# RoPE never changes the size of a query or key, only its direction; and
# shifting the whole sequence (the same tokens placed 20 positions later)
# leaves the attention weights unchanged (the keys also serve as values
# there: only the weights are compared). Hugging Face implements RoPE too: its
# RoFormer model (by RoPE's authors) rotates the same interleaved pairs, and
# gives the same numbers. (Hugging Face's Llama code, with its `rotate_half`,
# pairs feature i with feature i + head_dim/2 instead of i + 1. Meta's own
# Llama code rotates interleaved pairs, as we do, and Hugging Face's weight
# conversion permutes the rows of W_Q and W_K so that its halves meet the same
# features; `tests/test_positional.py` checks that the two layouts are the
# same rotation with the features in another order.)

# %%
from transformers.models.roformer.modeling_roformer import (RoFormerSelfAttention,
                                                            RoFormerSinusoidalPositionalEmbedding)

from course_utils.attention import scaled_dot_product_attention

torch.manual_seed(0)
queries, keys = torch.randn(1, 12, 10, head_dim), torch.randn(1, 12, 10, head_dim)  # (batch, heads, L, head_dim)
rope = positional.RotaryEmbedding(head_dim, max_len=512)
rotated_queries, rotated_keys = rope(queries, keys)
print(f"largest change of a query's length: {(rotated_queries.norm(dim=-1) - queries.norm(dim=-1)).abs().max().item():.5f}")

_, weights = scaled_dot_product_attention(*rope(queries, keys), keys)
_, weights_later = scaled_dot_product_attention(*rope(queries, keys, offset=20), keys)
print(f"attention weights, sequence moved 20 positions later: max change {(weights_later - weights).abs().max().item():.5f}")

sinusoids = RoFormerSinusoidalPositionalEmbedding(10, head_dim).create_weight()[None, None]
hf_queries, hf_keys = RoFormerSelfAttention.apply_rotary_position_embeddings(sinusoids, queries, keys)
print(f"max |ours - Hugging Face RoFormer|: queries {(rotated_queries - hf_queries).abs().max().item():.5f}, "
      f"keys {(rotated_keys - hf_keys).abs().max().item():.5f}")

# %% [markdown]
# ## Longer than training: a measurement
#
# "The sinusoidal encoding works for any length" is often said, and the
# formula is indeed defined at every position. It is also the reason the
# original paper gave for it: learned positions gave "nearly identical
# results", and the sinusoid was chosen "because it may allow the model to
# extrapolate to sequence lengths longer than the ones encountered during
# training" (Vaswani et al., 2017, §3.5). But a model only ever learned to
# read the positions it was trained on. Does it understand positions it never
# saw? Let us measure it instead of assuming it.
#
# The task needs positions and nothing else: a sequence of random tokens
# (16 kinds), and at every position the model must output **the token just
# before it**. Without positions this is impossible; the best a model can do
# is guess a token that occurs often in the sequence (chance is 1/16 ≈ 6%).
# We train four tiny models, identical except for how they learn positions
# (`positional.TinyPositionModel`: width 32, 2 heads, one attention layer
# without a mask and one feed-forward network), on sequences of **32**
# tokens, 400 steps of 64 sequences each, with AdamW on the cross-entropy of
# the predictions (`positional.train_previous_token`), then test them on new
# sequences of 32 and of **64** tokens. The learned table has exactly 32
# rows, as a model trained at length 32 would. Each scheme meets tokens of the
# size its source gives them, so that neither signal drowns the other: the
# sinusoids (entries of ±1) meet tokens scaled by √d_model as in the paper
# (std 1); the learned table and the others meet tokens at GPT-2's std 0.02.
# About 20 seconds.

# %%
# NBVAL_IGNORE_OUTPUT
from tqdm.auto import tqdm

VOCAB, TRAIN_LENGTH, TEST_LENGTH, STEPS = 16, 32, 64, 400
threads = torch.get_num_threads()
torch.set_num_threads(1)  # the same arithmetic whatever the thread count the kernel was given
with tqdm(total=len(positional.POSITION_KINDS) * STEPS, desc="4 tiny models") as bar:
    # seed 0: every model starts from its own seeded weights and sees the same training sequences
    position_models = {kind: positional.train_previous_token(kind, seed=0, steps=STEPS, vocab_size=VOCAB,
                                                             length=TRAIN_LENGTH, on_step=bar.update)
                       for kind in positional.POSITION_KINDS}
torch.set_num_threads(threads)

test_ids, test_targets = positional.previous_token_batch(500, TEST_LENGTH, VOCAB, torch.Generator().manual_seed(99))


@torch.no_grad()
def accuracy(model, length, positions):
    """Share of right predictions at `positions`, running the model on the first `length` tokens."""
    predicted = model(test_ids[:, :length]).argmax(-1)
    return (predicted[:, positions] == test_targets[:, positions]).float().mean().item()


seen, unseen = slice(1, TRAIN_LENGTH), slice(TRAIN_LENGTH, TEST_LENGTH)
extrapolation = {}  # kind -> accuracies, or None where the model cannot run
for kind, model in position_models.items():
    at_train_length = accuracy(model, TRAIN_LENGTH, seen)
    try:
        extrapolation[kind] = (at_train_length, accuracy(model, TEST_LENGTH, seen), accuracy(model, TEST_LENGTH, unseen))
    except ValueError:  # a learned table has no row 32
        extrapolation[kind] = (at_train_length, None, None)
print(f"{'positions':<11} {'length 32':>10} {'length 64: positions 1-31':>26} {'positions 32-63':>16}")
for kind, results in extrapolation.items():
    print(f"{kind:<11} " + " ".join(f"{'cannot run' if value is None else f'{value:.0%}':>{width}}"
                                    for value, width in zip(results, (10, 26, 16))))

blind, sinusoids, table, rotation = (extrapolation[kind] for kind in positional.POSITION_KINDS)
assert all(value < 0.3 for value in blind)  # blind to order: near chance
assert min(sinusoids[0], table[0], rotation[0]) > 0.95  # every model with positions learns the task
assert table[1] is None
assert sinusoids[1] > 0.85 and 0.15 < sinusoids[2] < 0.5  # defined beyond 32, read only in part (21-36% over 8 seeds)
assert rotation[1] > 0.85 and rotation[2] > 0.85  # offsets it knows, at positions it never saw

# %% [markdown]
# The learned table cannot even run at length 64: there is no row 32 to look
# up, and the model says so.

# %%
try:
    position_models["learned"](test_ids)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# The picture of the table above (the exact percentages move by a point or
# two with the machine and the number of threads, so the cell that trains does
# not compare them; its assertions check the bands that the text below
# relies on):

# %%
fig, ax = plt.subplots(figsize=(9, 3.5))
columns = ["length 32", "length 64, positions 1-31", "length 64, positions 32-63 (never seen)"]
for index, (column, colour) in enumerate(zip(columns, ["#4C72B0", "#8172B2", "#C44E52"])):
    values = [results[index] for results in extrapolation.values()]
    ax.bar([kind_index + (index - 1) * 0.27 for kind_index in range(len(values))],
           [0 if value is None else value for value in values], width=0.27, color=colour, label=column)
    for kind_index, value in enumerate(values):
        if value is None:
            ax.text(kind_index + (index - 1) * 0.27, 0.02, "cannot run", rotation=90, ha="center", fontsize=8)
ax.axhline(1 / VOCAB, color="gray", linewidth=0.8, linestyle=":", label="chance, 1/16")
ax.set_xticks(range(len(extrapolation)), list(extrapolation))
ax.set_ylim(0, 1.05)
ax.set_ylabel("accuracy")
ax.set_title("Predict the previous token: trained at length 32, tested at 32 and 64")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
plt.tight_layout()
plt.show()

# %% [markdown]
# What the numbers show:
#
# - **No positions**: 12-15% at any length, about twice chance and no
#   better: it can only guess a token that occurs often in the sequence.
#   Order is invisible to it, as the first part of the lesson predicted.
# - **Learned**: perfect (above 95%) at the training length, and it cannot
#   run at all at 64.
# - **Sinusoidal**: perfect at 32; at 64 it still does well on the first 32
#   positions, but on the positions it never saw (32 to 63) it falls far,
#   to between the model without positions and the perfect score. Over eight
#   seeds (`benchmarks/position_extrapolation.py --seeds 0 1 2 3 4 5 6 7`) it
#   gets 99-100% of the first 32 positions at length 64 and 21-36% of the
#   unseen ones, against 12% without positions. The encoding is *defined*
#   there, yet the model reads those vectors only in part: "works for any
#   length" holds for the formula, not for the trained model. (How it is set
#   up matters: with the tokens left at std 0.02, 35 times smaller than the
#   sinusoids, the same model got only 11-18% of the unseen positions over
#   three seeds.) Press et al. (2022, the ALiBi
#   paper) found the same on real language models: the perplexity of a
#   sinusoidal model grows as soon as its inputs get longer than those it
#   was trained on.
# - **Rotary**: above 90% at the positions it never saw too (100% for each
#   of the eight seeds). Its attention
#   depends only on the offset between query and key, and the offset this task
#   needs (1) was seen at every position in training; the larger offsets that
#   appear at length 64 only need to get little weight.
#
# This is one small task, chosen because it needs relative positions only;
# it favours rotary by design. Longer contexts in real models bring offsets
# never seen in training, and rotary models do not extend for free there
# either (that is why methods that rescale RoPE's angles exist). The lesson to
# keep: whether a model generalises to longer inputs is a measurement, not a
# property of a formula.

# %% [markdown]
# ## Four ways to say where a token is
#
# One more family puts the position straight into the scores: a **relative
# position bias** adds to the score of query i and key j a number that
# depends on the offset j − i. Shaw et al. (2018) add a learned vector per
# clipped offset to the keys (and to the values), so the extra score
# q_i · a_(j−i) depends on the query too; T5 (Raffel et al., 2020) learns one scalar per head for
# each of 32 offset buckets, fine for near offsets and coarser (log-spaced)
# for far ones; ALiBi (Press et al., 2022) learns nothing and subtracts
# m·|i − j| with a fixed slope m per head, which was designed to extrapolate
# and is used by BLOOM and MPT. We did not measure it here.
#
# | | sinusoidal | learned | rotary (RoPE) | relative bias (T5, ALiBi) |
# |---|---|---|---|---|
# | where | added to the input embeddings | added to the input embeddings | rotates q and k in every layer | added to the attention scores in every layer |
# | parameters | none | max_len × d_model | none | T5: 32 buckets × heads; ALiBi: none |
# | longer than training | defined (a formula), but in our test read only in part: 21-36% right at unseen positions, against 12% without positions | no vector beyond max_len: cannot run | defined; above 90% in our test, where only short offsets matter | defined; ALiBi was built to extrapolate (Press et al.) |
# | used by | the original transformer (lesson 07) | BERT (08, 09), GPT-2 (10) | LLaMA, Mistral, Qwen, most recent LLMs | T5; BLOOM and MPT (ALiBi) |
#
# ## Quiz
#
# Answer in the widgets in JupyterLab, or with `answer(...)` in the cell after
# the quiz.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("05")

# %%
# BEGIN SOLUTION
answer("05.shuffle", "B")
answer("05.sinusoidal-facts", ["A", "B", "D"])
answer("05.self-dot", 192)
answer("05.layouts", "C")
answer("05.rope-score", "C")
answer("05.learned-parameters", 196608)
answer("05.keys-not-rotated", "absolute")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - Attention without positions and without a mask is permutation-equivariant:
#   shuffle the tokens and the outputs are shuffled the same way (a causal mask
#   breaks that symmetry). The real MiniLM encoder, blinded
#   to positions, gave "Brutus stabbed Caesar." and "Caesar stabbed Brutus." the
#   very same token vectors.
# - The sinusoidal encoding gives each feature pair a point turning on a
#   circle at its own speed: PE[pos, 2i] = sin(pos·θᵢ), PE[pos, 2i+1] =
#   cos(pos·θᵢ), θᵢ = 10000^(−2i/d_model). It has no parameters and is
#   defined at any position, but a model trained at length 32 read the
#   positions 32-63 it never saw only in part (21-36% right over eight seeds,
#   against 12% without positions, on a task it solved perfectly at 32);
#   rotary reached above 90% there.
# - The dot product of two encodings, Σ cos(k θᵢ), depends only on their
#   distance k and falls off (with ripples) as k grows. Moving k positions is
#   one block-diagonal rotation M_k, the same for every position.
# - Learned position embeddings (BERT, GPT-2) are an `nn.Embedding` over
#   positions: they learn that neighbours are alike, cost max_len × d_model
#   parameters, and stop at max_len.
# - Rotary embeddings rotate queries and keys by their positions' angles, so
#   that q·k depends only on the relative offset; most recent language models
#   use them.
# - The reviewed versions live in `course_utils.positional`:
#   `sinusoidal_encoding`, `SinusoidalPositionalEncoding`,
#   `LearnedPositionalEmbedding`, `RotaryEmbedding`. Lesson 06 puts attention,
#   positions and a feed-forward network together into the transformer block.
