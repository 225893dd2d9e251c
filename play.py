"""Play a world model: arrow keys and space drive it one generated frame at a time.

The window starts from the context frames of a test window of the dataset; each key press appends the
action, runs the dynamics model's MaskGIT sampler for one new frame and shows it decoded. `r` restarts,
`q` quits. Without a display, `--keys` plays a scripted sequence and saves OUT/play.gif and play.png:

    python play.py --dynamics runs/dynamics/ckpt.pt --data data/airstriker    # arrows, space = JUMP, r, q
    python play.py --keys RRRRLLLL --dynamics runs/dynamics/ckpt.pt --data data/airstriker --out runs/play

How fast play is, with random weights of a preset (generated frames/s and where the time goes):

    python play.py --benchmark --preset tiny --memory 16 --steps 8
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import torch
from tqdm import tqdm

from checkpoints import CheckpointError, load_world_model, torch_device
from dynamics import PRESETS as DYNAMICS_PRESETS, Dynamics
from episodes import EpisodeError, check_writable, folder_lock
from evaluate import ACTION_LETTERS, CONTEXT, check_actions, latent_windows, load_windows, test_folder
from pictures import save_gif, save_grid, to_uint8
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer, keep_unchanged_patches

# Play keys -> actions of the shared set RIGHT LEFT UP DOWN JUMP: the one place that maps keys to actions
# (--keys letters are ACTION_LETTERS, in the same order). A model driven by latent actions (GenieRedux's
# LAM) maps these keys to its codes instead.
KEY_ACTIONS = {"right": 0, "left": 1, "up": 2, "down": 3, " ": 4}  # matplotlib key names; " " is space


class PlayError(ValueError):
    """A play request that cannot be met (bad --keys, no display, no such window); one line with the fix."""


class Player:
    """Plays a world model from dataset frames (uint8 [Tc, H, W, 3] and the Tc-1 actions between them).

    Each step samples one frame with MaskGIT on top of the frames before it and decodes that frame
    alone: the dynamics model's and the decoder's keys and values of earlier frames are computed
    once (TimeCache), and both look back at most `memory` - 1 frames (the training clip length).
    action_map (GenieRedux) turns a key's action into the model's latent code. keep_unchanged: a patch whose code
    did not change keeps its pixels (tokenizer.keep_unchanged_patches), from the last real frame on.
    """

    def __init__(self, dynamics, tokenizer, frames, actions, steps=25, temperature=1.0, memory=16,
                 device="cpu", seed=0, action_map=None, anneal=False, keep_unchanged=False):
        self.dynamics, self.tokenizer, self.memory, self.action_map = dynamics, tokenizer, memory, action_map
        self.keep_unchanged = keep_unchanged
        self.steps, self.temperature, self.anneal = steps, temperature, anneal
        self.frames = torch.as_tensor(frames, device=device)[None]  # [1, Tc, H, W, 3]
        self.actions = torch.as_tensor(actions, device=device)[None]  # [1, Tc-1]
        self.generator = torch.Generator(device).manual_seed(seed)

    def reset(self):
        """Back to the dataset frames; returns the last of them as the model sees it, uint8 [H, W, 3]."""
        tokens = self.tokenizer.encode(self.frames)  # [1, Tc, h, w]
        self.dynamics_caches = self.dynamics.cache(tokens, self.actions, window=self.memory)
        frames, self.decoder_caches = self.tokenizer.decode(tokens, self.tokenizer.decoder_caches(window=self.memory))
        self.shown, self.shown_ids = self.frames[:, -1].float() / 255, tokens[:, -1]  # keep_unchanged keeps these pixels
        return to_uint8(frames[0, -1].float().cpu().numpy())

    @torch.no_grad()
    def step(self, action):
        """action: index in RIGHT LEFT UP DOWN JUMP -> the next frame, uint8 [H, W, 3]."""
        action = self.action_map[action] if self.action_map is not None else action
        actions = self.actions.new_tensor([[action]])  # [1, 1]
        tokens = self.dynamics.generate_cached(self.dynamics_caches, actions, self.steps, self.temperature,
                                               self.generator, self.anneal)  # [1, 1, h, w]
        self.dynamics_caches = self.dynamics.add_frames(self.dynamics_caches, tokens, actions)  # context from now on
        frames, self.decoder_caches = self.tokenizer.decode(tokens, self.decoder_caches)
        if self.keep_unchanged:
            frames = keep_unchanged_patches(frames.float(), tokens, self.shown, self.shown_ids)
            self.shown, self.shown_ids = frames[:, -1], tokens[:, -1]
        return to_uint8(frames[0, -1].float().cpu().numpy())


def play_keys(player, keys):
    """Scripted play: keys like "RRJLL" (R L U D J) -> frames uint8 [H, W, 3], the start frame first."""
    bad = set(keys) - set(ACTION_LETTERS)
    if bad:
        raise PlayError(f"--keys may use only the letters {ACTION_LETTERS}, got {''.join(sorted(bad))}")
    key_names = dict(zip(ACTION_LETTERS, KEY_ACTIONS))  # letter -> key -> action: the same mapping as the window
    return [player.reset()] + [player.step(KEY_ACTIONS[key_names[k]]) for k in tqdm(keys, desc="play", unit="frame")]


def play_window(player):
    """Interactive play in a matplotlib window: arrows and space act, r restarts, q quits."""
    import matplotlib.pyplot as plt
    if matplotlib.get_backend().lower() == "agg":
        raise PlayError("no display for the play window: use --keys RRJLL --out DIR to play headless and save a GIF")
    plt.rcParams.update({k: [] for k in plt.rcParams if k.startswith("keymap.")})  # ours alone: r is not "home"
    fig, ax = plt.subplots(figsize=(5, 5.4))
    ax.set_axis_off()
    image = ax.imshow(player.reset(), interpolation="nearest")
    status = ax.set_title("arrows / space: act   r: restart   q: quit", fontsize=9)

    def on_key(event):
        if event.key == "q":
            plt.close(fig)
        elif event.key == "r":
            image.set_data(player.reset())
            status.set_text("restarted")
        elif event.key in KEY_ACTIONS:
            start = time.perf_counter()
            image.set_data(player.step(KEY_ACTIONS[event.key]))
            name = ACTION_LETTERS[KEY_ACTIONS[event.key]]
            status.set_text(f"action {name}   {1 / (time.perf_counter() - start):.1f} fps")
        fig.canvas.draw_idle()

    fig.canvas.mpl_connect("key_press_event", on_key)
    plt.show()


# ---------------------------------------------------------------------------
# --benchmark: generated frames/s of a preset with random weights
# ---------------------------------------------------------------------------

def benchmark(args):
    """Play with random weights of --preset and print frames/s at the first key and with a full memory."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    tokenizer = Tokenizer(TOKENIZER_PRESETS[args.preset]).to(device).eval()
    t = tokenizer.config
    config = replace(DYNAMICS_PRESETS[args.preset], num_codes=t.num_codes, code_dim=t.code_dim, grid=tokenizer.grid)
    dynamics = Dynamics(config, codebook=tokenizer.codebook()).to(device).eval()
    frames = torch.randint(0, 256, (2, t.resolution, t.resolution, 3), dtype=torch.uint8)
    player = Player(dynamics, tokenizer, frames, torch.zeros(1, dtype=torch.long), args.steps, args.temperature,
                    args.memory, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed_steps(n):  # seconds per frame: MaskGIT (and appending the frame), decoding
        sample = decode = 0.0
        for _ in range(n):
            start = time.perf_counter()
            actions = player.actions.new_tensor([[0]])
            tokens = dynamics.generate_cached(player.dynamics_caches, actions, args.steps, args.temperature,
                                              player.generator, args.anneal)
            player.dynamics_caches = dynamics.add_frames(player.dynamics_caches, tokens, actions)
            sync()
            middle = time.perf_counter()
            frames, player.decoder_caches = tokenizer.decode(tokens, player.decoder_caches)
            to_uint8(frames[0, -1].float().cpu().numpy())
            sync()
            sample, decode = sample + middle - start, decode + time.perf_counter() - middle
        return sample / n, decode / n

    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        player.reset()
        timed_steps(2)  # warm-up
        player.reset()
        first = timed_steps(1)
        timed_steps(max(0, args.memory - 3))  # fill the memory
        full = timed_steps(args.frames)
    print(f"play --preset {args.preset} on {device}, random weights, {args.steps} MaskGIT steps, temperature "
          f"{args.temperature}{' annealed to 0' if args.anneal else ''}, memory {args.memory} frames ({dynamics.config.grid[0]}x{dynamics.config.grid[1]} tokens):")
    for name, (sample, decode) in (("first key", first), ("full memory", full)):
        print(f"  {name:11s}: {1 / (sample + decode):6.1f} frames/s | {1000 * (sample + decode):6.1f} ms per frame = "
              f"{1000 * sample:.1f} ms MaskGIT + {1000 * decode:.1f} ms decoding")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dynamics", help="dynamics checkpoint written by train.py (required but for --benchmark)")
    p.add_argument("--data", help="episodes to start from: DIR/test, else DIR/val, else every .npz under DIR")
    p.add_argument("--tokenizer", help="tokenizer checkpoint (default: the one the dynamics checkpoint records)")
    p.add_argument("--keys", help="play these keys headless (letters R L U D J, e.g. RRJLL) and save OUT/play.gif, play.png")
    p.add_argument("--window", type=int, default=0, help="start from this test window's context frames (default 0)")
    p.add_argument("--out", default="runs/play", help="--keys: folder for play.gif and play.png (default runs/play)")
    p.add_argument("--steps", type=int, default=8, help="MaskGIT steps per generated frame (default 8)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature, 0 = argmax (default 1.0, the paper's)")
    p.add_argument("--anneal", action="store_true",
                   help="MaskGIT step s of S samples at temperature * (1 - (s+1)/S), linear to argmax at the last step")
    p.add_argument("--keep-unchanged", action="store_true",
                   help="a patch whose code did not change keeps its pixels (a codec's skip blocks; our addition)")
    p.add_argument("--memory", type=int, default=16, help="frames the model looks back on, the clip length (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    p.add_argument("--benchmark", action="store_true", help="print generated frames/s of --preset with random weights")
    p.add_argument("--preset", choices=list(TOKENIZER_PRESETS), default="tiny", help="--benchmark: model sizes (default tiny)")
    p.add_argument("--frames", type=int, default=32, help="--benchmark: frames timed with a full memory (default 32)")
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default cuda if present)")
    args = p.parse_args(argv)
    if not args.benchmark and not (args.dynamics and args.data):
        p.error("--dynamics CKPT and --data DIR are required (or --benchmark)")
    for flag in ("steps", "memory", "frames"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.window < 0:
        p.error(f"--window counts test windows from 0, got {args.window}")
    return args


def start_player(args):
    """The Player of --dynamics on the context frames of test window --window of --data."""
    dynamics, tokenizer, lam = load_world_model(args.dynamics, args.tokenizer, args.device)
    folder = test_folder(args.data)
    # play needs one start window, but a LAM's key mapping needs the agreement of its codes over many
    windows = load_windows(folder, args.window + 1 if lam is None else None, tokenizer.config.resolution, spread=False)
    if args.window >= len(windows):
        raise PlayError(f"--window {args.window}: {folder} has only {len(windows)} test windows")
    code_of = None
    if lam is not None:  # GenieRedux: a key's action becomes the latent code used most often for it
        windows, agreement = latent_windows(lam, windows, 8, args.device)
        code_of = np.array(agreement["confusion"]).argmax(0).tolist()
    else:
        check_actions(windows, dynamics.config.num_actions, folder)
    frames, actions = windows[args.window]
    return Player(dynamics, tokenizer, frames[:CONTEXT], actions[:CONTEXT - 1], args.steps, args.temperature,
                  args.memory, args.device, args.seed, code_of, args.anneal, args.keep_unchanged)


def main(argv=None):
    args = parse_args(argv)
    if args.benchmark:
        return benchmark(args)
    if args.keys is None:
        return play_window(start_player(args))
    check_writable(args.out)  # before any work
    with folder_lock(args.out):  # one run per folder: a second one fails in one line naming this one
        played = play_keys(start_player(args), args.keys)
        save_gif(Path(args.out) / "play.gif", played)
        save_grid({"played": np.stack(played) / 255}, ["start"] + list(args.keys), Path(args.out) / "play.png")
    print(f"wrote {Path(args.out) / 'play.gif'} and play.png ({len(args.keys) + 1} frames)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: play.gif and play.png are as they were", file=sys.stderr)
        sys.exit(130)
    except (PlayError, CheckpointError, EpisodeError, OSError) as e:
        sys.exit(f"error: {e}")
