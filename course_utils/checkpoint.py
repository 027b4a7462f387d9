"""Saving a training run and resuming it exactly where it stopped.

A long run stops: a laptop sleeps, a job's time runs out, someone presses
Ctrl-C. To go on as if it had never stopped, a checkpoint must hold
everything the next step depends on, not only the weights:

- the model's weights and the optimizer's state (Adam's running averages:
  without them the steps after a resume are a fresh Adam's, and different);
- the learning-rate scheduler's state, for a run that has one;
- the number of steps taken, so that the schedule and the batches go on
  from there;
- every random generator the loop draws from: PyTorch's (dropout draws from
  it), CUDA's, Python's `random`, NumPy's, and any `torch.Generator` of the
  run's own (one that shuffles the data, say);
- the settings of the run (model config, recipe), so that a checkpoint of
  another run is refused instead of continued with settings it never had;
- whatever else the run wants back: its loss curve, the time it has taken.

`save_checkpoint` writes all of it in one file, atomically; `load_checkpoint`
puts it back, in place, into freshly built objects, or raises a
`CheckpointError` that says what is wrong and what to do.
"""

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

# Stored in every checkpoint; a file with another number (an older layout) is refused.
FORMAT = 1
_KEYS = ("format", "settings", "step", "model", "optimizer", "scheduler", "random", "extra")


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed: missing, unreadable, or of another run."""


# --- writing a file in one step ----------------------------------------------------

def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(a temporary path beside `path`), then rename that file to
    `path` in one step (`os.replace`). A reader, or a run killed while it
    writes, sees the old file or the new one, never half of one: the old one
    is replaced only once the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # In the same folder, so on the same file system: os.replace is then one
    # atomic rename (it cannot move a file to another file system at all).
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # left only when write() failed: remove the half file


# --- random generators -------------------------------------------------------------

def random_states(generators: dict[str, torch.Generator] | None = None) -> dict:
    """The state of every random generator a training loop may draw from,
    in types that `torch.load(..., weights_only=True)` reads back."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (kind, keys.tolist(), position, has_gauss, cached_gauss),  # a NumPy array is not loadable
              "generators": {name: generator.get_state() for name, generator in (generators or {}).items()}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()  # one per GPU
    return states


def restore_random_states(states: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    """Put back the states that `random_states` took, `generators` matched by name."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached_gauss))
    for name, generator in (generators or {}).items():
        generator.set_state(states["generators"][name])
    # A run saved without a GPU has no CUDA state; one resumed without a GPU draws no CUDA numbers.
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- saving --------------------------------------------------------------------------

def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    settings: dict, scheduler=None, generators: dict[str, torch.Generator] | None = None,
                    extra: dict | None = None) -> None:
    """Write the state of a run after `step` steps to `path`, atomically.

    settings: what decides the run (model config, recipe), a dict that JSON
    can write (`dataclasses.asdict` of the config and the recipe); a resume
    with other settings is refused. scheduler: a learning-rate scheduler
    (anything with `state_dict`), if the run has one. generators: the run's
    own `torch.Generator`s, by name. extra: anything else to get back
    (numbers, strings, tensors, and lists, tuples and dicts of them)."""
    state = {"format": FORMAT, "settings": _plain(settings), "step": step, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": None if scheduler is None else scheduler.state_dict(),
             "random": random_states(generators), "extra": extra or {}}
    atomic_write(path, lambda partial: torch.save(state, partial))


def _plain(settings: dict) -> dict:
    """settings as JSON reads them back (tuples become lists), so that the
    settings saved and the settings given compare equal when they are."""
    return json.loads(json.dumps(settings, sort_keys=True))


# --- loading -------------------------------------------------------------------------

class Resumed(NamedTuple):
    step: int  # the steps the checkpoint's run had taken: go on from step + 1
    extra: dict  # what save_checkpoint was given as `extra`


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, settings: dict,
                    scheduler=None, generators: dict[str, torch.Generator] | None = None) -> Resumed:
    """Put the run saved in `path` back, in place: the model's weights, the
    optimizer's and the scheduler's state, every random generator's state
    (`generators` by name, as they were saved). Returns (step, extra).

    Raises CheckpointError, naming the file, when there is none, when it
    cannot be read or lacks a part, when its settings differ from `settings`
    (naming each difference), or when its generators are not `generators`;
    in each of these cases the model, optimizer and generators are left as they were."""
    path = Path(path)
    start_again = f"To start the run again instead, delete {path} (`course train` does it with --fresh)."
    if not path.is_file():
        raise CheckpointError(f"There is no checkpoint at {path}: nothing to resume.")
    try:
        # weights_only: tensors and plain containers only; unpickling arbitrary objects could run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a zip error, an unpickling error, an end of file: all mean the same here
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__  # its first sentence
        raise CheckpointError(f"{path} is not a checkpoint that can be read: it is damaged or cut short "
                              f"({reason}). {start_again}") from error
    missing = [key for key in _KEYS if key not in state] if isinstance(state, dict) else list(_KEYS)
    if missing or state["format"] != FORMAT:
        lacks = f"it lacks {', '.join(missing)}" if missing else f"its format is {state['format']!r}"
        raise CheckpointError(f"{path} is not a checkpoint in this course's format {FORMAT} ({lacks}): an earlier "
                              f"version of the course or another program wrote it. {start_again}")
    differences = _differences(state["settings"], _plain(settings))
    if differences:
        raise CheckpointError(f"{path} is the checkpoint of another run; its settings differ from this run's: "
                              f"{'; '.join(differences)}. {start_again}")
    saved, given = sorted(state["random"]["generators"]), sorted(generators or {})
    if saved != given:
        raise CheckpointError(f"{path} holds the generators {saved}, but {given} were given to restore.")
    if (scheduler is None) != (state["scheduler"] is None):
        raise CheckpointError(f"{path} was saved {'with' if state['scheduler'] is not None else 'without'} a "
                              f"learning-rate scheduler, and is loaded {'with' if scheduler is not None else 'without'} one.")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as error:  # settings that agree, objects built that do not
        raise CheckpointError(f"{path} does not fit the model or optimizer built for it: {error}") from error
    restore_random_states(state["random"], generators)
    return Resumed(state["step"], state["extra"])


def _differences(saved: dict, given: dict, prefix: str = "") -> list[str]:
    """'name: A in the checkpoint, B here' for each setting that differs, nested dicts by dotted name."""
    differences = []
    for key in sorted(saved.keys() | given.keys()):
        if key not in saved or key not in given:
            differences.append(f"{prefix}{key}: only {'here' if key in given else 'in the checkpoint'}")
        elif isinstance(saved[key], dict) and isinstance(given[key], dict):
            differences += _differences(saved[key], given[key], f"{prefix}{key}.")
        elif saved[key] != given[key]:
            differences.append(f"{prefix}{key}: {saved[key]!r} in the checkpoint, {given[key]!r} here")
    return differences
