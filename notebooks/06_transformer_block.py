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
# # 06 · The transformer block
#
# Attention lets every token gather information from the others. A
# transformer layer wraps it with three more pieces: a **feed-forward
# network** that works on each token alone, **residual connections** that add
# each sublayer's input back to its output, and **layer normalisation**. This
# lesson builds each piece from its formula, puts them together in the three
# arrangements you will meet in papers and code, measures why the arrangement
# matters, and ends with a decoder layer that you assemble from your own
# pieces and that equals PyTorch's number for number.
#
# **In this lesson you will**
#
# - see the three uses of attention in an encoder-decoder: encoder
#   self-attention, masked decoder self-attention and cross-attention;
# - measure what a residual connection does for a deep stack, apart from
#   what initialisation does;
# - write layer normalisation from its formula (exercise 1);
# - build the position-wise feed-forward network and see where dropout goes;
# - tell apart post-LN (the 2017 paper), pre-LN (GPT-2 and most models since)
#   and the parallel block of GPT-J and PaLM, and measure their gradients at
#   initialisation and their training with and without learning-rate warm-up;
# - check our encoder and decoder layers, and the whole encoder-decoder,
#   against `nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer` and
#   `nn.Transformer`;
# - count the parameters of the paper's base model from its configuration;
# - wire a decoder layer yourself (exercise 2), run it with your layer norm
#   inside, and match `nn.TransformerDecoderLayer`.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## The whole model on one page
#
# The transformer of *Attention Is All You Need* (Vaswani et al., 2017) is an
# encoder-decoder. The encoder reads the source sentence; the decoder writes
# the target one token at a time. Both are stacks of N identical layers, and
# attention appears in three roles:
#
# - **encoder self-attention**: every source token attends to every source
#   token (only padding is masked);
# - **masked self-attention** in the decoder: every target position attends to
#   itself and the positions before it, never after (the causal mask of
#   lesson 03), so that training on whole sentences cannot peek at the answer;
# - **cross-attention**: the decoder's positions ask the questions (queries)
#   and the encoder's output, the *memory*, gives the keys and values. This is
#   where the translation reads the source.
#
# Every sublayer sits inside "add & LayerNorm": its input is added back to its
# output (the grey arrows) and the sum is normalised.

# %%
import matplotlib.pyplot as plt

from course_utils import viz

viz.draw_encoder_decoder()
plt.show()

# %% [markdown]
# ## Residual connections
#
# A residual connection computes x + F(x) instead of F(x). The sublayer F
# only has to learn a *change* to its input, and the derivative of x + F(x)
# with respect to x is the identity plus F's own derivative: the gradient has
# a path that skips F. Without that path the gradient that reaches the first
# layer is a product of one factor per layer, and a product of many factors
# shrinks or explodes unless each factor is close to 1.
#
# Whether each factor is close to 1 is, at the start of training, a matter of
# **initialisation**, so we measure the two apart. We stack feed-forward
# sublayers (Linear, ReLU, Linear) of width 64, with and without residuals,
# under two initialisations:
#
# - PyTorch's default for `nn.Linear`: weights uniform in ±1/√fan_in, so
#   Var(W) = 1/(3·fan_in). Each Linear then divides the variance by 3 and ReLU
#   halves it, so a block scales a vector's size by about √(1/18) ≈ 0.24;
# - a variance-preserving one (He et al., 2015): Var(W₁) = 2/fan_in before the
#   ReLU, Var(W₂) = 1/fan_in after it, zero biases, so a block keeps the size.
#
# To read the gradient at the input we backpropagate a fixed random
# projection of the output, (h · r).sum(), so that the gradient that arrives
# from above is the same whatever the stack does (a loss such as mean(h²)
# would scale it with the output's own size).

# %%
import torch
from torch import nn

WIDTH = 64


def feed_forward_stack(depth: int, init: str, seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.ReLU(), nn.Linear(4 * WIDTH, WIDTH))
                           for _ in range(depth))
    if init == "variance-preserving":
        for first, _, second in blocks:
            nn.init.kaiming_normal_(first.weight, nonlinearity="relu")  # Var 2/fan_in: ReLU keeps half
            nn.init.normal_(second.weight, std=(1 / second.in_features) ** 0.5)
            nn.init.zeros_(first.bias), nn.init.zeros_(second.bias)
    return blocks


def run_stack(blocks, x, residual: bool):
    for block in blocks:
        x = x + block(x) if residual else block(x)
    return x


def input_gradient_norm(depth: int, init: str, residual: bool) -> float:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, WIDTH, generator=generator, requires_grad=True)
    projection = torch.randn(32, WIDTH, generator=generator)
    (run_stack(feed_forward_stack(depth, init), x, residual) * projection).sum().backward()
    return (x.grad.norm() / projection.norm()).item()  # 1.0: the gradient arrives at the input unchanged


