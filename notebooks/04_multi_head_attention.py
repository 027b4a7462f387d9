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
# # 04 · Multi-head attention
#
# One attention computes, for every token, a single probability distribution
# over the other tokens and a single weighted average of their values. A
# transformer layer runs several of these side by side, each in its own
# narrow slice of the width, and mixes the results: multi-head attention. This
# lesson builds it with the shapes in view at every step, proves it equal to
# PyTorch's `nn.MultiheadAttention` and to a real pretrained encoder, counts
# what it costs, and looks at what the 12 heads of a real layer do.
#
# **In this lesson you will**
#
# - see why several heads help: several representation subspaces of *one*
#   sequence, attended in parallel, each with its own attention pattern;
# - split a `(batch, length, width)` tensor into heads and merge it back, and
#   see why a reshape without a transpose silently mixes up positions;
# - learn what the output projection W^O does;
# - build multi-head attention twice, as H separate heads in an
#   `nn.ModuleList` and fused into one module that also does cross-attention
#   (queries from one sequence, keys and values from another), and check
#   that they agree;
# - show that yours gives the numbers of `torch.nn.MultiheadAttention` (with
#   padding and causal masks, and across two sequences) and of the pretrained
#   MiniLM encoder;
# - count parameters and FLOPs as the number of heads changes, and explain why
#   they stay the same;
# - draw all 12 heads of one layer of the pretrained encoder side by side,
#   then explore any layer and head on a sentence of your own.

# %% [markdown]
# ## Set-up
#
# As in every lesson: seeds, deterministic algorithms, offline mode, and the
# device. Everything in this lesson is small, so it runs on the CPU and the
# printed numbers are the same on every machine.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Why more than one head?
#
# Lesson 03 ended with one attention: for each query token, a softmax over the
# keys gives one probability distribution, and the output is the
# weighted average of the value vectors under that distribution. One
# distribution has to serve every purpose at once. But a word often needs
# several different things from the sentence at the same time: in *Romeo
# loves Juliet*, the verb *loves* needs its subject (on the left) **and** its
# object (on the right), and it must not confuse the two.
#
# The cell below makes that concrete with the real word vectors of the
# pretrained MiniLM encoder, the 6-layer BERT that ships with the course (here
# we borrow only its table of word vectors). Take the query *loves* in two
# sentences that say opposite things. A single head that wants both
# neighbours equally puts half its weight on each, and half of *Romeo* plus
# half of *Juliet* is the same vector whichever one is the subject: the two
# sentences become indistinguishable. A lopsided split (say 70/30) keeps some
# of the difference, but only by giving up part of one neighbour for the
# other. Two heads, one looking left and one looking right, each project the
# values to their own D/H = 192 features, and their outputs are concatenated
# into one vector of the same width, 384, as in real multi-head attention.
# For the projections we take the two halves of a random orthogonal matrix
# W^V (it keeps lengths, so that nothing is stretched or lost): the whole
# difference between the sentences survives, in two separate slices.

# %%
import torch

from course_utils.pretrained import load_encoder

tokenizer, encoder = load_encoder()
word_vectors = encoder.embeddings.word_embeddings.weight.detach()  # (30522 words, 384)


def values_of(sentence):
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    return word_vectors[ids]  # (3 tokens, 384)


for sentence in ["Romeo loves Juliet", "Juliet loves Romeo"]:
    print(sentence, "->", tokenizer.tokenize(sentence))
v_a, v_b = values_of("Romeo loves Juliet"), values_of("Juliet loves Romeo")
LOVES = 1  # the position of the query "loves"

torch.manual_seed(0)
W_V = torch.linalg.qr(torch.randn(384, 384)).Q  # a random orthogonal value projection
HALF = 384 // 2

# one head of width 384: half the weight on the left neighbour, half on the right one
one_head = torch.tensor([0.5, 0.0, 0.5])
# two heads of width 192: one looks only left, the other only right, each with
# its own half of W_V; their outputs are concatenated back to 384
left, right = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])


def two_heads(values):
    return torch.cat([left @ (values @ W_V[:, :HALF]), right @ (values @ W_V[:, HALF:])])


print("\noutput of 'loves' (384 features): how much it differs between the two sentences")
print(f"one head, 50/50:       {(one_head @ (v_a @ W_V) - one_head @ (v_b @ W_V)).norm():.4f}")
lopsided = torch.tensor([0.7, 0.0, 0.3])
print(f"one head, 70/30:       {(lopsided @ (v_a @ W_V) - lopsided @ (v_b @ W_V)).norm():.4f}")
print(f"two heads of 192 each: {(two_heads(v_a) - two_heads(v_b)).norm():.4f}")
print(f"|Romeo - Juliet|:      {(v_a[0] - v_a[2]).norm():.4f}")

# %% [markdown]
# The two heads of 192 keep the whole difference, as large as the distance
# between *Romeo* and *Juliet* themselves, in the same 384 features where one
# head keeps none of it (50/50) or a part (70/30). That is the whole idea.
# **Multi-head attention runs H attentions in
# parallel over the same sequence.** Each head h has its own projections
# W^Q_h, W^K_h, W^V_h that map every token into a small subspace of width
# d_head = D / H, where it computes its own distribution over the keys. The H
# outputs are concatenated back to width D and mixed by one more matrix, W^O:
#
# $$\text{MultiHead}(X) = \text{Concat}(\text{head}_1, \dots, \text{head}_H)\, W^O,
# \qquad \text{head}_h = \text{softmax}\!\left(\frac{X W^Q_h (X W^K_h)^\top}{\sqrt{d_\text{head}}}\right) X W^V_h .$$
#
# Three things it is **not**, because they are easy to confuse with it: the
# heads do not read different sequences or different examples of the batch
# (they all read the same tokens); they are not skip connections (those come
# in lesson 06, around the whole attention); and they do not add parameters
# (we count them below: the same total, cut into H slices).

