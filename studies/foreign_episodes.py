"""Episodes that no script of this project wrote, played by another policy: the check that a world model
trained on collect.py's random play generalises. Airstriker (the default) or a procgen game.

It drives the emulator directly (stable-retro's or procgen's own API, not envs.py) and plays runs of one
repeated action of random length (1-16 agent steps, or 1 to --max-run) instead of a new uniform action every
step. Actions use the shared order RIGHT LEFT UP DOWN JUMP, as the episode contract asks. Airstriker: JUMP is
the fire button B, action repeat 4, frames shrunk by Pillow's box filter (not our area resize). procgen: JUMP
is UP-RIGHT, action repeat 1, native 64x64 frames, and levels drawn from explicit level seeds (start_level)
rather than collect.py's random-seeded stream. procgen shows no frame after a level ends: the level's last
reward (CoinRun's coin) joins the step before.

    python studies/foreign_episodes.py --out data/foreign --episodes 10 --seed 202
    python studies/foreign_episodes.py --env procgen:coinrun:plain --out data/foreign-coinrun --episodes 10
    python evaluate.py --dynamics runs/loop/dynamics/ckpt.pt --data data/foreign --max-windows 64 --out runs/foreign
"""
import argparse
import functools
from pathlib import Path

import numpy as np
from PIL import Image

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
BUTTONS = [["RIGHT"], ["LEFT"], ["UP"], ["DOWN"], ["B"]]
PROCGEN_IDS = [7, 1, 5, 3, 8]  # procgen's 15 combos: 7 RIGHT, 1 LEFT, 5 UP, 3 DOWN, 8 UP-RIGHT
PROCGEN_OPTIONS = {"": {}, "plain": {"use_backgrounds": False, "restrict_themes": True},
                   "mono": {"use_backgrounds": False, "restrict_themes": True, "use_monochrome_assets": True}}


def shrink(frame, size=64):
    """Pad to a square with black, then Pillow's box filter down to size x size."""
    H, W, _ = frame.shape
    side = max(H, W)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[(side - H) // 2:(side - H) // 2 + H, (side - W) // 2:(side - W) // 2 + W] = frame
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BOX))


def runs_of_actions(rng, max_run):
    """An endless stream of actions: runs of one uniform action, each 1 to max_run steps long."""
    while True:
        action = int(rng.integers(len(ACTION_NAMES)))
        yield from [action] * int(rng.integers(1, max_run + 1))


def airstriker_episode(env, presses, rng, args):
    """One episode -> (frames, actions, rewards), action repeat 4."""
    frame, _ = env.reset(seed=int(rng.integers(2**30)))
    frames, actions, rewards, done = [shrink(frame)], [], [], False
    for action in runs_of_actions(rng, args.max_run):
        if len(actions) == args.max_steps or done:
            break
        reward = 0.0
        for _ in range(4):
            frame, r, terminated, truncated, _ = env.step(presses[action])
            reward, done = reward + r, terminated or truncated
            if done:
                break
        frames.append(shrink(frame)), actions.append(action), rewards.append(reward)
    return frames, actions, rewards


def procgen_episode(game, options, rng, args):
    """One episode of a procgen level of its own seed -> (frames, actions, rewards), action repeat 1."""
    from procgen import ProcgenGym3Env
    env = ProcgenGym3Env(num=1, env_name=game, distribution_mode="hard", start_level=int(rng.integers(2**20, 2**30)),
                         num_levels=1, **options)
    frames, actions, rewards = [env.observe()[1]["rgb"][0]], [], []
    for action in runs_of_actions(rng, args.max_run):
        if len(actions) == args.max_steps:
            break
        env.act(np.array([PROCGEN_IDS[action]]))
        reward, obs, first = env.observe()
        if first[0]:  # the level ended and procgen already shows the next one
            if rewards:
                rewards[-1] += float(reward[0])
            break
        frames.append(obs["rgb"][0]), actions.append(action), rewards.append(float(reward[0]))
    return frames, actions, rewards


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Airstriker-Genesis-v0", help="Airstriker-Genesis-v0, or procgen:<game>[:plain|:mono]")
    p.add_argument("--out", required=True, help="folder for the .npz episodes (written to OUT/test)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--max-steps", type=int, default=300, help="agent steps per episode at most (default 300)")
    p.add_argument("--seed", type=int, default=202, help="seed of the resets and the actions (default 202)")
    p.add_argument("--max-run", type=int, default=16, help="longest run of one repeated action, in agent steps (default 16)")
    args = p.parse_args()
    rng, out = np.random.default_rng(args.seed), Path(args.out) / "test"
    if args.env.startswith("procgen:"):
        game, _, visuals = args.env.removeprefix("procgen:").partition(":")
        if visuals not in PROCGEN_OPTIONS:
            p.error(f"unknown procgen visuals '{visuals}': use procgen:{game}, procgen:{game}:plain or procgen:{game}:mono")
        play, frame_skip = functools.partial(procgen_episode, game, PROCGEN_OPTIONS[visuals]), 1
    elif args.env == "Airstriker-Genesis-v0":
        import stable_retro
        env = stable_retro.make(args.env, render_mode=None)
        presses = np.zeros((len(BUTTONS), len(env.buttons)), np.int8)
        for action, buttons in enumerate(BUTTONS):
            presses[action, [env.buttons.index(b) for b in buttons]] = 1
        play, frame_skip = functools.partial(airstriker_episode, env, presses), 4
    else:
        p.error(f"--env must be Airstriker-Genesis-v0 or procgen:<game>, got {args.env}")
    out.mkdir(parents=True, exist_ok=True)
    for episode in range(args.episodes):
        frames, actions, rewards = play(rng, args)
        np.savez_compressed(out / f"foreign_{args.seed}_{episode:03d}.npz", frames=np.stack(frames),
                            actions=np.array(actions, np.int64), rewards=np.array(rewards, np.float32),
                            action_names=np.array(ACTION_NAMES), env=args.env,
                            policy=f"random actions repeated 1-{args.max_run} times", frame_skip=frame_skip)
        print(f"episode {episode}: {len(actions)} steps, return {sum(rewards):g}")


if __name__ == "__main__":
    main()
