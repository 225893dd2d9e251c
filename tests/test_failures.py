"""What a user sees when things go wrong, as a catalogue: each case runs a script as a user would (subprocess,
tiny sizes) and checks that it ends with a non-zero exit in one line, without a traceback, that the line names
the thing and that the files from before still load. Flags that cannot work, checkpoints and data of the wrong
kind, two runs on one folder, Ctrl-C, kill -9, an episode that breaks under a loader worker, and a full disk (a
small tmpfs, where the test may mount one)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from checkpoints import load_checkpoint, read_checkpoint
from conftest import ROOT
from episodes import find_episodes, load_episode, save_episode

pytestmark = pytest.mark.slow  # every case runs a script
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--preset", "tiny", "--batch-size", "2", "--seq-len", "4", "--stride", "4", "--workers", "0"]


def command(script, *flags):
    return (["bash"] if script.endswith(".sh") else [sys.executable]) + [str(ROOT / script), *map(str, flags)]


def run(script, *flags):
    return subprocess.run(command(script, *flags), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def start(script, *flags):
    """A script running in its own process group, as a terminal runs it: Ctrl-C reaches it and its workers."""
    return subprocess.Popen(command(script, *flags), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(condition, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def interrupt(proc):
    """Ctrl-C: SIGINT to the whole process group; returns the last line of stderr."""
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    return last_line(err)


def last_line(text):
    return [line for line in re.split(r"[\r\n]", text) if line.strip()][-1]


def one_line(result, *names):
    """The run failed in one line (the last of stderr; argparse prints its usage above it) naming every name."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stdout + result.stderr and "Exception ignored" not in result.stderr, result.stderr
    line = last_line(result.stderr)
    assert "error" in line and all(name in line for name in map(str, names)), line
    return line


def no_tmp(folder):
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def train_rows(out):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


@pytest.fixture(scope="module")
def models(airstriker_data, tmp_path_factory):
    """A tiny tokenizer and a dynamics model on it, one step each, on the Airstriker episodes."""
    runs = tmp_path_factory.mktemp("models")
    for model, extra in (("tokenizer", []), ("dynamics", ["--tokenizer", runs / "tokenizer" / "ckpt.pt"])):
        result = run("train.py", "--model", model, *extra, "--data", airstriker_data, *TINY, "--steps", 1,
                     "--out", runs / model)
        assert result.returncode == 0, result.stderr[-3000:]
    return {"tokenizer": runs / "tokenizer" / "ckpt.pt", "dynamics": runs / "dynamics" / "ckpt.pt"}


@pytest.fixture
def data_copy(airstriker_data, tmp_path):
    """The Airstriker episodes in a folder this test may spoil."""
    return shutil.copytree(airstriker_data, tmp_path / "data")


# ---------------------------------------------------------------------------
# Flags and inputs that cannot work: one line with the fix, before any work
# ---------------------------------------------------------------------------

FLAGS = [  # (script, flags, what the line says); every case gets --data and --out, DYNAMICS names no file
    ("train.py", ["--model", "dynamics", "--seq-len", "1"], "--seq-len 1 is too short for --model dynamics"),
    ("train.py", ["--model", "dynamics", "--seq-len", "2"], "clips of 3 frames or more"),
    ("train.py", ["--stride", "0"], "--stride must be positive"),
    ("train.py", ["--workers", "-1"], "--workers must be 0"),
    ("train.py", ["--eval-batches", "0"], "--eval-batches must be positive"),
    ("train.py", ["--device", "gpu0"], "gpu0 is not a torch device: use cpu, cuda or cuda:N"),
    ("agent.py", ["--reward", "env", "--num-envs", "0"], "--num-envs"),
    ("play.py", ["--dynamics", "DYNAMICS", "--keys", "R", "--window", "-1"], "--window counts test windows from 0"),
]
if not torch.cuda.is_available():
    FLAGS.append(("train.py", ["--device", "cuda"], "cuda cannot be used here (Torch not compiled with CUDA enabled)"))


