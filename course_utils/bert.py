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

import torch
import torch.nn.functional as F
from torch import nn

from .attention import padding_mask
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
    only chosen positions are scored, whatever they now show."""
    chosen = (torch.rand(ids.shape, generator=generator) < rate) & ~special
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    roll = torch.rand(ids.shape, generator=generator)  # one draw decides mask / random / keep
    random_words = torch.randint(first_word_id, vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (roll < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_words, inputs)
    return inputs, labels


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