block = feed_forward_stack(1, "default")[0]
probe = torch.randn(10_000, WIDTH)
print(f"one default block scales the std by {(block(probe).std() / probe.std()).item():.2f} (predicted √(1/18) = {(1 / 18) ** 0.5:.2f})\n")
print("gradient at the input, relative to the one from above")
print("sublayers   default init: plain   residual   variance-preserving: plain   residual")
for depth in [6, 12, 24]:
    row = [input_gradient_norm(depth, init, residual) for init in ["default", "variance-preserving"] for residual in [False, True]]
    print(f"{depth:>9}   {row[0]:>19.1e}   {row[1]:>8.2f}   {row[2]:>26.2f}   {row[3]:>8.3g}")

# %% [markdown]
# Three things to read in the table:
#
# - with the **default initialisation** a plain stack loses a factor of about
#   0.24 per sublayer, as predicted, and after 24 almost nothing reaches the
#   input; with residuals it arrives whole, even slightly amplified (each
#   block adds a small path of its own: ×2 at 24 blocks);
# - with a **variance-preserving initialisation** the plain stack keeps its
#   gradient too, at every depth: at initialisation, good init alone does what
#   the residuals did;
# - residuals with that same initialisation **explode** instead: each block
#   adds a branch as large as its input, so the size doubles in variance per
#   block. This is why residual models shrink their branches at
#   initialisation: GPT-2 scales the weights of each residual projection by
#   1/√N for N residual layers, two per block (Radford et al., 2019, §2.3), and every transformer
#   layer puts a LayerNorm in the way.
#
# So at initialisation residuals are one fix among several. Their real case is
# what happens next. With residuals, each layer starts near the identity (a
# small branch added to x), and the gradient's path through the identity does
# not depend on the initialisation or on what training does to the weights.
# He et al. (2016), with good initialisation and batch norm, found that deeper
# plain networks reach a *higher training* error than shallower ones (the
# "degradation" problem), and residual ones do not. Here is the same
# experiment in small: fit a fixed random smooth function (a target of
# variance 1, so a loss of 1 means nothing learned) with 2, 8 and 24 blocks,
# variance-preserving init for all, the residual branches scaled by 1/√depth
# as GPT-2 does, 200 steps of Adam each.

# %%
# NBVAL_IGNORE_OUTPUT
import math

generator = torch.Generator().manual_seed(5)
inputs = torch.randn(4096, WIDTH, generator=generator)
targets = torch.tanh(inputs @ torch.randn(WIDTH, 256, generator=generator) / 8) @ torch.randn(256, WIDTH, generator=generator)
targets = targets / targets.std()