@pytest.mark.parametrize("script, flags, message", FLAGS, ids=[f"{s} {' '.join(f)}" for s, f, _ in FLAGS])
def test_a_flag_that_cannot_work_stops_before_any_work(script, flags, message, airstriker_data, tmp_path):
    fill = {"DYNAMICS": tmp_path / "dynamics.pt"}
    out = tmp_path / "out"
    result = run(script, *[fill.get(f, f) for f in flags], "--data", airstriker_data, "--out", out)
    one_line(result, message)
    assert not out.exists()  # agent.py --num-envs 0 leaves no empty log.jsonl


def test_data_of_the_wrong_kind_is_named(airstriker_data, models, tmp_path):
    episode = find_episodes(airstriker_data, "train")[0]
    one_line(run("train.py", "--data", episode, *TINY, "--out", tmp_path / "run"),
             f"{episode} is a file: pass the folder of .npz episodes it is in ({episode.parent})")
    # episodes whose action ids go beyond the model's 5 actions (a game with 8)
    rng = np.random.default_rng(0)
    save_episode(tmp_path / "other" / "ep.npz", rng.integers(0, 256, (30, 64, 64, 3)), rng.integers(5, 8, 29),
                 np.zeros(29), [f"A{i}" for i in range(8)], "other", "random", 4)
    one_line(run("play.py", "--dynamics", models["dynamics"], "--data", tmp_path / "other", "--keys", "R",
                 "--out", tmp_path / "play"), "use action ids beyond the model's 5 actions")
    one_line(run("evaluate.py", "--compare", models["tokenizer"].parent, "--out", tmp_path / "table"),
             f"--compare {models['tokenizer'].parent} holds no metrics.json: evaluate there first")
    assert not (tmp_path / "run").exists() and not (tmp_path / "play").exists() and not (tmp_path / "table").exists()


def test_checkpoints_of_the_wrong_kind_are_named(airstriker_data, models, tmp_path):
    tokenizer = models["tokenizer"]
    one_line(run("collect.py", "--policy", "agent", "--agent", tokenizer, "--out", tmp_path / "data"),
             f"--agent {tokenizer} holds a tokenizer model, not an agent model")
    one_line(run("agent.py", "--report", "--data", airstriker_data, "--agents", tokenizer, "--out", tmp_path / "report"),
             f"--agents {tokenizer} holds a tokenizer model, not an agent model")
    (tmp_path / "agent").mkdir()
    shutil.copy(tokenizer, tmp_path / "agent" / "agent.pt")
    one_line(run("agent.py", "--reward", "env", "--resume", "--out", tmp_path / "agent"),
             f"--resume {tmp_path / 'agent' / 'agent.pt'} holds a tokenizer model, not an agent model")
    load_checkpoint(tokenizer, "tokenizer", "--tokenizer")  # untouched


def test_recollecting_at_another_resolution_or_frame_skip_refuses(data_copy):
    before = {p.name: p.stat().st_mtime for p in find_episodes(data_copy)}
    for flags, asked in ((["--resolution", "32"], "asks for 32x32 and frame skip 4"),
                         (["--frame-skip", "2"], "asks for 64x64 and frame skip 2")):
        line = one_line(run("collect.py", "--episodes", 6, "--max-steps", 60, *flags, "--out", data_copy), asked)
        assert "was collected at 64x64 pixels and frame skip 4" in line and "--resolution 64 --frame-skip 4" in line
    assert {p.name: p.stat().st_mtime for p in find_episodes(data_copy)} == before
    assert all(len(load_episode(p)["frames"]) == 61 for p in find_episodes(data_copy))


@pytest.mark.parametrize("script, flag", [("loop.sh", "--out"), ("loop.sh", "--preset"), ("studies/tab2.sh", "--size"),
                                          ("studies/tab4.sh", "--out"), ("studies/tab5.sh", "--games")])
def test_a_shell_flag_without_its_value(script, flag):
    result = run(script, flag)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {flag} needs a value: {flag} ")
    assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# One writer per folder; Ctrl-C and kill -9 say where the run stands and never block the next run
# ---------------------------------------------------------------------------