# %% [markdown]
# ## A real layer, step by step
#
# Now the real thing, on a real line. We take the second layer (layer 1) of
# the pretrained MiniLM encoder, a BERT with width D = 384 and H = 12 heads of
# d_head = 32, and feed it the first line of Hamlet's soliloquy from the
# course's Shakespeare corpus. `output_hidden_states=True` hands us the
# vectors that enter each layer, and a forward hook catches what the layer's
# own W^O produces, so we can compare our arithmetic with the real model's.

# %%
from course_utils import data

hamlet = data.plays()["hamlet"]
start = hamlet.find("To be, or not to be")
soliloquy = hamlet[start: hamlet.find("\n\n", start)].splitlines()  # the whole speech, 35 lines
line = soliloquy[0]
print(line)

LAYER = 1
layer = encoder.encoder.layer[LAYER]
inputs = tokenizer(line, return_tensors="pt")
tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
caught = {}
hook = layer.attention.output.dense.register_forward_hook(lambda module, args, output: caught.update(w_o=output))
with torch.no_grad():
    result = encoder(**inputs, output_hidden_states=True, output_attentions=True)
hook.remove()

x = result.hidden_states[LAYER]  # what enters layer 1
print(tokens)
print("x:", tuple(x.shape), "= (batch, tokens, width)")

# %% [markdown]
# Our module needs the layer's weights. BERT keeps W^Q, W^K and W^V as three
# separate `nn.Linear(384, 384)` layers; the course's reviewed
# `MultiHeadAttention` (in `course_utils.attention`) stores them stacked in
# one `in_proj` of shape (3·384, 384), the layout of `nn.MultiheadAttention`,
# so that one matrix multiply projects all three. W^O is BERT's
# `attention.output.dense`. (BERT then adds dropout, a residual connection and
# a LayerNorm: those belong to lesson 06.)

# %%
from course_utils.attention import MultiHeadAttention


@torch.no_grad()
def from_bert_layer(bert_layer):
    """Our MultiHeadAttention with the weights of one BERT layer's self-attention."""
    attention = bert_layer.attention
    mha = MultiHeadAttention(attention.self.query.in_features, encoder.config.num_attention_heads).eval()
    projections = [attention.self.query, attention.self.key, attention.self.value]
    mha.in_proj.weight.copy_(torch.cat([p.weight for p in projections]))  # rows: W^Q, then W^K, then W^V
    mha.in_proj.bias.copy_(torch.cat([p.bias for p in projections]))
    mha.out_proj.load_state_dict(attention.output.dense.state_dict())  # W^O
    return mha


mha = from_bert_layer(layer)
D, H, D_HEAD = mha.d_model, mha.num_heads, mha.head_dim
print(f"D = {D}, H = {H}, d_head = {D_HEAD}")

# %% [markdown]
# Here is the forward pass, one line per step, with the shape after each.
# Follow the axes: the split turns the width 384 into 12 heads × 32, and moves
# the head axis in front of the token axis, so that from then on every matrix
# multiply works on each head separately (PyTorch treats the leading axes as
# a batch). The merge undoes the split, and W^O maps the concatenation back.

# %%
import math

B, L = x.shape[:2]
shapes = []


def trace(step, tensor):
    shapes.append((step, tuple(tensor.shape)))
    return tensor


with torch.no_grad():
    qkv = trace("1. project: in_proj(x), W^Q W^K W^V at once", mha.in_proj(x))
    q, k, v = qkv.chunk(3, dim=-1)
    trace("2. chunk into q, k, v (each)", q)
    q = trace("3. view the width as (H, d_head)", q.view(B, L, H, D_HEAD))
    q = trace("4. transpose: heads before tokens", q.transpose(1, 2))
    k = k.view(B, L, H, D_HEAD).transpose(1, 2)
    v = v.view(B, L, H, D_HEAD).transpose(1, 2)
    scores = trace("5. scores q kᵀ / √d_head, per head", q @ k.transpose(-2, -1) / math.sqrt(D_HEAD))
    weights = trace("6. softmax over the keys", scores.softmax(dim=-1))
    heads = trace("7. weights @ v, per head", weights @ v)
    merged = trace("8. transpose back: tokens before heads", heads.transpose(1, 2))
    merged = trace("9. reshape: concatenate the heads", merged.reshape(B, L, D))
    out = trace("10. W^O: out_proj", mha.out_proj(merged))

for step, shape in shapes:
    print(f"{step:<46} {shape}")

# %% [markdown]
# Each step is a plain tensor operation, yet together they are exactly the
# pretrained layer: the attention weights of all 12 heads equal the ones the
# Hugging Face model returned (`output_attentions=True`), and our output
# equals what the model's own W^O produced. The reviewed module gives the same
# numbers in one call.

# %%
with torch.no_grad():
    module_out, module_weights = mha(x, need_weights=True)
