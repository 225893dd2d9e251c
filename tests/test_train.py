"""train.py as a user runs it (subprocesses, tiny presets, CPU, real Airstriker episodes): learning, checkpoints,
decoder-only fine-tuning, exact resume after a kill, DDP on two ranks, dynamics on a frozen tokenizer, the
benchmark, and errors that name the problem and the fix (checked in-process, plus one run from the command line)."""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints import CheckpointError, load_checkpoint
from data import Clips
from episodes import EpisodeError
from metrics import psnr
from train import TrainingError, evaluate, main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # every test trains through train.py
TINY = ["--preset", "tiny", "--workers", "0", "--batch-size", "2", "--seq-len", "4", "--stride", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process: no oversubscription when runs share 2 cores


def train(*args):
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)


def records(out, split="train"):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


@pytest.fixture(scope="session")
def tokenizer_run(airstriker_data, tmp_path_factory):
    """A tiny tokenizer trained on the Airstriker clips (the learning test checks how well): 800 steps of one
    8-frame clip."""
    out = tmp_path_factory.mktemp("runs") / "tokenizer"
    run = train("--model", "tokenizer", "--data", airstriker_data, "--out", out, *TINY, "--batch-size", "1",
                "--seq-len", "8", "--steps", "800", "--lr", "2e-3", "--warmup", "30", "--eval-every", "400")
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_tokenizer_beats_the_mean_frame_by_6db(tokenizer_run, airstriker_data):
    model, ckpt = load_checkpoint(tokenizer_run / "ckpt.pt", "tokenizer", "--tokenizer")
    assert ckpt["model_type"] == "tokenizer" and ckpt["step"] == 800 and ckpt["preset"] == "tiny"
    clips = Clips(airstriker_data, "train", 8, 4, workers=0)
    clips.resolution = 64
    real = torch.stack([clips[i]["frames"] for i in range(len(clips))]).float() / 255  # [N, 8, 64, 64, 3]
    with torch.no_grad():
        recon = model(real)[0]
    ours = psnr(recon, real).mean().item()
    baseline = psnr(real.mean(1, keepdim=True).expand_as(real), real).mean().item()  # each clip's mean frame
    assert ours >= baseline + 6, f"tokenizer {ours:.1f} dB vs mean-frame baseline {baseline:.1f} dB"
    val = records(tokenizer_run, "val")
    assert [r["step"] for r in val] == [0, 400, 800] and val[-1]["psnr"] > val[0]["psnr"] + 10
    for name in ("curves.png", "samples.png"):
        assert (tokenizer_run / name).stat().st_size > 1000


