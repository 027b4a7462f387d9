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
# # 03 · Masks and attention maps
#
# In lesson 02 every token could look at every other token. Real models need
# to forbid some of those looks: a batch of sentences is padded to one length,
# and the padding must not be attended to; a model that writes text one token
# at a time must not peek at the tokens it has not written yet. Both are done
# with a *mask*. Then we open a real pretrained encoder and look at where its
# 72 attention heads look.
#
# **In this lesson you will**
#
# - pad a batch with the real MiniLM tokenizer and see how much attention
#   leaks onto `[PAD]` without a padding mask, and none with it;
# - build a causal mask that stops each token from seeing the future, and
#   combine it with a padding mask by broadcasting;
# - learn the one right place for a mask: −∞ on the scores, before the softmax;
# - check that our masked attention equals
#   `torch.nn.functional.scaled_dot_product_attention`, mask by mask;
# - pad the same batch on the left, see why a causal mask then leaves some
#   queries with nothing to attend to, what that does to the softmax and to
#   the gradients, and why decoder models pad on the left to generate;
# - write masked attention that such a query cannot break, and see the lesson
#   run it;
# - draw the attention maps of all 6 layers × 12 heads of the pretrained
#   encoder for "The cat chased the mouse until it got tired", and ask which
#   words "it" attends to.

# %% [markdown]
# ## Set-up
#
# The usual first cell. It returns the device, which we use once, to check our
# attention against PyTorch's fused kernel where it runs fastest; every
# printed number is computed on the CPU so that it is the same on every
# machine.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## A batch needs padding
#
# Models process several sentences at once, as one tensor, so the sentences
# must have the same length. The tokenizer pads the shorter ones with a
# `[PAD]` token and returns an `attention_mask`: 1 for a real token, 0 for
# padding. Here are three lines of *Hamlet*, through the tokenizer of the
# pretrained all-MiniLM-L6-v2 encoder (a 6-layer BERT, loaded from a local
# folder; nothing is downloaded).

# %%
from course_utils.pretrained import load_encoder

tokenizer, encoder = load_encoder()
lines = ["To be, or not to be: that is the question:", "Alas, poor Yorick!", "Get thee to a nunnery."]
batch = tokenizer(lines, padding=True, return_tensors="pt")
print("input_ids:", tuple(batch["input_ids"].shape), "(sentences, tokens)\n")
for ids, attention_mask in zip(batch["input_ids"], batch["attention_mask"]):
    print(" ".join(tokenizer.convert_ids_to_tokens(ids)))
    print("attention_mask:", attention_mask.tolist(), "\n")

# %% [markdown]
# ## Real queries, keys and values
#
# To see what padding does, we need queries, keys and values for this batch.
# We take the real ones: the encoder turns the tokens into vectors E (token,
# position and segment embeddings, summed and normalised: lesson 02's E, 384
# numbers wide),
# and its first layer multiplies E by its learned W_Q, W_K and W_V, stored in
# `nn.Linear` layers exactly as in lesson 02. The 384 columns are 12 heads of
# 32: we view them as a head axis, so q, k and v are (sentences, heads,
# tokens, 32). Lesson 04 takes multi-head attention apart; here, just think of
# it as 12 attentions side by side.

# %%
import torch

layer = encoder.encoder.layer[0].attention.self  # the first layer's W_Q, W_K, W_V
heads, head_width = encoder.config.num_attention_heads, encoder.config.hidden_size // encoder.config.num_attention_heads


def split_heads(x):
    """(sentences, tokens, 384) -> (sentences, 12 heads, tokens, 32)."""
    return x.view(x.size(0), x.size(1), heads, head_width).transpose(1, 2)


with torch.no_grad():
    E = encoder.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    q, k, v = (split_heads(projection(E)) for projection in (layer.query, layer.key, layer.value))
print("E:", tuple(E.shape), "  q, k, v:", tuple(q.shape))

# %% [markdown]
# ## Without a mask, attention leaks onto the padding
#
# `course_utils.attention.scaled_dot_product_attention` is the reviewed
# version of the `attention` you wrote in lesson 02, with an optional mask.
# Without one, the 9 real tokens of "Alas, poor Yorick!" also attend to the 6
# `[PAD]`s. How much of their attention goes there, on average over the 12
# heads?