print(f"weights vs Hugging Face:   max |difference| = {(weights - result.attentions[LAYER]).abs().max():.5f}")
print(f"output  vs Hugging Face:   max |difference| = {(out - caught['w_o']).abs().max():.5f}")
print(f"output  vs module call:    max |difference| = {(out - module_out).abs().max():.5f}")
print("each row of weights sums to 1:", torch.allclose(weights.sum(-1), torch.ones(B, H, L)))

# %% [markdown]
# ## The transpose matters
#
# Step 4 is the one that is easy to get wrong. A tensor's memory is laid out
# row by row, so `x.reshape(B, H, L, d_head)` does not cut each token's
# vector into slices; it cuts the *flat* memory into chunks, and chunks of
# different tokens end up in the same head. The shapes come out right and no
# error is raised, which is what makes the bug dangerous.
#
# To see it, label every number by where it comes from: in a tiny input of 3
# tokens of width 4, the value 10·token + feature (so 21 is feature 1 of
# token 2). Split into 2 heads of width 2, head 0 must hold features 0 and 1
# of every token.

# %%
tiny = (10 * torch.arange(3)[:, None] + torch.arange(4)).reshape(1, 3, 4)  # (batch 1, 3 tokens, width 4)
print("input, one row per token:\n", tiny[0])
right_split = tiny.view(1, 3, 2, 2).transpose(1, 2)
wrong_split = tiny.reshape(1, 2, 3, 2)
print("\nhead 0, view + transpose (right):\n", right_split[0, 0])
print("\nhead 0, reshape alone (wrong):\n", wrong_split[0, 0])

# %% [markdown]
# With the transpose, head 0 sees the first two features of tokens 0, 1 and 2.
# Without it, head 0's "token 1" is the second half of token 0, and its
# "token 2" is the first half of token 1 (token 2 never reaches head 0): the
# head attends between pieces of the wrong tokens.
# The merge has the same trap in reverse: transpose back first, then reshape.

# %% [markdown]
# ## The output projection W^O
#
# After the merge, features 0–31 come from head 0 only, features 32–63 from
# head 1 only, and so on. W^O, a (384 × 384) matrix, mixes them: every output
# feature is a weighted sum over *all* heads. Writing the concatenation
# times W^O block by block shows this: the output is the sum over heads of
# each head's output times its own block of 32 **rows** of W^O (rows
# h·32 to h·32 + 31, the rows that the features of head h multiply),
#
# $$\text{Concat}(\text{head}_1, \dots, \text{head}_H)\,W^O = \sum_h \text{head}_h\, W^O_h ,$$
#
# so each head writes its own contribution into the full width, and they
# add up. In code the block shows up as *columns*: `nn.Linear` stores its
# weight as (out features, in features) and computes `x @ weight.T`, so
# `out_proj.weight` is W^O transposed, and head h's rows of W^O are its
# columns `weight[:, h·32 : (h+1)·32]`. Let us check that on the real layer and see how large each head's
# contribution to this line is (the average length of its 384-wide
# contribution vector, over the tokens).

# %%
W_O, b_O = mha.out_proj.weight.detach(), mha.out_proj.bias.detach()  # (out 384, in 384): nn.Linear computes x @ W_O.T
with torch.no_grad():
    contributions = torch.stack([heads[:, h] @ W_O[:, h * D_HEAD:(h + 1) * D_HEAD].T for h in range(H)])  # (H, B, L, D)
print(f"sum of the per-head contributions + bias vs out: max |difference| = {(contributions.sum(0) + b_O - out).abs().max():.5f}")
size = contributions.norm(dim=-1).mean(dim=(1, 2))
print("average size of each head's contribution:")
print("  ".join(f"h{h}: {s:.2f}" for h, s in enumerate(size.tolist())))

# %% [markdown]
# The heads do not contribute equally, and W^O is where the layer learned how
# much to take from each. Without W^O, a head's result would stay locked in its
# own slice of 32 features; with it, what head 3 found can reach every
# feature of the output, which is what the next layer reads.
#
# One caution about reading weights. Head h's values X W^V_h enter the output
# only through the product W^V_h W^O_h, so training pins down that product
# and nothing more: for any invertible 32 × 32 matrix A, the pair
# (W^V_h A, A⁻¹ W^O_h) gives exactly the same layer. The sizes above are
# contributions to the output, which depend on the product alone; the size of
# W^O_h by itself says little about a head. The cell below changes head 3's
# W^V and W^O by a random A and checks that the output does not move.

# %%
import copy

HEAD = 3
torch.manual_seed(0)
orthogonal, _ = torch.linalg.qr(torch.randn(D_HEAD, D_HEAD))
A = orthogonal * torch.linspace(0.5, 2.0, D_HEAD)  # invertible, and well conditioned
twin = copy.deepcopy(mha)
value_rows = slice(2 * D + HEAD * D_HEAD, 2 * D + (HEAD + 1) * D_HEAD)  # head 3's W^V inside in_proj (stored transposed)
head_columns = slice(HEAD * D_HEAD, (HEAD + 1) * D_HEAD)  # head 3's rows of W^O = columns of out_proj.weight
with torch.no_grad():
    twin.in_proj.weight[value_rows] = A.T @ mha.in_proj.weight[value_rows]  # W^V_h -> W^V_h A
    twin.in_proj.bias[value_rows] = mha.in_proj.bias[value_rows] @ A
    twin.out_proj.weight[:, head_columns] = mha.out_proj.weight[:, head_columns] @ torch.linalg.inv(A).T  # W^O_h -> A⁻¹ W^O_h
    twin_out, _ = twin(x)
