"""The shared set-up that the first cell of every lesson calls.

One call makes a lesson reproducible and quiet: the same seed everywhere, the
same print precision, offline Hugging Face libraries, and the usual warnings
silenced, so that stored outputs can be compared run after run.
"""

import logging
import os
import random
import socket
import warnings

import numpy as np
import torch

# Hugging Face libraries read these when they are imported, and kernels that we
# start inherit them: no lesson ever downloads anything.
OFFLINE_VARIABLES = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",  # avoids a fork warning in every DataLoader
}

# Set by the tests, `course run` and grading: quizzes print as text and
# interactive explorers draw only their default state, so outputs can be stored.
HEADLESS_VARIABLE = "COURSE_HEADLESS"

# Set by the tests and by `course run`: kernels that see it refuse to open any
# connection off this machine, so a hidden download fails loudly instead of
# passing on a machine that happens to be online.
BLOCK_NETWORK_VARIABLE = "COURSE_BLOCK_NETWORK"


def setup_notebook(seed: int = 0) -> torch.device:
    """Seed, quiet and take offline a lesson; return the device to compute on."""
    set_offline()
    if os.environ.get(BLOCK_NETWORK_VARIABLE) == "1":
        block_network()
    seed_everything(seed)
    # Deterministic kernels so that reruns print the same numbers. On CUDA the
    # cuBLAS workspace must be fixed before the first matrix multiply.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, to expose reads
    # of uninitialised memory; no lesson does that, and the filling made an
    # embedding lookup after a large one-hot 2,000x slower.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    quiet_warnings()
    _style_plots()
    return pick_device()


def set_offline() -> None:
    os.environ.update(OFFLINE_VARIABLES)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device() -> torch.device:
    """The fastest device present: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def quiet_warnings() -> None:
    """Silence the messages that libraries print on every run and that say
    nothing to a learner (and carry per-run paths that break output checks)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor is True.*")


def widgets_can_show() -> bool:
    """True in an interactive Jupyter kernel; False in a headless run or in plain Python."""
    if os.environ.get(HEADLESS_VARIABLE) == "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


def _style_plots() -> None:
    import matplotlib

    matplotlib.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 100, "axes.grid": True,
                                "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})


# --- the network guard -------------------------------------------------------

class NetworkBlockedError(ConnectionError):
    """Raised when code tries to reach another machine during a course run."""


_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # a Unix socket path
        return True
    host = str(address[0])
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host in {"::1", "0.0.0.0", ""}


def _refuse(address) -> NetworkBlockedError:
    return NetworkBlockedError(
        f"This course runs offline, but something tried to connect to {address[0]}:{address[1]}. "
        "Load models and data from local paths (see course_utils.data), "
        "or unset COURSE_BLOCK_NETWORK if you really mean to go online."
    )


def _guarded_connect(sock, address):
    if not _is_local(address):
        raise _refuse(address)
    return _original_connect(sock, address)


def _guarded_connect_ex(sock, address):
    if not _is_local(address):
        raise _refuse(address)
    return _original_connect_ex(sock, address)


def block_network() -> None:
    """Make every connection off this machine raise NetworkBlockedError.
    Loopback stays open: Jupyter kernels talk to their clients over it."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex


def allow_network() -> None:
    socket.socket.connect = _original_connect
    socket.socket.connect_ex = _original_connect_ex