# %%
from course_utils.attention import scaled_dot_product_attention

yorick = 1
real = batch["attention_mask"][yorick].bool()  # True for the 9 real tokens
tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][yorick])
_, weights_unmasked = scaled_dot_product_attention(q, k, v)
leak = weights_unmasked[yorick][:, real][:, :, ~real].sum(-1)  # (heads, real queries): weight on [PAD]
print("share of each real token's attention on [PAD], mean over heads:")
for token, share in zip(tokens, leak.mean(0)):
    print(f"  {token:<8} {share:.2f}")
print(f"overall: {leak.mean():.2f}")

# %% [markdown]
# Almost a third of the attention goes to tokens that mean nothing, and the
# amount depends on how long the *other* sentences of the batch happen to be.
# A sentence must not read differently because of its neighbours.
#
# ## The padding mask
#
# The fix is a boolean mask with True where attending is allowed.
# `course_utils.attention.padding_mask` turns the tokenizer's
# (sentences, tokens) `attention_mask` into shape (sentences, 1, 1, tokens):
# the two 1s let PyTorch *broadcast* it over the 12 heads and over every
# query, so one row of True/False per sentence says "these keys may be
# attended to". Masked keys get weight exactly 0.

# %%
from course_utils.attention import padding_mask

mask = padding_mask(batch["attention_mask"])
print("padding mask:", tuple(mask.shape), "broadcasts against the scores", tuple(weights_unmasked.shape))
print(mask[yorick, 0, 0].int().tolist())
_, weights_masked = scaled_dot_product_attention(q, k, v, mask)
print(f"weight on [PAD] with the mask: {weights_masked[yorick][..., ~real].abs().max().item():.4f}")

# %% [markdown]
# Side by side, for the head of "Alas, poor Yorick!" that leaks the most:
# without the mask the real tokens spread weight over the six `[PAD]` columns
# on the right; with it, those columns are empty. The `[PAD]` *rows* (queries)
# are still computed: a padding mask hides keys, not queries. Their outputs are
# garbage, and they stay harmless only if everything downstream uses the mask
# too: the pooling that turns token vectors into one sentence vector, and the
# loss, must skip the padded positions. We measure the pooling below.

# %%
import matplotlib.pyplot as plt

from course_utils import viz

head = int(leak.mean(dim=1).argmax())  # the head that puts the most weight on [PAD]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
viz.plot_attention(weights_unmasked[yorick, head], tokens, ax=axes[0],
                   title=f"head {head}, no mask: {leak[head].mean():.0%} of the weight on [PAD]")
viz.plot_attention(weights_masked[yorick, head], tokens, ax=axes[1], title=f"head {head}, padding mask: [PAD] keys get 0")
plt.tight_layout()
plt.show()

# %% [markdown]
# Is this what the real model does? `course_utils.pretrained.attention_maps`
# runs the encoder on one sentence, alone (no padding at all), and returns
# its attention weights, (layers, heads, tokens, tokens). Our masked attention
# on the padded batch gives, for the real tokens, the first layer's weights of
# the sentence alone, equal up to float32 rounding: the differences are of
# order 10⁻⁶ (their exact size depends on how the sums are split across CPU
# threads), so we test them against a tolerance of 10⁻⁵.

# %%
from course_utils.pretrained import attention_maps

alone_tokens, alone_maps = attention_maps(lines[yorick])
n = len(alone_tokens)
ours = weights_masked[yorick, :, :n, :n]
print("tokens alone:", " ".join(alone_tokens))
print("masked batch == sentence alone (layer 0, all 12 heads):", torch.allclose(ours, alone_maps[0], atol=1e-5))
print("unmasked batch == sentence alone:                      ",
      torch.allclose(weights_unmasked[yorick, :, :n, :n], alone_maps[0], atol=1e-5))

# %% [markdown]
# The same holds for the whole model: run all six layers on the padded batch,
# with and without the `attention_mask`, and compare the final vectors of
# Yorick's real tokens with those of the sentence alone. Then the pooling:
# this model's sentence vector is the mean of its token vectors, and the mean
# over all 15 positions of the padded row takes in the six garbage `[PAD]`
# vectors; the mean over the real positions only (the mask again) does not.