changed = (twin.out_proj.weight - mha.out_proj.weight).abs().max()
print(f"head {HEAD}: largest change of a W^O entry {changed:.2f}; of the layer's output {(twin_out - out).abs().max():.4f}")
assert changed > 0.05 and (twin_out - out).abs().max() < 1e-4

# %% [markdown]
# ## Exercise 1: H heads, one module each
#
# The formula at the top of the lesson says it plainly: H independent heads,
# each with its own W^Q_h, W^K_h and W^V_h, then Concat and W^O. Build exactly
# that first, with no reshaping trick.
#
# - `SingleHead` holds one head's three projections, each
#   `nn.Linear(D, d_head)` (given). Write its `forward(x, mask=None)`:
#   x (B, L, D) → (B, L, d_head), attention in this head's own subspace.
#   Scale the scores by 1/√d_head, the width of *this head's* vectors.
#   `mask` is True where attending is allowed, shaped (B, 1, L) for padding or
#   (L, L) for causal, so that it broadcasts over a head's (B, L, L) scores.
# - `SeparateHeadsAttention(d_model, num_heads)`: in `__init__`, H heads in
#   an `nn.ModuleList` named `heads` (a plain Python list would hide their
#   parameters from the module and from the optimizer); W^O, `out_proj`, is
#   given. In `forward(x, mask=None)`, run every head on x,
#   concatenate their outputs along the features, head 0 first, and apply W^O.
#
# The checker gives your heads the weights of a reviewed module and names the
# classic slips: heads concatenated in the wrong order, W^O left out, scores
# scaled by √D instead of √d_head, one head module shared by every slot, a
# mask read the wrong way round.

# %%
from torch import nn


class SingleHead(nn.Module):
    """One attention head: its own W^Q, W^K, W^V, each from width D to d_head."""

    def __init__(self, d_model, head_dim):
        super().__init__()
        self.query = nn.Linear(d_model, head_dim)
        self.key = nn.Linear(d_model, head_dim)
        self.value = nn.Linear(d_model, head_dim)

    def forward(self, x, mask=None):
        """x (B, L, D) -> (B, L, d_head); mask: bool, True = may attend."""
        # BEGIN SOLUTION
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ v
        # END SOLUTION


