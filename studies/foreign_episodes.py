"""Airstriker episodes that no script of this project wrote, played by another policy: the check that a
world model trained on collect.py's random play generalises.

It drives stable-retro directly (not envs.py), shrinks frames with Pillow's box filter (not our area
resize) and plays runs of one repeated action of random length (1-16 agent steps, or 1 to --max-run)
instead of a new uniform action every step. Actions use the shared order RIGHT LEFT UP DOWN JUMP (JUMP is Airstriker's
fire button B), with action repeat 4, as the episode contract asks.

    python studies/foreign_episodes.py --out data/foreign --episodes 10 --seed 202
    python evaluate.py --dynamics runs/loop/dynamics/ckpt.pt --data data/foreign --max-windows 64 --out runs/foreign
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
BUTTONS = [["RIGHT"], ["LEFT"], ["UP"], ["DOWN"], ["B"]]


def shrink(frame, size=64):
    """Pad to a square with black, then Pillow's box filter down to size x size."""
    H, W, _ = frame.shape
    side = max(H, W)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[(side - H) // 2:(side - H) // 2 + H, (side - W) // 2:(side - W) // 2 + W] = frame
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BOX))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the .npz episodes (written to OUT/test)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--max-steps", type=int, default=300, help="agent steps per episode at most (default 300)")
    p.add_argument("--seed", type=int, default=202, help="seed of the resets and the actions (default 202)")
    p.add_argument("--max-run", type=int, default=16, help="longest run of one repeated action, in agent steps (default 16)")
    args = p.parse_args()
    import stable_retro
    env = stable_retro.make("Airstriker-Genesis-v0", render_mode=None)
    presses = np.zeros((len(BUTTONS), len(env.buttons)), np.int8)
    for action, buttons in enumerate(BUTTONS):
        presses[action, [env.buttons.index(b) for b in buttons]] = 1
    rng, out = np.random.default_rng(args.seed), Path(args.out) / "test"
    out.mkdir(parents=True, exist_ok=True)
    for episode in range(args.episodes):
        frame, _ = env.reset(seed=int(rng.integers(2**30)))
        frames, actions, rewards, run, done = [shrink(frame)], [], [], 0, False
        while len(actions) < args.max_steps and not done:
            if run == 0:  # a new run of one repeated action
                action, run = int(rng.integers(len(ACTION_NAMES))), int(rng.integers(1, args.max_run + 1))
            run, reward = run - 1, 0.0
            for _ in range(4):  # action repeat 4
                frame, r, terminated, truncated, _ = env.step(presses[action])
                reward, done = reward + r, terminated or truncated
                if done:
                    break
            frames.append(shrink(frame)), actions.append(action), rewards.append(reward)
        np.savez_compressed(out / f"foreign_{args.seed}_{episode:03d}.npz", frames=np.stack(frames),
                            actions=np.array(actions, np.int64), rewards=np.array(rewards, np.float32),
                            action_names=np.array(ACTION_NAMES), env="Airstriker-Genesis-v0",
                            policy=f"random actions repeated 1-{args.max_run} times", frame_skip=4)
        print(f"episode {episode}: {len(actions)} steps")
    env.close()


if __name__ == "__main__":
    main()
