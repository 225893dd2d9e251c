"""collect.py and envs.py: real emulator episodes, resume, determinism, shared folders and clear errors."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import envs
from episodes import find_episodes, load_episode, save_episode
from conftest import ROOT

AIRSTRIKER = "Airstriker-Genesis-v0"


def run_collect(*flags, env=None, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "collect.py"), *map(str, flags)], capture_output=True,
                          text=True, env=env, **kwargs)


def episodes_of(folder):
    return {p.relative_to(folder).as_posix(): load_episode(p) for p in find_episodes(folder)}


def test_round_trip(tmp_path):
    result = run_collect("--episodes", 2, "--max-steps", 20, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{AIRSTRIKER}: 2 episodes" in result.stdout  # the closing summary
    files = sorted(p.relative_to(tmp_path).as_posix() for p in find_episodes(tmp_path))
    assert files == [f"train/{AIRSTRIKER}_seed0_00001.npz", f"val/{AIRSTRIKER}_seed0_00000.npz"]
    for ep in episodes_of(tmp_path).values():
        assert ep["frames"].dtype == np.uint8 and ep["frames"].shape[1:] == (64, 64, 3)
        assert ep["actions"].dtype == np.int64 and ep["rewards"].dtype == np.float32
        assert len(ep["frames"]) == len(ep["actions"]) + 1 == 21
        assert ep["action_names"] == ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
        assert (ep["env"], ep["policy"], ep["frame_skip"]) == (AIRSTRIKER, "random", 4)
        assert ep["frames"].std() > 0  # a real picture, not a blank


def ship_x(frame):
    """Column centroid of the Airstriker ship: the bright grey pixels in the lower part of the screen."""
    lower = frame[40:].astype(int)
    ys, xs = np.nonzero((lower.min(-1) > 90) & (lower.max(-1) - lower.min(-1) < 80))
    assert len(xs) > 0, "ship not found"
    return xs.mean()


def test_actions_move_the_ship(tmp_path):
    game = envs.RetroGame(AIRSTRIKER, frame_skip=4, resolution=64)
    actions = [envs.ACTION_NAMES.index("RIGHT")] * 8 + [envs.ACTION_NAMES.index("LEFT")] * 8
    frames = [game.reset(seed=0)] + [game.step(a)[0] for a in actions]
    game.close()
    save_episode(tmp_path / "scripted.npz", np.stack(frames), actions, np.zeros(16), envs.ACTION_NAMES, AIRSTRIKER,
                 "scripted", 4)
    saved = load_episode(tmp_path / "scripted.npz")["frames"]
    start, after_right, after_left = ship_x(saved[0]), ship_x(saved[8]), ship_x(saved[16])
    assert after_right > start + 3, (start, after_right)
    assert after_left < after_right - 3, (after_right, after_left)


def test_procgen_coinrun_episode(tmp_path):
    pytest.importorskip("procgen")
    result = run_collect("--env", "procgen:coinrun", "--episodes", 1, "--max-steps", 30, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    (ep,) = episodes_of(tmp_path).values()
    assert ep["frames"].shape[1:] == (64, 64, 3) and ep["frames"].dtype == np.uint8
    assert len(ep["frames"]) == len(ep["actions"]) + 1 and ep["frame_skip"] == 1
    assert ep["env"] == "procgen:coinrun" and ep["action_names"] == envs.ACTION_NAMES


def test_procgen_episodes_keep_the_reward_of_the_level_they_finish(tmp_path):
    """procgen shows no frame after the coin: its reward of 10 must still be in the episode (random play
    finishes about half of CoinRun's levels, 4.75 per episode over 40 seeds)."""
    pytest.importorskip("procgen")
    result = run_collect("--env", "procgen:coinrun:plain", "--episodes", 12, "--max-steps", 400, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    returns = [ep["rewards"].sum() for ep in episodes_of(tmp_path).values()]
    assert set(returns) <= {0.0, 10.0} and returns.count(10.0) >= 2, returns


def test_foreign_procgen_episodes_follow_the_contract_with_runs_of_actions(tmp_path):
    """studies/foreign_episodes.py's procgen test set: valid episodes, played in runs of repeated actions."""
    pytest.importorskip("procgen")
    result = subprocess.run([sys.executable, "studies/foreign_episodes.py", "--env", "procgen:coinrun:plain", "--episodes", "2",
                             "--max-steps", "40", "--seed", "5", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    episodes = [load_episode(path) for path in sorted((tmp_path / "test").glob("*.npz"))]
    assert len(episodes) == 2 and all(ep["env"] == "procgen:coinrun:plain" and ep["frame_skip"] == 1 for ep in episodes)
    actions = np.concatenate([ep["actions"] for ep in episodes])
    assert (actions[1:] == actions[:-1]).mean() > 0.6  # runs of 1-16 repeats; uniform play repeats 20% of the time


def test_a_random_agent_that_holds_its_actions_says_so_and_a_rerun_cannot_mix_it_with_another(tmp_path):
    """--hold 8: runs of one uniform action, named in the episodes' policy; hold 1 keeps the old episodes exactly."""
    pytest.importorskip("procgen")
    flags = ("--env", "procgen:coinrun:mono", "--episodes", 3, "--max-steps", 60, "--split", "test")
    for hold in (1, 8):
        assert run_collect(*flags, "--hold", hold, "--out", tmp_path / f"hold{hold}").returncode == 0
    assert run_collect(*flags, "--out", tmp_path / "default").returncode == 0
    held, plain, default = (episodes_of(tmp_path / name) for name in ("hold8", "hold1", "default"))
    assert {ep["policy"] for ep in held.values()} == {"random:hold8"} and {ep["policy"] for ep in plain.values()} == {"random"}
    for name, ep in plain.items():  # --hold 1 is the default: the very same episodes
        np.testing.assert_array_equal(ep["actions"], default[name]["actions"])
    repeats = lambda eps: np.mean(np.concatenate([ep["actions"][1:] == ep["actions"][:-1] for ep in eps.values()]))
    assert repeats(held) > 0.6 > 0.4 > repeats(plain)  # held runs average 4.5 steps; uniform play repeats 20% of the time
    result = run_collect(*flags, "--out", tmp_path / "hold8")  # the same folder without --hold: refused, not mixed
    assert result.returncode != 0 and "played by policy random:hold8" in result.stderr and "--hold" in result.stderr.splitlines()[-1]
    result = run_collect("--policy", "agent", "--agent", __file__, "--hold", 2, "--out", tmp_path / "agent")
    assert result.returncode != 0 and "--hold is the random agent's" in result.stderr


def test_procgen_visuals_are_part_of_the_game_name(tmp_path):
    pytest.importorskip("procgen")
    colours = {}
    for name in ("procgen:coinrun", "procgen:coinrun:plain", "procgen:coinrun:mono"):
        result = run_collect("--env", name, "--episodes", 1, "--max-steps", 10, "--out", tmp_path / name.replace(":", "-"))
        assert result.returncode == 0, result.stderr
        ((path, ep),) = episodes_of(tmp_path / name.replace(":", "-")).items()
        assert ep["env"] == name and name.replace(":", "-") in str(path)  # the data says which visuals it has
        colours[name] = len(np.unique(ep["frames"].reshape(-1, 3), axis=0))
    # the same level, drawn without background pictures, then in flat colours
    assert colours["procgen:coinrun"] > colours["procgen:coinrun:plain"] > colours["procgen:coinrun:mono"], colours


def test_growing_a_collection_never_copies_an_episode_into_the_other_split(tmp_path):
    assert run_collect("--episodes", 2, "--max-steps", 5, "--out", tmp_path).returncode == 0  # val: 0, train: 1
    grown = run_collect("--episodes", 4, "--val-fraction", 0.5, "--max-steps", 5, "--out", tmp_path)  # plans val: 0, 1
    assert grown.returncode == 0, grown.stderr
    assert "2 already on disk, collecting 2" in grown.stdout
    train, val = ({p.name for p in (tmp_path / split).glob("*.npz")} for split in ("train", "val"))
    assert not train & val and len(train | val) == 4


def test_resume_after_interrupt_gives_the_uninterrupted_set(tmp_path):
    flags = ["--episodes", 6, "--max-steps", 40, "--seed", 3]
    whole = run_collect(*flags, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(ROOT / "collect.py"), *map(str, flags), "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(cut.rglob("*.npz"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    partial = len(find_episodes(cut))
    assert 2 <= partial < 6
    (cut / "train" / f".{AIRSTRIKER}_seed3_00005.npz.{2**22 + 1}.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
    again = run_collect(*flags, "--out", cut)
    assert again.returncode == 0, again.stderr
    assert f"{partial} already on disk" in again.stdout
    assert not list(cut.rglob("*.tmp"))
    resumed, reference = episodes_of(cut), episodes_of(tmp_path / "whole")
    assert resumed.keys() == reference.keys()
    for name in reference:
        np.testing.assert_array_equal(resumed[name]["frames"], reference[name]["frames"])
        np.testing.assert_array_equal(resumed[name]["actions"], reference[name]["actions"])


def test_same_seed_same_episodes_and_workers_differ(tmp_path):
    flags = ["--episodes", 4, "--max-steps", 25]
    one = run_collect(*flags, "--out", tmp_path / "one")
    two = run_collect(*flags, "--workers", 2, "--out", tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = episodes_of(tmp_path / "one"), episodes_of(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:  # identical, whichever worker played it
        np.testing.assert_array_equal(a[name]["frames"], b[name]["frames"])
    action_sequences = {ep["actions"].tobytes() for ep in b.values()}
    assert len(action_sequences) == 4  # every episode is its own, no two workers repeat one


@pytest.mark.parametrize("flags, message", [
    (["--env", "Airstriker-Genesis-v1"], "did you mean Airstriker-Genesis-v0"),
    (["--env", "procgen:coinrunn"], "did you mean procgen:coinrun"),
    (["--env", "procgen:coinrun:flat"], "use procgen:coinrun, procgen:coinrun:plain or procgen:coinrun:mono"),
    (["--env", "SuperMarioBros-Nes-v0"], "python -m stable_retro.import"),
    (["--episodes", "0"], "must be a positive integer"),
    (["--val-fraction", "1.5"], "must be in [0, 1)"),
    (["--games", "no-such-selection"], "'platformers', 'control50' or a file"),
])
def test_user_errors_are_one_line(tmp_path, flags, message):
    result = run_collect(*flags, "--out", tmp_path)
    assert result.returncode != 0 and message in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]  # argparse prints its usage above the error line
    assert "Traceback" not in result.stderr and message in last_line and "error" in last_line


def test_missing_procgen_says_how_to_install(tmp_path):
    fake = tmp_path / "fake"
    (fake / "procgen").mkdir(parents=True)
    (fake / "procgen" / "__init__.py").write_text("raise ImportError('no procgen here')\n")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    result = run_collect("--env", "procgen:coinrun", "--out", tmp_path / "out", env=env)
    assert result.returncode != 0 and "pip install procgen-mirror" in result.stderr and "Traceback" not in result.stderr


def test_games_selection_skips_missing_roms(tmp_path):
    listing = tmp_path / "games.txt"
    listing.write_text(f"{AIRSTRIKER}\nSuperMarioBros-Nes\n")
    result = run_collect("--games", listing, "--episodes", 1, "--max-steps", 5, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "1 games playable, 1 skipped" in result.stdout
    assert [p.name for p in find_episodes(tmp_path / "out")] == [f"{AIRSTRIKER}_seed0_00000.npz"]


def test_platformer_jump_buttons():
    nes = ["B", None, "SELECT", "START", "UP", "DOWN", "LEFT", "RIGHT", "A"]
    table = envs.retro_button_table("SuperMarioBros-Nes-v0", nes)
    assert table[envs.ACTION_NAMES.index("JUMP")].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # NES jump = A
    assert table[envs.ACTION_NAMES.index("UP")].sum() == 0  # control table: UP does nothing in Mario
    genesis = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]
    assert envs.retro_button_table("SonicTheHedgehog-Genesis-v0", genesis)[4, genesis.index("C")] == 1
    assert envs.retro_button_table(AIRSTRIKER, genesis)[4, genesis.index("B")] == 1  # fire


def test_split_flag_writes_a_test_set(tmp_path):
    result = run_collect("--episodes", 2, "--max-steps", 5, "--split", "test", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.parent.name for p in find_episodes(tmp_path)] == ["test", "test"]


def test_collectors_with_different_seeds_share_a_folder(tmp_path):
    flags = ["--episodes", 2, "--max-steps", 5, "--out", tmp_path]
    first, second = (run_collect(*flags, "--seed", seed) for seed in (1, 2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "0 already on disk, collecting 2" in second.stdout  # the first seed's episodes are not the second's
    names = sorted(p.name for p in find_episodes(tmp_path))
    assert names == [f"{AIRSTRIKER}_seed{s}_{i:05d}.npz" for s in (1, 2) for i in (0, 1)]


def test_an_unwritable_out_fails_before_playing(tmp_path):
    result = run_collect("--episodes", 1, "--max-steps", 400, "--out", "/proc/foo")
    assert result.returncode == 1 and result.stderr == "error: --out /proc/foo cannot be written " \
        "(No such file or directory): choose a folder you can write to\n", result.stderr


def test_a_frame_budget_is_met_exactly_and_resumes(tmp_path):
    flags = ["--frames", 70, "--max-steps", 30, "--val-fraction", 0.2, "--seed", 4, "--out", tmp_path]
    assert run_collect(*flags).returncode == 0
    episodes = episodes_of(tmp_path)
    lengths = {name: len(ep["frames"]) for name, ep in episodes.items()}
    assert sum(lengths.values()) == 70  # the last episode is cut short to fit the budget
    assert sum(n for name, n in lengths.items() if name.startswith("val/")) >= 14  # a fifth of the frames, or more
    again = run_collect(*flags)
    assert again.returncode == 0 and "0 frames written" in again.stdout and episodes_of(tmp_path).keys() == episodes.keys()