class SeparateHeadsAttention(nn.Module):
    """H SingleHeads side by side, their outputs concatenated, then W^O."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        # BEGIN SOLUTION
        self.heads = nn.ModuleList(SingleHead(d_model, d_model // num_heads) for _ in range(num_heads))
        # END SOLUTION
        self.out_proj = nn.Linear(d_model, d_model)  # W^O, given

    def forward(self, x, mask=None):
        """x (B, L, D) -> (B, L, D)."""
        # BEGIN SOLUTION
        return self.out_proj(torch.cat([head(x, mask) for head in self.heads], dim=-1))
        # END SOLUTION


# %%
from course_utils.classroom.checks.multihead import check_separate_heads

check_separate_heads(SeparateHeadsAttention)

# %% [markdown]
# ### The same layer as the fused module
#
# Your twelve small modules and the reviewed `MultiHeadAttention` are the same
# layer, cut differently. The fused `in_proj` weight, (3·384, 384), is the
# heads' projections stacked: its first 384 rows are W^Q, and rows h·32 to
# h·32 + 31 of those are head h's `query` (`nn.Linear` stores (out, in), so a
# head's output features are rows); then W^K, then W^V, the same way. Copy
# MiniLM's layer 1 into your heads and compare with what the fused module
# computed at the start of the lesson (this needs your exercise 1 to have
# passed its check: there is no reviewed version of it to fall back on).

# %%
from course_utils.classroom.checks import yours_if_passed

YourSeparateHeads = yours_if_passed(SeparateHeadsAttention, "04.separate_heads", None)


@torch.no_grad()
def separate_from_fused(fused):
    """Your SeparateHeadsAttention with the weights of a fused MultiHeadAttention."""
    separate = YourSeparateHeads(fused.d_model, fused.num_heads).eval()
    width, head_width = fused.d_model, fused.head_dim
    for h, head in enumerate(separate.heads):
        for part, projection in enumerate([head.query, head.key, head.value]):
            start = part * width + h * head_width  # head h's rows of W^Q (part 0), W^K (1) or W^V (2)
            rows = slice(start, start + head_width)
            projection.weight.copy_(fused.in_proj.weight[rows])
            projection.bias.copy_(fused.in_proj.bias[rows])
    separate.out_proj.load_state_dict(fused.out_proj.state_dict())
    return separate


if YourSeparateHeads is not None:
    separate = separate_from_fused(mha)
    with torch.no_grad():
        separate_out = separate(x)
    print(f"{H} separate heads vs the fused module: max |difference| = {(separate_out - out).abs().max():.5f}")
    print(f"parameters: {sum(p.numel() for p in separate.parameters()):,} separate, "
          f"{sum(p.numel() for p in mha.parameters()):,} fused")
    assert (separate_out - out).abs().max() < 1e-4

# %% [markdown]
# The same numbers and the same parameters. What differs is how the work is
# laid out: the separate version runs 3·H small matrix multiplies to project,
# one per head and per projection, and loops over the heads in Python; the
# fused one runs a single large multiply and makes the heads an extra tensor
# axis, which is what hardware runs best.
#
# ## Exercise 2: the fused `MultiHeadAttention`, for cross-attention too
#
# Now the fused form, the one real libraries use, and one step past the trace
# above. So far q, k and v all came from the same x: **self-attention**. A
# translation model's decoder (lesson 07) also needs **cross-attention**: the
# queries come from the sentence being written, the keys and values from
# another sequence, the encoder's output (its *memory*), of another length.
# Nothing else changes: each of the H heads still scores every query against
# every key, so the weights are (B, H, L_q, L_k), one row per query, and the
# output has one row per query, (B, L_q, D). `nn.MultiheadAttention` takes all
# three inputs for this reason, `forward(query, key, value)`, and so will yours.
#
# The constructor is given: one `in_proj` holding W^Q, W^K and W^V stacked,
# as in the trace, and `out_proj` for W^O. So are `split_heads` and
# `merge_heads`, the trace's steps 3-4 and 8-9. Write
# `forward(query, key=None, value=None, mask=None, need_weights=False)`:
#
# - key defaults to the query and value to the key, so `forward(x)` is the
#   self-attention traced above and `forward(x, memory)` is cross-attention;
#   the trace's first step, one `in_proj` of one x, no longer fits, so work
#   out how to give each input its own projection with the weights `in_proj`
#   holds;
# - `mask` is a boolean tensor that broadcasts to (B, H, L_q, L_k), **True
#   where attending is allowed** (the course's convention since lesson 03);
# - return a pair, as `nn.MultiheadAttention` does: the output (B, L_q, D),
#   and the weights (B, H, L_q, L_k) when `need_weights` is True, else None.
#
# The checker copies the weights of the reviewed module into yours and tries
# self-attention with no mask, a padding mask and a causal mask, then
# cross-attention between sequences of lengths the lesson never uses, with and
# without a padding mask over the memory, and with values unlike the keys. If
# something is off, it tells you which classic slip your output matches.

# %%
import torch.nn.functional as F


class MyMultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        assert d_model % num_heads == 0, "the width must split evenly into heads"
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)  # W^Q, W^K, W^V stacked
        self.out_proj = nn.Linear(d_model, d_model)  # W^O

    def split_heads(self, x):
        """(B, L, D) -> (B, H, L, d_head), given."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x):
        """(B, H, L, d_head) -> (B, L, D), given."""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.d_model)

    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        """query (B, Lq, D) attends to key and value (B, Lk, D), by default the query itself.
        mask: bool, True = may attend. Returns (output (B, Lq, D), weights (B, H, Lq, Lk) or None)."""
        # BEGIN SOLUTION
        key = query if key is None else key
        value = key if value is None else value
        blocks = zip(self.in_proj.weight.chunk(3), self.in_proj.bias.chunk(3))  # (W^Q, b^Q), (W^K, b^K), (W^V, b^V)
        q, k, v = (self.split_heads(F.linear(t, w, b)) for t, (w, b) in zip((query, key, value), blocks))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        output = self.out_proj(self.merge_heads(weights @ v))
        return output, weights if need_weights else None
        # END SOLUTION


# %%
from course_utils.classroom.checks.multihead import check_multi_head_attention

check_multi_head_attention(MyMultiHeadAttention)

# %% [markdown]
# The course keeps a reviewed version, `course_utils.attention.MultiHeadAttention`,
# with the same methods and the same `forward`. It adds dropout, and a fast
# path: with `need_weights=False` it calls PyTorch's fused
# `F.scaled_dot_product_attention`, which never stores the (B, H, L, L)
# weights. `benchmarks/mha_fast_path.py` times it against
# `nn.MultiheadAttention`. Later lessons import it; the next section runs
# yours, once it passes.
#
# ## Equal to `torch.nn.MultiheadAttention`
#
# PyTorch ships multi-head attention as `nn.MultiheadAttention`. Your module
# (once it passes its check; the reviewed one until then) stores its weights
# in the same layout: PyTorch names the stacked projection `in_proj_weight`
# and `in_proj_bias` where ours has an `nn.Linear` called `in_proj`, so
# renaming the entries of its `state_dict` copies the weights one to one, and
# then the two must agree number for number. We test that on a real, padded
# batch: two lines of the soliloquy, tokenized together, so that the shorter
# one gets padding tokens, with the vectors that enter MiniLM's layer 1 as
# input. The last case is cross-attention: the real tokens of line 2 attend to
# the whole of line 1. The PyTorch module starts from its own random weights
# (seeded): equality must hold for any weights.
#
# One trap: **the two libraries use opposite mask conventions.** Ours (and
# `F.scaled_dot_product_attention`) says True = may attend;
# `nn.MultiheadAttention`'s `key_padding_mask` and `attn_mask` say True =
# masked out. So we pass PyTorch the negations. And `nn.MultiheadAttention` returns
# the weights averaged over the heads unless it is given
# `average_attn_weights=False`, which keeps one matrix per head, as ours do.

# %%
from course_utils.attention import causal_mask, padding_mask

batch = tokenizer(soliloquy[:2], return_tensors="pt", padding=True)
print("attention_mask (0 = padding):\n", batch["attention_mask"])
with torch.no_grad():
    xb = encoder(**batch, output_hidden_states=True).hidden_states[LAYER]  # (2, 15, 384)