def fitted_loss(depth: int, residual: bool) -> float:
    blocks = feed_forward_stack(depth, "variance-preserving")
    if residual:
        with torch.no_grad():
            for _, _, second in blocks:
                second.weight /= math.sqrt(depth)  # small branches: each block starts near the identity
    optimizer = torch.optim.Adam(blocks.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(6)
    for _ in range(200):
        rows = torch.randint(len(inputs), (64,), generator=batches)
        loss = (run_stack(blocks, inputs[rows], residual) - targets[rows]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (run_stack(blocks, inputs, residual) - targets).pow(2).mean().item()


fitted = {(depth, residual): fitted_loss(depth, residual) for depth in [2, 8, 24] for residual in [False, True]}
print("training loss after 200 steps (1.0 = nothing learned)")
print("sublayers   plain   residual")
for depth in [2, 8, 24]:
    print(f"{depth:>9}   {fitted[depth, False]:.2f}   {fitted[depth, True]:>8.2f}")
assert fitted[24, False] > 0.8 > 0.3 > fitted[24, True], fitted  # seeds 0-2 gave 0.94-0.96 and 0.21-0.22
assert fitted[2, False] < fitted[8, False] < fitted[24, False], fitted

# %% [markdown]
# The plain stacks get *worse* as they get deeper, although a deeper stack
# could do everything a shallower one does (its extra blocks would only have
# to learn the identity): at 24 blocks it has learned next to nothing in 200
# steps. The residual stacks fit about as well at every depth, since for them
# the identity is where each block starts. (Other seeds move these numbers by
# about 0.01; plain 24 stays above 0.9.) That is the lasting benefit of
# residuals, in any deep network: the identity path does not depend on the
# initialisation or on training. What else a deep transformer needs (where
# the norm goes, the learning rate's warm-up) is the subject of the rest of
# this lesson.
#
# ## Layer normalisation
#
# Layer normalisation (Ba et al., 2016) rescales **each token's vector on its
# own**: over the D features of one position it subtracts their mean and
# divides by their standard deviation, then applies a learned scale γ and
# shift β (one number per feature):
#
# $$\text{LayerNorm}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
# \qquad \mu = \frac{1}{D}\sum_i x_i,\quad \sigma^2 = \frac{1}{D}\sum_i (x_i - \mu)^2 .$$
#
# Note the variance divides by D, not D − 1, and ε (1e-5 in PyTorch, 1e-12 in
# BERT) keeps the division safe. Unlike batch normalisation, nothing is
# averaged across the batch or across positions, so a token's result does not
# depend on the other tokens or on the batch size, and training and inference
# compute the same thing.
#
# ### Exercise 1: layer normalisation from its formula
#
# Write `layer_norm(x, gamma, beta, eps)`: x has any number of leading axes
# and D features in its last; γ and β have D entries each. Follow the formula
# term by term. The checker compares your function with PyTorch's on inputs
# this lesson never uses: rows whose variance is far smaller than ε, a width
# of 4, a square input, an ε other than the default, float64; it checks that
# x is left as it was, and that the gradient flows back to x. When your
# function passes, the cells that follow and your decoder layer at the end of
# the lesson run it.

# %%
def layer_norm(x, gamma, beta, eps=1e-5):
    """γ ⊙ (x - μ) / √(σ² + ε) + β over the last axis, with σ² divided by D."""
    # BEGIN SOLUTION
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(variance + eps) + beta
    # END SOLUTION


# %%
from course_utils.classroom.checks.transformer import check_layer_norm

check_layer_norm(layer_norm)

# %% [markdown]
# Here is whichever layer norm passed (yours, or PyTorch's `F.layer_norm`
# until yours does) on a batch far from mean 0 and variance 1, against
# `nn.LayerNorm` with random γ and β, and then with γ = 1 and β = 0:

# %%
import torch.nn.functional as F

from course_utils.classroom.checks import yours_if_passed


def torch_layer_norm(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, gamma.shape, gamma, beta, eps)


normalise = yours_if_passed(layer_norm, "06.layer_norm", torch_layer_norm)
torch.manual_seed(0)
x = 3 + 5 * torch.randn(2, 4, 16)  # (batch, positions, width)
reference = nn.LayerNorm(16)
nn.init.normal_(reference.weight)
nn.init.normal_(reference.bias)
with torch.no_grad():
    print("equal to nn.LayerNorm (max |difference| < 1e-5):",
          (normalise(x, reference.weight, reference.bias) - reference(x)).abs().max().item() < 1e-5)

plain = normalise(x, torch.ones(16), torch.zeros(16))  # γ = 1, β = 0
for name, values in [("before", x), ("after", plain)]:
    means, stds = values.mean(-1)[0], values.std(-1, unbiased=False)[0]
    print(f"{name:<6}  mean of each token: {means.abs().max():.1f} at most  std: {stds.min():.1f} to {stds.max():.1f}")

# %% [markdown]
# Every token now has mean 0 and standard deviation 1 (before γ and β). The
# reviewed version is `course_utils.transformer.LayerNorm`, a module with γ
# and β as parameters that hands the formula to PyTorch's fused kernel: one
# kernel that makes two passes over each row while it is in cache (the
# moments, then the normalised values), where the formula written out
# launches a separate operation for each step (a mean, a subtraction, a
# square, another mean, an addition, a square root, a division, a product
# and a sum), each a pass over memory. Lesson 10 measures what that costs in
# training.
#
# ## The feed-forward network
#
# The second sublayer is a small two-layer network applied to **each position
# separately and identically**: widen D to d_ff (4·D in the paper, 2048 for
# D = 512), apply a non-linearity (ReLU in the paper, GELU in BERT and GPT),
# narrow back to D:
#
# $$\text{FFN}(x) = \max(0,\, x W_1 + b_1)\, W_2 + b_2 .$$
#
# Attention mixes information *between* positions; the feed-forward network
# processes what each position has gathered. The course's `FeedForward` is
# that formula in one line (printed below, with dropout after the
# non-linearity, of which more in a moment). "Position-wise" is easy to
# check: the output at position 3 is the same whether we feed the whole
# sequence or position 3 alone.

# %%
from course_utils.transformer import FeedForward, TransformerConfig

import inspect

print(inspect.getsource(FeedForward.forward))
small = TransformerConfig(d_model=64, num_heads=4, d_ff=256, dropout=0.1)
ffn = FeedForward(small).eval()
tokens = torch.randn(1, 10, 64)
alone = ffn(tokens[:, 3:4])[0, 0]
print("position 3, whole sequence vs alone, equal:", torch.allclose(ffn(tokens)[0, 3], alone, atol=1e-6))
ffn_parameters = sum(p.numel() for p in ffn.parameters())
print(f"feed-forward parameters: {ffn_parameters:,} = 2·D·d_ff + d_ff + D")

# %% [markdown]
# **Dropout** (probability 0.1 in the paper) is applied during training to
# the output of each sublayer before it is added to the residual, and to the
# sum of the embeddings and the positional encodings. Implementations such as
# PyTorch's (and ours) also drop inside the feed-forward network, after the
# non-linearity, and on the attention weights. In evaluation mode
# (`model.eval()`) dropout is switched off, and the same input gives the same
# output every time:

# %%
ffn.train()
print("training mode, two calls equal:", torch.equal(ffn(tokens), ffn(tokens)))
ffn.eval()
print("eval mode, two calls equal:    ", torch.equal(ffn(tokens), ffn(tokens)))

# %% [markdown]
# ## Where does the norm go? Three blocks
#
# With those pieces, an encoder layer is attention then feed-forward, each
# with its residual and its norm. Models differ in several choices: the norm
# itself (Llama uses RMSNorm, which skips the mean: lesson 12, to come), the
# activation, the feed-forward width, biases or none. The one we study here
# is **where the norm goes**, and three arrangements are in use:
#
# | name | one layer | where |
# |---|---|---|
# | **post-LN** | x ← LN(x + Attn(x)); x ← LN(x + FFN(x)) | the 2017 paper, BERT |
# | **pre-LN** | x ← x + Attn(LN(x)); x ← x + FFN(LN(x)) | GPT-2, GPT-3 and most models since (Llama too, with RMSNorm) |
# | **parallel** | h = LN(x); x ← x + Attn(h) + FFN(h) | GPT-J, PaLM |
#
# The parallel block is a pre-LN block whose two sublayers read the same
# normalised input side by side (GPT-J shares one norm between them, as our
# version does; GPT-NeoX gives each its own), instead of the feed-forward network reading
# the attention's output. Their input projections can then be fused into one
# matrix multiply: PaLM reports about 15% faster training at large scale, a
# small loss of quality at 8B parameters and none at 62B (Chowdhery et al.,
# 2022, §2). (Some introductions write the encoder layer as
# LN(x + Attn(x) + FFN(x)); no model we know of uses that block.)
#
# `course_utils.transformer.EncoderLayer` builds all three from one config
# field, `norm`. Here are the three written out with its sublayers, checked
# against the module:

# %%
from course_utils.transformer import EncoderLayer

torch.manual_seed(0)
x = torch.randn(2, 10, 64)
for norm in ["post", "pre", "parallel"]:
    layer = EncoderLayer(TransformerConfig(d_model=64, num_heads=4, d_ff=256, dropout=0.0, norm=norm)).eval()
    attention = lambda h: layer.self_attn(h)[0]
    if norm == "post":
        h = layer.norm1(x + attention(x))
        by_hand = layer.norm2(h + layer.feed_forward(h))
    elif norm == "pre":
        h = x + attention(layer.norm1(x))
        by_hand = h + layer.feed_forward(layer.norm2(h))
    else:
        h = layer.norm1(x)
        by_hand = x + attention(h) + layer.feed_forward(h)
    print(f"{norm:>8}: formula equals EncoderLayer(norm={norm!r}):", torch.allclose(by_hand, layer(x)[0], atol=1e-6))

# %% [markdown]
# One consequence is visible right away: a post-LN layer's output is always
# normalised, while a pre-LN or parallel layer adds to a residual stream that
# no norm touches. Such a stack therefore ends with one extra LayerNorm
# (GPT-2's `ln_f`). `nn.Transformer`, and our `Encoder` and `Decoder` after
# it, add that final norm to both stacks in post-LN mode too, where the paper
# has none.
#
# ### Gradients at initialisation
#
# Xiong et al. (2020, *On Layer Normalization in the Transformer
# Architecture*) traced the need for warm-up to the gradients at
# initialisation: in a post-LN transformer the gradients of the parameters
# near the output are large, so a large learning rate makes the first steps
# unstable; in pre-LN they are spread evenly over the layers. We measure it on
# a stack of 12 encoder layers with a causal mask, used as a character-level
# language model on Shakespeare.
#
# First the data: the first 400,000 characters of the training plays, as ids,
# and random windows of 32 characters with the same windows shifted by one as
# targets.

# %%
from course_utils import data
from course_utils.attention import causal_mask
from course_utils.transformer import LayerNorm

text = data.shakespeare_splits()[0]
characters = sorted(set(text))
encoded = torch.tensor([characters.index(c) for c in text[:400_000]])
print(f"{len(characters)} different characters; {len(encoded):,} for training")

CONTEXT = 32


def batches(seed: int, batch_size: int = 16):
    """next_batch(step) for the training loop: random windows of the text and the same shifted by one."""
    generator = torch.Generator().manual_seed(seed)

    def next_batch(step):
        starts = torch.randint(len(encoded) - CONTEXT - 1, (batch_size,), generator=generator)
        windows = torch.stack([encoded[s: s + CONTEXT + 1] for s in starts])
        return windows[:, :-1], windows[:, 1:]

    return next_batch


# %% [markdown]
# The model is a tool for this experiment only, so it is defined here: an
# embedding, learned positions, the stack, a final norm for the pre-LN and
# parallel blocks, and a linear output layer. The loss is the cross-entropy
# of each next character.

# %%
class CharacterModel(nn.Module):
    """A stack of encoder layers with a causal mask: predicts each next character."""

    def __init__(self, config: TransformerConfig, layers: int):
        super().__init__()
        self.embed = nn.Embedding(len(characters), config.d_model)
        self.positions = nn.Parameter(torch.zeros(CONTEXT, config.d_model))
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(layers))
        self.final_norm = nn.Identity() if config.norm == "post" else LayerNorm(config.d_model)
        self.out = nn.Linear(config.d_model, len(characters))

    def residual_stream(self, ids):
        """The input of the first layer, then each layer's output."""
        h = self.embed(ids) + self.positions[: ids.size(1)]
        stream = [h]
        for layer in self.layers:
            h, _ = layer(h, causal_mask(ids.size(1)))
            stream.append(h)
        return stream

    def forward(self, ids):
        return self.out(self.final_norm(self.residual_stream(ids)[-1]))


def next_character_loss(model, batch):
    inputs, targets = batch
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def character_model(norm: str, layers: int = 12) -> CharacterModel:
    torch.manual_seed(0)
    return CharacterModel(TransformerConfig(d_model=32, num_heads=4, d_ff=128, dropout=0.0, norm=norm), layers)


# %% [markdown]
# Now one backward pass on one batch of 64 windows, at initialisation, and
# the gradient norm of each layer's parameters, for the three blocks:

# %%
def layer_gradient_norms(model: CharacterModel) -> list[float]:
    next_character_loss(model, batches(seed=0, batch_size=64)(1)).backward()
    return [torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item() for layer in model.layers]


BLOCKS = {"post": "post-LN", "pre": "pre-LN", "parallel": "parallel"}
gradient_norms = {norm: layer_gradient_norms(character_model(norm)) for norm in BLOCKS}
figure, ax = plt.subplots()
for norm, norms in gradient_norms.items():
    ax.plot(range(1, 13), norms, marker="o", label=BLOCKS[norm])
ax.set_xlabel("layer (1 = next to the input)")
ax.set_ylabel("gradient norm of the layer's parameters")
ax.set_ylim(0, None)
ax.set_title("Gradients at initialisation, 12 layers")
ax.legend()
plt.show()
for norm, norms in gradient_norms.items():
    print(f"{BLOCKS[norm]:>8}: last layer / first layer = {norms[-1] / norms[0]:.1f}")

# %% [markdown]
# At this size the difference is mild, as the axis from 0 shows: post-LN's
# gradients are a little larger near the output, and pre-LN's and the
# parallel block's fall slowly from the input to the output. Xiong et al.'s
# theory predicts the contrast growing with depth (their bound on post-LN's
# last-layer gradient does not shrink with the number of layers L, pre-LN's
# falls as 1/√L); at 12 narrow layers the gradients alone would not predict
# much.
#
# Why do pre-LN's fall a little? Its residual stream is never normalised,
# and each layer adds to it, so it grows with depth (Xiong et al. show its
# size growing as √l at layer l); each layer's LayerNorm divides by the size
# of the stream it reads, which damps the gradient of the later layers.
# That early pre-LN layers get larger gradients than later ones was observed
# by Shleifer et al. (2021, NormFormer), who add norms to even it out. The
# size of the stream after each layer shows the growth:

# %%
with torch.no_grad():
    window = batches(seed=0, batch_size=64)(1)[0]
    for norm in BLOCKS:
        sizes = [h.norm(dim=-1).mean().item() for h in character_model(norm).residual_stream(window)[1:]]
        print(f"{BLOCKS[norm]:>8}: mean size of a token's vector after layers 1, 4, 8, 12: "
              + ", ".join(f"{sizes[layer - 1]:.1f}" for layer in (1, 4, 8, 12)))

# %% [markdown]
# A post-LN layer ends with a LayerNorm, so its output always has size √D
# (√32 ≈ 5.7) before γ and β; a pre-LN or parallel stream grows from layer to
# layer. One more difference from the setting that Xiong et al. analyse: our
# `MultiHeadAttention` keeps `nn.Linear`'s default initialisation (uniform
# weights, non-zero biases), while `nn.MultiheadAttention` draws its input
# projections with Xavier initialisation and zero biases, and the paper's
# reference code (tensor2tensor) uses Xavier and no biases at all.
# Training shows more than the gradients:
#
# ### Training with and without warm-up
#
# Vaswani et al. trained their post-LN model with **learning-rate warm-up**
# (§5.3): start with a tiny learning rate and raise it over the first steps.
# The paper does not tie warm-up to where the norm sits; that link is later
# work (Popel & Bojar, 2018, found the model diverging without it; Liu et al.,
# 2020, and Xiong et al., 2020, explained it). We train the 12-layer
# character model six times for 200 steps with Adam at a deliberately high
# learning rate, 1e-2: each of the three blocks with a constant learning rate
# and with a linear warm-up over the first 100 steps. Same data, same initial
# weights for each block, same batches. (The training loop is
# `course_utils.training.train`.)

# %%
# NBVAL_IGNORE_OUTPUT
from course_utils.training import linear_warmup, smooth, train

PEAK_LR, STEPS, WARMUP = 1e-2, 200, 100
curves = {}
for norm in BLOCKS:
    for warmup in [False, True]:
        model = character_model(norm)
        optimizer = torch.optim.Adam(model.parameters(), lr=PEAK_LR, betas=(0.9, 0.98))
        name = f"{BLOCKS[norm]}, " + ("warm-up" if warmup else "no warm-up")
        curves[name] = train(model, batches(seed=1), next_character_loss, optimizer, STEPS,
                             lr_at=linear_warmup(PEAK_LR, WARMUP) if warmup else None, desc=name)

final = {name: sum(losses[-25:]) / 25 for name, losses in curves.items()}
for name, loss in final.items():
    print(f"{name:<22} loss over the last 25 steps: {loss:.2f}")
assert final["post-LN, no warm-up"] > 3.0, "post-LN without warm-up should stay stuck near the unigram loss"
assert final["pre-LN, no warm-up"] < 2.7 and final["pre-LN, warm-up"] < 2.7, final
assert final["parallel, no warm-up"] < 2.7 and final["parallel, warm-up"] < 2.7, final

# %% [markdown]
# To read the losses we need reference levels. A model that ignores the
# context and predicts each character by its frequency in the text scores the
# **unigram** entropy; one that looks only at the previous character can at
# best score the **bigram** conditional entropy, and with two characters of
# context the trigram one. We count them on the same 400,000 characters (in
# sample, so they are what a model that memorised those counts would score):

# %%
def conditional_entropy(order: int) -> float:
    """H(next character | the previous order - 1 characters), in nats, from the counts of the text."""
    windows = encoded.unfold(0, order, 1)
    context_and_next = torch.unique(windows, dim=0, return_counts=True)[1].double()
    if order == 1:
        return -(context_and_next / context_and_next.sum() * (context_and_next / context_and_next.sum()).log()).sum().item()
    contexts = torch.unique(windows[:, :-1], dim=0, return_counts=True)[1].double()
    total = context_and_next.sum()
    return (-(context_and_next * context_and_next.log()).sum() + (contexts * contexts.log()).sum()).item() / total.item()


levels = {name: conditional_entropy(order) for order, name in [(1, "unigram"), (2, "bigram"), (3, "trigram")]}
print("  ".join(f"{name} {loss:.2f}" for name, loss in levels.items()))

# %% [markdown]
# The curves: in a light colour the loss of each step, over it the running
# mean of 5 consecutive steps, with the three levels as dotted lines.

# %%
figure, ax = plt.subplots(figsize=(8, 4.5))
for (name, losses), colour in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
    style = "-" if "no warm-up" in name else "--"
    ax.plot(range(1, STEPS + 1), losses, color=colour, alpha=0.2, lw=0.8)
    ax.plot(range(5, STEPS + 1), smooth(losses, window=5), color=colour, ls=style, label=name)
for name, loss in levels.items():
    ax.axhline(loss, color="gray", ls=":", lw=1)
    ax.text(STEPS, loss, f" {name}", va="center", fontsize=8, color="gray")
ax.set_xlabel("step")
ax.set_ylabel("training loss (nats per character)")
ax.set_title("12 layers, Adam at 1e-2")
ax.set_ylim(1.5, 4.6)
ax.legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# What the six runs show:
#
# - **post-LN without warm-up** falls to the unigram loss within about 15
#   steps and stays there: it has learned how often each character occurs
#   and nothing about sequences. The large early steps pushed it into a state
#   it does not leave.
# - **post-LN with warm-up** starts slower and, in most runs, gets past that
#   plateau. Not in every run: with other seeds (change the `torch.manual_seed`
#   in `character_model` and the `batches` seed) it sometimes stays stuck too
#   at this learning rate.
# - **pre-LN** and the **parallel** block learn with or without warm-up; here
#   warm-up only costs them a little time at the start. Their curves lie on
#   top of each other: at this size, reading the attention's output or not
#   makes no visible difference to the feed-forward network.
# - The runs that learn end near the **bigram** level: in 200 steps they have
#   learned which character tends to follow which, and little more.
#
# This is the practical reason most models since GPT-2 are pre-LN. It is not
# a law: at a lower learning rate post-LN trains without warm-up too (try
# 1e-3); what needs warm-up is post-LN **at a high learning rate**. And when
# post-LN does train, it often ends slightly better than pre-LN (Liu et al.,
# 2020; Nguyen & Salazar, 2019): one reason BERT kept it, and the reason for
# methods such as Admin (Liu et al., 2020) and DeepNorm (Wang et al., 2022)
# that make deep post-LN stacks train stably.
#
# ## Encoder and decoder layers, equal to PyTorch's
#
# `course_utils.transformer` holds the reviewed layers that the next lessons
# build on: `EncoderLayer`, `DecoderLayer` (masked self-attention,
# cross-attention on the memory, feed-forward), the `Encoder` and `Decoder`
# stacks (each ending with a LayerNorm, as in PyTorch, in both modes) and `EncoderDecoder`,
# the part of the model that `nn.Transformer` implements. Their weights are
# laid out so that `load_torch_weights` copies PyTorch's modules one to one.
# Here they are, compared with copied weights, with a padded source batch, a
# padded target batch and the causal mask, in both norm placements.
# (PyTorch's masks mean "True = masked out", the opposite of ours.)

# %%
import warnings

from course_utils.attention import padding_mask
from course_utils.transformer import DecoderLayer, EncoderDecoder, load_torch_weights

warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
source_tokens = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])  # the second source sentence has 3 pads
target_tokens = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
source, target = torch.randn(2, 7, 64), torch.randn(2, 5, 64)
ours_masks = dict(source_mask=padding_mask(source_tokens), target_mask=causal_mask(5) & padding_mask(target_tokens),
                  memory_mask=padding_mask(source_tokens))
