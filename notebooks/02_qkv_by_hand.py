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
# # 02 · Q, K and V by hand
#
# Attention is the one idea that makes a transformer a transformer: every token
# looks at every other token of the sentence and decides how much of each to
# take in. In this lesson you compute it by hand, with numbers small enough to
# check on paper, for six words of *Hamlet*.
#
# **In this lesson you will**
#
# - turn tokens into position-aware vectors E, then into queries, keys and
#   values: Q = E·W_Q, K = E·W_K, V = E·W_V;
# - compute the attention scores Q·Kᵀ, turn each row into weights with a
#   softmax, and mix the values with those weights;
# - write `attention(q, k, v)` yourself in PyTorch (its reviewed twin in
#   `course_utils` is what every later lesson imports), run it on the same
#   numbers and check it against PyTorch's own attention;
# - measure why the scores are divided by √d_k: the variance of q·k grows with
#   d_k, the softmax saturates, and the gradient that reaches the queries
#   becomes tiny for most of them and large for a few;
# - drag a slider that divides one row of scores by √d_k (or a temperature)
#   and watch the softmax sharpen or flatten.

# %% [markdown]
# ## Set-up
#
# As in every lesson, the first cell seeds the random generators, takes the
# libraries offline and returns the device. Everything in this lesson is small
# enough that we compute on the CPU, so the printed numbers are the same on
# every machine.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Six words of Hamlet
#
# Our sentence is the most quoted line in the plays. We find it in the corpus
# and keep its first six words, split with the word tokenizer of lesson 00 (a
# real model would use subword tokens, as in lesson 01; words keep the tables
# readable). Note that "to" and "be" each appear twice: that will matter.

# %%
from course_utils import data

hamlet = data.plays()["hamlet"]
line = hamlet[hamlet.index("To be, or not to be"):].split("\n")[0]
tokens = data.words(line)[:6]
print(line)
print(tokens)

# %% [markdown]
# ## From tokens to vectors: E = embedding + position
#
# A model first looks each token up in an embedding table (lesson 01): one row
# of numbers per word of the vocabulary. We use four numbers per token
# (d_model = 4). In a trained model the table is learned; here we pick small
# numbers by hand so that you can follow every product.
#
# The lookup alone gives both "to"s the same vector, yet the first "to" opens
# the line and the second one does not. So we add a *positional encoding*, a
# vector that depends only on the position. We use the sinusoids of the
# original transformer, PE(pos, 2i) = sin(pos / 10000^(2i/d)) and
# PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), rounded to two decimals; lesson 05
# is all about them. A small helper prints a matrix with its row and column
# labels.

# %%
import numpy as np

embedding = {  # d_model = 4 numbers per word, picked by hand
    "to": [1.0, 0.0, 0.5, 0.0],
    "be": [0.0, 1.0, 0.0, 0.5],
    "or": [0.5, -0.5, 1.0, 0.0],
    "not": [-1.0, 0.5, 0.0, 1.0],
}
d_model = 4
positions = np.arange(len(tokens))[:, None]
frequencies = 1 / 10000 ** (np.arange(0, d_model, 2) / d_model)  # one per pair of columns
P = np.zeros((len(tokens), d_model))
P[:, 0::2], P[:, 1::2] = np.sin(positions * frequencies), np.cos(positions * frequencies)
P = P.round(2)
X = np.array([embedding[token] for token in tokens])
E = X + P

labels = [f"{token} ({position})" for position, token in enumerate(tokens)]


def show(title, matrix, rows, columns):
    """Print a matrix with labelled rows and columns, two decimals."""
    print(title)
    print(" " * 9 + "".join(f"{column:>9}" for column in columns))
    for row, values in zip(rows, matrix):
        print(f"{row:<9}" + "".join(f"{value:9.2f}" for value in values))
    print()


dims = [f"d{i}" for i in range(d_model)]
show("X, the token embeddings", X, labels, dims)
show("P, the positional encoding", P, labels, dims)
show("E = X + P", E, labels, dims)