length = xb.shape[1]
line_2 = xb[1:, :int(batch["attention_mask"][1].sum())]  # line 2 without its padding: (1, 12, 384)

torch.manual_seed(0)
torch_mha = nn.MultiheadAttention(D, H, batch_first=True).eval()
YourAttention = yours_if_passed(MyMultiHeadAttention, "04.multi_head_attention", MultiHeadAttention)
ours = YourAttention(D, H).eval()
ours.load_state_dict({name.replace("in_proj_", "in_proj."): weight for name, weight in torch_mha.state_dict().items()})

cases = {  # name: (query, key; our mask, True = attend; PyTorch's arguments, True = masked out)
    "no mask": (xb, xb, None, {}),
    "key padding": (xb, xb, padding_mask(batch["attention_mask"]), {"key_padding_mask": batch["attention_mask"] == 0}),
    "key padding + causal": (xb, xb, padding_mask(batch["attention_mask"]) & causal_mask(length),
                             {"key_padding_mask": batch["attention_mask"] == 0, "attn_mask": ~causal_mask(length)}),
    "cross: line 2 -> line 1": (line_2, xb[:1], None, {}),
}
with torch.no_grad():
    for name, (query, key, our_mask, torch_masks) in cases.items():
        expected, expected_weights = torch_mha(query, key, key, average_attn_weights=False, **torch_masks)
        out, weights = ours(query, key, mask=our_mask, need_weights=True)
        print(f"{name:<24} {str(tuple(weights.shape)):<16} max |ours - torch|: output {(out - expected).abs().max():.5f}, "
              f"weights {(weights - expected_weights).abs().max():.5f}")
        assert (out - expected).abs().max() < 1e-5 and (weights - expected_weights).abs().max() < 1e-5

# %% [markdown]
# The reviewed module's fast path, which never builds the weights, agrees as
# well; it is the one later lessons run.

# %%
reviewed = MultiHeadAttention(D, H).eval().load_from_torch(torch_mha)
with torch.no_grad():
    for name, (query, key, our_mask, torch_masks) in cases.items():
        fast, _ = reviewed(query, key, mask=our_mask)
        difference = (fast - torch_mha(query, key, key, **torch_masks)[0]).abs().max()
        print(f"{name:<24} fast path, max |reviewed - torch|: {difference:.5f}")
        assert difference < 1e-5

# %% [markdown]
# Every difference rounds to zero at five decimals (the assertion holds them
# below 10⁻⁵: float32 rounding). Now the trap itself: hand PyTorch our mask as it is, True =
# attend, and it masks the real tokens instead of the padding. The first
# line has no padding at all, so every one of its keys is masked and its
# softmax has nothing left to normalise.

# %%
with torch.no_grad():
    wrong, _ = torch_mha(xb, xb, xb, key_padding_mask=batch["attention_mask"].bool())
    right, _ = torch_mha(xb, xb, xb, key_padding_mask=batch["attention_mask"] == 0)
print("line 1 (no padding), output is NaN:", bool(wrong[0].isnan().all()))
print(f"line 2 (3 padding tokens), max |wrong - right|: {(wrong[1] - right[1]).abs().max():.4f}")

# %% [markdown]
# ## What more heads cost: nothing, almost
#
# Does a layer with more heads have more parameters, or do more work? Count
# them. The parameters are W^Q, W^K, W^V and W^O, each D × D, plus their
# biases: 4D² + 4D, whatever H is. More heads only cut the same matrices
# into thinner slices.
#
# For the work, PyTorch's `FlopCounterMode` counts the floating-point
# operations of every matrix multiply while a module runs. We run it on
# tensors on the `meta` device, which have shapes but no data, so a
# sequence of 128 tokens costs nothing to "run". (We use the explicit path,
# `need_weights=True`; the counter does not see inside the CPU's fused
# kernel.) Per sequence of L tokens:
#
# - the four projections: each is L·D² multiply-adds, and the counter
#   counts a multiply-add as 2 FLOPs, so 2·L·D² FLOPs each, **8·L·D²** in all;
# - the attention: each head computes L × L scores of d_head-wide vectors
#   (L²·d_head multiply-adds) and an L × L by L × d_head product (as many
#   again): 2 · 2·L²·d_head FLOPs per head, and H · d_head = D, so
#   **4·L²·D** FLOPs in all, whatever H is.
#
# What does grow with H is the number of attention weights, H · L²: each
# head has its own L × L matrix to compute a softmax over and, on the
# explicit path, to store.

# %%
from torch.utils.flop_counter import FlopCounterMode

SEQUENCE = 128
rows = []
for heads_count in [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]:
    with torch.device("meta"):  # shapes only, no data
        module = MultiHeadAttention(D, heads_count)
    with FlopCounterMode(display=False) as counter:
        module(torch.empty(1, SEQUENCE, D, device="meta"), need_weights=True)
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    rows.append({"heads": heads_count, "d_head": D // heads_count,
                 "parameters": sum(p.numel() for p in module.parameters()),
                 "projection": by_op["aten.addmm"], "attention": by_op["aten.bmm"],
                 "weights": heads_count * SEQUENCE ** 2})

