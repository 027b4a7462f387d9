"""Checkers for the exercises of lesson 09: a pretrained encoder in practice.

The expected values come from `course_utils.pretrained.mean_pool`, which
tests/test_bert.py shows equal to how sentence-transformers pools this
model (the same text alone and in a padded batch gives the same vector).
"""

import torch

from course_utils import pretrained
from . import Checker


def _padded_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Made-up token vectors for three texts of 5, 2 and 3 real tokens,
    padded to 5, and their attention mask as a tokenizer returns it
    (integers). The padding's vectors are large, so that counting them in
    shows."""
    hidden = torch.randn(3, 5, 4, generator=generator)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    hidden[attention_mask == 0] += 10
    return hidden, attention_mask


def check_mean_pool(mean_pool) -> None:
    """Check a learner's `mean_pool(hidden, attention_mask)`: on made-up
    vectors with padding, then on MiniLM's own output for a short line alone
    and padded beside a long one."""
    hidden, attention_mask = _padded_batch(torch.Generator().manual_seed(9))
    real = attention_mask.unsqueeze(-1).float()
    mistakes = {
        "the mean over every position, padding included": hidden.mean(dim=1),
        "the sum over the real tokens, not divided by their number": (hidden * real).sum(dim=1),
        "the sum over the real tokens divided by the padded length": (hidden * real).sum(dim=1) / hidden.size(1),
        "the sum over every position divided by the number of real tokens": hidden.sum(dim=1) / real.sum(dim=1),
        "the [CLS] vector (position 0) instead of a mean": hidden[:, 0],
        "the right mean, then normalised to unit length (that is a later step)":
            torch.nn.functional.normalize(pretrained.mean_pool(hidden, attention_mask), dim=-1),
    }
    with Checker("09.mean_pool") as check:
        given = (hidden.clone(), attention_mask.clone())
        pooled = check.call(mean_pool, *given)
        check.close("three texts of 5, 2 and 3 real tokens, padded to 5: one mean vector per text, shape (3, 4)",
                    pooled, pretrained.mean_pool(hidden, attention_mask), mistakes=mistakes,
                    hint="multiply by the mask to zero the padding, and divide by the number of real tokens of each text")
        check.that("hidden and attention_mask are left as they were",
                   torch.equal(given[0], hidden) and torch.equal(given[1], attention_mask),
                   expected="inputs unchanged", actual="your function wrote into an input",
                   hint="build new tensors (hidden * mask, not hidden *= mask)")
        tokenizer, model = pretrained.load_encoder()
        short, long = "Brevity is the soul of wit.", "Neither a borrower nor a lender be; for loan oft loses both itself and friend."
        with torch.no_grad():
            alone = tokenizer([short], return_tensors="pt")
            batch = tokenizer([short, long], padding=True, return_tensors="pt")
            alone_vector = check.call(mean_pool, model(**alone).last_hidden_state, alone["attention_mask"])
            batch_vectors = check.call(mean_pool, model(**batch).last_hidden_state, batch["attention_mask"])
        check.close(f"MiniLM: {short!r} alone and padded beside a longer line give the same vector",
                    batch_vectors[:1] if isinstance(batch_vectors, torch.Tensor) else batch_vectors, alone_vector,
                    atol=1e-5, hint="the padded copy differs: padding still counts somewhere in your mean")
