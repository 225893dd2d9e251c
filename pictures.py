"""Frames as pictures: a labelled grid of rows of frames (PNG) and an animated GIF, both nearest-pixel.

evaluate.py draws its rollouts, token maps and uncertainty maps with these, play.py the frames it played:

    save_grid({"ground truth": real, "model": fake}, ["t0", "t1", ...], "rollouts.png")   # float [T, H, W, 3] in [0, 1]
    save_gif("play.gif", [to_uint8(frame) for frame in fake])
"""
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure


def to_uint8(frames):
    """float numpy frames in [0, 1] -> uint8."""
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def save_gif(path, frames, fps=4, scale=4):
    """frames: list of uint8 [H, W, 3] -> an animated GIF, upscaled `scale` times with nearest pixels."""
    from PIL import Image  # Pillow comes with matplotlib
    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def save_grid(rows, titles, path, colorbar=None):
    """One picture of rows of frames: rows is {label: float [T, H, W, 3] in [0, 1]}; columns are time steps."""
    framed = {k: np.pad(to_uint8(v), ((0, 0), (0, 2), (0, 2), (0, 0)), constant_values=255)
              for k, v in rows.items()}  # white gaps; uint8 draws faster than floats
    H, W = next(iter(framed.values())).shape[1:3]
    grid = np.concatenate([np.concatenate(list(frames), 1) for frames in framed.values()], 0)  # [rows*H, T*W, 3]
    fig = Figure(figsize=(grid.shape[1] / 70 + 2, grid.shape[0] / 70 + 0.5))
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks(np.arange(len(titles)) * W + W / 2, titles, fontsize=7)
    ax.set_yticks(np.arange(len(rows)) * H + H / 2, list(rows), fontsize=7)
    ax.tick_params(length=0, labeltop=True, labelbottom=False)
    if colorbar:
        fig.colorbar(ScalarMappable(cmap=colorbar[0]), ax=ax, label=colorbar[1], fraction=0.02)
    fig.savefig(path, dpi=100, bbox_inches="tight")
