"""episodes.py: the .npz contract (round trip, bad files named with the reason, foreign sizes resized) and files
that concurrent or failing writers cannot lose."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from episodes import (EpisodeError, check_writable, find_episodes, load_episode, remove_stale_tmp, save_episode,
                      square_resize, write_atomic)

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]


def test_episodes_module_needs_neither_torch_nor_an_emulator():
    code = "import sys, episodes; print(sorted({'torch', 'stable_retro', 'procgen', 'gymnasium'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_round_trip_keeps_every_key(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    save_episode(tmp_path / "train" / "a.npz", frames, [0, 4, 2], [0.5, 0, 1], ACTION_NAMES, "Game-v0", "random", 4)
    ep = load_episode(find_episodes(tmp_path, "train")[0])
    np.testing.assert_array_equal(ep["frames"], frames)
    assert ep["actions"].dtype == np.int64 and ep["actions"].tolist() == [0, 4, 2]
    assert ep["rewards"].dtype == np.float32 and ep["rewards"].tolist() == [0.5, 0, 1]
    assert (ep["action_names"], ep["env"], ep["policy"], ep["frame_skip"]) == (ACTION_NAMES, "Game-v0", "random", 4)
    assert ep["truncated"] is None  # optional: not known unless the writer says
    for truncated in (True, False):
        save_episode(tmp_path / "b.npz", frames, [0, 4, 2], [0.5, 0, 1], ACTION_NAMES, "Game-v0", "random", 4, truncated=truncated)
        assert load_episode(tmp_path / "b.npz")["truncated"] is truncated


def test_an_empty_split_folder_is_named(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(EpisodeError, match=f"{tmp_path / 'val'} holds no .npz episodes"):
        find_episodes(tmp_path, "val")
    with pytest.raises(EpisodeError, match="does not exist"):
        find_episodes(tmp_path / "absent")


def make_bad_files(folder):
    good = dict(frames=np.zeros((4, 64, 64, 3), np.uint8), actions=np.array([0, 1, 2], np.int64),
                rewards=np.zeros(3, np.float32), action_names=np.array(ACTION_NAMES),
                env=np.array("test"), policy=np.array("random"), frame_skip=np.array(4))
    np.savez_compressed(folder / "good.npz", **good)
    data = (folder / "good.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[: len(data) // 2])
    np.savez_compressed(folder / "missing.npz", **{k: v for k, v in good.items() if k != "actions"})
    np.savez_compressed(folder / "dtype.npz", **{**good, "frames": good["frames"].astype(np.float32)})
    np.savez_compressed(folder / "range.npz", **{**good, "actions": np.array([0, 1, 7], np.int64)})
    np.savez_compressed(folder / "length.npz", **{**good, "actions": np.array([0, 1], np.int64), "rewards": np.zeros(2, np.float32)})
    np.savez_compressed(folder / "flag.npz", **good, truncated=np.array("yes"))


@pytest.mark.parametrize("name, reason", [("truncated", "truncated or corrupt"), ("missing", "missing key(s) actions"),
                                          ("dtype", "frames must be uint8"), ("range", "action out of range"),
                                          ("length", "one more entry than actions"), ("flag", "truncated, where present, must be a bool")])
def test_bad_files_are_named_with_the_reason(tmp_path, name, reason):
    make_bad_files(tmp_path)
    assert load_episode(tmp_path / "good.npz")["actions"].tolist() == [0, 1, 2]
    with pytest.raises(EpisodeError) as error:
        load_episode(tmp_path / f"{name}.npz")
    message = str(error.value)
    assert message.startswith(str(tmp_path / f"{name}.npz")) and reason in message and "\n" not in message


def test_load_resizes_foreign_resolution(tmp_path):
    frames = np.full((3, 96, 128, 3), 200, np.uint8)  # a foreign, non-square episode
    save_episode(tmp_path / "big.npz", frames, [0, 1], [0.0, 0.0], ACTION_NAMES, "foreign", "random", 1)
    ep = load_episode(tmp_path / "big.npz", resolution=64)
    assert ep["frames"].shape == (3, 64, 64, 3)
    assert ep["frames"][:, 32, 32].tolist() == [[200] * 3] * 3 and ep["frames"][:, 0, 32].tolist() == [[0] * 3] * 3


def test_area_resize_is_antialiased():
    checker = np.indices((320, 320)).sum(0) % 2 * 255  # finest possible pattern: averages to mid grey
    frame = np.repeat(checker[..., None], 3, -1).astype(np.uint8)
    small = square_resize(frame, 64)
    assert np.abs(small.astype(int) - 127.5).max() <= 26  # nearest-neighbour would give pure 0 or 255


def test_area_resize_keeps_white_white():
    white = square_resize(np.full((224, 320, 3), 255, np.uint8), 64)  # rounding must not wrap 255 to 0
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
    assert np.abs(square_resize(frames, size) - expected).max() <= 0.5 + 1e-3


def test_a_failed_write_leaves_no_file_and_names_it(tmp_path):
    def disk_full(f):
        f.write(b"half an episode")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'ep.npz'}: No space left on device"):
        write_atomic(tmp_path / "ep.npz", disk_full)
    assert list(tmp_path.iterdir()) == []  # neither the episode nor its temporary file


def test_temporary_names_are_per_process_and_only_dead_writers_are_cleaned(tmp_path):
    mine = tmp_path / f".ep.npz.{os.getpid()}.tmp"  # a live writer's file, as write_atomic names it
    dead = tmp_path / f".ep.npz.{2**22 + 1}.tmp"  # above any Linux pid: its writer is gone
    mine.write_bytes(b"in progress"), dead.write_bytes(b"left by a kill")
    remove_stale_tmp(tmp_path)
    assert mine.exists() and not dead.exists()
    seen = []
    write_atomic(tmp_path / "ep.npz", lambda f: seen.extend(p.name for p in tmp_path.iterdir()))
    assert f".ep.npz.{os.getpid()}.tmp" in seen and (tmp_path / "ep.npz").exists()


def test_an_unwritable_output_folder_fails_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for folder in (blocker / "out", "/proc/foo"):
        with pytest.raises(OSError) as error:
            check_writable(folder)
        assert str(error.value).startswith(f"--out {folder} cannot be written") and "\n" not in str(error.value)
