import os
import random

import numpy as np
import torch

from course_utils import setup_notebook


def test_setup_notebook_makes_runs_repeat():
    setup_notebook(seed=3)
    first = (random.random(), np.random.rand(), torch.rand(3))
    setup_notebook(seed=3)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_setup_notebook_is_offline_deterministic_and_returns_a_device():
    device = setup_notebook()
    assert isinstance(device, torch.device) and device.type in {"cpu", "cuda", "mps"}
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert torch.are_deterministic_algorithms_enabled()
    assert "0.3333" in str(torch.tensor([1 / 3])) and "0.33333" not in str(torch.tensor([1 / 3]))