print(f"D = {D}, L = {SEQUENCE}")
print(f"{'heads':>5} {'d_head':>6} {'parameters':>11} {'projection MFLOPs':>18} {'attention MFLOPs':>17} {'attention weights':>18}")
for row in rows:
    print(f"{row['heads']:>5} {row['d_head']:>6} {row['parameters']:>11,} {row['projection'] / 1e6:>18.1f} "
          f"{row['attention'] / 1e6:>17.1f} {row['weights']:>18,}")
assert all(row["parameters"] == 4 * D * D + 4 * D == sum(p.numel() for p in torch_mha.parameters()) for row in rows)
assert all(row["projection"] == 8 * SEQUENCE * D * D and row["attention"] == 4 * SEQUENCE ** 2 * D for row in rows)

# %% [markdown]
# The plot says the same: the parameters and the matrix-multiply FLOPs are
# flat lines, while the number of attention weights grows in step with H.
# That is why the number of heads is chosen for what it lets the model
# express, not for its cost. The original paper measured it (Vaswani et al.,
# 2017, Table 3, rows A): at a fixed width, one head translated 0.9 BLEU worse
# than 8 heads (24.9 against 25.8), 16 heads matched 8, and 32 heads, each
# only 16 wide, lost 0.4; Michel et al. (2019, *Are Sixteen Heads Really Better than One?*)
# then found that many heads of a trained model can be removed at little
# cost. The practical limits are that d_head must not get too small for a
# head to represent much (BERT-base uses 12 heads of 64, MiniLM 12 of 32),
# and that many thin matrix multiplies run less efficiently on real hardware
# than a few wide ones.

# %%
import matplotlib.pyplot as plt

