"""Shared test setup: make the top-level scripts importable; real Airstriker episodes for the scripts' tests."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, collects or runs scripts for more than a few seconds; "
                                       "pytest -m 'not slow' leaves these out (about 2 minutes in all)")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast as two and does not stall when the machine is busy.
    A module takes it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def airstriker_data(tmp_path_factory):
    """A few short Airstriker episodes, collected once per session: DIR/train (3 episodes) and DIR/val (1),
    61 frames each (random agent, 60 steps, frame skip 4)."""
    out = tmp_path_factory.mktemp("airstriker")
    subprocess.run([sys.executable, "collect.py", "--env", "Airstriker-Genesis-v0", "--episodes", "4",
                    "--max-steps", "60", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out
