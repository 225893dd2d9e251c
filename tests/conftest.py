"""Shared test setup: make the top-level scripts importable; real Airstriker episodes for the scripts' tests."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, collects or runs scripts for more than a few seconds; "
                                       "pytest -m 'not slow' leaves these out (about 2 minutes in all)")


@pytest.fixture(scope="session")
def airstriker_data(tmp_path_factory):
    """A few short Airstriker episodes, collected once per session: DIR/train (3 episodes) and DIR/val (1),
    61 frames each (random agent, 60 steps, frame skip 4)."""
    out = tmp_path_factory.mktemp("airstriker")
    subprocess.run([sys.executable, "collect.py", "--env", "Airstriker-Genesis-v0", "--episodes", "4",
                    "--max-steps", "60", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out
