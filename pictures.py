"""The pictures of an evaluation: frames as a labelled grid (PNG) or an animated GIF, both nearest-pixel, and
the charts of its results (PSNR by horizon, models side by side, the LAM's codes against the true actions),
and train.py's samples picture and training curves.

evaluate.py draws its rollouts, token maps, uncertainty maps and charts with these, play.py the frames it played:

    save_grid({"ground truth": real, "model": fake}, ["t0", "t1", ...], "rollouts.png")   # float [T, H, W, 3] in [0, 1]
    save_gif("play.gif", [to_uint8(frame) for frame in fake])

Every file is written atomically (episodes.write_atomic): a full disk names it and never leaves half a picture.
"""
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.image import imsave

from episodes import write_atomic


def to_uint8(frames):
    """float numpy frames in [0, 1] -> uint8."""
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def save_gif(path, frames, fps=4, scale=4):
    """frames: list of uint8 [H, W, 3] -> an animated GIF, upscaled `scale` times with nearest pixels."""
    from PIL import Image  # Pillow comes with matplotlib
    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    write_atomic(path, lambda f: images[0].save(f, "GIF", save_all=True, append_images=images[1:],
                                                duration=1000 // fps, loop=0))


def save_figure(fig, path, **kwargs):
    """A matplotlib figure as a PNG at `path` (kwargs go to savefig)."""
    write_atomic(path, lambda f: fig.savefig(f, format="png", **kwargs))


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
    save_figure(fig, path, dpi=100, bbox_inches="tight")


def plot_horizon(curves, path):
    """PSNR against the predicted frame: curves is {label: PSNR (dB) of predicted frames 1, 2, ...}."""
    fig = Figure(figsize=(5, 3.5), layout="tight")
    ax = fig.subplots()
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set(xlabel="predicted frame (horizon)", ylabel="PSNR (dB)", title="PSNR by horizon")
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)


def plot_comparison(bars, titles, floor, path):
    """Two bar charts side by side: bars is {label: (PSNR, delta_t PSNR)}, titles theirs; floor (the PSNR of
    copying the last context frame) is a dashed line on the first."""
    fig = Figure(figsize=(max(6, 1.4 * len(bars)), 3.5), layout="tight")
    axes = fig.subplots(1, 2)
    for ax, k, title in zip(axes, range(2), titles):
        ax.bar(list(bars), [v[k] for v in bars.values()], color="tab:blue")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        for label in ax.get_xticklabels():  # long run names must not overlap
            label.set(ha="right", rotation_mode="anchor")
    axes[0].axhline(floor, color="grey", ls="--", label=f"copy last frame {floor:.1f}")
    axes[0].legend(fontsize=7)
    axes[0].set_ylim(min(floor, *(v[0] for v in bars.values())) - 2, None)
    save_figure(fig, path, dpi=100)


def plot_confusion(confusion, action_names, path):
    """The LAM's codes against the true actions: counts [codes, true actions], each row shaded by its shares."""
    fig = Figure(figsize=(1 + 0.6 * confusion.shape[1], 1 + 0.4 * confusion.shape[0]), layout="tight")
    ax = fig.subplots()
    ax.imshow(confusion / confusion.sum(1, keepdims=True).clip(1), cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(confusion.shape[1]), yticks=range(confusion.shape[0]), xlabel="true action", ylabel="latent code")
    ax.set_xticklabels(action_names[:confusion.shape[1]], fontsize=7)
    for (k, a), n in np.ndenumerate(confusion):
        ax.text(a, k, n, ha="center", va="center", fontsize=6)
    save_figure(fig, path, dpi=100)


def save_samples(real, pred, path):
    """Per clip a row of real frames above a row of the model's frames; columns are time. float [n, T, H, W, 3] each."""
    rows = np.stack([real, pred], 1).reshape(-1, *real.shape[1:])  # [2n, T, H, W, 3]
    n, T, H, W, C = rows.shape
    picture = np.clip(rows.transpose(0, 2, 1, 3, 4).reshape(n * H, T * W, C), 0, 1)
    write_atomic(path, lambda f: imsave(f, picture, format="png"))


def plot_training_curves(log_rows, path):
    """Loss and the quality figures (PSNR, masked-token accuracy) against step, train and val."""
    keys = [k for k in ("loss", "psnr", "acc") if any(k in r for r in log_rows)]
    fig = Figure(figsize=(5 * len(keys), 3.5), layout="tight")
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        for split in ("train", "val"):
            points = [(r["step"], r[key]) for r in log_rows if r["split"] == split and key in r]
            if points:
                ax.plot(*zip(*points), label=split, marker="o" if split == "val" else None)
        ax.set(xlabel="step", title=key + (" (dB)" if key == "psnr" else ""), yscale="log" if key == "loss" else "linear")
        ax.legend()
    save_figure(fig, path)
