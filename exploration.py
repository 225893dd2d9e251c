"""What each policy's episodes reached, measured without the world model: the exploration report.

Reads episode folders of any policy (random, AutoExplore, an env-reward agent) and writes OUT/report.json,
report.md and report.png: per episode the game's return, the steps alive, the distinct coarse pictures
reached and the entropy of the actions played; with --dynamics also the AutoExplore reward of every 4th
step, exactly as agent.py pays it. It runs as `agent.py --report` (flags there):

    python agent.py --report --data data/random data/explore --dynamics runs/dynamics/ckpt.pt --out runs/report
"""
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from agent import world_model_uncertainty
from checkpoints import load_world_model, read_checkpoint
from envs import ACTION_NAMES
from episodes import find_episodes, load_episode, write_atomic
from pictures import save_figure


def coverage(frames, side=8, levels=4):
    """How many distinct coarse pictures were seen after each frame: uint8 [N, H, W, 3] -> int [N].

    A frame is shrunk to side x side cells (cell averages) with `levels` values per colour channel, so
    small changes (a flicker, a moving enemy) do not count as new places; only reaching new screens does.
    It needs no world model: the measure of how much of the game an agent reaches.
    """
    N, H, W, _ = frames.shape
    coarse = frames.reshape(N, side, H // side, side, W // side, 3).mean((2, 4)).astype(np.uint16) * levels // 256
    seen, counts = set(), np.zeros(N, np.int64)
    for i, picture in enumerate(coarse.astype(np.uint8)):
        seen.add(picture.tobytes())
        counts[i] = len(seen)
    return counts


def action_entropy(actions):
    """The entropy (nats) of how often an episode plays each of the 5 actions: ln 5 = 1.609 for uniform play.
    No exploration measure, but one that tells a policy's episodes from random's without a world model."""
    share = np.bincount(actions, minlength=len(ACTION_NAMES)) / max(1, len(actions))
    return float(-(share[share > 0] * np.log(share[share > 0])).sum())


def mean_se(values):
    """(mean, standard error of the mean) of a list of numbers; (nan, nan) of none."""
    values = np.asarray(values, np.float64)
    if not len(values):
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def final_entropy(agent_path):
    """The policy entropy of an agent.py checkpoint's last PPO update (ln 5 = 1.609 is the uniform policy)."""
    rows = [r for r in read_checkpoint(agent_path, "--agents", kind="agent")["log"] if r.get("policy", "ppo") == "ppo"]
    return rows[-1]["entropy"] if rows else None


def report(args):
    """Each --data folder's episodes, whoever played them: writes OUT/report.json, report.md and report.png.

    Per episode, with no world model: the game's return, the steps alive (of the episodes the game ended:
    one the collector cut at its --max-steps or frame budget says only that the player lived longer), the
    distinct coarse pictures reached and the entropy of the actions played; over the folder, the coarse
    pictures reached in the first F frames, F the same for every folder (the smallest folder's frames).
    With --dynamics also the AutoExplore reward, exactly as the agent is paid, of every 4th step t >= 4.
    """
    from tqdm import tqdm
    world_model = load_world_model(args.dynamics, device=args.device)[:2] if args.dynamics else None
    entropies = {f"agent:{Path(p).parent.name}/{Path(p).name}": final_entropy(p) for p in args.agents or []}
    folders = {}
    for folder in args.data:
        episodes = [load_episode(p, 64) for p in tqdm(find_episodes(folder), desc=f"report {folder}", unit="episode")]
        measures = {"return": [e["rewards"].sum() for e in episodes],
                    "steps_alive": [len(e["actions"]) for e in episodes if not e["truncated"]],  # None (not known) counts
                    "places": [coverage(e["frames"])[-1] for e in episodes], "action_entropy": [action_entropy(e["actions"]) for e in episodes]}
        if world_model is not None:
            per_episode = []
            for e in episodes:  # every 4th step t >= 4: a sample of the steps keeps the report quick
                f, a, steps = e["frames"], e["actions"], range(4, len(e["frames"]), 4)
                if len(steps):  # an episode of 4 frames or fewer has no step with 4 frames before it
                    windows = np.stack([f[t - 4:t - 2] for t in steps]), np.stack([a[t - 4:t] for t in steps])
                    per_episode.append(world_model_uncertainty(world_model, *windows).mean())
            measures["autoexplore_reward"] = per_episode
        policies = sorted({e["policy"] for e in episodes})
        uniform = len(policies) == 1 and policies[0].split(":")[0] == "random"  # "random", or "random:hold8": uniform actions
        folders[str(folder)] = {"policy": ", ".join(policies), "episodes": len(episodes), "frames": sum(len(e["frames"]) for e in episodes),
                                "entropy": math.log(5) if uniform else entropies.get(policies[0]) if len(policies) == 1 else None,
                                **{k: mean_se(v) for k, v in measures.items()}, "_frames": np.concatenate([e["frames"] for e in episodes])}
    budget = min(r["frames"] for r in folders.values())
    for r in folders.values():
        r["curve"] = coverage(r.pop("_frames")[:budget]).tolist()
        r["places_at_budget"] = r["curve"][-1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.json", json.dumps({"frame_budget": budget, "folders": folders}, indent=2))
    keys = [k for k in ("return", "steps_alive", "places", "action_entropy", "autoexplore_reward") if k in next(iter(folders.values()))]
    fmt = lambda m: "-" if math.isnan(m[0]) else f"{m[0]:.3f} ± {m[1]:.3f}" if abs(m[0]) < 10 else f"{m[0]:.1f} ± {m[1]:.1f}"
    lines = ["| episodes | policy | n | policy entropy | " + " | ".join(REPORT_TITLES[k] for k in keys) + f" | places in the first {budget} frames |",
             "|---" * (5 + len(keys)) + "|"]
    for folder, r in folders.items():
        entropy = "-" if r["entropy"] is None else f"{r['entropy']:.3f}"
        lines.append(f"| {folder} | {r['policy']} | {r['episodes']} | {entropy} | " + " | ".join(fmt(r[k]) for k in keys) + f" | {r['places_at_budget']} |")
    write_atomic(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_exploration(folders, keys, budget, out / "report.png")


REPORT_TITLES = {"return": "game return per episode", "steps_alive": "steps alive per episode the game ended",
                 "places": "coarse pictures per episode",
                 "action_entropy": "action entropy per episode", "autoexplore_reward": "AutoExplore reward per step"}


def plot_exploration(folders, keys, budget, path):
    """Coverage curves of every folder on the same frame budget, then a bar with its standard error per measure."""
    fig = Figure(figsize=(4 + 3 * len(keys), 3.2), layout="tight")
    axes = fig.subplots(1, 1 + len(keys))
    colours = [f"C{i}" for i in range(len(folders))]
    for (folder, r), colour in zip(folders.items(), colours):
        axes[0].plot(range(1, budget + 1), r["curve"], color=colour, label=f"{Path(folder).name}: {r['policy']}"[:40])
    axes[0].set(xlabel="frames seen", title="coarse pictures reached")
    axes[0].legend(fontsize=6)
    for ax, key in zip(axes[1:], keys):
        names = [Path(f).name for f in folders]
        ax.bar(names, [r[key][0] for r in folders.values()], yerr=[r[key][1] for r in folders.values()], color=colours, capsize=3)
        ax.set_title(REPORT_TITLES[key], fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    save_figure(fig, path, dpi=100)