# %% [markdown]
# Rows 0 and 4 of X are equal (both "to"), rows 0 and 4 of E are not: the
# position is now part of the vector. Everything below starts from E.
#
# ## Queries, keys and values
#
# Each token plays three roles, and each role gets its own view of E, made by
# multiplying with a weight matrix:
#
# - its **query** q = e·W_Q says what the token is looking for;
# - its **key** k = e·W_K says what it offers to the tokens that look for
#   something;
# - its **value** v = e·W_V is what it hands over when it is chosen.
#
# The three matrices are (d_model, d_k) = (4, 3): they map each 4-number
# vector to 3 numbers. A model learns them; ours are again picked by hand from
# 0s, 1s and a −1. One matrix product does all six tokens at once.

# %%
W_Q = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=float)
W_K = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=float)
W_V = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0]], dtype=float)

Q, K, V = E @ W_Q, E @ W_K, E @ W_V
d_k = Q.shape[1]
show("Q = E·W_Q", Q, labels, ["q0", "q1", "q2"])
show("K = E·W_K", K, labels, ["k0", "k1", "k2"])
show("V = E·W_V", V, labels, ["v0", "v1", "v2"])

# %% [markdown]
# Nothing magic happened: each entry is a row of E times a column of W. Here
# is the first number of the query of "not", worked out in full.

# %%
row, column = 3, 0
terms = " + ".join(f"{e:.2f}·{w:.0f}" for e, w in zip(E[row], W_Q[:, column]))
print(f"Q[{row}, {column}] = {terms} = {Q[row, column]:.2f}")

# %% [markdown]
# ## Scores: how well does each query match each key?
#
# The score of query i against key j is their dot product q_i·k_j: large when
# the two vectors point the same way. All of them at once form the (6, 6)
# matrix Q·Kᵀ; row i holds the scores of token i against every token,
# itself included. Then every score is divided by √d_k = √3. The reason is the
# subject of the second half of this lesson; for now, take it as a rule.

# %%
scores = Q @ K.T / np.sqrt(d_k)
show("scores = Q·Kᵀ / √d_k   (row: query, column: key)", scores, labels, tokens)

i, j = 3, 1
print(f"q_{i}·k_{j} = {' + '.join(f'{a:.2f}·{b:.2f}' for a, b in zip(Q[i], K[j]))} "
      f"= {Q[i] @ K[j]:.2f};  / √{d_k} = {scores[i, j]:.2f}")

# %% [markdown]
# The matrix is not symmetric: how much "not" is interested in "be" (row 3,
# column 1) differs from how much "be" is interested in "not" (row 1, column
# 3), because queries and keys come from different matrices.
#
# ## Softmax: from scores to weights
#
# Scores can be any number. Weights should be positive and share out one unit
# of attention among the keys, so each row goes through a softmax:
# w_ij = exp(s_ij) / Σ_j' exp(s_ij'). Subtracting the row's largest score
# first changes nothing mathematically (it cancels in the fraction) and keeps
# exp from overflowing; every library does it.