def test_a_second_run_into_a_busy_folder_refuses_and_ctrl_c_says_where_the_first_stands(airstriker_data, models, tmp_path):
    out = tmp_path / "run"
    # two loader workers: Ctrl-C reaches them too
    run_flags = ["--model", "tokenizer", "--data", airstriker_data, *TINY, "--workers", 2, "--out", out]
    flags = [*run_flags, "--steps", 100000, "--eval-every", 5]
    first = start("train.py", *flags)
    wait_for(lambda: (out / ".lock").exists(), first)
    busy = f"--out {out} is in use by process {first.pid}: wait for that run to end, or choose another --out"
    one_line(run("train.py", *flags), busy)
    one_line(run("evaluate.py", "--dynamics", models["dynamics"], "--data", airstriker_data, "--out", out), busy)
    one_line(run("play.py", "--dynamics", models["dynamics"], "--data", airstriker_data, "--keys", "R", "--out", out), busy)
    one_line(run("agent.py", "--reward", "env", "--out", out), busy)
    wait_for(lambda: (out / "metrics.jsonl").exists() and any(r["step"] > 5 for r in train_rows(out)), first)
    stop = re.fullmatch(r"interrupted at step (\d+); checkpoint of step (\d+) at (.+); continue with --resume",
                        interrupt(first))
    assert stop and stop[3] == str(out / "ckpt.pt") and int(stop[2]) <= int(stop[1]), stop
    assert load_checkpoint(out / "ckpt.pt", "tokenizer", "--resume")[1]["step"] == int(stop[2])
    steps = [r["step"] for r in train_rows(out)]
    assert steps == sorted(set(steps))  # the first run's own steps, each once: nothing of the refused runs
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "ckpt.pt", "curves.png", "metrics.jsonl", "samples.png"]

    killed = start("train.py", *flags, "--resume")  # kill -9 leaves its lock file: the next run takes it over
    wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().strip() == str(killed.pid), killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate()
    saved = torch.load(out / "ckpt.pt", weights_only=False)["step"]
    again = run("train.py", *run_flags, "--steps", saved, "--resume")
    assert again.returncode == 0 and not (out / ".lock").exists(), again.stderr[-3000:]


def test_ctrl_c_of_two_collect_workers_is_one_line_and_keeps_whole_episodes(tmp_path):
    out = tmp_path / "data"
    collect = start("collect.py", "--episodes", 20, "--max-steps", 300, "--workers", 2, "--out", out)
    wait_for(lambda: out.is_dir() and any(out.rglob("*.npz")), collect)
    assert interrupt(collect) == f"interrupted: the episodes on disk in {out} are complete; run the same command again to collect the rest"
    no_tmp(out)
    assert all(load_episode(p) for p in find_episodes(out))


