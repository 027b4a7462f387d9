"""Decoding: turning a model's next-token distribution into a sequence.

Greedy decoding, beam search and sequence scoring take the model as one callable,

    next_log_probs(prefixes: LongTensor (N, t)) -> FloatTensor (N, vocab)

the log-probabilities of the token that follows each of N prefixes. An
encoder-decoder wraps its decoder (with the encoded source fixed) in such a
function; a decoder-only model wraps itself. So greedy decoding and beam search
are written once, for both.

The sampling rules (temperature, top-k, top-p: `sample_next`) act on one
step's logits; `gpt.generate` calls them at every step.
"""

from collections.abc import Callable

import torch

NextLogProbs = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def greedy(next_log_probs: NextLogProbs, start: torch.Tensor, end_token: int, max_new_tokens: int) -> torch.Tensor:
    """Append the most likely token to every row of `start` (N, t), until each
    row has produced `end_token` or `max_new_tokens` tokens. Rows that have
    ended are padded with `end_token`. Returns (N, t + new)."""
    sequences = start
    finished = torch.zeros(len(start), dtype=torch.bool, device=start.device)
    for _ in range(max_new_tokens):
        token = next_log_probs(sequences).argmax(dim=-1)
        token = torch.where(finished, torch.full_like(token, end_token), token)
        sequences = torch.cat([sequences, token[:, None]], dim=1)
        finished |= token == end_token
        if finished.all():
            break
    return sequences


@torch.no_grad()
def sequence_log_prob(next_log_probs: NextLogProbs, sequences: torch.Tensor, prompt_length: int,
                      end_token: int) -> torch.Tensor:
    """The log-probability the model gives to each row's tokens after the
    prompt, up to and including its first `end_token` (N,)."""
    log_probs = torch.stack([next_log_probs(sequences[:, :t]).gather(1, sequences[:, t:t + 1]).squeeze(1)
                             for t in range(prompt_length, sequences.size(1))], dim=1)
    ended_before = torch.cumsum((sequences[:, prompt_length:] == end_token).int(), dim=1) - \
        (sequences[:, prompt_length:] == end_token).int()  # ends strictly before this token
    return (log_probs * (ended_before == 0)).sum(dim=1)


@torch.no_grad()
def beam_search(next_log_probs: NextLogProbs, start: torch.Tensor, end_token: int, max_new_tokens: int,
                beam_size: int = 4, length_penalty: float = 0.0) -> tuple[torch.Tensor, float]:
    """The most likely continuation of one prefix `start` (t,) found by keeping
    the `beam_size` best partial sequences at each step. Returns (the best
    sequence, its log-probability). A finished hypothesis (ended by
    `end_token`) is kept aside; the search stops when no open beam can still
    beat the best finished one. With length_penalty = α > 0, hypotheses are
    ranked by log-probability / length^α (Wu et al., 2016, without the +5)."""
    def score(log_prob: float, length: int) -> float:
        return log_prob / (length ** length_penalty) if length_penalty else log_prob

    beams = start[None, :]  # (k, t)
    beam_log_probs = torch.zeros(1, device=start.device)
    finished: list[tuple[float, torch.Tensor, float]] = []  # (score, sequence, log-prob)
    for step in range(1, max_new_tokens + 1):
        candidates = beam_log_probs[:, None] + next_log_probs(beams)  # (k, vocab)
        top = candidates.flatten().topk(min(2 * beam_size, candidates.numel()))
        vocab = candidates.size(1)
        next_beams, next_log_probs_kept = [], []
        for log_prob, index in zip(top.values.tolist(), top.indices.tolist()):
            sequence = torch.cat([beams[index // vocab], torch.tensor([index % vocab], device=start.device)])
            if index % vocab == end_token:
                finished.append((score(log_prob, step), sequence, log_prob))
            else:
                next_beams.append(sequence)
                next_log_probs_kept.append(log_prob)
            if len(next_beams) == beam_size:
                break
        if not next_beams:
            break
        beams, beam_log_probs = torch.stack(next_beams), torch.tensor(next_log_probs_kept, device=start.device)
        # Log-probabilities only fall as tokens are added: without a length
        # penalty, an open beam already below the best finished one is lost.
        if finished and not length_penalty and max(f[0] for f in finished) >= beam_log_probs.max().item():
            break
    else:  # max_new_tokens reached: the open beams compete too (as in Hugging Face's finalize)
        finished += [(score(lp, max_new_tokens), seq, lp) for seq, lp in zip(beams, beam_log_probs.tolist())]
    best = max(finished, key=lambda item: item[0])
    return best[1], best[2]


# --- sampling (lesson 10) -----------------------------------------------------------

def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The logits with every token outside the k most likely set to -inf
    (ties at the k-th value are kept)."""
    if k <= 0:
        raise ValueError(f"k must be at least 1, got {k}")
    kth = logits.topk(min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose
    probabilities add up to at least p (so the token that crosses p is kept),
    set the others to -inf. The softmax of the result renormalises them."""
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if p == 1:  # every token keeps its chance (rounded float32 probabilities can total more than 1)
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probabilities = sorted_logits.softmax(dim=-1).double()
    mass_before = probabilities.cumsum(dim=-1) - probabilities
    drop_sorted = mass_before >= p - 1e-6  # the mass before this token reached p (up to float32 rounding)
    drop_sorted[..., 0] = False  # the most likely token always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits (N, vocab): divided by the temperature,
    filtered by top-k then top-p, sampled from the softmax with `generator`.
    Temperature 0 is greedy (the argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)
