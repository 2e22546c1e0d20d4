"""Shared fixtures: explicit seeds and devices, so that no test touches the global
RNG and every test runs on each device this machine has."""

import pytest
import torch

# Two intra-op threads made tiny ops intermittently 100x slower on the 2-core dev VM;
# the unit suite runs many tiny ops, and pytest-xdist already uses both cores.
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device this machine has: cpu, and cuda when present."""
    return torch.device(request.param)


@pytest.fixture
def generator():
    """A seeded torch generator, so tests never touch the global RNG."""
    return torch.Generator().manual_seed(0)