torch_masks = dict(src_key_padding_mask=source_tokens == 0, tgt_key_padding_mask=target_tokens == 0,
                   memory_key_padding_mask=source_tokens == 0, tgt_mask=~causal_mask(5))

for norm in ["post", "pre"]:
    config = TransformerConfig(d_model=64, num_heads=4, d_ff=256, num_encoder_layers=2, num_decoder_layers=2,
                               dropout=0.0, norm=norm)
    torch_kwargs = dict(d_model=64, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True, norm_first=norm == "pre")
    torch.manual_seed(1)
    torch_encoder_layer = nn.TransformerEncoderLayer(**torch_kwargs).train()  # train(): PyTorch's eval fast path zeroes pads
    torch_decoder_layer = nn.TransformerDecoderLayer(**torch_kwargs)
    torch_model = nn.Transformer(num_encoder_layers=2, num_decoder_layers=2, **torch_kwargs).train()
    encoder_layer = load_torch_weights(EncoderLayer(config), torch_encoder_layer)
    decoder_layer = load_torch_weights(DecoderLayer(config), torch_decoder_layer)
    model = load_torch_weights(EncoderDecoder(config), torch_model)
    with torch.no_grad():
        differences = {
            "EncoderLayer": encoder_layer(source, ours_masks["source_mask"])[0]
            - torch_encoder_layer(source, src_key_padding_mask=torch_masks["src_key_padding_mask"]),
            "DecoderLayer": decoder_layer(target, source, ours_masks["target_mask"], ours_masks["memory_mask"])[0]
            - torch_decoder_layer(target, source, tgt_mask=torch_masks["tgt_mask"],
                                  tgt_key_padding_mask=torch_masks["tgt_key_padding_mask"],
                                  memory_key_padding_mask=torch_masks["memory_key_padding_mask"]),
            "EncoderDecoder": model(source, target, **ours_masks) - torch_model(source, target, **torch_masks),
        }
    for name, difference in differences.items():
        print(f"{norm}-LN {name:<15} equals PyTorch's (max |difference| < 1e-5): {difference.abs().max().item() < 1e-5}")

