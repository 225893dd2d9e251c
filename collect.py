"""Collect game episodes into the shared .npz format (GenieRedux paper sec. 3 and 5.1).

A random agent (or, with --policy agent, a trained AutoExplore agent) plays a real emulator and
every episode becomes one compressed .npz file:

    python collect.py --env Airstriker-Genesis-v0 --episodes 20 --out data/airstriker
    python collect.py --env procgen:coinrun --episodes 200 --out data/coinrun
    python collect.py --games platformers --episodes 10 --out data/platformers   # RetroAct selection
    python collect.py --policy agent --agent runs/agent/agent.pt --episodes 100 --out data/explore  # agent.py
    python collect.py --env procgen:coinrun --frames 20000 --out data/random   # a frame budget, not an episode count

Writes DIR/train/*.npz and DIR/val/*.npz (the format: episodes.py). Each episode's content depends
only on (--seed, env, episode index) and its file is named after all three, so re-running a command
continues where it stopped, and collectors with different seeds can share a folder without touching
each other's episodes.
"""
import argparse
import multiprocessing
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs import ACTION_NAMES, AgentGame, GameError, check_env, default_frame_skip, make_game, select_games
from episodes import CTRL_C, EpisodeError, check_writable, load_episode, quiet_workers, remember_ctrl_c, remove_stale_tmp, save_episode

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
    agent: str = None  # --policy agent: the agent checkpoint; None: the random agent
    epsilon: float = 0.15  # --policy agent: share of uniformly random actions
    hold: int = 1  # the random agent: each uniform action is held for 1 to `hold` steps


def random_policy_name(hold):
    """The episodes' `policy` of the random agent: "random", or "random:hold8" when it holds its actions."""
    return "random" if hold == 1 else f"random:hold{hold}"


def random_actions(rng, hold):
    """Uniform random actions, each held for a uniform 1 to `hold` agent steps (hold 1: a new one every step).
    Held actions move a character further than one action does, so the dynamics model sees what each key does."""
    while True:
        action = int(rng.integers(len(ACTION_NAMES)))
        yield from [action] * (int(rng.integers(1, hold + 1)) if hold > 1 else 1)


def episode_seed(seed, env, index):
    """Each episode's randomness depends only on (seed, env, index): resumable and worker-independent."""
    return int(np.random.SeedSequence([seed, zlib.crc32(env.encode()), index]).generate_state(1)[0])


_GAME = {}  # the one open emulator of this process, reused across jobs of the same env


def open_game(env, frame_skip, resolution, agent=False):
    """agent=True: the game as agent.py's policy sees it (its `obs` max-pools the last two frames)."""
    key = (env, frame_skip, resolution, agent)
    if key not in _GAME:
        for game in _GAME.values():  # stable-retro allows one emulator per process
            game.close()
        _GAME.clear()
        if agent:
            _GAME[key] = AgentGame(make_game(env, 1, resolution), frame_skip)
        else:
            _GAME[key] = make_game(env, frame_skip, resolution)
    return _GAME[key]


_POLICY = {}  # the loaded agent of this process, by (checkpoint, epsilon)


def open_policy(path, epsilon):
    """The agent of agent.py's checkpoint `path` as a Policy named agent:<folder>/<file> (the episodes' `policy`)."""
    if (path, epsilon) not in _POLICY:
        import torch
        from actor_critic import Policy
        from checkpoints import read_checkpoint
        torch.set_num_threads(1)  # one worker per core: a policy step must not spread over the others
        _POLICY.clear()
        name = f"agent:{Path(path).parent.name}/{Path(path).name}"
        _POLICY[(path, epsilon)] = Policy.from_checkpoint(read_checkpoint(path, "--agent", kind="agent"), name, epsilon)
    return _POLICY[(path, epsilon)]


def run_episode(job):
    """Play one episode (random agent, or the agent of --policy agent) and write it; returns (env, frames, bytes)."""
    policy = open_policy(job.agent, job.epsilon) if job.agent else None
    game = open_game(job.env, job.frame_skip, job.resolution, agent=policy is not None)
    randoms = random_actions(np.random.default_rng(job.seed), job.hold)
    frames, actions, rewards, done = [game.reset(job.seed)], [], [], False
    if policy:
        policy.reset(job.seed)  # the episode depends only on its seed, as a random one does
    for _ in range(job.max_steps):
        action = policy.act(game.obs) if policy else next(randoms)
        frame, reward, done = game.step(action)
        if frame is None:  # procgen ends a level without showing its last frame: the reward joins the step before
            if rewards:
                rewards[-1] += reward
            break
        frames.append(frame), actions.append(action), rewards.append(reward)
        if done:
            break
    size = save_episode(job.path, np.stack(frames), actions, rewards, ACTION_NAMES, job.env,
                        policy.name if policy else random_policy_name(job.hold), job.frame_skip, truncated=not done)
    return job.env, len(frames), size