def test_checkpoint_reproduces_the_logged_validation(tokenizer_run, airstriker_data):
    """The reloaded model, on the same validation batches, gives the metrics the run logged at its last eval."""
    model, ckpt = load_checkpoint(tokenizer_run / "ckpt.pt", "tokenizer", "--tokenizer")
    args = Namespace(**ckpt["args"])
    val = Clips(airstriker_data, "val", args.seq_len, args.stride, workers=0)
    val.resolution = model.config.resolution
    metrics = evaluate(model, val, args, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    logged = records(tokenizer_run, "val")[-1]
    for key in ("loss", "psnr", "usage"):
        assert metrics[key] == pytest.approx(logged[key], rel=1e-4), key
    frames = torch.stack([val[i]["frames"] for i in range(2)])
    again, _ = load_checkpoint(tokenizer_run / "ckpt.pt", "tokenizer", "--tokenizer")
    assert torch.equal(again.decode(again.encode(frames)), model.decode(model.encode(frames)))


def test_decoder_only_fine_tuning_changes_only_the_decoder(tokenizer_run, airstriker_data, tmp_path):
    run = train("--init", tokenizer_run / "ckpt.pt", "--decoder-only", "--data", airstriker_data, *TINY,
                "--steps", "2", "--lr", "1e-3", "--out", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    before, after = torch.load(tokenizer_run / "ckpt.pt")["model"], torch.load(tmp_path / "ckpt.pt")["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    model, _ = load_checkpoint(tmp_path / "ckpt.pt", "tokenizer", "--tokenizer")
    decoder = {k for k, p in model.named_parameters() if any(p is q for q in model.decoder_parameters())}
    assert changed == decoder  # encoder, codebook and code usage stay: the token ids do not move


def test_resume_after_a_kill_continues_exactly(airstriker_data, tmp_path):
    flags = ["--model", "tokenizer", "--data", airstriker_data, *TINY, "--steps", "12", "--eval-every", "4",
             "--log-every", "1", "--lr", "1e-3", "--warmup", "2"]
    full = train(*flags, "--out", tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    # the same run, killed (SIGKILL: no clean-up) once it has logged step 5, i.e. after the checkpoint at step 4
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "train.py", *map(str, flags), "--out", str(out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "metrics.jsonl"
    while not log.exists() or '"step": 5, "split": "train"' not in log.read_text():
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(out / "ckpt.pt")["step"] == 4
    resumed = train(*flags, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = [(r["step"], r["loss"]) for r in records(tmp_path / "full")]
    assert [(r["step"], r["loss"]) for r in records(out)] == expected  # each step once, the same losses
    assert [r["step"] for r in records(out, "val")] == [0, 4, 8, 12]


def test_ddp_two_ranks_on_cpu(airstriker_data, tmp_path):
    out = tmp_path / "ddp"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "train.py", "--model", "tokenizer", "--data", str(airstriker_data), *TINY, "--steps", "4",
                          "--eval-every", "4", "--log-every", "1", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # both ranks print to one pipe, so their lines may interleave: find each rank's report wherever it is
    firsts = dict(re.findall(r"rank (\d)/2: first batch crc32 ([0-9a-f]{8})", run.stdout))
    assert sorted(firsts) == ["0", "1"] and firsts["0"] != firsts["1"]  # the ranks read different clips
    assert [r["step"] for r in records(out)] == [0, 1, 2, 3]  # logged once: only rank 0 writes
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "ckpt.pt", "curves.png", "metrics.jsonl", "samples.png"]


def test_best_checkpoint_is_the_lowest_validation_loss_not_the_last(tokenizer_run, airstriker_data, tmp_path):
    """Fine-tuning a trained tokenizer at a learning rate that wrecks it: the best checkpoint stays the start."""
    run = train("--init", tokenizer_run / "ckpt.pt", "--data", airstriker_data, *TINY, "--steps", "4", "--warmup", "0",
                "--lr", "0.3", "--eval-every", "1", "--eval-batches", "2", "--out", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    val = records(tmp_path, "val")
    best = min(val, key=lambda r: r["loss"])
    assert best["step"] != val[-1]["step"]  # the run got worse, so "best" and "last" differ here
    saved = torch.load(tmp_path / "best.pt")
    assert saved["step"] == best["step"] and saved["val_loss"] == pytest.approx(best["loss"])
    assert "optimizer" not in saved and torch.load(tmp_path / "ckpt.pt")["step"] == 4


def test_dynamics_trains_on_the_frozen_tokenizer(tokenizer_run, airstriker_data, tmp_path):
    out = tmp_path / "dynamics"
    tokenizer_ckpt = tokenizer_run / "ckpt.pt"
    run = train("--model", "dynamics", "--tokenizer", tokenizer_ckpt, "--data", airstriker_data, *TINY,
                "--steps", "3", "--eval-every", "3", "--log-every", "1", "--out", out, "--no-tdce")
    assert run.returncode == 0, run.stderr[-3000:]
    model, ckpt = load_checkpoint(out / "ckpt.pt", "dynamics", "--dynamics")
    tokenizer, _ = load_checkpoint(tokenizer_ckpt, "tokenizer", "--tokenizer")
    assert ckpt["model_type"] == "dynamics" and ckpt["tokenizer"] == str(tokenizer_ckpt.resolve())
    assert model.config.num_actions == 5 and not model.config.tdce and model.config.token_input
    assert torch.allclose(model.codebook, tokenizer.codebook())
    val = records(out, "val")[-1]
    assert 0 <= val["acc"] <= 1 and val["psnr"] > 10  # one-go rollout decoded by the tokenizer
    # the token cache holds each clip tokenised on its own by the frozen tokenizer
    clips = Clips(airstriker_data, "train", 4, 4, workers=0)
    clips.resolution = 64
    cache = np.load(out / "tokens_train.npy")
    assert cache.shape == (len(clips), 4, *tokenizer.grid)
    for i in (0, len(clips) - 1):
        assert np.array_equal(cache[i], tokenizer.encode(clips[i]["frames"][None])[0].numpy())


def test_benchmark_prints_figures_and_writes_nothing(airstriker_data, tmp_path):
    for model in ("tokenizer", "dynamics"):
        run = train("--model", model, "--data", airstriker_data, *TINY, "--benchmark", "--out", tmp_path / model)
        assert run.returncode == 0, run.stderr[-3000:]
        for figure in ("M parameters", "ms/step", "frames/s", "tokens/s", "peak memory", "loader:"):
            assert figure in run.stdout, (figure, run.stdout)
        assert re.search(r"MFU \d+\.\d% of this CPU's measured fp32 matmul peak, \d+ GFLOP/s", run.stdout), run.stdout
    assert list(tmp_path.iterdir()) == []


def test_compile_falls_back_to_eager_when_the_compiler_fails_and_says_so(airstriker_data, monkeypatch, capsys):
    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)  # train.main sets these two; restore after
    monkeypatch.setattr(logging.getLogger("torch._dynamo.convert_frame"), "filters", [])
    monkeypatch.setattr(torch._inductor.config, "_raise_error_for_testing", True)  # every compilation fails
    main(["--model", "tokenizer", "--data", str(airstriker_data), *TINY, "--benchmark", "--compile", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert "ms/step" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning: --compile: ")]
    assert warnings and all(line.endswith("that graph runs eagerly; TORCH_LOGS=dynamo shows why") for line in warnings)


def test_errors_name_the_problem_and_the_fix(airstriker_data, tokenizer_run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ep.npz").write_bytes(b"not a zip")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "ckpt.pt").write_bytes((tokenizer_run / "ckpt.pt").read_bytes()[:5000])  # a copy cut short
    data = ["--data", str(airstriker_data)]
    cases = [
        ([*data, "--model", "dynamics", "--tokenizer", str(tmp_path / "cut" / "ckpt.pt")], "truncated or corrupt"),
        ([*data, "--resume", "--out", str(tmp_path / "cut")], "--resume .*cut/ckpt.pt is not a readable checkpoint"),
        (["--data", str(tmp_path / "empty")], "empty holds no .npz episodes: collect some"),
        ([*data, "--seq-len", "100"], "no episode in .* has 100 frames .* lower --seq-len"),
        (["--data", str(tmp_path / "bad")], "ep.npz: not a readable .npz"),
        ([*data, "--model", "dynamics"], "needs --tokenizer CKPT"),
        ([*data, "--resume", "--out", str(tokenizer_run), "--preset", "small"], "holds a tokenizer --preset tiny .* a new --out"),
        ([*data, "--init", str(tokenizer_run / "ckpt.pt"), "--preset", "small"], "builds tokenizer --preset small"),
        ([*data, "--out", str(tokenizer_run)], "ckpt.pt exists: pass --resume"),
    ]
    for flags, message in cases:
        with pytest.raises((TrainingError, CheckpointError, EpisodeError), match=message) as error:
            main([*TINY, "--out", str(tmp_path / "run"), *flags])
        assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_out_fails_in_one_line_before_any_work(airstriker_data):
    run = train("--data", airstriker_data, *TINY, "--out", "/proc/foo")
    assert run.returncode == 1 and run.stderr == "error: --out /proc/foo cannot be written (No such file or directory): " \
        "choose a folder you can write to\n", run.stderr


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(airstriker_data, tmp_path):
    run = train("--data", airstriker_data, *TINY, "--lr", "1e30", "--steps", "5", "--out", tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert lines[-1].startswith("error: loss is nan at step ") and "lower --lr" in lines[-1], lines[-1]
    ckpt = torch.load(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 0 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_genieredux_latent_action_path_end_to_end(tokenizer_run, airstriker_data, tmp_path):
    """GenieRedux: train a LAM, a dynamics model on its frozen codes, then evaluate and play it."""
    lam, dyn = tmp_path / "lam", tmp_path / "dyn"
    run = train("--model", "lam", "--data", airstriker_data, "--steps", 4, "--eval-every", 2, "--num-actions", 3,
                "--out", lam, *TINY)
    assert run.returncode == 0, run.stderr
    assert "code_0" in records(lam)[0]  # per-code usage is logged: a collapse shows at once
    run = train("--model", "dynamics", "--actions", "latent", "--lam", lam / "ckpt.pt", "--tokenizer",
                tokenizer_run / "ckpt.pt", "--data", airstriker_data, "--steps", 2, "--out", dyn, *TINY)
    assert run.returncode == 0, run.stderr
    ckpt = torch.load(dyn / "ckpt.pt")
    assert ckpt["config"]["num_actions"] == 3 and ckpt["lam"] == str((lam / "ckpt.pt").resolve())
    assert np.load(dyn / "latent_train.npy").max() < 3  # the dynamics model trained on LAM codes, not true actions
    evaluate = [sys.executable, "evaluate.py", "--dynamics", str(dyn / "ckpt.pt"), "--data", str(airstriker_data),
                "--steps", "2", "--max-windows", "4"]
    run = subprocess.run([*evaluate, "--mode", "one-go", "--out", str(tmp_path / "eval")], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    results = (tmp_path / "eval" / "results.md").read_text()
    assert "Latent actions against true actions" in results and (tmp_path / "eval" / "lam_agreement.png").is_file()
    agreement = json.loads((tmp_path / "eval" / "metrics.json").read_text())["lam_agreement"]
    assert np.array(agreement["confusion"]).shape[0] == 3 and 0 < agreement["purity"] <= 1
    assert 0 < agreement["chance"] <= 1 and "against chance" in results  # the codes against shuffled true actions
    run = subprocess.run([sys.executable, "play.py", *evaluate[2:6], "--keys", "RLJ", "--out", str(tmp_path / "play")],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and (tmp_path / "play" / "play.gif").is_file(), run.stderr