# %%
with torch.no_grad():
    alone = encoder(**tokenizer(lines[yorick], return_tensors="pt")).last_hidden_state[0]
    padded_row = encoder(**batch).last_hidden_state[yorick]  # all 15 positions, 6 of them [PAD]
    without_mask = encoder(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                           attention_mask=torch.ones_like(batch["attention_mask"])).last_hidden_state[yorick, :n]
with_mask = padded_row[:n]
print("token vectors, with the attention_mask:    largest change below 1e-5:",
      (with_mask - alone).abs().max().item() < 1e-5)
print(f"token vectors, without the attention_mask: largest change {(without_mask - alone).abs().max().item():.2f}")
sentence_alone = alone.mean(dim=0)
mean_over_real = padded_row[real].mean(dim=0)
mean_over_all = padded_row.mean(dim=0)
print("sentence vector, mean over the real tokens: largest change below 1e-5:",
      (mean_over_real - sentence_alone).abs().max().item() < 1e-5)
print(f"sentence vector, mean over all 15 positions: largest change {(mean_over_all - sentence_alone).abs().max().item():.2f}")

# %% [markdown]
# ## The causal mask: no peeking at the future
#
# A model that generates text (GPT, lesson 10) predicts each token from the
# ones before it. In training it sees the whole sentence at once, so attention
# must forbid token i from looking at tokens i+1, i+2, ...: otherwise it would
# learn to copy the answer instead of predicting it. The *causal mask* allows
# query i to attend to keys 0..i: True on and below the diagonal, a lower
# triangle.

# %%
from course_utils import attention

print(attention.causal_mask(6).int())

# %% [markdown]
# Applied to the first line of the batch (with the encoder's layer-0 head 0,
# only to show the pattern: this encoder was trained without a causal mask),
# every row now stops at the diagonal. The first token can only attend to
# itself, so its row is a single 1.

# %%
first = 0
first_tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][first])
_, weights_causal = scaled_dot_product_attention(q, k, v, attention.causal_mask(len(first_tokens)))
fig, ax = plt.subplots(figsize=(6, 5))
viz.plot_attention(weights_causal[first, 0], first_tokens, ax=ax, title="causal mask: each token sees only its past")
plt.show()

# %% [markdown]
# ## Exercise 1: causal_mask(n)
#
# Write `causal_mask(n)`: a (n, n) tensor of dtype `torch.bool`, True where
# query i (the row) may attend to key j (the column), that is where j ≤ i.
# The True entries form the lower triangle of a square, diagonal included:
# PyTorch has a function for the triangle of a matrix, and positions can also
# be compared directly. The checker names the usual slips: the mask inverted,
# the upper triangle, the diagonal left out, a float mask.

# %%
def causal_mask(n):
    """(n, n) bool: True where query i may attend to key j, i.e. j <= i."""
    # BEGIN SOLUTION
    return torch.ones(n, n, dtype=torch.bool).tril()
    # END SOLUTION


# %%
from course_utils.classroom.checks.attention import check_causal_mask

check_causal_mask(causal_mask)

# %% [markdown]
# The next section builds its causal mask with your `causal_mask` once it
# passes its checks (`yours_if_passed` says which runs); the rest of the
# lesson uses the reviewed `attention.causal_mask`, which also takes a device
# and an offset that later lessons need.
#
# ## Where to apply a mask: −∞ before the softmax
#
# A mask must give the forbidden keys weight 0 *and* leave the allowed weights
# summing to 1. Only one of three tempting ways does both. Take one query with
# four scores, the last key forbidden:
#
# - **−∞ before the softmax**: exp(−∞) = 0, so the forbidden key gets 0 and
#   the softmax shares the whole unit among the others;
# - zeroing the weight **after** the softmax: the key gets 0, but the row now
#   sums to less than 1, as if part of the attention had vanished;
# - setting the forbidden **score** to 0: exp(0) = 1, so the key still gets
#   weight.

# %%
scores = torch.tensor([2.0, 1.0, 0.5, 3.0])
allowed = torch.tensor([True, True, True, False])
variants = {
    "-inf before the softmax": scores.masked_fill(~allowed, float("-inf")).softmax(-1),
    "zeroed after the softmax": scores.softmax(-1) * allowed,
    "score set to 0": scores.masked_fill(~allowed, 0.0).softmax(-1),
}
print(f"{'':<26}" + "".join(f"{'key ' + str(j):>8}" for j in range(4)) + f"{'sum':>8}")
for name, row in variants.items():
    print(f"{name:<26}" + "".join(f"{w:8.4f}" for w in row.tolist()) + f"{row.sum().item():8.4f}")