head_counts = [row["heads"] for row in rows]
figure, (left_ax, right_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
left_ax.plot(head_counts, [row["parameters"] / 1e6 for row in rows], "o-", label="parameters (millions)")
left_ax.plot(head_counts, [row["projection"] / 1e9 for row in rows], "s-", label="projection GFLOPs")
left_ax.plot(head_counts, [row["attention"] / 1e9 for row in rows], "^-", label="attention GFLOPs")
left_ax.set_xscale("log", base=2)
left_ax.set_xticks(head_counts, head_counts)
left_ax.set_ylim(0, None)
left_ax.set_xlabel("number of heads H")
left_ax.set_title(f"Constant in H (D = {D}, L = {SEQUENCE})")
left_ax.legend(fontsize=8)
right_ax.plot(head_counts, [row["weights"] / 1e3 for row in rows], "o-", color="#C44E52")
right_ax.set_xscale("log", base=2)
right_ax.set_yscale("log", base=2)
right_ax.set_xticks(head_counts, head_counts)
right_ax.set_yticks([16, 64, 256], ["16", "64", "256"])
right_ax.set_xlabel("number of heads H")
right_ax.set_ylabel("thousands (log scale)")
right_ax.set_title("Attention weights H·L²: grow with H")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The 12 heads of a real layer
#
# What do the heads of the pretrained encoder actually do with their freedom?
# `attention_maps` runs MiniLM on a text and returns the attention weights of
# every layer and head, shape (layers, heads, tokens, tokens). Below are all
# 12 heads of layer 1 on the first line of the soliloquy, side by side: row i
# of a map shows where token i looks.

# %%
from course_utils import viz
from course_utils.pretrained import attention_maps

map_tokens, maps = attention_maps(line)
print("maps:", tuple(maps.shape), "= (layers, heads, tokens, tokens)")
assert torch.allclose(maps[LAYER], result.attentions[LAYER][0])

figure, axes = plt.subplots(3, 4, figsize=(17, 13))
for head, ax in enumerate(axes.flat):
    viz.plot_attention(maps[LAYER, head], map_tokens, ax=ax, title=f"layer {LAYER}, head {head}")
    ax.set_xlabel("")
    ax.set_ylabel("")
plt.tight_layout()
plt.show()

# %% [markdown]
# The heads differ a lot. Head 8 is a sharp diagonal just above the main one:
# every token looks at the token after it. Heads 9 and 11 have pieces of a
# diagonal just below it: the token before. Head 2 looks at a few tokens
# around each word. Most heads also put much of their weight on the first
# column, [CLS].
#
# One line can mislead, so let us measure over the whole soliloquy, 35 lines.
# For each token (the queries [CLS] and [SEP] left out), we split its
# attention into six disjoint parts: [CLS], the previous token, itself, the
# next token, all other tokens, and [SEP]. These are tokens, not words: a
# word cut into pieces, such as *sling* + *##s*, counts as two, so "the next
# token" of *sling* is its own ending. Averaged over the tokens and lines,
# each head's six shares add up to 1.

# %%
PARTS = ["[CLS]", "previous", "itself", "next", "other tokens", "[SEP]"]


def part_of_each_key(n):
    """(n, n) tensor: for query i and key j, the index in PARTS of key j as seen from i."""
    query, key = torch.arange(n)[:, None], torch.arange(n)[None, :]
    part = torch.full((n, n), PARTS.index("other tokens"))
    part[key == query - 1] = PARTS.index("previous")
    part[key == query] = PARTS.index("itself")
    part[key == query + 1] = PARTS.index("next")
    part[:, 0], part[:, n - 1] = PARTS.index("[CLS]"), PARTS.index("[SEP]")  # special tokens win
    return part


def part_shares(weights):
    """weights (heads, n, n) of one line -> (heads, 6): average share of each part, word queries only."""
    n = weights.shape[-1]
    part, words = part_of_each_key(n)[1:-1], weights[:, 1:-1]
    return torch.stack([(words * (part == index)).sum(-1).mean(-1) for index in range(len(PARTS))], dim=-1)


shares = torch.stack([part_shares(attention_maps(text)[1][LAYER]) for text in soliloquy]).mean(0)  # (12, 6)
assert torch.allclose(shares.sum(-1), torch.ones(H))
print(f"layer {LAYER}, word tokens of {len(soliloquy)} lines\n")
print("head " + " ".join(f"{part:>11}" for part in PARTS))
for head, row in enumerate(shares.tolist()):
    print(f"{head:>4} " + " ".join(f"{share:>11.2f}" for share in row))

# %% [markdown]
# The same numbers as a picture: one bar per head, cut into the six parts.

# %%
colours = ["#8C8C8C", "#4C72B0", "#DD8452", "#55A868", "#CCB974", "#C44E52"]
figure, ax = plt.subplots(figsize=(9, 3.8))
left_edge = torch.zeros(H)
for index, (part, colour) in enumerate(zip(PARTS, colours)):
    ax.barh(range(H), shares[:, index], left=left_edge, color=colour, label=part)
    left_edge += shares[:, index]
ax.set_yticks(range(H), [f"head {head}" for head in range(H)])
ax.invert_yaxis()
ax.set_xlim(0, 1)
ax.set_xlabel("average share of a word token's attention")
ax.set_title(f"What each head of layer {LAYER} attends to (Hamlet's soliloquy, {len(soliloquy)} lines)")
ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
plt.tight_layout()
plt.show()

# %% [markdown]
# Over 35 lines the picture holds. Head 8 gives 65% of a token's attention
# to the next token (head 4 gives it 25%); head 9 gives 31% to the previous
# token (heads 2 and 11 about 15%); head 1 gives 17% to the token itself;
# head 2 spreads 42% over the other tokens of the line, heads 3 and 4 about
# 30%. The
# large grey share on [CLS] is a habit known from BERT models (Clark et al.,
# 2019, *What Does BERT Look At?*): a head that has nothing to fetch for a
# token parks its weight on a special token, a way of opting out for that
# token. In decoder models the same habit, on the first token, is called an
# *attention sink* (the term of Xiao et al., 2023).
#
# So within one layer, on the same tokens, different heads do different jobs
# at the same time: one fetches the next token, another the previous one,
# others gather from the whole line or opt out. This is the *Romeo loves
# Juliet* demonstration at full size: a single head would have to average
# these patterns into one distribution per token; twelve heads keep them
# apart, in twelve 32-wide subspaces, and W^O combines what they found.
#
# ## Explore: any layer, any head
#
# Six layers of twelve heads are more than a page of pictures can show. In
# JupyterLab, the explorer below lets you pick a layer and a head with the
# sliders, and a sentence from the list or one you type, and redraws the map.
# Things to look for: does head 8 of layer 1 look at the next token in every
# sentence? Which heads of the last layer still track neighbours? Which ones
# park almost everything on [CLS] or [SEP]? (In a headless run, as in the
# tests, only the starting state is drawn: layer 1, head 8, on the first
# sentence.)

# %%
from course_utils.widgets import attention_explorer

attention_explorer(soliloquy[:5] + ["Romeo loves Juliet.", "Brutus stabbed Caesar.", "Caesar stabbed Brutus."],
                   layer=LAYER, head=8)

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("04")

# %%
# BEGIN SOLUTION
answer("04.why-heads", "B")
answer("04.split", "C")
answer("04.w-o", "A")
answer("04.cost", ["A", "B", "D"])
answer("04.parameters", 263168)
answer("04.cross-weights", 2016)
answer("04.inverted-mask", "NaN")
answer("04.scale", "B")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - **Multi-head attention** runs H attentions in parallel over the same
#   sequence, each in its own learned subspace of width d_head = D / H, with
#   its own attention distribution; W^O mixes their concatenated outputs back
#   into the full width. One head can only average what it attends to; several
#   heads can look left and right, near and far, at the same time.
# - **Split** with `view(B, L, H, d_head).transpose(1, 2)`, **merge** with
#   `transpose(1, 2).reshape(B, L, D)`. A reshape without the transpose has
#   the right shape and the wrong content. Scale each head's scores by
#   1/√d_head.
# - H separate heads in an `nn.ModuleList`, concatenated and multiplied by
#   W^O, are the fused module cut apart: same weights, same numbers. Only the
#   product W^V_h W^O_h of a head is determined, not its two factors.
# - **Cross-attention** is the same module with the queries from one sequence
#   and the keys and values from another: weights (B, H, L_q, L_k), output
#   (B, L_q, D).
# - Your module equals `torch.nn.MultiheadAttention` with copied weights, with
#   padding and causal masks and across two sequences (differences below
#   10⁻⁵), once the opposite mask conventions are respected. The same
#   arithmetic with BERT's weights reproduces the self-attention of MiniLM's
#   layer 1, W^O included (differences below 10⁻⁵).
# - **Cost:** 4D² + 4D parameters and 8·L·D² + 4·L²·D matrix-multiply FLOPs,
#   independent of H; only the number of attention weights, H·L², grows
#   with H.
# - The 12 heads of a real MiniLM layer specialise: previous token, next
#   token, spread over the line. Lesson 05 gives the model the sense of order
#   that those previous-token and next-token heads rely on.
