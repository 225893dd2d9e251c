"""Collect game episodes into the shared .npz format (GenieRedux paper sec. 3 and 5.1; SPEC sec. 3-4).

A random agent (or, with --policy agent, a trained AutoExplore agent) plays a real emulator and
every episode becomes one compressed .npz file:

    python collect.py --env Airstriker-Genesis-v0 --episodes 20 --out data/airstriker
    python collect.py --env procgen:coinrun --episodes 200 --out data/coinrun
    python collect.py --games platformers --episodes 10 --out data/platformers   # RetroAct selection

Writes DIR/train/*.npz and DIR/val/*.npz. Each episode's content depends only on (--seed, env,
episode index), so re-running a command continues where it stopped and never duplicates an
episode. The loader `load_episode` below is the one contract check that train.py and evaluate.py
share; this file imports stable_retro and procgen only inside the functions that make envs.
"""
import argparse
import csv
import difflib
import functools
import multiprocessing
import os
import re
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
EPISODE_KEYS = ["frames", "actions", "rewards", "action_names", "env", "policy", "frame_skip"]
ANNOTATIONS = Path(__file__).resolve().parent / "annotations"  # RetroAct tables (MIT, see LICENSE)
PROCGEN_GAMES = ["bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball",
                 "fruitbot", "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot"]


class EpisodeError(ValueError):
    """An episode file that breaks the contract; the message is one line: '<path>: <reason>'."""


class UserError(Exception):
    """A mistake the user can fix; main() prints its one-line message instead of a traceback."""


# ---------------------------------------------------------------------------
# The episode file (SPEC sec. 4): write atomically, load with validation
# ---------------------------------------------------------------------------