# %% [markdown]
# ## Combining masks
#
# A decoder trained on a padded batch needs both masks at once: a key is
# allowed if it is in the past *and* real. Because the causal mask is
# (tokens, tokens) and the padding mask (sentences, 1, 1, tokens), `&`
# broadcasts them to (sentences, 1, tokens, tokens): one mask per sentence,
# shared by the heads. The picture shows the three masks for "Alas, poor
# Yorick!" (dark = may attend).
#
# Look at what the padding part adds to the causal mask when the padding is on
# the right: only the rows of the `[PAD]` queries change. A real query i sees
# keys 0..i, and with right padding those are all real, so the causal mask
# already hides every `[PAD]` from it. We check it row by row.

# %%
from course_utils.classroom.checks import yours_if_passed

causal = yours_if_passed(causal_mask, "03.causal_mask", attention.causal_mask)
length = batch["input_ids"].size(1)
combined = causal(length) & mask
print("causal", tuple(causal(length).shape), "& padding", tuple(mask.shape), "->", tuple(combined.shape))

pictures = {"padding": mask[yorick, 0].expand(length, length), "causal": causal(length),
            "causal & padding": combined[yorick, 0]}
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (name, picture) in zip(axes, pictures.items()):
    ax.imshow(picture.numpy(), cmap="Blues", vmin=0, vmax=1.3)
    ax.set_xticks(range(length), tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(length), tokens, fontsize=7)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.grid(False)
    ax.set_title(f"{name} mask")
plt.tight_layout()
plt.show()

changed = (combined[yorick, 0] != causal(length)).any(dim=-1)
print("rows (queries) where the padding mask changes the causal mask:", [tokens[i] + f" ({i})" for i in changed.nonzero().flatten().tolist()])
print("is every changed row a [PAD] query?", changed.equal(~real))

# %% [markdown]
# ## Equal to PyTorch's scaled_dot_product_attention
#
# `torch.nn.functional.scaled_dot_product_attention` computes the same thing
# in one call; for 4-D inputs like ours it can run a fused kernel that never
# stores the weights (lesson 02 asked PyTorch which backends accept which
# inputs). Its boolean `attn_mask` follows the same
# convention as ours, True = may attend, and `is_causal=True` builds the
# causal mask for you. (Careful: `nn.MultiheadAttention` uses the opposite
# convention, True = masked out; lesson 04 meets it.) We compare the reviewed
# attention with PyTorch's on the real q, k, v of the batch, on your device,
# for every mask of this lesson.

# %%
import torch.nn.functional as F

q_d, k_d, v_d = q.to(device), k.to(device), v.to(device)
masks = {"no mask": None, "padding": mask, "causal": attention.causal_mask(length), "causal & padding": combined}
for name, m in masks.items():
    m = None if m is None else m.to(device)
    ours_d, _ = scaled_dot_product_attention(q_d, k_d, v_d, m)
    theirs = F.scaled_dot_product_attention(q_d, k_d, v_d, attn_mask=m)
    print(f"{name:<18} equal: {torch.allclose(ours_d, theirs, atol=1e-5)}")
theirs = F.scaled_dot_product_attention(q_d, k_d, v_d, is_causal=True)
ours_d, _ = scaled_dot_product_attention(q_d, k_d, v_d, attention.causal_mask(length, device=device))
print(f"{'is_causal=True':<18} equal: {torch.allclose(ours_d, theirs, atol=1e-5)}")

# %% [markdown]
# One more trap: PyTorch also accepts a *float* mask, which it **adds** to the
# scores. A float mask of 0 (allowed) and −∞ (forbidden) is the same as our
# boolean one; a float mask of 1s and 0s masks nothing at all, it only shifts
# scores by 1, and that is why the exercise asks for `torch.bool`.

# %%
additive = torch.zeros(length, length).masked_fill(~attention.causal_mask(length), float("-inf"))
ones_and_zeros = attention.causal_mask(length).float()
reference, _ = scaled_dot_product_attention(q, k, v, attention.causal_mask(length))
print("float mask of 0 / -inf equals the bool mask:", torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=additive), reference, atol=1e-5))
print("float mask of 1 / 0 equals the bool mask:   ", torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=ones_and_zeros), reference, atol=1e-5))

