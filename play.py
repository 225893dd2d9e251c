"""Play a world model: arrow keys and space drive it one generated frame at a time (SPEC sec. 7).

The window starts from a frame of the dataset; each key press appends the action, runs the dynamics
model's MaskGIT sampler for one new frame and shows it decoded. `r` restarts, `q` quits. Without a
display, `--keys` plays a scripted sequence and saves a GIF. evaluate.py is the entry point:

    python evaluate.py --play --dynamics runs/dynamics/ckpt.pt --data data/airstriker
    python evaluate.py --play --keys RRRJLL --dynamics runs/dynamics/ckpt.pt --data data/airstriker --out runs/play
"""
import time

import matplotlib
import numpy as np
import torch
from tqdm import tqdm

from envs import UserError

# Play keys -> actions of the shared set RIGHT LEFT UP DOWN JUMP (SPEC sec. 3): the one place that maps
# keys to actions. A model driven by latent actions (GenieRedux's LAM) maps these keys to its codes instead.
KEY_ACTIONS = {"right": 0, "left": 1, "up": 2, "down": 3, " ": 4}  # matplotlib key names; " " is space
ACTION_LETTERS = "RLUDJ"  # the same actions as --keys letters, in action order


def to_uint8(frames):
    """float numpy frames in [0, 1] -> uint8."""
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def save_gif(path, frames, fps=4, scale=4):
    """frames: list of uint8 [H, W, 3] -> an animated GIF, upscaled `scale` times with nearest pixels."""
    from PIL import Image  # Pillow comes with matplotlib
    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


class Player:
    """Starts from dataset frames (uint8 [Tc, H, W, 3], actions [Tc-1]); each step generates one frame
    from the last `memory` frames (the training clip length) and returns it as uint8 [H, W, 3]."""

    def __init__(self, dynamics, encode_fn, decode_fn, frames, actions, steps=25, temperature=1.0, memory=16,
                 device="cpu", seed=0, action_map=None):
        self.dynamics, self.decode_fn, self.memory, self.action_map = dynamics, decode_fn, memory, action_map
        self.steps, self.temperature = steps, temperature
        self.start = (encode_fn(torch.as_tensor(frames, device=device)[None].float() / 255),  # [1, Tc, h, w]
                      torch.as_tensor(actions, device=device)[None])  # [1, Tc-1]
        self.generator = torch.Generator(device).manual_seed(seed)

    def reset(self):
        self.tokens, self.actions = self.start
        return to_uint8(self.decode_fn(self.tokens)[0, -1].float().cpu().numpy())

    @torch.no_grad()
    def step(self, action):
        """action: index in RIGHT LEFT UP DOWN JUMP; action_map (GenieRedux) turns it into the model's latent code."""
        action = self.action_map[action] if self.action_map is not None else action
        actions = torch.cat([self.actions, self.actions.new_tensor([[action]])], 1)
        tokens = self.dynamics.generate(self.tokens, actions, 1, self.steps, self.temperature, self.generator)
        self.tokens, self.actions = tokens[:, -self.memory:], actions[:, -(self.memory - 1):]
        return to_uint8(self.decode_fn(self.tokens)[0, -1].float().cpu().numpy())


def play_keys(player, keys):
    """Scripted play: keys like "RRJLL" (R L U D J) -> frames uint8 [H, W, 3], the start frame first."""
    bad = set(keys) - set(ACTION_LETTERS)
    if bad:
        raise UserError(f"--keys may use only the letters {ACTION_LETTERS}, got {''.join(sorted(bad))}")
    key_names = dict(zip(ACTION_LETTERS, KEY_ACTIONS))  # letter -> key -> action: the same mapping as the window
    return [player.reset()] + [player.step(KEY_ACTIONS[key_names[k]]) for k in tqdm(keys, desc="play", unit="frame")]


def play_window(player):
    """Interactive play in a matplotlib window: arrows and space act, r restarts, q quits."""
    import matplotlib.pyplot as plt
    if matplotlib.get_backend().lower() == "agg":
        raise UserError("no display for the play window: use --keys RRJLL --out DIR to play headless and save a GIF")
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