def save_episode(path, frames, actions, rewards, env, policy, frame_skip, action_names=ACTION_NAMES):
    """Write one episode as a compressed .npz: temp file then rename, so no half file ever exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, frames=np.asarray(frames, np.uint8), actions=np.asarray(actions, np.int64),
                            rewards=np.asarray(rewards, np.float32), action_names=np.array(action_names),
                            env=np.array(env), policy=np.array(policy), frame_skip=np.array(frame_skip))
    os.replace(tmp, path)
    return path.stat().st_size


def load_episode(path, resolution=None):
    """Load and validate one episode; raise EpisodeError naming the file and what is wrong.

    With `resolution`, frames of another size are padded to square and area-resized to it.
    """
    def fail(reason):
        raise EpisodeError(f"{path}: {reason}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in EPISODE_KEYS if k not in data.files]
            if missing:
                fail(f"missing key(s) {', '.join(missing)}; an episode needs {', '.join(EPISODE_KEYS)}")
            ep = {k: data[k] for k in EPISODE_KEYS}
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
    if resolution is not None and frames.shape[1:3] != (resolution, resolution):
        frames = square_resize(frames, resolution)
    return {"frames": frames, "actions": actions.astype(np.int64), "rewards": rewards.astype(np.float32),
            "action_names": [str(n) for n in names], "env": str(ep["env"]), "policy": str(ep["policy"]),
            "frame_skip": int(ep["frame_skip"])}


def find_episodes(root, split=None):
    """Episode files of a dataset: DIR/<split>/*.npz if that folder exists, else every .npz under DIR."""
    root = Path(root)
    if split is not None and (root / split).is_dir():
        root = root / split
    return sorted(root.rglob("*.npz")) if root.is_dir() else []


# ---------------------------------------------------------------------------
# Frames: pad to a square with black, then antialiased area resize (SPEC sec. 3)
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def area_weights(n_in, n_out, offset, length):
    """[n_out, length] matrix: output pixel i averages the input span it covers (area interpolation).

    The input axis is n_in pixels long, of which [offset, offset+length) hold the image; the rest
    is black padding, so those columns are simply dropped.
    """
    edges = np.arange(n_out + 1) * n_in / n_out
    pixel = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
    weights = np.clip(overlap, 0, None) * (n_out / n_in)
    return weights[:, offset:offset + length].astype(np.float32)


def square_resize(frames, size):
    """[..., H, W, 3] uint8 -> [..., size, size, 3] uint8, black-padded to square first."""
    H, W = frames.shape[-3:-1]
    side = max(H, W)
    rows = area_weights(side, size, (side - H) // 2, H)  # [size, H]
    cols = area_weights(side, size, (side - W) // 2, W)  # [size, W]
    lead = frames.shape[:-3]
    out = rows @ frames.astype(np.float32).reshape(*lead, H, W * 3)  # [..., size, W*3]: resize rows
    out = cols @ out.reshape(*lead, size, W, 3)  # [..., size, size, 3]: resize columns
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Environments: one small class per platform with reset() -> frame, step(a) -> (frame, reward, done)
# ---------------------------------------------------------------------------

JUMP_BUTTON = {"Nes": "A", "Snes": "B", "Genesis": "C", "Sms": "A", "GameBoy": "A", "Atari2600": "BUTTON",
               "32x": "B", "PCEngine": "I"}
JUMP_OVERRIDES = {"Airstriker-Genesis-v0": "B"}  # a shooter: JUMP is its fire button
PROCGEN_ACTION = {"RIGHT": 7, "LEFT": 1, "UP": 5, "DOWN": 3, "JUMP": 8}  # JUMP = UP-RIGHT (procgen's UP jumps)


def normalise(name):
    return re.sub(r"[^a-z0-9]", "", name.lower().removesuffix("-v0"))


@functools.lru_cache(maxsize=1)
def control_table():
    """RetroAct's 50-game control table: {normalised game: {RIGHT: 'right', ..., ACTION_JUMP: 'jump'}}."""
    with open(ANNOTATIONS / "RetroAct_v0.1_control_50.csv") as f:
        return {normalise(row["game"]): row for row in csv.DictReader(f)}


def retro_button_table(game, buttons):
    """[5, len(buttons)] int8: which buttons each of RIGHT, LEFT, UP, DOWN, JUMP presses in `game`."""
    platform = game.removesuffix("-v0").rsplit("-", 1)[-1]
    jump = JUMP_OVERRIDES.get(game, JUMP_BUTTON.get(platform))
    if jump not in buttons:
        jump = next(b for b in ("B", "A") if b in buttons)
    pressed = {"RIGHT": ["RIGHT"], "LEFT": ["LEFT"], "UP": ["UP"], "DOWN": ["DOWN"], "JUMP": [jump]}
    labels = control_table().get(normalise(game), {})
    for name in ("RIGHT", "LEFT", "UP", "DOWN"):
        if labels.get(name) == "none":  # the control table says this direction does nothing here
            pressed[name] = []
    table = np.zeros((len(ACTION_NAMES), len(buttons)), np.int8)
    for i, name in enumerate(ACTION_NAMES):
        for button in pressed[name]:
            table[i, buttons.index(button)] = 1
    return table


class RetroGame:
    """A stable-retro game with action repeat; frames padded and area-resized to `resolution`."""

    def __init__(self, game, frame_skip, resolution):
        import stable_retro
        self.env = stable_retro.make(game, render_mode=None)  # render_mode=None: headless
        self.buttons = retro_button_table(game, self.env.buttons)
        self.frame_skip, self.resolution = frame_skip, resolution

    def reset(self, seed):
        obs, _ = self.env.reset(seed=seed)
        return square_resize(obs, self.resolution)

    def step(self, action, render=True):
        total = 0.0
        for _ in range(self.frame_skip):
            obs, reward, terminated, truncated, _ = self.env.step(self.buttons[action])
            total += reward
            if terminated or truncated:
                break
        return square_resize(obs, self.resolution) if render else None, total, terminated or truncated

    def close(self):
        self.env.close()


class ProcgenGame:
    """A procgen game (native 64x64); each reset draws a new level from the episode seed."""

    def __init__(self, name, frame_skip, resolution, distribution_mode="hard"):
        self.name, self.frame_skip, self.resolution, self.mode = name, frame_skip, resolution, distribution_mode
        self.env = None

    def reset(self, seed):
        from procgen import ProcgenGym3Env
        self.env = ProcgenGym3Env(num=1, env_name=self.name, distribution_mode=self.mode,
                                  num_levels=0, start_level=0, rand_seed=int(seed % 2**31))
        return self._frame(self.env.observe()[1])

    def step(self, action, render=True):
        total = 0.0
        for _ in range(self.frame_skip):
            self.env.act(np.array([PROCGEN_ACTION[ACTION_NAMES[action]]]))
            reward, obs, first = self.env.observe()
            total += float(reward[0])
            if first[0]:  # procgen resets itself: `obs` is already the next level, so the episode ends here
                return None, total, True
        return self._frame(obs) if render else None, total, False

    def _frame(self, obs):
        frame = obs["rgb"][0]
        return frame if frame.shape[0] == self.resolution else square_resize(frame, self.resolution)

    def close(self):
        self.env = None


def check_env(name):
    """Raise UserError (one line, with the fix) if `name` cannot be played on this machine."""
    if name.startswith("procgen:"):
        game = name.split(":", 1)[1]
        if game not in PROCGEN_GAMES:
            close = difflib.get_close_matches(game, PROCGEN_GAMES, n=3)
            raise UserError(f"unknown procgen game '{game}'" + (f"; did you mean {', '.join('procgen:' + c for c in close)}?" if close else f"; choose one of {', '.join(PROCGEN_GAMES)}"))
        try:
            import procgen  # noqa: F401
        except ImportError:
            raise UserError(f"{name} needs procgen: pip install procgen-mirror")
        return
    import stable_retro
    games = stable_retro.data.list_games(stable_retro.data.Integrations.ALL)
    if name not in games:
        close = difflib.get_close_matches(name, games, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see stable_retro.data.list_games() or use procgen:<name>"
        raise UserError(f"unknown game '{name}'{hint}")
    try:
        stable_retro.data.get_romfile_path(name, stable_retro.data.Integrations.ALL)
    except FileNotFoundError:
        raise UserError(f"the ROM of {name} is not imported; put the ROM file in a folder and run: python -m stable_retro.import DIR")


def make_game(name, frame_skip, resolution):
    if name.startswith("procgen:"):
        return ProcgenGame(name.split(":", 1)[1], frame_skip, resolution)
    return RetroGame(name, frame_skip, resolution)


def select_games(selection):
    """RetroAct selection ('platformers', 'control50') or a file of game ids -> (playable, skipped)."""
    import stable_retro
    ids = {normalise(g): g for g in stable_retro.data.list_games(stable_retro.data.Integrations.ALL)}
    if selection == "platformers":
        with open(ANNOTATIONS / "RetroAct_v0.1.csv") as f:
            wanted = [row["game"] for row in csv.DictReader(f) if "pl" in row["tags"].split()]
    elif selection == "control50":
        wanted = [row["game"] for row in control_table().values()]
    elif Path(selection).is_file():
        wanted = [line.strip() for line in Path(selection).read_text().splitlines() if line.strip() and not line.startswith("#")]
    else:
        raise UserError(f"--games takes 'platformers', 'control50' or a file of game ids; '{selection}' is none of these")
    playable, skipped = [], []
    for game in wanted:
        name = game if game.startswith("procgen:") else ids.get(normalise(game), game)
        try:
            check_env(name)
            playable.append(name)
        except UserError as e:
            if "not imported" not in str(e):
                raise
            skipped.append(name)
    return playable, skipped


# ---------------------------------------------------------------------------
# Collection: one job per episode, run in worker processes (one emulator per process)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    env: str
    index: int
    seed: int
    path: str
    max_steps: int
    frame_skip: int
    resolution: int


def episode_seed(seed, env, index):
    """Each episode's randomness depends only on (seed, env, index): resumable and worker-independent."""
    return int(np.random.SeedSequence([seed, zlib.crc32(env.encode()), index]).generate_state(1)[0])


_GAME = {}  # the one open emulator of this process, reused across jobs of the same env


def open_game(env, frame_skip, resolution):
    key = (env, frame_skip, resolution)
    if key not in _GAME:
        for game in _GAME.values():  # stable-retro allows one emulator per process
            game.close()
        _GAME.clear()
        _GAME[key] = make_game(env, frame_skip, resolution)
    return _GAME[key]


def run_episode(job):
    """Play one episode with uniform random actions and write it; returns (env, frames, bytes)."""
    game = open_game(job.env, job.frame_skip, job.resolution)
    rng = np.random.default_rng(job.seed)
    frames, actions, rewards = [game.reset(job.seed)], [], []
    for _ in range(job.max_steps):
        action = int(rng.integers(len(ACTION_NAMES)))
        frame, reward, done = game.step(action)
        if frame is None:
            break
        frames.append(frame), actions.append(action), rewards.append(reward)
        if done:
            break
    size = save_episode(job.path, np.stack(frames), actions, rewards, job.env, "random", job.frame_skip)
    return job.env, len(frames), size


def plan_jobs(envs, args):
    """All episodes the command asks for, in a fixed order; per env the first n_val go to val/."""
    n_val = max(1, round(args.episodes * args.val_fraction)) if args.episodes > 1 else 0
    jobs = []
    for env in envs:
        frame_skip = args.frame_skip or (1 if env.startswith("procgen:") else 4)
        slug = env.replace(":", "-")
        for i in range(args.episodes):
            split = "val" if i < n_val else "train"
            path = Path(args.out) / split / f"{slug}_{i:05d}.npz"
            jobs.append(Job(env, i, episode_seed(args.seed, env, i), str(path), args.max_steps, frame_skip, args.resolution))
    return jobs


def run_jobs(jobs, workers, progress=None):
    """Run jobs in `workers` processes (in this process for 1); yields (env, frames, bytes) per episode."""
    if workers == 1:
        yield from map(run_episode, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(run_episode, jobs, chunksize=1)


def raw_steps(job):
    """Benchmark baseline: the same env, actions and frame skip, but no resize, no recording, no file."""
    game = open_game(job.env, job.frame_skip, job.resolution)
    rng = np.random.default_rng(job.seed)
    game.reset(job.seed)
    for _ in range(job.max_steps):
        if game.step(int(rng.integers(len(ACTION_NAMES))), render=False)[2]:
            game.reset(job.seed)
    return job.max_steps


def benchmark(env, args):
    """Raw env steps/s vs the full collect pipeline, on the same env and step count, for 1 and N workers."""
    print(f"benchmark on {env}: {args.episodes} episodes x {args.max_steps} steps, frame skip {args.frame_skip or 4}")
    for workers in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as out:
            jobs = plan_jobs([env], argparse.Namespace(**{**vars(args), "out": out}))
            start = time.perf_counter()
            if workers == 1:
                raw = sum(map(raw_steps, jobs))
            else:
                with multiprocessing.get_context("spawn").Pool(workers) as pool:
                    raw = sum(pool.map(raw_steps, jobs, chunksize=1))
            raw_rate = raw / (time.perf_counter() - start)
            start = time.perf_counter()
            steps = sum(n - 1 for _, n, _ in run_jobs(jobs, workers))
            pipe_rate = steps / (time.perf_counter() - start)
        print(f"workers={workers}: raw env {raw_rate:8.0f} steps/s | collect pipeline {pipe_rate:8.0f} steps/s | ratio {pipe_rate / raw_rate:.2f}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default="Airstriker-Genesis-v0", help="stable-retro game id (ROM imported) or procgen:<name>")
    p.add_argument("--games", default=None, help="collect from many games: 'platformers' or 'control50' (RetroAct tables) or a file of game ids; overrides --env")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes per env")
    p.add_argument("--max-steps", type=positive_int, default=500, help="agent steps per episode at most")
    p.add_argument("--frame-skip", type=positive_int, default=None, help="action repeat (default: 4 for retro, 1 for procgen)")
    p.add_argument("--resolution", type=positive_int, default=64, help="frame side in pixels after pad-to-square and area resize")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (one emulator each)")
    p.add_argument("--val-fraction", type=fraction, default=0.01, help="share of episodes per env written to val/ (at least one)")
    p.add_argument("--seed", type=int, default=0, help="base seed; each episode's seed derives from (seed, env, index)")
    p.add_argument("--out", default="data/airstriker", help="dataset folder; episodes go to OUT/train and OUT/val")
    p.add_argument("--benchmark", action="store_true", help="print raw env vs pipeline steps/s for 1 and --workers workers, write nothing")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.games:
        envs, skipped = select_games(args.games)
        print(f"{args.games}: {len(envs)} games playable, {len(skipped)} skipped (ROM not imported: python -m stable_retro.import DIR)")
        if not envs:
            raise UserError(f"no game of '{args.games}' has its ROM imported; import ROMs with: python -m stable_retro.import DIR")
    else:
        check_env(args.env)
        envs = [args.env]
    if args.benchmark:
        return benchmark(envs[0], args)
    for stale in Path(args.out).glob("*/.*.tmp"):  # left by a run killed mid-write
        stale.unlink()
    jobs = plan_jobs(envs, args)
    todo = [job for job in jobs if not Path(job.path).exists()]
    print(f"{len(jobs)} episodes planned, {len(jobs) - len(todo)} already on disk, collecting {len(todo)} with {args.workers} worker(s)")
    from tqdm import tqdm
    summary = {env: [0, 0, 0] for env in envs}
    start, total_frames = time.perf_counter(), 0
    with tqdm(total=len(todo), unit="ep", desc="collect") as bar:
        for env, frames, size in run_jobs(todo, args.workers):
            total_frames += frames
            for i, value in enumerate((1, frames, size)):
                summary[env][i] += value
            bar.set_postfix(frames_per_s=f"{total_frames / (time.perf_counter() - start):.0f}")
            bar.update()
    for env, (episodes, frames, size) in summary.items():
        print(f"{env}: {episodes} episodes, {frames} frames, {size / 2**20:.1f} MiB written to {args.out}")


if __name__ == "__main__":
    try:
        main()
    except (UserError, EpisodeError) as e:
        sys.exit(f"error: {e}")
