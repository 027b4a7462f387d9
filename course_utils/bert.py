"""BERT: the transformer's encoder alone, pre-trained to fill in masked words
(masked language modelling, MLM) and to tell whether one segment follows
another (next-sentence prediction, NSP). The model of lessons 08 and 09.

    ids, segments ──► token + position + segment embeddings, LayerNorm
                  ──► N post-LN encoder layers of lesson 06 (GELU)
                  ├─► MLM head: dense, GELU, LayerNorm, then · Eᵀ + bias
                  │   (E, the token embedding table: tied weights)
                  └─► NSP head: the [CLS] vector through dense + tanh
                      (the "pooler"), then 2 logits: IsNext, NotNext

Unlike `transformer.Encoder`, BERT has no final LayerNorm: post-LN layers
already end with one. The weights map one to one onto Hugging Face's
`BertForPreTraining` (`to_huggingface`, `from_huggingface`), so that a model
trained here can be saved with `save_pretrained` and used by `pipeline`.
"""

import dataclasses
import math
import random
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from . import data
from .attention import padding_mask
from .training import linear_warmup, train, with_cooldown
from .transformer import EncoderLayer, LayerNorm, TransformerConfig


def bert_config(d_model: int = 128, num_heads: int = 4, d_ff: int = 512, num_layers: int = 2,
                dropout: float = 0.1) -> TransformerConfig:
    """A TransformerConfig for BERT's layers: post-LN, exact GELU, eps 1e-12."""
    return TransformerConfig(d_model=d_model, num_heads=num_heads, d_ff=d_ff, num_encoder_layers=num_layers,
                             num_decoder_layers=0, dropout=dropout, activation="gelu", norm="post",
                             layer_norm_eps=1e-12)


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, summed, normalised, dropped out."""

    def __init__(self, config: TransformerConfig, vocab_size: int, max_len: int, num_segments: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, config.d_model)
        self.position = nn.Embedding(max_len, config.d_model)
        self.segment = nn.Embedding(num_segments, config.d_model)
        self.norm = LayerNorm(config.d_model, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        for table in (self.token, self.position, self.segment):
            nn.init.normal_(table.weight, std=0.02)  # BERT's initialiser range

    def forward(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.dropout(self.norm(self.token(ids) + self.position(positions) + self.segment(segments)))


class Bert(nn.Module):
    """BERT with both pre-training heads. forward(ids, segments, attention_mask)
    returns (MLM logits (B, L, V), NSP logits (B, 2))."""

    def __init__(self, config: TransformerConfig, vocab_size: int, max_len: int = 128, num_segments: int = 2):
        super().__init__()
        if config.norm != "post":
            raise ValueError("BERT's layers are post-LN: build the config with bert_config()")
        self.config, self.vocab_size, self.max_len, self.num_segments = config, vocab_size, max_len, num_segments
        self.embeddings = BertEmbeddings(config, vocab_size, max_len, num_segments)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.pooler = nn.Linear(config.d_model, config.d_model)
        self.mlm_dense = nn.Linear(config.d_model, config.d_model)
        self.mlm_norm = LayerNorm(config.d_model, config.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.nsp = nn.Linear(config.d_model, 2)

    def encode(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The contextual vectors (B, L, D). attention_mask: (B, L), 1 for a
        real token, 0 for padding, as a tokenizer returns it."""
        x = self.embeddings(ids, torch.zeros_like(ids) if segments is None else segments)
        mask = None if attention_mask is None else padding_mask(attention_mask)
        for layer in self.layers:
            x, _ = layer(x, mask)
        return x

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.mlm_norm(F.gelu(self.mlm_dense(hidden)))
        return h @ self.embeddings.token.weight.T + self.mlm_bias  # tied: the input table is the output layer

    def nsp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # the [CLS] position
        return self.nsp(pooled)

    def forward(self, ids, segments=None, attention_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encode(ids, segments, attention_mask)
        return self.mlm_logits(hidden), self.nsp_logits(hidden)


# --- masked language modelling data ----------------------------------------------

IGNORE_INDEX = -100  # the label F.cross_entropy skips: positions that are not scored


def mask_tokens(ids: torch.Tensor, special: torch.Tensor, mask_id: int, first_word_id: int, vocab_size: int,
                rate: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (Devlin et al., 2019, §3.1): choose `rate` of the
    positions that are not special tokens or padding (`special`, bool, True
    where not allowed); of the chosen, 80% become [MASK], 10% a random word
    (an id in [first_word_id, vocab_size): never a special token) and 10%
    stay as they are. Returns (inputs, labels): labels hold the original id
    where a position was chosen and IGNORE_INDEX everywhere else, so that
    only chosen positions are scored, whatever they now show. Every draw
    comes from `generator`, on its own device, then moves to the device of
    `ids`: a CPU generator can mask a batch that lives on the GPU."""
    def draw(make, *args):  # a generator makes tensors on its own device only
        on = generator.device if generator is not None else ids.device
        return make(*args, ids.shape, generator=generator, device=on).to(ids.device)

    chosen = (draw(torch.rand) < rate) & ~special
    labels = torch.where(chosen, ids, IGNORE_INDEX).long()
    roll = draw(torch.rand)  # one draw per position decides mask / random / keep
    random_words = draw(torch.randint, first_word_id, vocab_size).to(ids.dtype)
    inputs = torch.where(chosen & (roll < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_words, inputs)
    return inputs, labels


# --- next-sentence prediction data ------------------------------------------------

IS_NEXT, NOT_NEXT = 0, 1  # Hugging Face's next_sentence_label: 0 means "B follows A"
SEGMENT_WORDS = 12  # words per segment: a pair fits in 60 WordPiece tokens


def speeches(play_text: str, names: bool = True) -> list[str]:
    """One string per speech of a cleaned play (`data.plays()`), its lines
    joined by spaces and led by the speaker's name ("Hamlet: To be, or not
    to be, ..."), or without the name when names=False."""
    out = []
    for block in play_text.strip().split("\n\n"):
        speaker, *lines = block.split("\n")
        out.append(" ".join([speaker, *lines] if names else lines))
    return out


def segment_at(play_speeches: list[str], start: int, words: int = SEGMENT_WORDS) -> tuple[str, int]:
    """BERT's segment: whole speeches from speech `start` on until `words`
    words are reached, the last speech cut there. Returns (text, the speech
    the next segment begins with): a segment always begins a speech."""
    taken, end = [], start
    while len(taken) < words and end < len(play_speeches):
        taken += play_speeches[end].split()
        end += 1
    return " ".join(taken[:words]), end


def random_start(play_speeches: list[str], rng: random.Random, words: int = SEGMENT_WORDS) -> int:
    """A speech to start a segment at, early enough that two full segments follow."""
    return rng.randrange(len(play_speeches) - 2 * words)  # a speech holds at least one word


def segment_starts(play_speeches: list[str], words: int = SEGMENT_WORDS) -> list[int]:
    """The play cut into consecutive segments from its first speech: where
    each begins (as long as a full segment and its continuation follow). No
    two of these segments share a speech."""
    starts, start = [], 0
    while start < len(play_speeches) - 2 * words:
        starts.append(start)
        start = segment_at(play_speeches, start, words)[1]
    return starts


NEGATIVES = ("other", "same", "swapped")  # where a NotNext B comes from


def _far_start(play_speeches: list[str], start: int, rng: random.Random, words: int) -> int:
    """A segment start of the same play whose segment shares no speech with
    A (at `start`) or with A's true continuation, before A or after it."""
    after = segment_at(play_speeches, start, words)[1]
    end = segment_at(play_speeches, after, words)[1]  # A and its continuation: speeches start .. end - 1
    while True:
        far = random_start(play_speeches, rng, words)
        if segment_at(play_speeches, far, words)[1] <= start or far >= end:
            return far


def labelled_pair(speeches_by_play: dict[str, list[str]], play: str, start: int, label: int, rng: random.Random,
                  negatives: str = "other", words: int = SEGMENT_WORDS) -> tuple[str, str, int]:
    """The pair (a, b, label) at `start` of `play` with the label given: an
    IS_NEXT pair is A and the segment right after it; a NOT_NEXT pair takes
    B from a random other play (negatives="other", as BERT takes it from
    another document), from the same play, sharing no speech with A or its
    continuation (negatives="same"), or is A's continuation first and A
    second (negatives="swapped", ALBERT's sentence-order negatives)."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be 'other', 'same' or 'swapped', not {negatives!r}")
    own = speeches_by_play[play]
    a, after = segment_at(own, start, words)
    if label == IS_NEXT:
        return a, segment_at(own, after, words)[0], IS_NEXT
    if negatives == "other":
        source = speeches_by_play[rng.choice(sorted(name for name in speeches_by_play if name != play))]
        return a, segment_at(source, random_start(source, rng, words), words)[0], NOT_NEXT
    if negatives == "same":
        return a, segment_at(own, _far_start(own, start, rng, words), words)[0], NOT_NEXT
    return segment_at(own, after, words)[0], a, NOT_NEXT


def nsp_pair(speeches_by_play: dict[str, list[str]], play: str, start: int, rng: random.Random,
             negatives: str = "other", words: int = SEGMENT_WORDS) -> tuple[str, str, int]:
    """One next-sentence-prediction example (a, b, label): a fair coin from
    `rng` gives the label, then `labelled_pair` builds the pair."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be 'other', 'same' or 'swapped', not {negatives!r}")
    label = IS_NEXT if rng.random() < 0.5 else NOT_NEXT
    return labelled_pair(speeches_by_play, play, start, label, rng, negatives, words)


def sop_pair(play_speeches: list[str], start: int, rng: random.Random,
             words: int = SEGMENT_WORDS) -> tuple[str, str, int]:
    """ALBERT's sentence-order pair (Lan et al., 2020): the segment at
    `start` and the one after it, in their order (IS_NEXT) or swapped
    (NOT_NEXT), by a fair coin from `rng`. Both classes hold the same text,
    so only the order tells them apart."""
    return nsp_pair({"play": play_speeches}, "play", start, rng, "swapped", words)


def nsp_pairs(speeches_by_play: dict[str, list[str]], count: int, rng: random.Random, negatives: str = "other",
              words: int = SEGMENT_WORDS) -> list[tuple[str, str, int]]:
    """`count` examples of `nsp_pair`, A drawn uniformly over the speeches of
    all the plays, with replacement: the training batches."""
    plays = sorted(speeches_by_play)
    weights = [len(speeches_by_play[play]) for play in plays]
    out = []
    for _ in range(count):
        play = rng.choices(plays, weights)[0]
        out.append(nsp_pair(speeches_by_play, play, random_start(speeches_by_play[play], rng, words), rng,
                            negatives, words))
    return out


def held_out_starts(speeches_by_play: dict[str, list[str]], count: int, rng: random.Random,
                    words: int = SEGMENT_WORDS) -> list[tuple[str, int]]:
    """The (play, start) of each A of `held_out_pairs`, in its order: drawn
    without replacement from the plays cut into consecutive segments
    (`segment_starts`). It is the first draw from `rng`, so a fresh rng of
    the same seed gives the starts of the same pairs."""
    starts = [(play, start) for play in sorted(speeches_by_play)
              for start in segment_starts(speeches_by_play[play], words)]
    if count % 2 or count > len(starts):
        raise ValueError(f"count must be even and at most {len(starts)} (the segments these plays hold), not {count}")
    return rng.sample(starts, count)


def held_out_pairs(speeches_by_play: dict[str, list[str]], count: int, rng: random.Random, negatives: str = "other",
                   words: int = SEGMENT_WORDS) -> list[tuple[str, str, int]]:
    """`count` pairs to measure on. Each A is drawn without replacement from
    the plays cut into consecutive segments (`held_out_starts`), so no two As
    share a speech and none repeats; the labels alternate, IS_NEXT then
    NOT_NEXT, so exactly half are each and a constant answer scores exactly
    0.5 (the majority rate)."""
    return [labelled_pair(speeches_by_play, play, start, (IS_NEXT, NOT_NEXT)[i % 2], rng, negatives, words)
            for i, (play, start) in enumerate(held_out_starts(speeches_by_play, count, rng, words))]


# --- pre-training batches, loss and accuracy --------------------------------------

def pretraining_batch(tokenizer, pairs: list[tuple[str, str, int]], generator: torch.Generator,
                      max_length: int = 60) -> dict[str, torch.Tensor]:
    """Encode (a, b, label) pairs as [CLS] A [SEP] B [SEP] and mask them for
    MLM. The keys are the argument names of Hugging Face's
    `BertForPreTraining`, so the same batch also feeds `to_huggingface(model)(**batch)`."""
    encoded = tokenizer([a for a, _, _ in pairs], [b for _, b, _ in pairs], truncation="longest_first",
                        max_length=max_length, padding="longest", return_special_tokens_mask=True,
                        return_tensors="pt")
    never = encoded["special_tokens_mask"].bool() | (encoded["attention_mask"] == 0)  # [CLS], [SEP], padding
    inputs, labels = mask_tokens(encoded["input_ids"], never, tokenizer.mask_token_id,
                                 max(tokenizer.all_special_ids) + 1, len(tokenizer), generator=generator)
    return {"input_ids": inputs, "token_type_ids": encoded["token_type_ids"],
            "attention_mask": encoded["attention_mask"], "labels": labels,
            "next_sentence_label": torch.tensor([label for _, _, label in pairs])}


def pretraining_losses(model: Bert, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLM loss, NSP loss); BERT is trained on their sum. The MLM head runs
    only at the chosen positions: the same loss as scoring every position
    and ignoring the rest, for the share of positions chosen (about a tenth
    of a batch here, padding included) of the output layer's cost."""
    hidden = model.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    chosen = batch["labels"] != IGNORE_INDEX
    mlm = F.cross_entropy(model.mlm_logits(hidden[chosen]), batch["labels"][chosen])
    nsp = F.cross_entropy(model.nsp_logits(hidden), batch["next_sentence_label"])
    return mlm, nsp


def unmasked(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The batch's input ids as they were before masking: the labels hold
    the original id wherever masking chose a position."""
    return torch.where(batch["labels"] != IGNORE_INDEX, batch["labels"], batch["input_ids"])


@torch.no_grad()
def pretraining_accuracy(model: Bert, batches, mask_id: int,
                         nsp_input: str = "unmasked") -> dict[str, float | int | torch.Tensor]:
    """MLM accuracy (the top prediction is the original piece) at the
    positions that show [MASK], and NSP accuracy, over `batches`, with the
    counts they are shares of. The chosen positions that show their own
    word (10% of them) are left out of MLM: there the answer is in the
    input. NSP reads the pairs `nsp_input`="unmasked" (the text as a reader
    or a fine-tuned model sees it; the default) or "masked" (as in training).
    "nsp_majority" is the share of the commoner label: what always giving
    one answer scores; "nsp_right" says, pair by pair, whether NSP was right
    (for paired tests and intervals that resample the pairs)."""
    if nsp_input not in ("unmasked", "masked"):
        raise ValueError(f"nsp_input must be 'unmasked' or 'masked', not {nsp_input!r}")
    model.eval()
    mlm_right = mlm_count = nsp_right = nsp_count = is_next = 0
    each = []
    for batch in batches:
        hidden = model.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        masked = (batch["labels"] != IGNORE_INDEX) & (batch["input_ids"] == mask_id)
        mlm_right += (model.mlm_logits(hidden[masked]).argmax(-1) == batch["labels"][masked]).sum().item()
        mlm_count += masked.sum().item()
        if nsp_input == "unmasked":
            hidden = model.encode(unmasked(batch), batch["token_type_ids"], batch["attention_mask"])
        labels = batch["next_sentence_label"]
        each.append(model.nsp_logits(hidden).argmax(-1) == labels)
        nsp_right += each[-1].sum().item()
        nsp_count += len(labels)
        is_next += (labels == IS_NEXT).sum().item()
    return {"mlm": mlm_right / mlm_count, "mlm_count": mlm_count, "nsp": nsp_right / nsp_count,
            "nsp_count": nsp_count, "nsp_majority": max(is_next, nsp_count - is_next) / nsp_count,
            "nsp_right": torch.cat(each)}


def interval95(share: float, count: int) -> tuple[float, float]:
    """The 95% interval of a measured share (the normal approximation,
    share ± 1.96 · √(share · (1 - share) / count)): with 2,000 pairs, a
    share of 0.50 spans about 0.48 to 0.52."""
    half = 1.96 * math.sqrt(share * (1 - share) / count)
    return share - half, share + half


def wilson_interval95(right: int, count: int) -> tuple[float, float]:
    """The 95% interval of a share right/count by Wilson's score method
    (Wilson 1927): unlike `interval95`, it stays within 0 and 1 and is not
    empty at 0 right or all right (0 of 150 gives 0 to 0.025)."""
    z, share = statistics.NormalDist().inv_cdf(0.975), right / count  # 1.95996...
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z / (1 + z * z / count) * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count))
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_interval95(right: torch.Tensor, clusters: list[str], draws: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """The 95% interval of a share when the items come in clusters (pairs
    from a few plays): a cluster bootstrap. Draw as many clusters as there
    are, with replacement, pool their items, take the share; the interval
    runs from the 2.5th to the 97.5th percentile of `draws` such shares.
    Unlike `interval95`, it lets plays differ and items of one play move
    together; with a handful of clusters it is itself rough, and tends to
    be too narrow."""
    names = sorted(set(clusters))
    index = torch.tensor([names.index(c) for c in clusters])
    hits = torch.zeros(len(names)).index_add_(0, index, right.double().float())
    sizes = torch.zeros(len(names)).index_add_(0, index, torch.ones(len(clusters)))
    picks = torch.randint(len(names), (draws, len(names)), generator=torch.Generator().manual_seed(seed))
    shares = hits[picks].sum(dim=1) / sizes[picks].sum(dim=1)
    low, high = torch.quantile(shares, torch.tensor([0.025, 0.975])).tolist()
    return low, high


def above_chance(share: float, count: int, majority: float) -> bool:
    """The course's one test of "better than chance": the 95% interval of
    the share lies wholly above the majority rate, the score of always
    giving the commoner answer."""
    return interval95(share, count)[0] > majority


def lowest_above_chance(count: int, majority: float) -> float:
    """The lowest share of `count` that `above_chance` accepts."""
    return next(right / count for right in range(count + 1) if above_chance(right / count, count, majority))


# --- a pre-training run -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PretrainingRecipe:
    """Everything that decides a pre-training run. Each step's batch is
    drawn from seeds made of `seed` and the step number, so every machine
    trains on the same batches (the weights then agree up to floating-point
    rounding)."""
    d_model: int = 128
    num_heads: int = 4
    d_ff: int = 512
    num_layers: int = 2
    words: int = SEGMENT_WORDS
    names: bool = True  # speakers' names kept in the text
    negatives: str = "other"  # where NotNext segments come from
    batch_size: int = 64
    peak_lr: float = 1e-3
    warmup_steps: int = 100
    steps: int = 600
    seed: int = 0

    @property
    def max_length(self) -> int:
        return 3 * self.words + 24  # [CLS] A [SEP] B [SEP]: room for about 1.5 pieces a word

    def build_model(self, vocab_size: int) -> Bert:
        torch.manual_seed(self.seed)
        config = bert_config(self.d_model, self.num_heads, self.d_ff, self.num_layers, dropout=0.0)
        return Bert(config, vocab_size, max_len=self.max_length)

    def lr_at(self, step: int) -> float:
        return with_cooldown(linear_warmup(self.peak_lr, self.warmup_steps), self.steps)(step)

    def batch_at(self, step: int, tokenizer, speeches_by_play: dict[str, list[str]]) -> dict[str, torch.Tensor]:
        """The batch of training step `step`: a function of the recipe and
        the step alone, the same on every machine, so that a resumed run sees
        the batches it would have seen."""
        pairs = nsp_pairs(speeches_by_play, self.batch_size, random.Random(f"{self.seed}/{step}"), self.negatives,
                          self.words)
        return pretraining_batch(tokenizer, pairs, torch.Generator().manual_seed(self.seed * 1_000_003 + step),
                                 self.max_length)

    def held_out_pairs(self, speeches_by_play: dict[str, list[str]], negatives: str,
                       count: int = 1900) -> list[tuple[str, str, int]]:
        """`count` fixed pairs from `speeches_by_play` (the held-out plays),
        balanced and without repeats (`held_out_pairs`): the same on every call."""
        return held_out_pairs(speeches_by_play, count, random.Random(f"held-out/{negatives}"), negatives, self.words)

    def held_out_starts(self, speeches_by_play: dict[str, list[str]], negatives: str,
                        count: int = 1900) -> list[tuple[str, int]]:
        """The (play, start) of each A of `held_out_pairs(speeches_by_play, negatives, count)`, in its order."""
        return held_out_starts(speeches_by_play, count, random.Random(f"held-out/{negatives}"), self.words)

    def held_out_batches(self, tokenizer, speeches_by_play: dict[str, list[str]], negatives: str, count: int = 1900,
                         batch_size: int = 500) -> list[dict[str, torch.Tensor]]:
        """The held-out pairs, encoded and masked once with a fixed seed, in batches."""
        pairs = self.held_out_pairs(speeches_by_play, negatives, count)
        generator = torch.Generator().manual_seed(12345)
        return [pretraining_batch(tokenizer, pairs[i:i + batch_size], generator, self.max_length)
                for i in range(0, count, batch_size)]


def pretraining_speeches(names: bool = True) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training plays, held-out plays), each a dict play -> its speeches."""
    split = {True: {}, False: {}}
    for play, text in data.plays().items():
        split[play in data.VALIDATION_PLAYS][play] = speeches(text, names)
    return split[False], split[True]


def pretrain(model: Bert, optimizer: torch.optim.Optimizer, recipe: PretrainingRecipe, tokenizer,
             speeches_by_play: dict[str, list[str]], first_step: int = 1, last_step: int | None = None,
             progress: bool = True) -> tuple[list[float], list[float]]:
    """Train on MLM + NSP (their sum, as BERT) from `first_step` to
    `last_step` (default: the recipe's last). Returns the MLM and the NSP
    loss of every step."""
    mlm_losses, nsp_losses = [], []

    def loss_of(model, batch):
        mlm, nsp = pretraining_losses(model, batch)
        mlm_losses.append(mlm.item())
        nsp_losses.append(nsp.item())
        return mlm + nsp

    train(model, lambda step: recipe.batch_at(step, tokenizer, speeches_by_play), loss_of, optimizer,
          last_step or recipe.steps, recipe.lr_at, desc="pre-training", progress=progress, first_step=first_step)
    return mlm_losses, nsp_losses


def pretraining_optimizer(model: Bert, recipe: PretrainingRecipe) -> torch.optim.Optimizer:
    """BERT's optimizer settings (β = 0.9, 0.999; ε = 1e-6; weight decay
    0.01, decoupled from the gradient, on the weight matrices and embedding
    tables, none on biases and LayerNorm parameters) in `torch.optim.AdamW`.
    One difference: BERT's own optimizer (`AdamWeightDecayOptimizer` in its
    `optimization.py`, "BertAdam" in early PyTorch ports; Hugging Face's
    `correct_bias=False`) leaves out Adam's bias correction; AdamW keeps
    it, so its first updates are smaller than BERT's (the correction's
    effect fades over the first few thousand steps, with β2 = 0.999).
    The rate is set by the recipe's schedule."""
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    kept = [p for p in model.parameters() if p.dim() < 2]  # biases, LayerNorm gains and shifts
    return torch.optim.AdamW([{"params": decayed, "weight_decay": 0.01}, {"params": kept, "weight_decay": 0.0}],
                             lr=recipe.peak_lr, eps=1e-6)


# --- Hugging Face's BertForPreTraining, weight for weight ----------------------------

_NAMES = {  # ours -> Hugging Face's, for everything but the packed attention input
    "embeddings.token.weight": "bert.embeddings.word_embeddings.weight",
    "embeddings.position.weight": "bert.embeddings.position_embeddings.weight",
    "embeddings.segment.weight": "bert.embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
    "pooler.weight": "bert.pooler.dense.weight",
    "pooler.bias": "bert.pooler.dense.bias",
    "mlm_dense.weight": "cls.predictions.transform.dense.weight",
    "mlm_dense.bias": "cls.predictions.transform.dense.bias",
    "mlm_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm_bias": "cls.predictions.bias",
    "nsp.weight": "cls.seq_relationship.weight",
    "nsp.bias": "cls.seq_relationship.bias",
}
_LAYER_NAMES = {  # within layer i
    "self_attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "feed_forward.linear1": "intermediate.dense",
    "feed_forward.linear2": "output.dense",
    "norm2": "output.LayerNorm",
}
_QKV = ("query", "key", "value")


def _hf_names(model: Bert) -> dict[str, str]:
    """Our parameter name -> Hugging Face's, for every parameter but the packed in_proj."""
    names = dict(_NAMES)
    for i in range(len(model.layers)):
        for ours, theirs in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{kind}"] = f"bert.encoder.layer.{i}.{theirs}.{kind}"
    return names


def huggingface_config(model: Bert):
    """The `transformers.BertConfig` of the same shape."""
    from transformers import BertConfig

    config = model.config
    return BertConfig(vocab_size=model.vocab_size, hidden_size=config.d_model, num_hidden_layers=len(model.layers),
                      num_attention_heads=config.num_heads, intermediate_size=config.d_ff, hidden_act="gelu",
                      hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
                      max_position_embeddings=model.max_len, type_vocab_size=model.num_segments,
                      layer_norm_eps=config.layer_norm_eps)


@torch.no_grad()
def to_huggingface(model: Bert):
    """A `transformers.BertForPreTraining` with exactly our weights."""
    from transformers import BertForPreTraining

    theirs = BertForPreTraining(huggingface_config(model)).eval()
    target = theirs.state_dict()
    ours = model.state_dict()
    for name, hf_name in _hf_names(model).items():
        target[hf_name].copy_(ours[name])
    for i in range(len(model.layers)):
        for kind in ("weight", "bias"):
            packed = ours[f"layers.{i}.self_attn.in_proj.{kind}"].chunk(3)  # rows: W^Q, W^K, W^V
            for part, tensor in zip(_QKV, packed):
                target[f"bert.encoder.layer.{i}.attention.self.{part}.{kind}"].copy_(tensor)
    target["cls.predictions.decoder.weight"].copy_(ours["embeddings.token.weight"])  # tied
    target["cls.predictions.decoder.bias"].copy_(ours["mlm_bias"])
    theirs.load_state_dict(target)
    return theirs


@torch.no_grad()
def from_huggingface(theirs) -> Bert:
    """Our Bert with the weights of a `transformers.BertForPreTraining`."""
    hf = theirs.config
    if hf.hidden_act != "gelu":
        raise ValueError(f"only BERT's exact GELU is supported, this model uses {hf.hidden_act!r}")
    config = bert_config(hf.hidden_size, hf.num_attention_heads, hf.intermediate_size, hf.num_hidden_layers,
                         hf.hidden_dropout_prob)
    config.layer_norm_eps = hf.layer_norm_eps
    model = Bert(config, hf.vocab_size, hf.max_position_embeddings, hf.type_vocab_size).eval()
    source = theirs.state_dict()
    state = {name: source[hf_name] for name, hf_name in _hf_names(model).items()}
    for i in range(len(model.layers)):
        for kind in ("weight", "bias"):
            state[f"layers.{i}.self_attn.in_proj.{kind}"] = torch.cat(
                [source[f"bert.encoder.layer.{i}.attention.self.{part}.{kind}"] for part in _QKV])
    model.load_state_dict(state)
    return model
