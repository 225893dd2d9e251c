"""studies/tab5.sh: the Tab. 5 exploration study end to end on two procgen games with step counts cut to a few."""
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # about 4 minutes

FEW = {"EPISODES": "2", "MAX_STEPS": "30", "TOKENIZER_STEPS": "4", "DYNAMICS_STEPS": "4", "AGENT_STEPS": "32", "ENV_AGENT_STEPS": "32", "ROLLOUT": "8", "RANDOM_UPDATES": "1", "ENV_ROLLOUT": "8", "ENV_RANDOM_UPDATES": "1",
       "FRAMES": "80", "DECODER_STEPS": "2", "FINETUNE_STEPS": "2", "EVAL_EVERY": "1", "TEST_EPISODES": "2",
       "EVAL_WINDOWS": "2", "BATCH": "2", "SEQ_LEN": "12", "TOKENIZER_BATCH": "2", "NUM_ENVS": "2", "WORKERS": "1",
       "OMP_NUM_THREADS": "1"}


def test_study_writes_the_four_rows_the_baselines_and_the_exploration_report(tmp_path):
    pytest.importorskip("procgen")
    out = tmp_path / "tab5"
    run = subprocess.run(["bash", str(ROOT / "studies" / "tab5.sh"), "--games", "procgen:coinrun procgen:jumper", "--out", str(out)],
                         env={**os.environ, **FEW}, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (out / "results.md").read_text()
    for row in ("pretrained, dynamics, one-go", "finetuned-random, dynamics, one-go",
                "finetuned-random, dynamics, autoregressive", "finetuned-explore, dynamics, one-go",
                "finetuned-explore, dynamics, autoregressive", "scratch-explore, dynamics, one-go",
                "copy last context frame (floor)", "pretrained, tokenizer reconstruction (ceiling)"):
        assert f"| {row} |" in table, row
    assert "Smurfs" in table and "coarse pictures per episode" in table  # the paper's numbers, the exploration report
    explore, random = (sum(len(np.load(p)["frames"]) for p in (out / "data" / d).rglob("*.npz"))
                       for d in ("explore", "random"))
    assert explore == random == 80  # the same frame budget for both fine-tuning datasets
    for picture in ("results.png", "report/report.png"):
        assert (out / picture).stat().st_size > 0
    bad = subprocess.run(["bash", str(ROOT / "studies" / "tab5.sh"), "--target", "procgen:maze", "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "is not one of --games" in bad.stderr