def make_job(env, index, split, args, max_steps):
    """The job of episode `index` of `env`: its seed and its file DIR/split/<env>_seed<seed>_<index>.npz
    (another seed: other names) follow from these alone."""
    path = Path(args.out) / split / f"{env.replace(':', '-')}_seed{args.seed}_{index:05d}.npz"
    return Job(env, index, episode_seed(args.seed, env, index), str(path), max_steps,
               args.frame_skip or default_frame_skip(env), args.resolution,
               args.agent if args.policy == "agent" else None, args.epsilon, args.hold)


def collected_as(path, job):
    """The episode at `path`, already on disk, if it was collected as `job` asks; else an EpisodeError: a rerun must not
    count episodes of another resolution or frame skip as its own."""
    episode = load_episode(path)
    size, skip = episode["frames"].shape[1], episode["frame_skip"]
    if (size, skip) != (job.resolution, job.frame_skip):
        raise EpisodeError(f"{path} was collected at {size}x{size} pixels and frame skip {skip}, but this command asks for "
                           f"{job.resolution}x{job.resolution} and frame skip {job.frame_skip}: collect into another --out, "
                           f"or pass --resolution {size} --frame-skip {skip}")
    if not job.agent and episode["policy"] != random_policy_name(job.hold):
        raise EpisodeError(f"{path} was played by policy {episode['policy']}, but this command asks for {random_policy_name(job.hold)}: "
                           f"collect into another --out, or pass the --hold it was collected with")
    return episode


def collect_frames(env, args):
    """--frames N: episodes of `env` in index order until they hold N frames in all, the last one cut short to
    fit (paper Tab. 5 compares datasets of equal frame budgets). The first --val-fraction of the frames go to
    val/. Played one at a time, since each episode's length limit depends on the ones before it; episodes
    already on disk count, so a rerun continues. Returns the number of frames written by this call."""
    from tqdm import tqdm
    left, val_left, index, written = args.frames, round(args.frames * args.val_fraction), 0, 0
    with tqdm(total=args.frames, unit="frame", desc=f"collect {env}") as bar:
        while left >= 2:  # an episode holds at least 2 frames
            split = args.split or ("val" if val_left > 0 else "train")
            job = make_job(env, index, split, args, min(args.max_steps, left - 1))
            if Path(job.path).exists():
                frames = len(collected_as(job.path, job)["frames"])
            else:
                frames = next(run_jobs([job], 1))[1]
                written += frames
            left, val_left, index = left - frames, val_left - frames * (split == "val"), index + 1
            bar.update(frames)
    return written


def plan_jobs(envs, args):
    """All episodes the command asks for, in a fixed order; per env the first n_val go to val/ (or all to --split)."""
    n_val = max(1, round(args.episodes * args.val_fraction)) if args.episodes > 1 else 0
    return [make_job(env, i, args.split or ("val" if i < n_val else "train"), args, args.max_steps)
            for env in envs for i in range(args.episodes)]


def run_jobs(jobs, workers, progress=None):
    """Run jobs in `workers` processes (in this process for 1); yields (env, frames, bytes) per episode."""
    if workers == 1:
        yield from map(run_episode, jobs)
        return
    with quiet_workers():  # Ctrl-C is the main process's: it stops the workers
        pool = multiprocessing.get_context("spawn").Pool(workers)
    with pool:
        yield from pool.imap_unordered(run_episode, jobs, chunksize=1)


def collect_episodes(envs, args):
    """--episodes N per env, in --workers processes; episodes already on disk stay and count."""
    jobs = plan_jobs(envs, args)
    # An episode already written to any split this command fills stays where it is: growing --episodes
    # (which moves the val/train boundary) must not write it again into the other split.
    splits = [args.split] if args.split else ["train", "val"]
    on_disk = {job: path for job in jobs for s in splits if (path := Path(args.out) / s / Path(job.path).name).exists()}
    for env in envs:  # what is on disk was collected as this command asks: the first episode of each game tells
        first = next((job for job in on_disk if job.env == env), None)
        if first:
            collected_as(on_disk[first], first)
    todo = [job for job in jobs if job not in on_disk]
    print(f"{len(jobs)} episodes planned, {len(jobs) - len(todo)} already on disk, collecting {len(todo)} with {args.workers} worker(s)")
    from tqdm import tqdm
    summary = {env: [0, 0, 0] for env in envs}
    start, total_frames = time.perf_counter(), 0
    with tqdm(total=len(todo), unit="ep", desc="collect") as bar:
        for env, frames, size in run_jobs(todo, args.workers):
            if CTRL_C:  # a Ctrl-C that landed in a finaliser, where Python swallowed its KeyboardInterrupt
                raise KeyboardInterrupt
            total_frames += frames
            for i, value in enumerate((1, frames, size)):
                summary[env][i] += value
            bar.set_postfix(frames_per_s=f"{total_frames / (time.perf_counter() - start):.0f}")
            bar.update()
    for env, (episodes, frames, size) in summary.items():
        print(f"{env}: {episodes} episodes, {frames} frames, {size / 2**20:.1f} MiB written to {args.out}")


