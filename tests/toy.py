"""Toy data made in code: a white square on a black canvas that moves with the action.

Tests of the dynamics model, the LAM, evaluate.py and the scripts use it so they need no
emulator and no trained tokenizer:
  toy_episode      - one episode (frames uint8 [T+1, size, size, 3], actions int64 [T]);
  toy_batch        - a batch of episodes as tensors;
  encode_patches / decode_patches - a fixed "tokenizer": patch -> id 0 (black) or 1 (white);
  write_toy_dataset - episodes as .npz files in the shared episode format (DIR/train, DIR/val).
Actions follow the shared set RIGHT LEFT UP DOWN JUMP; JUMP does nothing here.
"""
from pathlib import Path

import numpy as np
import torch

ACTION_NAMES = ["RIGHT", "LEFT", "UP", "DOWN", "JUMP"]
MOVES = {0: (0, 1), 1: (0, -1), 2: (-1, 0), 3: (1, 0), 4: (0, 0)}  # action -> (dy, dx) in steps


def toy_episode(T, rng, size=64, square=8, step=4):
    """A square of `square` px moving `step` px per action (clamped at the borders), random actions.

    The square starts on the step grid, so with step = patch size it always covers whole patches.
    Returns frames uint8 [T+1, size, size, 3] and actions int64 [T].
    """
    actions = rng.integers(0, len(ACTION_NAMES), size=T)
    top = (size - square) // step
    y, x = step * rng.integers(0, top + 1, size=2)
    frames = np.zeros((T + 1, size, size, 3), np.uint8)
    for k in range(T + 1):
        frames[k, y:y + square, x:x + square] = 255
        if k < T:
            dy, dx = MOVES[int(actions[k])]
            y = int(np.clip(y + dy * step, 0, size - square))
            x = int(np.clip(x + dx * step, 0, size - square))
    return frames, actions.astype(np.int64)


def toy_batch(B, T, seed=0, **kwargs):
    """B toy episodes as tensors: frames uint8 [B, T+1, size, size, 3], actions int64 [B, T]."""
    rng = np.random.default_rng(seed)
    episodes = [toy_episode(T, rng, **kwargs) for _ in range(B)]
    frames = torch.from_numpy(np.stack([f for f, _ in episodes]))
    actions = torch.from_numpy(np.stack([a for _, a in episodes]))
    return frames, actions


def encode_patches(frames, patch=4):
    """Fixed patch code: frames uint8 [..., H, W, 3] -> token ids int64 [..., H/patch, W/patch].

    Id 1 for a patch that is mostly white, 0 otherwise: a lossless tokenizer for toy frames.
    """
    *lead, H, W, _ = frames.shape
    brightness = frames.float().mean(-1).reshape(*lead, H // patch, patch, W // patch, patch)
    return (brightness.mean((-3, -1)) > 127.5).long()


def decode_patches(tokens, patch=4):
    """Inverse of encode_patches: ids [..., h, w] -> frames float [..., h*patch, w*patch, 3] in [0, 1].

    Id 1 is white, every other id (including ids a model may predict) is black.
    """
    white = (tokens == 1).float()
    pixels = white.repeat_interleave(patch, -2).repeat_interleave(patch, -1)
    return pixels[..., None].expand(*pixels.shape, 3)


def write_toy_dataset(root, n_train=4, n_val=1, T=20, seed=0, **kwargs):
    """Write toy episodes as .npz episode files: root/train/ep_XXXX.npz, root/val/ep_XXXX.npz.

    Returns the list of written paths.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for split, n in (("train", n_train), ("val", n_val)):
        (Path(root) / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            frames, actions = toy_episode(T, rng, **kwargs)
            path = Path(root) / split / f"ep_{i:04d}.npz"
            np.savez_compressed(path, frames=frames, actions=actions, rewards=np.zeros(T, np.float32),
                                action_names=np.array(ACTION_NAMES), env="toy:square", policy="random",
                                frame_skip=1)
            paths.append(path)
    return paths
