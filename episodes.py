"""The episode file every script shares: one game episode as one compressed .npz. Needs only numpy.

An episode of T agent steps holds

    frames        uint8   [T+1, H, W, 3]  the first frame, then the frame after each action
    actions       int64   [T]             indices into action_names
    rewards       float32 [T]             the game's reward of each step
    action_names  str     [A]             e.g. RIGHT LEFT UP DOWN JUMP
    env, policy   str                     the game id and who played it ("random", "agent:run/agent.pt", ...)
    frame_skip    int                     emulator frames per action
    truncated     bool, optional          the collector stopped the episode (a step limit, a frame budget), not the
                                          game; absent: not known

A dataset is a folder of such files, split into DIR/train, DIR/val (and DIR/test). Your own code can
write episodes with `save_episode` and read any dataset with `find_episodes` + `load_episode`:

    from episodes import find_episodes, load_episode
    episode = load_episode(find_episodes("data/airstriker", "train")[0], resolution=64)

Files are written atomically (a temporary file named after the writing process, then a rename), so a
crash, a full disk or a second writer never leaves half an episode under an episode's name. The scripts write
every file of theirs that way, and hold their output folder with `folder_lock` while they run.
"""
import contextlib
import fcntl
import functools
import io
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

EPISODE_KEYS = ["frames", "actions", "rewards", "action_names", "env", "policy", "frame_skip"]


class EpisodeError(ValueError):
    """An episode file or folder that breaks the contract; the message is one line naming it and the fix."""


# ---------------------------------------------------------------------------
# Writing: atomic, never a partial file, and one run per output folder
# ---------------------------------------------------------------------------

def check_writable(folder, flag="--out"):
    """Prove that files can be written in `folder` before any work; raise OSError in one line. Leaves no trace."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(f"{flag} {folder} cannot be written ({e.strerror or e}): choose a folder you can write to") from None
    finally:
        for path in created:
            if path.is_dir():
                path.rmdir()


def write_atomic(path, data):
    """Fill `path` with `data` (bytes, text, or a function write(file)) through a temporary file in the same folder,
    renamed into place when complete.

    The temporary name carries this process's id (.NAME.PID.tmp), so concurrent writers never touch each
    other's files and `remove_stale_tmp` can tell a dead writer's leftovers. On any error (disk full,
    permissions) the temporary file is removed and an OSError names the file; what `path` held stays.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def remove_stale_tmp(folder):
    """Delete temporary files under `folder` whose writing process has ended (killed mid-write)."""
    for tmp in Path(folder).glob("**/.*.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@contextlib.contextmanager
def folder_lock(folder, flag="--out"):
    """Hold `folder` for this run alone while the block runs: a second run into it fails at once, in one line
    that names the process holding it.

    The lock is a POSIX lock on FOLDER/.lock, which the kernel drops when its process ends however it ends
    (kill -9 too), so a killed run never blocks the next one; the file holds the holder's pid for the message.
    Temporary files of killed writers are removed once it is held. On leaving, the lock file goes, and so do the
    folders the run created if it wrote nothing into them.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    while True:
        f = open(path, "a+")
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # a live process holds it
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise OSError(f"{flag} {folder} is in use by process {holder}: wait for that run to end, "
                          f"or choose another {flag}") from None
        if path.exists() and path.stat().st_ino == os.fstat(f.fileno()).st_ino:
            break
        f.close()  # the run before removed this file as we opened it: lock the next one
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    remove_stale_tmp(folder)  # left by a run killed mid-write
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()
        for p in created:
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def save_episode(path, frames, actions, rewards, action_names, env, policy, frame_skip, truncated=None):
    """Write one episode (the keys above; truncated only when known) as a compressed .npz; returns its size in bytes.

    Compressed in memory first: a full disk then fails one plain write, which write_atomic names and cleans up."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=np.asarray(frames, np.uint8), actions=np.asarray(actions, np.int64),
                        rewards=np.asarray(rewards, np.float32), action_names=np.array(action_names),
                        env=np.array(env), policy=np.array(policy), frame_skip=np.array(frame_skip),
                        **({} if truncated is None else {"truncated": np.array(bool(truncated))}))
    write_atomic(path, buffer.getbuffer())
    return path.stat().st_size


