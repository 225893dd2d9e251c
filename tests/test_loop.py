"""loop.sh: the whole loop end to end on Airstriker with step counts cut to a few, then resumed."""
import os
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # the whole loop, with step counts cut to a few: about 2 minutes

FEW = {"EPISODES": "3", "FT_FRAMES": "90", "TEST_EPISODES": "3", "MAX_STEPS": "40", "TOKENIZER_STEPS": "4",
       "DYNAMICS_STEPS": "4", "DECODER_STEPS": "2", "FINETUNE_STEPS": "2", "AGENT_STEPS": "32", "ENV_AGENT_STEPS": "32",
       "ROLLOUT": "8", "ENV_ROLLOUT": "8", "RANDOM_UPDATES": "1", "ENV_RANDOM_UPDATES": "1", "EVAL_WINDOWS": "2", "ON_DATA_WINDOWS": "2",
       "BATCH": "2", "SEQ_LEN": "12", "NUM_ENVS": "2", "WORKERS": "1", "OMP_NUM_THREADS": "1"}


def test_tiny_loop_writes_every_artefact_and_resumes(tmp_path):
    out = tmp_path / "loop"
    env = {**os.environ, **FEW}
    run = subprocess.run(["bash", str(ROOT / "loop.sh"), "--preset", "tiny", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for path in ["tokenizer/ckpt.pt", "dynamics/ckpt.pt", "agent/agent.pt", "agent-env/agent.pt",
                 "tokenizer-explore/ckpt.pt", "dynamics-explore/ckpt.pt", "tokenizer-random/ckpt.pt",
                 "dynamics-random/ckpt.pt", "results.md", "results.png"]:
        assert (out / path).is_file(), path
    for name in ("pretrained", "finetuned-explore", "finetuned-random"):
        for picture in ("metrics.json", "results.md", "rollouts.png", "rollouts.gif", "horizon.png", "tokens.png",
                        "uncertainty.png"):
            assert (out / "eval" / name / picture).is_file(), f"{name}/{picture}"
    for data in ("pretrain", "explore", "random"):
        assert list((out / "data" / data / "train").glob("*.npz")), data
    assert list((out / "data" / "test" / "test").glob("*.npz"))
    table = (out / "results.md").read_text()
    for model in ("pretrained", "finetuned-random", "finetuned-explore"):
        for mode in ("one-go", "autoregressive"):
            assert f"| {model}, dynamics, {mode} |" in table
    assert "copy last context frame (floor)" in table and "FID" in table
    for model in ("pretrained-on-random", "pretrained-on-explore"):  # the pretrained model on each policy's episodes
        assert f"| {model}, dynamics, one-go |" in table
    for folder in ("data/random", "data/explore", "data/test"):  # the agents' episodes, measured without the world model
        assert f"{folder} |" in table
    assert "AutoExplore reward per step" in table and (out / "report" / "report.png").is_file()
    # a second run finds every step done and only rewrites the table
    again = subprocess.run(["bash", str(ROOT / "loop.sh"), "--preset", "tiny", "--out", str(out)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(done)") == 18 and "results.md" in again.stdout