def raw_steps(job):
    """Benchmark baseline: the same env, actions and frame skip, but no resize, no recording, no file."""
    game = open_game(job.env, job.frame_skip, job.resolution)
    randoms = random_actions(np.random.default_rng(job.seed), job.hold)
    game.reset(job.seed)
    for _ in range(job.max_steps):
        if game.step(next(randoms), render=False)[2]:
            game.reset(job.seed)
    return job.max_steps


def benchmark(env, args):
    """Raw env steps/s vs the full collect pipeline, on the same env and step count, for 1 and N workers."""
    print(f"benchmark on {env}: {args.episodes} episodes x {args.max_steps} steps, frame skip {args.frame_skip or default_frame_skip(env)}")
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
    p.add_argument("--env", default="Airstriker-Genesis-v0", help="stable-retro game id (ROM imported), or procgen:<name>[:plain|:mono] (procgen visuals: the paper's, no backgrounds, flat colours)")
    p.add_argument("--games", default=None, help="collect from many games: 'platformers' or 'control50' (RetroAct tables) or a file of game ids; overrides --env")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes per env")
    p.add_argument("--frames", type=positive_int, default=None, help="instead of --episodes: episodes per env until they hold this many frames in all (played one at a time)")
    p.add_argument("--max-steps", type=positive_int, default=500, help="agent steps per episode at most")
    p.add_argument("--frame-skip", type=positive_int, default=None, help="action repeat (default: 4 for retro, 1 for procgen)")
    p.add_argument("--resolution", type=positive_int, default=64, help="frame side in pixels after pad-to-square and area resize")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (one emulator each)")
    p.add_argument("--policy", choices=["random", "agent"], default="random", help="uniform random actions, or a trained agent.py agent")
    p.add_argument("--agent", default=None, help="--policy agent: the agent checkpoint (agent.py writes OUT/agent.pt)")
    p.add_argument("--hold", type=positive_int, default=1, help="--policy random: hold each uniform action for 1 to HOLD steps (1: a new action every step)")
    p.add_argument("--epsilon", type=fraction, default=0.15, help="--policy agent: share of uniformly random actions")
    p.add_argument("--val-fraction", type=fraction, default=0.01, help="share of episodes per env written to val/ (at least one)")
    p.add_argument("--split", choices=["train", "val", "test"], default=None, help="write every episode to OUT/SPLIT (e.g. a held-out test set) instead of the train/val split")
    p.add_argument("--seed", type=int, default=0, help="base seed; each episode's seed derives from (seed, env, index)")
    p.add_argument("--out", default="data/airstriker", help="dataset folder; episodes go to OUT/train and OUT/val")
    p.add_argument("--benchmark", action="store_true", help="print raw env vs pipeline steps/s for 1 and --workers workers, write nothing")
    args = p.parse_args(argv)
    if args.frames is not None and args.frames < 2:
        p.error(f"--frames must be at least 2 (an episode's first frame and one step), got {args.frames}")
    if args.policy == "agent" and not (args.agent and Path(args.agent).is_file()):
        p.error(f"--policy agent needs --agent CKPT, an agent checkpoint of agent.py (got {args.agent})")
    if args.policy == "agent" and args.hold > 1:
        p.error("--hold is the random agent's; an agent picks every action itself (use --epsilon for its random share)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.games:
        envs, skipped = select_games(args.games)
        print(f"{args.games}: {len(envs)} games playable, {len(skipped)} skipped (ROM not imported: python -m stable_retro.import DIR)")
        if not envs:
            raise GameError(f"no game of '{args.games}' has its ROM imported; import ROMs with: python -m stable_retro.import DIR")
    else:
        check_env(args.env)
        envs = [args.env]
    if args.benchmark:
        return benchmark(envs[0], args)
    check_writable(args.out)  # before any work
    remove_stale_tmp(args.out)  # left by a run killed mid-write; a running collector's files stay
    if args.policy == "agent":  # a bad checkpoint fails here, in one line, before any episode is played
        from checkpoints import CheckpointError
        try:
            open_policy(args.agent, args.epsilon)
        except CheckpointError as e:
            sys.exit(f"error: {e}")
    try:
        if args.frames:
            for env in envs:
                print(f"{env}: {collect_frames(env, args)} frames written, {args.frames} on disk in {args.out}")
            return
        collect_episodes(envs, args)
    except KeyboardInterrupt:  # Ctrl-C: one line that says where the collection stands
        raise KeyboardInterrupt(f"interrupted: the episodes on disk in {args.out} are complete; run the same command "
                                f"again to collect the rest") from None
    finally:
        remove_stale_tmp(args.out)  # the half-written files of stopped workers


if __name__ == "__main__":
    remember_ctrl_c()
    try:
        main()
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted before any episode was played", file=sys.stderr)
        sys.exit(130)
    except (GameError, EpisodeError, OSError) as e:
        sys.exit(f"error: {e}")