# %%
def softmax(rows):
    exps = np.exp(rows - rows.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


weights = softmax(scores)
show("weights = softmax(scores), row by row", weights, labels, tokens)
print("every row sums to 1:", np.allclose(weights.sum(axis=1), 1))

# %% [markdown]
# A heatmap reads faster than a table: row i is where token i looks, darker
# is more weight. With hand-picked matrices the pattern means nothing about
# Hamlet, but the mechanics are exactly those of a trained model.

# %%
import matplotlib.pyplot as plt

from course_utils import viz

fig, ax = plt.subplots(figsize=(4.5, 3.5))
viz.plot_attention(weights, labels, ax=ax, title="Attention weights of our hand-made head")
plt.show()

# %% [markdown]
# ## The output: a weighted sum of values
#
# Each token's output is the mix of all the values, in the proportions of its
# row of weights: output_i = Σ_j w_ij v_j, or for all tokens at once
# weights·V. A token that puts most of its weight on one key mostly copies
# that key's value.

# %%
output = weights @ V
show("output = weights·V", output, labels, ["o0", "o1", "o2"])
print("output of 'not (3)' by hand:",
      " + ".join(f"{weights[3, j]:.2f}·v_{j}" for j in range(len(tokens))),
      "=", np.round(output[3], 2))

# %% [markdown]
# That is all of attention: **softmax(Q·Kᵀ / √d_k)·V**. The two "to"s started
# from the same embedding and now have different outputs, because the
# position in E changed their queries.

# %% [markdown]
# ## Exercise: attention(q, k, v)
#
# Now write it yourself, as the function that the rest of the course is built
# on, in PyTorch. It takes tensors q of shape (..., L_q, d_k), k of shape
# (..., L_k, d_k) and v of shape (..., L_k, d_v), where "..." is any number of
# leading axes (a batch, later also heads), and returns the pair
# `(output, weights)`:
#
# - weights = softmax(q·kᵀ / √d_k), the softmax taken over the keys, shape
#   (..., L_q, L_k);
# - output = weights·v, shape (..., L_q, d_v).
#
# The NumPy cells above did it for one sequence, a 2-D array. Yours must work
# whatever axes come first: think about which two axes of k to swap, and where
# to read d_k from. The checker tries a batch, and a single sequence with 3
# queries, 4 keys and values wider than the keys, on random inputs the lesson
# never uses; it names the usual slips (a forgotten √d_k, a softmax over the
# wrong axis, a transpose that reverses every axis of a batch instead of the
# last two).

# %%
import math

import torch


def attention(q, k, v):
    """Scaled dot-product attention: (softmax(q kᵀ / √d_k) v, the weights)."""
    # BEGIN SOLUTION
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ v, weights
    # END SOLUTION


# %%
from course_utils.classroom.checks.attention import check_attention

check_attention(attention)

# %% [markdown]
# ## The same in PyTorch
#
# In a model the three matrices live in `nn.Linear(d_model, d_k, bias=False)`
# layers. A linear layer stores its weight as (out, in), the transpose of our
# W, and computes x·weightᵀ, so we copy W_Qᵀ in. Then your `attention` runs on
# the tensors, if it passed its check, or else the course's reviewed version
# (`yours_if_passed` says which), and must give NumPy's numbers. We keep
# float64, the precision of NumPy, to compare exactly.

# %%
from torch import nn

from course_utils.attention import scaled_dot_product_attention
from course_utils.classroom.checks import yours_if_passed

E_t = torch.from_numpy(E)
projections = {}
for name, W in [("query", W_Q), ("key", W_K), ("value", W_V)]:
    projections[name] = nn.Linear(d_model, d_k, bias=False).double()
    with torch.no_grad():
        projections[name].weight.copy_(torch.from_numpy(W.T))

q, k, v = (projections[name](E_t) for name in ["query", "key", "value"])
attend = yours_if_passed(attention, "02.attention", scaled_dot_product_attention)
output_t, weights_t = attend(q, k, v)
print("weights equal NumPy's:", np.allclose(weights_t.detach().numpy(), weights))
print("output equals NumPy's: ", np.allclose(output_t.detach().numpy(), output))

# %% [markdown]
# The course keeps a reviewed version of these lines in
# `course_utils.attention.scaled_dot_product_attention`; later lessons import
# it. PyTorch has its own, `torch.nn.functional.scaled_dot_product_attention`,
# which returns only the output. All three agree.

# %%
import torch.nn.functional as F

with torch.no_grad():
    ours, ours_weights = scaled_dot_product_attention(q, k, v)
    pytorch = F.scaled_dot_product_attention(q, k, v)
print("course_utils equals the run above:", torch.allclose(ours, output_t) and torch.allclose(ours_weights, weights_t))
print("PyTorch's function agrees:        ", torch.allclose(pytorch, output_t))

# %% [markdown]
# What runs inside `F.scaled_dot_product_attention`? PyTorch keeps several
# implementations, called *backends*, and picks one by device, dtype and
# shape: the *math* backend, the same few lines as ours, weights included; and
# *fused* kernels (FlashAttention, and on GPUs also memory-efficient and cuDNN
# attention) that compute the output one block of keys at a time, with a
# running softmax, so that the full (tokens × tokens) matrix of weights is
# never stored. The context manager `torch.nn.attention.sdpa_kernel` allows
# one backend only; asking each one whether it accepts our inputs shows which
# can run, and when one refuses, PyTorch says why.

# %%
import warnings

from torch.nn.attention import SDPBackend, sdpa_kernel


def accepts(backend, q, k, v):
    """Does PyTorch's attention `backend` run on these inputs? "yes", or "no" and PyTorch's reason."""
    with warnings.catch_warnings(record=True) as reasons, sdpa_kernel(backend), torch.no_grad():
        warnings.simplefilter("always")
        try:
            F.scaled_dot_product_attention(q, k, v)
            return "yes"
        except RuntimeError:
            return "no: " + str(reasons[-1].message).split(" (Triggered")[0]


for name, inputs in [(f"our q, k, v: {tuple(q.shape)}, {q.dtype}, {q.device}", (q, k, v)),
                     ("the same numbers as (batch, heads, tokens, d_k) = (1, 1, 6, 3)", (q[None, None], k[None, None], v[None, None]))]:
    print(name)
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        print(f"  {backend.name:<16} {accepts(backend, *inputs)}")

# %% [markdown]
# For our 2-D tensors only the math backend applies, so the cell before ran
# the same computation as our three lines. Given the same numbers as a 4-D
# (batch, heads, tokens, d_k) tensor, the FlashAttention kernel accepts them,
# on a CPU too, and PyTorch then prefers it. Never storing the weights is what
# saves memory on long sequences, and it is why the function returns the
# output only: when we want to look at the weights, as in lesson 03, we use
# our own function.

# %% [markdown]
# ## Why divide by √d_k?
#
# Think of one query and one key as d_k random numbers each, with mean 0 and
# variance σ². Their dot product q·k = Σ q_i k_i adds up d_k independent
# products, each of variance σ⁴, so its variance is **d_k·σ⁴**: it grows in
# proportion to d_k, and its typical size like √d_k.
#
# How large is σ² in a fresh model? We measure it: 20,000 inputs of variance
# 1 through two freshly initialised `nn.Linear(d_model, d_k, bias=False)`
# layers, as W_Q and W_K. (PyTorch's default draws each weight uniformly
# between ±1/√d_model, a variance of 1/(3·d_model), so we expect σ² ≈ 1/3 and
# var(q·k) ≈ d_k/9.)

# %%
d_model_random = 512
inputs = torch.randn(20_000, d_model_random, generator=torch.Generator().manual_seed(0))
table = [f"{'d_k':>5} {'var(q_i)':>9} {'var(q·k)':>9} {'d_k / 9':>8} {'var(q·k / √d_k)':>16}"]
for d in (16, 64, 256):
    W_Q_random, W_K_random = (nn.Linear(d_model_random, d, bias=False) for _ in range(2))
    with torch.no_grad():
        q_init, k_init = W_Q_random(inputs[:10_000]), W_K_random(inputs[10_000:])  # queries and keys of different tokens
        dots = (q_init * k_init).sum(dim=-1)
    table.append(f"{d:>5} {q_init.var().item():>9.2f} {dots.var().item():>9.1f} {d / 9:>8.1f} {(dots / math.sqrt(d)).var().item():>16.2f}")
print("\n".join(table))

# %% [markdown]
# At PyTorch's default initialisation a query's entries have a variance of
# about 1/3, not 1, and q·k a variance of about d_k/9: the level depends on the
# initialisation (and training moves it), the growth in proportion to d_k does
# not. To see the growth alone, the original paper's argument (Vaswani et al.,
# 2017, footnote 4) takes entries of variance 1, so that var(q·k) = d_k;
# real models use d_k = 64 or more, scores of ±8, ±16, ... Dividing by √d_k
# brings the variance back to 1 (to σ⁴ in general), whatever d_k is.
#
# We do not have to believe the algebra: we measure it, with 20,000 random
# unit-variance pairs for every d_k from 2 to 512.

# %%
generator = torch.Generator().manual_seed(0)
dimensions = [2**n for n in range(1, 10)]
variance, scaled_variance = [], []
for d in dimensions:
    q_random = torch.randn(20_000, d, generator=generator)
    k_random = torch.randn(20_000, d, generator=generator)
    dots = (q_random * k_random).sum(dim=-1)
    variance.append(dots.var().item())
    scaled_variance.append((dots / math.sqrt(d)).var().item())

print(f"{'d_k':>5} {'var(q·k)':>10} {'var(q·k / √d_k)':>17}")
for d, raw, scaled in zip(dimensions, variance, scaled_variance):
    print(f"{d:>5} {raw:>10.1f} {scaled:>17.2f}")

# %% [markdown]
# On log-log axes the unscaled variance lies on the line y = d_k; the scaled
# one stays flat at 1.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.loglog(dimensions, variance, "o-", label="q·k")
ax.loglog(dimensions, scaled_variance, "s-", label="q·k / √d_k")
ax.loglog(dimensions, dimensions, "k:", label="y = d_k")
ax.set_xscale("log", base=2)
ax.set_xlabel("d_k")
ax.set_ylabel("variance of the score")
ax.set_title("Scores of random unit-variance q and k")
ax.legend()
plt.show()

# %% [markdown]
# ### Large scores saturate the softmax
#
# Why do large scores hurt? The softmax exponentiates them: a gap of 10
# between two scores becomes a ratio of e¹⁰ ≈ 22,000. One query against ten
# keys at d_k = 512 shows it: without the scale, one key takes (almost) all the
# weight.

# %%
q_one = torch.randn(1, 512, generator=generator)
k_ten = torch.randn(10, 512, generator=generator)
one_row = (q_one @ k_ten.T).squeeze(0)


def row_of(values, digits):
    return " ".join(f"{value:7.{digits}f}" for value in values.tolist())


print("scores q·k:             ", row_of(one_row, 1))
print("softmax(q·k):           ", row_of(one_row.softmax(-1), 4))
print("softmax(q·k / √512):    ", row_of((one_row / math.sqrt(512)).softmax(-1), 4))

# %% [markdown]
# ### Try it: one row of scores, divided by a number you choose
#
# Drag the slider: it divides the ten unscaled scores above by any number from
# 0.25 to 64 and draws the softmax of the result. It starts at √512 ≈ 22.6,
# the attention scale. Drag left, towards 1 (no scaling), and one bar takes
# all; drag right and the bars level out towards 1/10. Dividing the scores by
# a *temperature* before a softmax is the same operation (lesson 10 samples
# text with it). In a headless run, such as the tests, only the starting
# state is drawn.

# %%
from course_utils.widgets import softmax_scale_explorer

softmax_scale_explorer(one_row.numpy(), default=math.sqrt(512), labels=[f"k{j}" for j in range(10)])

# %% [markdown]
# A saturated softmax is also a bad place to learn from. Its derivative is
# ∂w_i/∂s_j = w_i(δ_ij − w_j): when one weight is 1 and the others are 0,
# every entry is 0, so nothing flows back to the scores (and through them to
# W_Q and W_K). We check the formula against autograd once, then measure, for
# 2,000 random queries against 10 keys per d_k, the largest weight of each row
# and the size (Frobenius norm) of this Jacobian.

# %%
def softmax_jacobian(w):
    """∂w_i/∂s_j = w_i (δ_ij − w_j) for each row of weights (..., L) -> (..., L, L)."""
    return torch.diag_embed(w) - w.unsqueeze(-1) * w.unsqueeze(-2)


s = torch.randn(10, generator=generator)
autograd = torch.autograd.functional.jacobian(lambda x: x.softmax(-1), s)
assert torch.allclose(softmax_jacobian(s.softmax(-1)), autograd, atol=1e-6)

largest = {"unscaled": [], "scaled": []}
gradient = {"unscaled": [], "scaled": []}
for d in dimensions:
    q_random = torch.randn(2_000, 1, d, generator=generator)
    k_random = torch.randn(2_000, 10, d, generator=generator)
    raw = (q_random * k_random).sum(dim=-1)  # 2,000 rows of 10 scores
    for name, row_scores in [("unscaled", raw), ("scaled", raw / math.sqrt(d))]:
        w = row_scores.softmax(dim=-1)
        largest[name].append(w.max(dim=-1).values.mean().item())
        gradient[name].append(softmax_jacobian(w).norm(dim=(-2, -1)).mean().item())

print(f"{'d_k':>5} {'max weight':>19} {'|Jacobian|':>19}")
print(f"{'':>5} {'unscaled':>9} {'scaled':>9} {'unscaled':>9} {'scaled':>9}")
for n, d in enumerate(dimensions):
    print(f"{d:>5} {largest['unscaled'][n]:>9.3f} {largest['scaled'][n]:>9.3f}"
          f" {gradient['unscaled'][n]:>9.3f} {gradient['scaled'][n]:>9.3f}")

# %% [markdown]
# Side by side: without the scale, the largest weight creeps towards 1 (the
# softmax becomes an argmax) and the mean Jacobian shrinks fivefold between
# d_k = 2 and d_k = 512. With it, both stay where they were at d_k = 2, at any
# width.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, style in [("unscaled", "o-"), ("scaled", "s-")]:
    label = "softmax(q·k)" if name == "unscaled" else "softmax(q·k / √d_k)"
    left.plot(dimensions, largest[name], style, label=label)
    right.plot(dimensions, gradient[name], style, label=label)
left.set_ylabel("mean largest weight of a row")
left.set_title("Saturation: one key takes all")
right.set_ylabel("mean |∂w/∂s| (Frobenius)")
right.set_title("The softmax's Jacobian shrinks")
for ax in (left, right):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k")
    ax.set_ylim(bottom=0)
    ax.legend()
left.axhline(1 / 10, color="gray", linestyle=":")
left.text(2, 0.12, "uniform: 1/10", color="gray")
left.set_ylim(0, 1)
plt.show()

# %% [markdown]
# ### The gradient that reaches the query
#
# The Jacobian is only one factor of what learning sees. The gradient that
# reaches a query is ∂L/∂q = Σ_j (∂L/∂s_j) k_j, times 1/√d_k when we scale:
# the Jacobian's output is multiplied by keys whose length grows like √d_k.
# (Through q = e·W_Q, the gradient of W_Q is eᵀ·∂L/∂q, so it follows this
# one.) Which effect wins? We measure it with autograd: for each d_k,
# 4,000 random queries against 10 keys (entries of variance 1), values of a
# fixed width 8 and a random linear loss of the output, once without and once
# with the scale, on the same numbers. A mean alone can hide a lot, so we
# report the median and the mean of the gradient's length, and the share of
# queries whose gradient is below 10⁻³, practically nothing.

# %%
def gradient_lengths(d, scale, rows=4_000, keys=10, d_v=8):
    """|∂L/∂q| for `rows` random queries of width d, each against its own `keys` keys."""
    q_random = torch.randn(rows, 1, d, generator=torch.Generator().manual_seed(d), requires_grad=True)
    k_random, v_random, direction = (torch.randn(rows, *shape, generator=torch.Generator().manual_seed(d + seed))
                                     for seed, shape in [(1, (keys, d)), (2, (keys, d_v)), (3, (1, d_v))])
    output = ((q_random @ k_random.transpose(-2, -1)) * scale).softmax(dim=-1) @ v_random
    (output * direction).sum().backward()  # a random linear loss of every output
    return q_random.grad.norm(dim=-1).flatten()


to_query = {"unscaled": [], "scaled": []}
for d in dimensions:
    for name, scale in [("unscaled", 1.0), ("scaled", 1 / math.sqrt(d))]:
        lengths = gradient_lengths(d, scale)
        to_query[name].append((lengths.median().item(), lengths.mean().item(), (lengths < 1e-3).float().mean().item()))

print(f"{'d_k':>5} {'median |∂L/∂q|':>19} {'mean |∂L/∂q|':>19} {'share below 1e-3':>19}")
print(f"{'':>5}" + f" {'unscaled':>9} {'scaled':>9}" * 3)
for n, d in enumerate(dimensions):
    (u_median, u_mean, u_share), (s_median, s_mean, s_share) = to_query["unscaled"][n], to_query["scaled"][n]
    print(f"{d:>5} {u_median:>9.3f} {s_median:>9.3f} {u_mean:>9.2f} {s_mean:>9.2f} {u_share:>9.2f} {s_share:>9.2f}")

# %% [markdown]
# The measurement says more than "the gradient vanishes":
#
# - **With the scale**, the median and the mean stay between about 0.6 and 0.9 at
#   every d_k, and no query is left without a gradient.
# - **Without it, the typical query starves.** The median first grows with
#   d_k (longer keys, a softmax not yet saturated), then collapses: at
#   d_k = 512 it is more than a hundred times smaller than with the scale, and
#   43% of the queries get practically nothing.
# - **Yet the mean grows**, to about 3.4 times the scaled one: the few queries
#   whose two best keys are nearly tied sit on the steep part of the softmax
#   and get large gradients.
#
# So without the scale, learning is erratic rather than merely slow: most
# queries barely move while a few jump. The plot shows both curves, median
# and mean, drifting apart; with 1/√d_k they stay together, flat.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, colour in [("unscaled", "C0"), ("scaled", "C1")]:
    label = "softmax(q·k)" if name == "unscaled" else "softmax(q·k / √d_k)"
    ax.plot(dimensions, [row[0] for row in to_query[name]], "o-", color=colour, label=f"{label}: median")
    ax.plot(dimensions, [row[1] for row in to_query[name]], "s--", color=colour, label=f"{label}: mean")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("d_k")
ax.set_ylabel("|∂L/∂q|")
ax.set_title("The gradient that reaches the query")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Quiz
#
# Eight questions on what you computed. Answer them in the widgets, or in code
# in the cell after them.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("02")

# %%
# BEGIN SOLUTION
answer("02.why-sqrt", "B")
answer("02.variance", 64)
answer("02.output-shape", "A")
answer("02.weights", ["A", "B"])
answer("02.shift", "A")
answer("02.top-weight", 0.79)
answer("02.sharper", ["A", "C"])
answer("02.uniform-limit", "1/L")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A token enters attention as E = embedding + positional encoding, so equal
#   words at different places get different vectors.
# - Three learned matrices give each token a query (what it looks for), a key
#   (what it offers) and a value (what it hands over): Q = E·W_Q, K = E·W_K,
#   V = E·W_V.
# - Attention is softmax(Q·Kᵀ / √d_k)·V: one score per (query, key) pair, a
#   softmax over the keys of each row, and a weighted sum of the values. Our
#   NumPy, our PyTorch and PyTorch's own function agree.
# - `F.scaled_dot_product_attention` picks a backend by device, dtype and
#   shape: our 2-D inputs take the math path (the same three lines); 4-D
#   (batch, heads, tokens, d_k) inputs can take a fused kernel that never
#   stores the weights.
# - The variance of q·k grows in proportion to d_k: d_k for unit-variance
#   entries (measured: 516.6 at d_k = 512), about d_k/9 at PyTorch's default
#   initialisation, where a query's entries have variance about 1/3. Unscaled,
#   such scores saturate the softmax (largest weight 0.95 at d_k = 512): the
#   median gradient that reaches a query collapses (over 100× smaller at
#   d_k = 512, 43% of queries get almost none) while the mean grows, driven by
#   a few near-ties. Dividing by √d_k keeps the variance constant, and the
#   gradient steady for every query, at any width.
# - Lesson 03 adds masks, to hide padding and the future, and looks at the
#   attention of a real pretrained model.