# %% [markdown]
# The unit tests (`tests/test_transformer.py`) check the same equalities for
# the gradients of every parameter too.
#
# ## Counting parameters
#
# Every parameter of the model follows from its configuration. Per encoder
# layer: the attention has four D×D matrices and four biases, the
# feed-forward network 2·D·d_ff weights and d_ff + D biases, and each of the
# two LayerNorms 2·D (γ and β). A decoder layer has a second attention and a
# third norm. Here is the count for the paper's base model (D = 512, 8 heads,
# d_ff = 2048, 6 + 6 layers), with the shared source-target vocabulary of
# about 37,000 BPE tokens that the paper used for English-German (one
# embedding table, shared by both sides and by the output layer):

# %%
from course_utils.transformer import parameter_counts

base = TransformerConfig()  # the defaults are the paper's base model
for part, count in parameter_counts(base, vocab_size=37_000).items():
    print(f"{part:<38} {count:>12,}")
pytorch_count = sum(p.numel() for p in nn.Transformer(batch_first=True).parameters())
print(f"\nnn.Transformer() (no embeddings):      {pytorch_count:>12,}")
print("equal to our count without embeddings:", pytorch_count == parameter_counts(base)["total"])

# %% [markdown]
# About 63 million. The paper's Table 3 gives 65 million for the base model;
# the gap is within what the paper leaves unsaid (its exact vocabulary size
# and what it counted). The count includes the two final norms (2,048
# parameters) that `nn.Transformer` has and the paper's post-LN model does
# not: too few to matter here, but they are not the paper's. Two things stand out: the decoder layer is a third
# larger than the encoder layer (its second attention), and the feed-forward
# network holds two thirds of an encoder layer's weights (half of a decoder
# layer's). The embedding table alone is 30% of the model; the paper shares
# one table between the source side, the target side and the output layer
# (after Press and Wolf, 2017), which saves two more tables of that size.
#
# ## Exercise 2: a decoder layer from its parts
#
# The sublayers are given in `__init__`: `self_attn` and `cross_attn` are
# `course_utils.attention.MultiHeadAttention` modules (call them as
# `attn(query, key, value, mask=...)`; they return `(output, weights)`, and
# with key and value left out they attend over the query itself),
# `feed_forward` is the position-wise network and `norm1` to `norm3` are the
# LayerNorms. Write `forward(x, memory, self_mask, memory_mask)` for the
# **post-LN** decoder layer of the paper:
#
# 1. masked self-attention over x, with the `self_mask` it is given (the
#    caller's mask may hide padding as well as the future);
# 2. cross-attention in which the decoder asks and the encoder's output
#    (`memory`) answers, with `memory_mask`;
# 3. the feed-forward network;
#
# each wrapped as LayerNorm(x + sublayer(x)). Return the new x, shaped like
# the input x. Leave out the residual dropout of the paper's §5.4 (this layer
# has no dropout module): the checker and the comparison below run it in
# evaluation mode, where dropout does nothing. The checker copies the reviewed layer's weights into yours and
# tries two configurations, one with a left-padded target; if your output is
# wrong it tells you which classic slip it matches.

