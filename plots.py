"""Pictures of results: frame grids, training curves, bar charts and the LAM's confusion matrix.

Every number the scripts report comes with a picture next to it: train.py's samples.png
and curves.png, evaluate.py's rollouts, tokens (paper Fig. 5), uncertainty (paper Fig. 6), horizon and
comparison charts and lam_agreement.png, agent.py's curves.png and report.png. Not a script: they
import it. Importing it selects matplotlib's Agg backend (files only, no window), so evaluate.py
imports it only where it writes pictures: its --play window needs an interactive backend.
"""
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402


# ---------------------------------------------------------------------------
# train.py: samples.png and curves.png
# ---------------------------------------------------------------------------

def save_samples(real, pred, path):
    """Per clip a row of real frames above a row of the model's frames; columns are time."""
    rows = torch.stack([real, pred], 1).flatten(0, 1).float()  # [2n, T, H, W, 3]
    n, T, H, W, C = rows.shape
    plt.imsave(path, rows.permute(0, 2, 1, 3, 4).reshape(n * H, T * W, C).clamp(0, 1).cpu().numpy())


def plot_training_curves(history, path):
    """Loss and the quality figures (PSNR, masked-token accuracy) against step, train and val."""
    keys = [k for k in ("loss", "psnr", "acc") if any(k in r for r in history)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split in ("train", "val"):
            points = [(r["step"], r[key]) for r in history if r["split"] == split and key in r]
            if points:
                ax.plot(*zip(*points), label=split, marker="o" if split == "val" else None)
        ax.set(xlabel="step", title=key + (" (dB)" if key == "psnr" else ""), yscale="log" if key == "loss" else "linear")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------
# evaluate.py: labelled frame grids, PSNR by horizon, comparison bars, LAM agreement
# ---------------------------------------------------------------------------

def save_grid(rows, titles, path, colorbar=None):
    """One picture of rows of frames: rows is {label: float [T, H, W, 3] in [0, 1]}; columns are time steps."""
    framed = {k: np.pad((v * 255 + 0.5).astype(np.uint8), ((0, 0), (0, 2), (0, 2), (0, 0)), constant_values=255)
              for k, v in rows.items()}  # white gaps; uint8 draws faster than floats
    H, W = next(iter(framed.values())).shape[1:3]
    grid = np.concatenate([np.concatenate(list(frames), 1) for frames in framed.values()], 0)  # [rows*H, T*W, 3]
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 70 + 2, grid.shape[0] / 70 + 0.5))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks(np.arange(len(titles)) * W + W / 2, titles, fontsize=7)
    ax.set_yticks(np.arange(len(rows)) * H + H / 2, list(rows), fontsize=7)
    ax.tick_params(length=0, labeltop=True, labelbottom=False)
    if colorbar:
        fig.colorbar(plt.cm.ScalarMappable(cmap=colorbar[0]), ax=ax, label=colorbar[1], fraction=0.02)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def colour_map(values, name):
    """values in [0, 1], any shape -> RGB [..., 3] in [0, 1] through the matplotlib colour map `name`."""
    return plt.get_cmap(name)(values)[..., :3]


def plot_horizon(curves, path):
    """PSNR against the predicted frame: curves is {label: PSNR (dB) of predicted frames 1, 2, ...}."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set(xlabel="predicted frame (horizon)", ylabel="PSNR (dB)", title="PSNR by horizon")
    ax.legend(fontsize=7), fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def plot_comparison(bars, titles, floor, path):
    """Two bar charts side by side: bars is {label: (PSNR, delta_t PSNR)}, titles theirs; floor (the PSNR of
    copying the last context frame) is a dashed line on the first."""
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.4 * len(bars)), 3.5))
    for ax, k, title in zip(axes, range(2), titles):
        ax.bar(list(bars), [v[k] for v in bars.values()], color="tab:blue")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")  # long run names must not overlap
    axes[0].axhline(floor, color="grey", ls="--", label=f"copy last frame {floor:.1f}"), axes[0].legend(fontsize=7)
    axes[0].set_ylim(min(floor, *(v[0] for v in bars.values())) - 2, None)
    fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def plot_confusion(confusion, action_names, path):
    """The LAM's codes against the true actions: counts [codes, true actions], each row shaded by its shares."""
    fig, ax = plt.subplots(figsize=(1 + 0.6 * confusion.shape[1], 1 + 0.4 * confusion.shape[0]))
    ax.imshow(confusion / confusion.sum(1, keepdims=True).clip(1), cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(confusion.shape[1]), yticks=range(confusion.shape[0]), xlabel="true action", ylabel="latent code")
    ax.set_xticklabels(action_names[:confusion.shape[1]], fontsize=7)
    for (k, a), n in np.ndenumerate(confusion):
        ax.text(a, k, n, ha="center", va="center", fontsize=6)
    fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


# ---------------------------------------------------------------------------
# agent.py: training curves and the exploration report
# ---------------------------------------------------------------------------

def plot_agent_curves(rows, path):
    """The agent's log rows: mean reward per step and episode length against agent steps."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, title in zip(axes, ("reward", "episode_length"), ("mean reward per step", "episode length, steps")):
        ax.plot([r["steps"] for r in rows if r[key] is not None], [r[key] for r in rows if r[key] is not None])
        ax.set(xlabel="agent steps", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_exploration(results, title, path):
    """One bar per agent ({name: report figures}) for the AutoExplore reward, distinct frames and x displacement."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key in zip(axes, ("autoexplore_reward", "distinct_frames", "x_displacement")):
        ax.bar(list(results), [r[key] or 0 for r in results.values()], color=["grey", "tab:blue"])
        ax.set_title(key.replace("_", " "))
        if results["random"][key] is None:
            ax.text(0.5, 0.5, "the game names no x in RAM:\nsee distinct frames", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