# %% [markdown]
# ## Left padding, and queries with nothing to attend to
#
# The tokenizer pads on the right by default; `padding_side="left"` puts the
# `[PAD]`s in front instead. The same three lines, padded both ways, and the
# token in the last column of each row:

# %%
batch_left = tokenizer(lines, padding=True, padding_side="left", return_tensors="pt")
for side, padded in [("right", batch), ("left", batch_left)]:
    print(f"padded on the {side}:")
    for ids in padded["input_ids"]:
        print("  " + " ".join(tokenizer.convert_ids_to_tokens(ids)))
    print("  last column:", tokenizer.convert_ids_to_tokens(padded["input_ids"][:, -1]), "\n")

# %% [markdown]
# Why would anyone pad on the left? A model that writes text (a decoder-only
# model like GPT, lesson 10) generates a whole batch at once: it reads the
# prediction at the last position of every row, `logits[:, -1]`, and appends
# the chosen token as one new column at the end of every row. That only works
# if the last real token of every row sits at the same, last, position. With
# right padding, the last column of the short rows is `[PAD]`: their next
# token would be predicted after the padding and appended after it. With left
# padding, every row ends with its last real token (here `[SEP]`, which a GPT
# tokenizer would not add), so decoder models pad on the left to generate.
# (Left padding moves the real tokens to later positions, though: a model with
# absolute position embeddings must then count positions from the first real
# token, which the attention mask tells it. Lesson 05 is about positions.)
#
# ### A causal mask meets left padding
#
# Now combine the causal mask with the padding mask of the left-padded batch.
# In a short row the first six queries are `[PAD]`s; query i may see keys
# 0..i only, and all of those are `[PAD]`s, which the padding mask forbids. Such
# a row of the mask is all False: the query has *nothing* to attend to. With
# right padding that never happens (query 0 can always see itself, a real
# token).

# %%
combined_left = attention.causal_mask(length) & padding_mask(batch_left["attention_mask"])
real_left = batch_left["attention_mask"].bool()
print("mask of 'Alas, poor Yorick!', padded on the left, causal & padding:")
print(combined_left[yorick, 0].int())
for name, m in [("right", combined), ("left", combined_left)]:
    nothing = ~m.any(dim=-1)[:, 0]  # (sentences, queries): True where a row of the mask is all False
    print(f"padded on the {name}: queries with nothing to attend to, per sentence:",
          [row.nonzero().flatten().tolist() for row in nothing])

# %% [markdown]
# What does attention do with such a row? All its scores are −∞, and a softmax
# of −∞ only is 0/0: NaN. Written naively, with the recipe above, the
# NaN appears in the weights and the output of those rows. The reviewed
# `course_utils` version returns all-zero weights and a zero output there,
# like PyTorch's `F.scaled_dot_product_attention` (in the version this course
# pins: we measure it). We compare the three on the real queries, keys and
# values of the left-padded batch, in the encoder's first layer.

# %%
import math

with torch.no_grad():
    E_left = encoder.embeddings(input_ids=batch_left["input_ids"], token_type_ids=batch_left["token_type_ids"])
    q_left, k_left, v_left = (split_heads(projection(E_left)) for projection in (layer.query, layer.key, layer.value))


def naive_attention(q, k, v, mask):
    """The recipe of "Where to apply a mask", with no care for a query that has nothing to attend to."""
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.size(-1) ** 0.5
    return scores.masked_fill(~mask, -math.inf).softmax(dim=-1) @ v, None