# %%
from course_utils.attention import MultiHeadAttention


class MyDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.feed_forward = FeedForward(config)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(config.d_model) for _ in range(3))

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        # BEGIN SOLUTION
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))
        # END SOLUTION


# %%
from course_utils.classroom.checks.transformer import check_decoder_layer

check_decoder_layer(MyDecoderLayer)

# %% [markdown]
# ### Your pieces together, against PyTorch
#
# Now the two exercises meet. The next cell takes your decoder layer (or the
# reviewed one until yours passes), swaps its three norms for modules that
# run your `layer_norm` (or PyTorch's, likewise), copies into it the weights
# of a randomly initialised `nn.TransformerDecoderLayer`, and runs both on the
# padded batch from above, with the causal mask and the target's padding.

# %%
class FormulaNorm(LayerNorm):
    """The course's LayerNorm, with γ and β, computed by the layer norm that passed."""

    def forward(self, x):
        return normalise(x, self.weight, self.bias, self.eps)


class ReviewedDecoderLayer(DecoderLayer):
    """The reviewed layer, returning the new x alone as the exercise asks."""

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, self_mask, memory_mask)[0]


config = TransformerConfig(d_model=64, num_heads=4, d_ff=256, dropout=0.0)
assembled = yours_if_passed(MyDecoderLayer, "06.decoder_layer", ReviewedDecoderLayer)(config)
assembled.norm1, assembled.norm2, assembled.norm3 = (FormulaNorm(64) for _ in range(3))
torch.manual_seed(2)
pytorch_layer = nn.TransformerDecoderLayer(d_model=64, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True)
load_torch_weights(assembled, pytorch_layer)
with torch.no_grad():
    ours = assembled(target, source, ours_masks["target_mask"], ours_masks["memory_mask"])
    theirs = pytorch_layer(target, source, tgt_mask=torch_masks["tgt_mask"],
                           tgt_key_padding_mask=torch_masks["tgt_key_padding_mask"],
                           memory_key_padding_mask=torch_masks["memory_key_padding_mask"])
