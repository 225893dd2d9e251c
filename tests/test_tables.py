"""studies/tab2.sh and studies/tab4.sh: the paper's Tab. 2 and Tab. 4 studies end to end on procgen, step counts cut to a few."""
import json
import os
import subprocess

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.slow  # each script, with step counts cut to a few: about a minute or two

FEW = {"EPISODES": "2", "TEST_EPISODES": "1", "MAX_STEPS": "40", "WORKERS": "1", "TOKENIZER_STEPS": "3",
       "LAM_STEPS": "3", "DYNAMICS_STEPS": "3", "BATCH": "2", "SEQ_LEN": "12", "EVAL_WINDOWS": "2",
       "OMP_NUM_THREADS": "1"}


def run(script, out, **env):
    return subprocess.run(["bash", str(ROOT / "studies" / script), "--out", str(out)], env={**os.environ, **FEW, **env},
                          capture_output=True, text=True, timeout=600)


def table_rows(path):
    """The rows of a results.md table: {label: [cells]}."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ") and not line.startswith("| model")]
    return {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines}


def test_tab2_writes_the_case_study_table(tmp_path):
    out = tmp_path / "tab2"
    result = run("tab2.sh", out, LAM_PATCH="8")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = table_rows(out / "results.md")
    for label in ("genieredux-g, dynamics, one-go", "genieredux, dynamics, one-go", "genieredux, LAM reconstruction",
                  "genieredux-g, tokenizer reconstruction (ceiling)", "copy last context frame (floor)",
                  "paper: Tokenizer", "paper: LAM", "paper: GenieRedux", "paper: GenieRedux-G"):
        assert label in rows, label
    assert rows["paper: GenieRedux-G"][:2] == ["33.41", "0.9200"]
    assert "delta_t PSNR (t=4, random)" in (out / "results.md").read_text()
    assert "-" not in rows["genieredux, dynamics, one-go"][2:4]  # both delta_t PSNR protocols
    metrics = json.loads((out / "eval" / "genieredux" / "metrics.json").read_text())
    agreement = metrics["lam_agreement"]
    assert agreement["purity"] > 0 and 0 < agreement["chance"] <= 1 and "lam" in metrics["rows"]
    assert f"genieredux's LAM: Purity {agreement['purity']:.3f}" in (out / "results.md").read_text()  # the table says it
    assert json.loads((out / "lam" / "metrics.jsonl").read_text().splitlines()[0])["step"] == 0
    again = run("tab2.sh", out)  # every step done: only the table is written again
    assert again.returncode == 0 and again.stdout.count("(done)") == 8, again.stdout


def test_tab4_writes_the_ablation_table(tmp_path):
    out = tmp_path / "tab4"
    result = run("tab4.sh", out, GAMES="procgen:coinrun procgen:jumper", TOKEN_INPUT="frozen")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = table_rows(out / "results.md")
    for label in ("g-base, dynamics, one-go", "g+token, dynamics, one-go", "g+token+tdce, dynamics, one-go",
                  "g+token+tdce, dynamics, autoregressive", "paper: GenieRedux-G-50", "paper: Autoregressive"):
        assert label in rows, label
    configs = {name: torch.load(out / name / "ckpt.pt")["config"]
               for name in ("g-base", "g+token", "g+token+tdce")}
    assert [(c["token_input"], c["tdce"]) for c in configs.values()] == [("none", False), ("frozen", False),
                                                                         ("frozen", True)]
    assert len(list((out / "data" / "train").glob("procgen-jumper*.npz"))) >= 1