# ---------------------------------------------------------------------------
# Worker processes: Ctrl-C is the main process's
# ---------------------------------------------------------------------------

CTRL_C = []  # Ctrl-Cs seen by the handler of remember_ctrl_c


def remember_ctrl_c():
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered in CTRL_C: Python swallows an exception
    raised inside a finaliser (a weakref callback, a __del__), so a training loop checks CTRL_C at every step too."""
    def handler(signum, frame):
        CTRL_C.append(signum)
        raise KeyboardInterrupt

    def unraisable(info):  # Python's "Exception ignored in ... Traceback" for the swallowed Ctrl-C: stay quiet
        if not isinstance(info.exc_value, KeyboardInterrupt):
            sys.__unraisablehook__(info)
    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = unraisable


@contextlib.contextmanager
def quiet_workers():
    """Worker processes started in this block ignore Ctrl-C from their first instruction (a child keeps an ignored
    signal ignored), so the main process alone handles it and stops them, and none of them prints a traceback.
    The main process ignores a Ctrl-C pressed while the block runs (while its workers start)."""
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------------
# Reading: find, load and validate
# ---------------------------------------------------------------------------

def find_episodes(root, split=None):
    """Episode files of a dataset: DIR/<split>/*.npz if that folder exists, else every .npz under DIR.

    Raises EpisodeError naming the folder when it holds none.
    """
    root = Path(root)
    if root.is_file():
        raise EpisodeError(f"{root} is a file: pass the folder of .npz episodes it is in ({root.parent})")
    folder = root / split if split is not None and (root / split).is_dir() else root
    paths = sorted(folder.rglob("*.npz")) if folder.is_dir() else []
    if not paths:
        where = "does not exist" if not folder.is_dir() else "holds no .npz episodes"
        raise EpisodeError(f"{folder} {where}: collect some with python collect.py --out {root}")
    return paths


def load_episode(path, resolution=None):
    """Load and validate one episode -> dict of the keys above; raise EpisodeError naming the file and the fault.

    With `resolution`, frames of another size are padded to square and area-resized to it.
    """
    def fail(reason):
        raise EpisodeError(f"{path}: {reason}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in EPISODE_KEYS if k not in data.files]
            if missing:
                fail(f"missing key(s) {', '.join(missing)}; an episode needs {', '.join(EPISODE_KEYS)}")
            ep = {k: data[k] for k in EPISODE_KEYS + ["truncated"] if k in data.files}
    except EpisodeError:
        raise
    except Exception as e:  # zipfile/zlib/OSError/ValueError: anything that is not a readable .npz
        fail(f"not a readable .npz ({type(e).__name__}: {e}); the file is truncated or corrupt, delete or re-collect it")
    frames, actions, rewards, names = ep["frames"], ep["actions"], ep["rewards"], ep["action_names"]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        fail(f"frames must be uint8 [T+1, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if actions.ndim != 1 or actions.dtype.kind not in "iu":
        fail(f"actions must be int64 [T], got {actions.dtype} {list(actions.shape)}")
    if len(frames) != len(actions) + 1:
        fail(f"frames must hold one more entry than actions (T+1 vs T), got {len(frames)} and {len(actions)}")
    if rewards.shape != actions.shape or rewards.dtype.kind != "f":
        fail(f"rewards must be float32 [T], got {rewards.dtype} {list(rewards.shape)}")
    if names.ndim != 1 or names.dtype.kind != "U" or len(names) == 0:
        fail(f"action_names must be a non-empty 1-D array of strings, got {names.dtype} {list(names.shape)}")
    if len(actions) and (actions.min() < 0 or actions.max() >= len(names)):
        fail(f"action out of range: values {actions.min()}..{actions.max()} but only {len(names)} action_names")
    for key in ("env", "policy"):
        if ep[key].ndim != 0 or ep[key].dtype.kind != "U":
            fail(f"{key} must be a string, got {ep[key].dtype} {list(ep[key].shape)}")
    if ep["frame_skip"].ndim != 0 or ep["frame_skip"].dtype.kind not in "iu" or ep["frame_skip"] < 1:
        fail(f"frame_skip must be a positive integer, got {ep['frame_skip']!r}")
    if "truncated" in ep and (ep["truncated"].ndim != 0 or ep["truncated"].dtype.kind != "b"):
        fail(f"truncated, where present, must be a bool, got {ep['truncated'].dtype} {list(ep['truncated'].shape)}")
    if resolution is not None and frames.shape[1:3] != (resolution, resolution):
        frames = square_resize(frames, resolution)
    return {"frames": frames, "actions": actions.astype(np.int64), "rewards": rewards.astype(np.float32),
            "action_names": [str(n) for n in names], "env": str(ep["env"]), "policy": str(ep["policy"]),
            "frame_skip": int(ep["frame_skip"]), "truncated": bool(ep["truncated"]) if "truncated" in ep else None}


# ---------------------------------------------------------------------------
# Frames of any size: pad to a square with black, then antialiased area resize
# ---------------------------------------------------------------------------

BAND = 8  # output pixels per band of the resize: wider bands multiply more zeros, narrower ones cost more calls


@functools.lru_cache(maxsize=32)
def area_bands(n_in, n_out, offset, length, channels):
    """Area interpolation of one axis, as a few dense bands of a mostly-zero weight matrix.

    The axis is n_in pixels long, of which [offset, offset+length) hold the image and the rest is
    black padding. Output pixel i averages the span [i, i+1) * n_in / n_out, each input pixel
    weighted by how much of it lies in the span (padding adds zeros, so it is dropped). Returns
    [(output slice, input slice, weights)], BAND output pixels per band, each reading only the
    input pixels it overlaps; `channels` interleaved values per pixel (3 for the last axis of RGB).
    """
    edges = np.arange(n_out + 1) * n_in / n_out - offset
    pixel = np.arange(length)
    overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
    weights = (np.clip(overlap, 0, None) * (n_out / n_in)).astype(np.float32)  # [n_out, length]
    bands = []
    for start in range(0, n_out, BAND):
        used = np.flatnonzero(weights[start:start + BAND].any(0))
        lo, hi = (used[0], used[-1] + 1) if len(used) else (0, 1)  # an all-padding band reads one pixel at weight 0
        block = np.kron(weights[start:start + BAND, lo:hi], np.eye(channels, dtype=np.float32))
        bands.append((slice(start * channels, (start + BAND) * channels), slice(lo * channels, hi * channels), block))
    return bands


def square_resize(frames, size):
    """[..., H, W, 3] uint8 -> [..., size, size, 3] uint8, black-padded to square first."""
    H, W = frames.shape[-3:-1]
    side, lead = max(H, W), frames.shape[:-3]
    image = frames.reshape(*lead, H, W * 3)
    rows = np.empty((*lead, size, W * 3), np.float32)
    for out, inp, weights in area_bands(side, size, (side - H) // 2, H, 1):  # resize the rows ...
        np.matmul(weights, image[..., inp, :], out=rows[..., out, :])
    resized = np.empty((*lead, size, size * 3), np.float32)
    for out, inp, weights in area_bands(side, size, (side - W) // 2, W, 3):  # ... then the columns
        resized[..., out] = rows[..., inp] @ weights.T
    resized += 0.5  # round to nearest; an average of uint8 values needs no clipping
    return resized.reshape(*lead, size, size, 3).astype(np.uint8)