def test_a_ctrl_c_that_lands_in_a_finaliser_prints_no_traceback_and_is_remembered():
    """Python swallows an exception raised in a weakref callback or a __del__ and prints it; for Ctrl-C the
    scripts stay quiet (their loops see it in CTRL_C and stop with their one line), for anything else it shows."""
    code = """
import gc, os, signal, weakref
import episodes
episodes.remember_ctrl_c()
class Thing:
    pass
def on_collect(ref):
    os.kill(os.getpid(), signal.SIGINT)  # the handler raises here, inside the callback
thing = Thing()
ref = weakref.ref(thing, on_collect)
del thing
class Broken:
    def __del__(self):
        raise ValueError("a real bug in a finaliser")
Broken()
gc.collect()
print("ctrl-c seen", len(episodes.CTRL_C))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ctrl-c seen 1", done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "ValueError: a real bug in a finaliser" in done.stderr


def test_ctrl_c_of_the_agent_names_its_checkpoint(tmp_path):
    out = tmp_path / "agent"
    agent = start("agent.py", "--reward", "env", "--preset", "tiny", "--num-envs", 2, "--num-steps", 8,
                  "--total-steps", 10**6, "--save-every", 1, "--out", out)
    wait_for(lambda: (out / "agent.pt").exists(), agent)  # its workers are up and playing
    stop = re.fullmatch(r"interrupted after update (\d+); checkpoint of update (\d+) at (.+); continue with --resume",
                        interrupt(agent))
    assert stop and stop[3] == str(out / "agent.pt"), stop
    assert read_checkpoint(out / "agent.pt", "--resume", kind="agent")["update"] == int(stop[2])


def test_an_episode_that_breaks_under_a_loader_worker_is_its_own_line(data_copy, tmp_path):
    out = tmp_path / "run"
    proc = start("train.py", "--model", "tokenizer", "--data", data_copy, *TINY, "--workers", 2, "--steps", 200, "--out", out)
    while "[val]" not in proc.stdout.readline():  # every episode is validated: now one breaks
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    broken = find_episodes(data_copy, "train")[0]
    broken.write_bytes(b"overwritten while training")
    _, err = proc.communicate(timeout=300)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    line = one_line(result, f"error: {broken}: not a readable .npz", "delete or re-collect it; checkpoint of step")
    assert line.endswith("continue with --resume") and "DataLoader" not in err


# ---------------------------------------------------------------------------
# A full disk: the file named, nothing partial left, nothing earlier lost
# ---------------------------------------------------------------------------

@pytest.fixture
def disk(tmp_path):
    """A 16 MiB tmpfs of this test's own (mounting one needs root), unmounted afterwards."""
    path = tmp_path / "disk"
    path.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                                                       capture_output=True).returncode:
        pytest.skip("a full disk is a small tmpfs here, and mounting one needs root")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk, leave_kib):
    """Fill the disk up to `leave_kib` KiB free."""
    with open(disk / "filler", "ab") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave_kib * 1024))


def test_a_full_disk_during_the_token_cache_is_one_line_and_leaves_no_tmp(airstriker_data, models, disk):
    fill(disk, 8)
    result = run("train.py", "--model", "dynamics", "--tokenizer", models["tokenizer"], "--data", airstriker_data, *TINY,
                 "--steps", 2, "--out", disk / "dynamics")
    assert result.returncode == 1, result.stderr[-3000:]
    one_line(result, f"cannot write {disk / 'dynamics' / 'tokens_train.npy'}", "No space left on device")
    no_tmp(disk)


def test_a_full_disk_mid_run_keeps_the_checkpoint_before_it(airstriker_data, models, disk):
    out = shutil.copytree(models["tokenizer"].parent, disk / "run")  # a run of one step
    fill(disk, 16)
    one_line(run("train.py", "--model", "tokenizer", "--data", airstriker_data, *TINY, "--steps", 3, "--resume", "--out", out),
             f"cannot write {out}", f"No space left on device; checkpoint of step 1 at {out / 'ckpt.pt'}; continue with --resume")
    no_tmp(disk)
    assert load_checkpoint(out / "ckpt.pt", "tokenizer", "--resume")[1]["step"] == 1
    assert [r["step"] for r in train_rows(out)][:1] == [0]


def test_a_full_disk_names_the_file_in_collect_play_evaluate_and_agent(airstriker_data, models, disk):
    fill(disk, 24)
    one_line(run("collect.py", "--episodes", 8, "--max-steps", 200, "--workers", 2, "--out", disk / "data"),
             f"cannot write {disk / 'data'}", ".npz: No space left on device")
    assert all(load_episode(p) for p in disk.rglob("*.npz"))
    fill(disk, 4)  # room for a lock file alone
    world_model = ["--dynamics", models["dynamics"], "--data", airstriker_data]
    one_line(run("play.py", *world_model, "--keys", "RL", "--steps", 1, "--out", disk / "play"),
             f"cannot write {disk / 'play' / 'play.gif'}: No space left on device")
    one_line(run("evaluate.py", *world_model, "--mode", "one-go", "--steps", 1, "--max-windows", 1, "--out", disk / "eval"),
             f"cannot write {disk / 'eval'}", "No space left on device")
    one_line(run("agent.py", "--reward", "env", "--preset", "tiny", "--num-envs", 1, "--num-steps", 4, "--total-steps", 4,
                 "--out", disk / "agent"), f"cannot write {disk / 'agent'}", "No space left on device")
    no_tmp(disk)
