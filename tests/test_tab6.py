"""studies/tab6.sh: the Tab. 6 study end to end on Airstriker with step counts cut to a few."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # about 2 minutes

FEW = {"EPISODES": "2", "MAX_STEPS": "30", "TOKENIZER_STEPS": "4", "DYNAMICS_STEPS": "4", "BATCH": "2", "TOKENIZER_BATCH": "2",
       "WORKERS": "1", "AGENT_STEPS": "32", "NUM_ENVS": "2", "ROLLOUT": "8", "RANDOM_UPDATES": "1", "FRAMES": "40",
       "EVAL_WINDOWS": "2", "MASKGIT_STEPS": "2", "OMP_NUM_THREADS": "1"}


def test_study_writes_the_four_rows_their_floors_the_paper_and_the_rank(tmp_path):
    out = tmp_path / "tab6"
    run = subprocess.run(["bash", str(ROOT / "studies" / "tab6.sh"), "--out", str(out)], env={**os.environ, **FEW},
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (out / "results.md").read_text()
    for row in ("uniform random (our control)", "RF", "VAE", "AutoExplore"):
        assert f"| {row} |" in table, row
    assert "24.82 / 0.78 / 0.44" in table and "AutoExplore ranks" in table  # the paper's numbers, the rank
    assert "delta_t PSNR (swap)" in table and "copy floor" in table and "coarse pictures per episode" in table
    frames = {name: sum(len(np.load(p)["frames"]) for p in (out / "data" / name / "test").glob("*.npz"))
              for name in ("random", "rf", "vae", "autoexplore")}
    assert set(frames.values()) == {40}, frames  # the same frames of every policy's episodes
    for name in frames:
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        assert {"delta_psnr", "delta_psnr_swap", "ssim_se"} <= metrics["rows"]["one-go"].keys()
    for reward in ("rf", "vae", "autoexplore"):  # the same PPO settings and steps for every agent
        rows = [json.loads(line) for line in (out / f"agent-{reward}" / "log.jsonl").read_text().splitlines()]
        assert [r["policy"] for r in rows] == ["random", "ppo"] and rows[-1]["steps"] == 32
        assert (out / f"agent-{reward}" / "curves.png").stat().st_size > 0
    for picture in ("tab6.png", "report/report.png", "eval/compare/results.png"):
        assert (out / picture).stat().st_size > 0
    again = subprocess.run(["bash", str(ROOT / "studies" / "tab6.sh"), "--out", str(out)], env={**os.environ, **FEW},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skip agent-vae (done)" in again.stdout  # a rerun only rebuilds the table
    bad = subprocess.run(["bash", str(ROOT / "studies" / "tab6.sh"), "--size", "tpu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--size must be cpu or gpu" in bad.stderr