def pytorch_attention(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None


attentions = {"naive (the plain recipe)": naive_attention, "course_utils": scaled_dot_product_attention,
              "F.scaled_dot_product_attention": pytorch_attention}
outputs_left = {}
for name, attend in attentions.items():
    with torch.no_grad():
        outputs_left[name] = out = attend(q_left, k_left, v_left, combined_left)[0]
    padded_rows, real_rows = out[yorick, :, :6], out[yorick, :, 6:]
    padded_state = "all NaN" if padded_rows.isnan().all() else "all zero" if padded_rows.eq(0).all() else "other"
    print(f"{name:<31} outputs of Yorick's 6 [PAD] queries: {padded_state:<8}  real queries finite: {real_rows.isfinite().all().item()}")
print("course_utils equals PyTorch everywhere:", torch.allclose(outputs_left["course_utils"], outputs_left["F.scaled_dot_product_attention"], atol=1e-5))

# %% [markdown]
# Those rows are `[PAD]` queries, garbage anyway, and a language model's loss
# skips them. Is a NaN there harmless then? No: the backward pass multiplies
# by the weights, and NaN × 0 is still NaN. We take copies of the layer's
# W_Q, W_K and W_V, compute a loss from the real positions only, and count the
# NaNs in the gradients, then take one small step of gradient descent and run
# the layer again.

# %%
import copy


def gradients_and_step(attend):
    """NaN share in each gradient for a loss on real positions only, then the
    NaN share of the real outputs after one SGD step on those gradients."""
    projections = {name: copy.deepcopy(getattr(layer, name)).requires_grad_() for name in ("query", "key", "value")}
    E_leaf = E_left.clone().requires_grad_()  # stands for everything before this layer

    def real_outputs():
        q_, k_, v_ = (split_heads(projections[name](E_leaf)) for name in ("query", "key", "value"))
        return attend(q_, k_, v_, combined_left)[0].transpose(1, 2)[real_left]  # (real tokens, heads, 32)

    real_outputs().pow(2).mean().backward()
    nan_share = {f"W_{name[0].upper()}": projections[name].weight.grad.isnan().float().mean().item() for name in projections}
    nan_share["E"] = E_leaf.grad.isnan().float().mean().item()
    with torch.no_grad():
        for projection in projections.values():
            projection.weight -= 0.01 * projection.weight.grad
        after_step = real_outputs().isnan().float().mean().item()
    return nan_share, after_step


table = [f"{'':<31} share of NaN in the gradient of      share of NaN in the real",
         f"{'':<31} {'W_Q':>6} {'W_K':>6} {'W_V':>6} {'E':>6}      outputs after one step"]
for name, attend in attentions.items():
    nan_share, after_step = gradients_and_step(attend)
    table.append(f"{name:<31} " + " ".join(f"{share:>6.2f}" for share in nan_share.values()) + f"      {after_step:.2f}")
print("\n".join(table))

# %% [markdown]
# The naive version's NaN reaches the gradients although the loss never reads
# those rows: all of W_V's gradient is NaN, and so is the gradient of E at
# every position of the two padded sentences (2/3 of its entries; every layer
# and embedding before this one would get NaN in turn). W_Q and W_K escape
# here only because `masked_fill` passes no gradient back to the scores it
# overwrote, and in those rows it overwrote all of them. One step of gradient
# descent then writes NaN into W_V, and from then on every output of the
# layer is NaN, for every sentence, the unpadded one included: training is
# over. The reviewed version and PyTorch give those rows zero weights, so
# nothing flows back through them: the gradients are clean and the step leaves
# every output finite. That is why `course_utils.attention` handles a query
# with nothing to attend to explicitly, and what exercise 2 asks of yours.

# %% [markdown]
# ## Exercise 2: attention that a padded batch cannot break
#
# Write `masked_attention(q, k, v, mask)`: your `attention` of lesson 02 with a
# mask, as the sections above built it (the forbidden scores at −∞ before the
# softmax), that also survives a query with nothing to attend to. `mask` is a
# bool tensor that broadcasts against the scores (..., L_q, L_k), True where
# attending is allowed; return `(output, weights)` as before. A query whose row
# of the mask is all False must get all-zero weights and a zero output, as the
# reviewed version and PyTorch give it, and no NaN may appear anywhere on the
# way, not even in an intermediate tensor that you later overwrite: the
# backward pass multiplies by it. The checker tries a causal-and-padding mask,
# a padding mask alone, then left padding under a causal mask, on other sizes
# than this lesson's; it points at the first weight that leaks through a mask,
# names the usual slips (the mask ignored, inverted, applied after the
# softmax, filled with 0; the plain recipe's NaN; a large negative number
# instead of −∞), and checks that the gradient reaching v is finite and right.

# %%
import math


def masked_attention(q, k, v, mask):
    """softmax(q kᵀ / √d_k, forbidden scores at -inf) v; a query that may see
    no key gets zero weights and a zero output. Returns (output, weights)."""
    # BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    nothing_to_attend = ~mask.any(dim=-1, keepdim=True)
    weights = scores.masked_fill(~mask, float("-inf")).masked_fill(nothing_to_attend, 0.0).softmax(dim=-1)
    weights = weights.masked_fill(nothing_to_attend, 0.0)
    return weights @ v, weights
    # END SOLUTION


# %%
from course_utils.classroom.checks.attention import check_masked_attention

check_masked_attention(masked_attention)

# %% [markdown]
# When your version passes, the lesson runs it: `yours_if_passed` hands back
# your function if its checker passed in this session, and the reviewed one
# otherwise, and says which. It then goes through the same test as the three
# versions above, on the real left-padded batch: the NaN share of each
# gradient, and of the real outputs after one step.

# %%
attend = yours_if_passed(masked_attention, "03.masked_attention", scaled_dot_product_attention)
nan_share, after_step = gradients_and_step(attend)
print(table[1])
label = "your masked_attention" if attend is masked_attention else "the reviewed fallback"
print(f"{label:<31} " + " ".join(f"{share:>6.2f}" for share in nan_share.values()) + f"      {after_step:.2f}")

# %% [markdown]
# ## Attention maps of a real encoder
#
# Now the fun part: where do the heads of a trained model look? Our sentence
# has a pronoun whose meaning depends on another word: "The cat chased the
# mouse until it got tired". `attention_maps` returns the weights of all 6
# layers × 12 heads. Layers and heads are counted from 0 below.

# %%
sentence = "The cat chased the mouse until it got tired"
words, maps = attention_maps(sentence)
it = words.index("it")
print(" ".join(words))
print("attention maps:", tuple(maps.shape), "(layers, heads, queries, keys); 'it' is token", it)

# %% [markdown]
# One head first, all its rows. Layer 3, head 1 is one of the heads in which
# "it" looks at the nouns: in its row, "cat" and "mouse" are dark.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.5))
viz.plot_attention(maps[3, 1], words, ax=ax, title="layer 3, head 1")
plt.show()

# %% [markdown]
# Now only the row of "it", but in every head: one panel per layer, one line
# per head, one column per token. Each line sums to 1.

# %%
row_of_it = maps[:, :, it, :]  # (layers, heads, keys)
fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), sharey=True, layout="constrained")
for layer_number, ax in enumerate(axes.flat):
    image = ax.imshow(row_of_it[layer_number].numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    ax.set_yticks(range(heads), [f"head {h}" for h in range(heads)], fontsize=7)
    ax.set_title(f"layer {layer_number}", fontsize=10)
    ax.grid(False)
fig.suptitle('Where "it" looks, in each of the 72 heads of all-MiniLM-L6-v2')
fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02, label="attention weight")
plt.show()

