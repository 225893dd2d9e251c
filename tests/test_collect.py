"""collect.py and envs.py: real emulator episodes, the .npz contract, resume, determinism and clear errors."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import collect
import envs
from conftest import ROOT

AIRSTRIKER = "Airstriker-Genesis-v0"


def run_collect(*flags, env=None, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "collect.py"), *map(str, flags)], capture_output=True,
                          text=True, env=env, **kwargs)


def episodes_of(folder):
    return {p.relative_to(folder).as_posix(): collect.load_episode(p) for p in collect.find_episodes(folder)}


def test_round_trip(tmp_path):
    result = run_collect("--episodes", 2, "--max-steps", 20, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{AIRSTRIKER}: 2 episodes" in result.stdout  # the closing summary
    files = sorted(p.relative_to(tmp_path).as_posix() for p in collect.find_episodes(tmp_path))
    assert files == [f"train/{AIRSTRIKER}_00001.npz", f"val/{AIRSTRIKER}_00000.npz"]
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
    actions = [collect.ACTION_NAMES.index("RIGHT")] * 8 + [collect.ACTION_NAMES.index("LEFT")] * 8
    frames = [game.reset(seed=0)] + [game.step(a)[0] for a in actions]
    game.close()
    collect.save_episode(tmp_path / "scripted.npz", np.stack(frames), actions, np.zeros(16), AIRSTRIKER, "scripted", 4)
    saved = collect.load_episode(tmp_path / "scripted.npz")["frames"]
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
    assert ep["env"] == "procgen:coinrun" and ep["action_names"] == collect.ACTION_NAMES


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
    while len(collect.find_episodes(cut)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    partial = len(collect.find_episodes(cut))
    assert 2 <= partial < 6
    (cut / "train" / f".{AIRSTRIKER}_00005.npz.123.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
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


def make_bad_files(folder):
    good = dict(frames=np.zeros((4, 64, 64, 3), np.uint8), actions=np.array([0, 1, 2], np.int64),
                rewards=np.zeros(3, np.float32), action_names=np.array(collect.ACTION_NAMES),
                env=np.array("test"), policy=np.array("random"), frame_skip=np.array(4))
    np.savez_compressed(folder / "good.npz", **good)
    data = (folder / "good.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[: len(data) // 2])
    np.savez_compressed(folder / "missing.npz", **{k: v for k, v in good.items() if k != "actions"})
    np.savez_compressed(folder / "dtype.npz", **{**good, "frames": good["frames"].astype(np.float32)})
    np.savez_compressed(folder / "range.npz", **{**good, "actions": np.array([0, 1, 7], np.int64)})
    np.savez_compressed(folder / "length.npz", **{**good, "actions": np.array([0, 1], np.int64), "rewards": np.zeros(2, np.float32)})


@pytest.mark.parametrize("name, reason", [("truncated", "truncated or corrupt"), ("missing", "missing key(s) actions"),
                                          ("dtype", "frames must be uint8"), ("range", "action out of range"),
                                          ("length", "one more entry than actions")])
def test_bad_files_are_named_with_the_reason(tmp_path, name, reason):
    make_bad_files(tmp_path)
    assert collect.load_episode(tmp_path / "good.npz")["actions"].tolist() == [0, 1, 2]
    with pytest.raises(collect.EpisodeError) as error:
        collect.load_episode(tmp_path / f"{name}.npz")
    message = str(error.value)
    assert message.startswith(str(tmp_path / f"{name}.npz")) and reason in message and "\n" not in message


def test_load_resizes_foreign_resolution(tmp_path):
    frames = np.full((3, 96, 128, 3), 200, np.uint8)  # a foreign, non-square episode
    collect.save_episode(tmp_path / "big.npz", frames, [0, 1], [0.0, 0.0], "foreign", "random", 1)
    ep = collect.load_episode(tmp_path / "big.npz", resolution=64)
    assert ep["frames"].shape == (3, 64, 64, 3)
    assert ep["frames"][:, 32, 32].tolist() == [[200] * 3] * 3 and ep["frames"][:, 0, 32].tolist() == [[0] * 3] * 3


def test_area_resize_is_antialiased():
    checker = np.indices((320, 320)).sum(0) % 2 * 255  # finest possible pattern: averages to mid grey
    frame = np.repeat(checker[..., None], 3, -1).astype(np.uint8)
    small = envs.square_resize(frame, 64)
    assert np.abs(small.astype(int) - 127.5).max() <= 26  # nearest-neighbour would give pure 0 or 255


def test_area_resize_keeps_white_white():
    white = envs.square_resize(np.full((224, 320, 3), 255, np.uint8), 64)  # rounding must not wrap 255 to 0
    assert (white[10:54] == 255).all() and (white[:10] < 255).all()  # rows 0-9 take in the black padding


@pytest.mark.parametrize("shape, size", [((21, 16, 3), 8), ((7, 10, 3), 4), ((5, 3, 3), 8), ((2, 9, 13, 3), 6), ((24, 24, 3), 17)])
def test_area_resize_matches_exact_area_average(shape, size):
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    H, W = shape[-3:-1]
    side = max(H, W)
    padded = np.zeros((*shape[:-3], side, side, 3))
    padded[..., (side - H) // 2:(side - H) // 2 + H, (side - W) // 2:(side - W) // 2 + W, :] = frames
    # exact reference: repeat every pixel `size` times per axis, then average blocks of `side`
    fine = np.repeat(np.repeat(padded, size, -3), size, -2)
    expected = fine.reshape(*shape[:-3], size, side, size, side, 3).mean((-4, -2))
    assert np.abs(envs.square_resize(frames, size) - expected).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("flags, message", [
    (["--env", "Airstriker-Genesis-v1"], "did you mean Airstriker-Genesis-v0"),
    (["--env", "procgen:coinrunn"], "did you mean procgen:coinrun"),
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
    assert [p.name for p in collect.find_episodes(tmp_path / "out")] == [f"{AIRSTRIKER}_00000.npz"]


def test_platformer_jump_buttons():
    nes = ["B", None, "SELECT", "START", "UP", "DOWN", "LEFT", "RIGHT", "A"]
    table = envs.retro_button_table("SuperMarioBros-Nes-v0", nes)
    assert table[collect.ACTION_NAMES.index("JUMP")].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # NES jump = A
    assert table[collect.ACTION_NAMES.index("UP")].sum() == 0  # control table: UP does nothing in Mario
    genesis = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]
    assert envs.retro_button_table("SonicTheHedgehog-Genesis-v0", genesis)[4, genesis.index("C")] == 1
    assert envs.retro_button_table(AIRSTRIKER, genesis)[4, genesis.index("B")] == 1  # fire


def test_split_flag_writes_a_test_set(tmp_path):
    result = run_collect("--episodes", 2, "--max-steps", 5, "--split", "test", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.parent.name for p in collect.find_episodes(tmp_path)] == ["test", "test"]