print("equal to nn.TransformerDecoderLayer (max |difference| < 1e-5):", (ours - theirs).abs().max().item() < 1e-5)

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("06")

# %%
# BEGIN SOLUTION
answer("06.cross-attention", "C")
answer("06.norm-count", 80)
answer("06.pre-ln", ["A", "B"])
answer("06.layer-norm-value", 1.60)
answer("06.plain-stack", -6)
answer("06.ffn-parameters", 2099712)
answer("06.no-causal-mask", "B")
answer("06.swap-tokens", "A")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A transformer layer is sublayers in residual wrappers: attention mixes
#   information between positions, the **feed-forward network** processes each
#   position alone (two thirds of an encoder layer's weights), and every sublayer's
#   input is **added back** to its output.
# - **Residual connections**: at initialisation, a plain stack's gradient
#   shrank by 0.24 per block with PyTorch's default initialisation, and kept
#   its size with a variance-preserving one. Their lasting case is training:
#   at 24 blocks a plain stack learned next to nothing where a residual one
#   fitted as well as at 2 (He et al.'s degradation problem).
# - **LayerNorm** normalises each token's vector over its D features (variance
#   divided by D, ε under the square root), then scales by γ and shifts by β;
#   nothing is averaged over the batch. You wrote it.
# - **Post-LN** (the paper, BERT) normalises after the residual sum; **pre-LN**
#   (GPT-2 and most models since) normalises the sublayer's input, lets the
#   residual stream grow, and needs a final norm; the **parallel** block of
#   GPT-J and PaLM is a pre-LN block with its two sublayers side by side. In
#   our 12-layer runs at a high learning rate, post-LN without warm-up stayed
#   stuck at the unigram loss, warm-up usually rescued it, and pre-LN and the
#   parallel block learned either way, to about the bigram level in 200 steps.
# - The three attentions of the encoder-decoder: encoder self-attention,
#   masked decoder self-attention, and cross-attention (queries from the
#   decoder, keys and values from the encoder's output).
# - Our layers equal `nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer`
#   and `nn.Transformer` with copied weights, and so did the decoder layer you
#   wired, running your layer norm; the paper's base model has about 63
#   million parameters by our count. Lesson 07 trains the whole
#   encoder-decoder.