# %% [markdown]
# The darkest column by far is `[CLS]`. We count, over the 72 heads, which
# token gets the most of "it"'s attention, and list the five heads that give
# the most weight to the two nouns, "cat" and "mouse", with their top three
# tokens. Then, head by head, the token "it" attends to most, and a check of
# one head that looks by position.

# %%
import collections

top_token = collections.Counter(words[j] for j in row_of_it.argmax(-1).flatten().tolist())
print("the token 'it' attends to most, counted over 72 heads:")
print("  " + ", ".join(f"{token} {count}" for token, count in top_token.most_common()))

cat, mouse = words.index("cat"), words.index("mouse")
on_nouns = row_of_it[..., cat] + row_of_it[..., mouse]
print("\nheads where 'it' looks most at the nouns:")
for index in on_nouns.flatten().topk(5).indices.tolist():
    layer_number, head = divmod(index, heads)
    best = row_of_it[layer_number, head].topk(3)
    top3 = ", ".join(f"{words[j]} {w:.2f}" for w, j in zip(best.values.tolist(), best.indices.tolist()))
    print(f"  layer {layer_number}, head {head:>2}: {top3}")
print(f"\n'cat' gets more weight than 'mouse' in {int((row_of_it[..., cat] > row_of_it[..., mouse]).sum())} of 72 heads")
special = row_of_it[..., words.index("[CLS]")] + row_of_it[..., words.index("[SEP]")]
print(f"mean weight on [CLS] + [SEP]: {special.mean():.2f}")

print("\nthe token 'it' attends to most in each head, heads 0 to 11:")
for layer_number in range(maps.shape[0]):
    print(f"  layer {layer_number}: " + " ".join(words[j] for j in row_of_it[layer_number].argmax(-1).tolist()))
previous = maps[0, 2].argmax(-1)[1:]  # layer 0, head 2: each token's favourite key, [CLS] left out
print("layer 0, head 2: every token attends most to the one just before it:",
      torch.equal(previous, torch.arange(len(words) - 1)), f"(weight on it, for 'it': {maps[0, 2, it, it - 1]:.2f})")

# %% [markdown]
# How to read this, carefully:
#
# - **Most heads park their attention on `[CLS]`** (and some on `[SEP]`). A
#   softmax must put its unit of weight somewhere; a head with nothing useful
#   to add for this token puts it on a special token whose value changes
#   little. Clark et al. (*What does BERT look at?*, 2019) observed it in BERT
#   for `[CLS]`, `[SEP]` and punctuation; Xiao et al. (*Efficient Streaming
#   Language Models with Attention Sinks*, 2023) named such tokens
#   "attention sinks", after finding the same in the first token of large
#   decoder-only models.
# - **Some heads look by position, not by meaning.** Layer 0, head 2 puts
#   all of "it"'s weight on "until", the token just before it, and every
#   token of the sentence attends most to its predecessor there: a
#   "previous-token" head. Others look ahead: five heads of layers 1 and 2
#   (layer 1, heads 4 and 7; layer 2, heads 1, 3 and 8) attend most to
#   "tired", and layer 0, head 4 to "got".
# - **A few heads, mostly in the last layers, do link "it" to the nouns.**
#   Layer 5, head 11 and layer 3, head 1 favour "cat", the likely antecedent;
#   others (layer 5, heads 3 and 5) lean to "mouse". Over all heads, "cat" wins
#   32 times out of 72: no single head "resolves" the pronoun.
# - **Attention weights are not an explanation.** They say how values are
#   mixed in one layer, not what the model concluded; and this model was
#   trained to compare sentences, not to resolve pronouns. Heatmaps are for
#   building intuition, not for proofs.

# %% [markdown]
# ## Quiz
#
# Eight questions on masks, padding and the maps you just drew.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("03")

# %%
# BEGIN SOLUTION
answer("03.padding-mask", "B")
answer("03.where", "A")
answer("03.causal-count", 55)
answer("03.conventions", ["A", "C"])
answer("03.left-mask", 6)
answer("03.nothing-to-attend", ["A", "B"])
answer("03.right-padding", "A")
answer("03.pad-side", "left")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A padded batch needs a **padding mask**: without it, the real tokens of
#   "Alas, poor Yorick!" put 31% of their first-layer attention on `[PAD]`,
#   and the model's output depends on the rest of the batch. With it, a padded
#   sentence is computed as if it were alone, up to float32 rounding
#   (differences of order 10⁻⁶), provided the pooling and the loss also skip
#   the padded positions (a mean over all positions changes the sentence
#   vector).
# - A **causal mask** (a lower triangle, True where key j ≤ query i) stops a
#   token from seeing the future; the two masks combine with `&` by
#   broadcasting, (L, L) & (B, 1, 1, L) → (B, 1, L, L). With right padding,
#   the padding part changes only the rows of `[PAD]` queries.
# - Decoder models pad on the **left** to generate, so that every row ends
#   with its last real token, where the next token is appended. With a causal
#   mask, the first `[PAD]` queries then have nothing to attend to: a naive
#   softmax gives NaN, which reaches the gradients even when the loss skips
#   those rows; `course_utils`, PyTorch and your exercise 2 give those
#   queries zero weights and outputs, and the gradients stay clean.
# - Masks go on the **scores, as −∞, before the softmax**: forbidden keys get
#   exactly 0, and each row still sums to 1. In this course True means "may
#   attend", as in `F.scaled_dot_product_attention`, which our attention
#   matches mask for mask.
# - The heads of the pretrained encoder mostly park "it"'s attention on
#   `[CLS]` (46 of 72 heads); a few heads in the later layers connect "it" to
#   "cat" or "mouse". Attention maps build intuition; they do not explain a
#   model.
# - Next, lesson 04 builds multi-head attention: the 12 heads used above,
#   their split, their merge and W^O, checked against `nn.MultiheadAttention`.
