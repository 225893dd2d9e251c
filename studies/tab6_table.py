"""Tab. 6's table and figure from a studies/tab6.sh run: where each agent's episodes leave the world model.

The paper reads Tab. 6 as "the lower the world model's fidelity on an agent's episodes, the better that agent
finds what the model gets wrong"; AutoExplore should rank first (lowest PSNR). This script puts the four
policies' one-go evaluations side by side with the paper's numbers, ranks them by PSNR, says whether
AutoExplore's lead holds beyond the standard errors, and adds each agent's learning and the exploration report.

    python studies/tab6_table.py --out runs/tab6

Reads OUT/eval/{random,rf,vae,autoexplore}/metrics.json (evaluate.py), OUT/agent-*/log.jsonl (agent.py),
OUT/report/report.md (agent.py --report) and OUT/eval/compare/results.md (evaluate.py --compare).
Writes OUT/results.md and OUT/tab6.png. Needs numpy and matplotlib only.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

ROWS = {"random": "uniform random (our control)", "rf": "RF", "vae": "VAE", "autoexplore": "AutoExplore"}
# The paper's Tab. 6 (PSNR / SSIM / delta PSNR on 1k episodes of each agent); it has no random row
PAPER = {"rf": ("28.58 / 0.94 / 0.181", "24.82 / 0.78 / 0.44"), "vae": ("24.40 / 0.86 / 0.087", "16.57 / 0.5 / 0.072"),
         "autoexplore": ("23.81 / 0.85 / 0.065", "15.20 / 0.41 / 0.070")}  # SuperMarioBros, AdventureIslandII


def pm(value, se, digits=2):
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def fidelity_table(runs):
    """runs: {row: metrics.json} -> (markdown lines, rank of each row by one-go PSNR, 1 = lowest)."""
    order = sorted(runs, key=lambda r: runs[r]["rows"]["one-go"]["psnr"])
    rank = {r: order.index(r) + 1 for r in runs}
    base = runs["random"]["rows"]["one-go"]
    lines = ["| policy | windows | one-go PSNR (dB) | SSIM | delta_t PSNR (random) | delta_t PSNR (swap) | copy floor (dB) | "
             "PSNR above floor | PSNR minus random's | rank (1: lowest PSNR) |", "|---" * 10 + "|"]
    for row, metrics in runs.items():
        m, floor = metrics["rows"]["one-go"], metrics["rows"]["copy-last-frame"]
        gap = "-" if row == "random" else pm(m["psnr"] - base["psnr"], math.hypot(m["psnr_se"], base["psnr_se"]))
        lines.append(f"| {ROWS[row]} | {metrics['windows']} | {pm(m['psnr'], m['psnr_se'])} | {pm(m['ssim'], m['ssim_se'], 3)} | "
                     f"{pm(m['delta_psnr'], m['delta_psnr_se'])} | {pm(m['delta_psnr_swap'], m['delta_psnr_swap_se'])} | "
                     f"{pm(floor['psnr'], floor['psnr_se'])} | {m['psnr'] - floor['psnr']:+.2f} | {gap} | {rank[row]} |")
    return lines, rank


def verdict(runs, rank):
    """Plain sentences: AutoExplore's rank, and whether its PSNR is below every other row's beyond the errors."""
    psnr = {r: (m["rows"]["one-go"]["psnr"], m["rows"]["one-go"]["psnr_se"]) for r, m in runs.items()}
    ours = psnr["autoexplore"]
    others = {r: v for r, v in psnr.items() if r != "autoexplore"}
    beyond = all(ours[0] + ours[1] < p - se for p, se in others.values())  # the ±1 s.e. intervals do not overlap
    sigmas = lambda p, se: (p - ours[0]) / math.hypot(se, ours[1]) if se or ours[1] else math.copysign(math.inf, p - ours[0])
    gaps = ", ".join(f"{ROWS[r]} {p - ours[0]:+.2f} dB ({sigmas(p, se):+.1f} s.e.)" for r, (p, se) in others.items())
    lowest = rank["autoexplore"] == 1
    return [f"AutoExplore ranks {rank['autoexplore']} of {len(runs)} by one-go PSNR (1: the world model's lowest). "
            f"Its episodes give the world model its lowest PSNR: **{'yes' if lowest else 'no'}**; beyond the standard "
            f"errors (its PSNR + s.e. below every other row's PSNR - s.e.): **{'yes' if lowest and beyond else 'no'}**.",
            f"Each row's PSNR minus AutoExplore's: {gaps}."]


def paper_table(runs):
    """The paper's Tab. 6 beside our one-go numbers (PSNR / SSIM / delta_t PSNR, random protocol)."""
    lines = ["| agent | paper: SuperMarioBros | paper: AdventureIslandII | ours |", "|---|---|---|---|"]
    for row, metrics in runs.items():
        m = metrics["rows"]["one-go"]
        mario, island = PAPER.get(row, ("-", "-"))
        lines.append(f"| {ROWS[row]} | {mario} | {island} | {m['psnr']:.2f} / {m['ssim']:.3f} / {m['delta_psnr']:.3f} |")
    return lines


def learning_table(out, agents):
    """Per agent, from its log.jsonl: steps, minutes, the final entropy, its intrinsic reward against random's level."""
    lines = ["| agent | steps (random + PPO updates) | minutes | final entropy (ln 5 = 1.609) | reward per step: random's level | "
             "first PPO update | last 3 PPO updates | game return per episode, last 3 PPO updates |", "|---" * 8 + "|"]
    for row in agents:
        log = [json.loads(line) for line in (out / f"agent-{row}" / "log.jsonl").read_text().splitlines()]
        random, ppo = [r for r in log if r["policy"] == "random"], [r for r in log if r["policy"] == "ppo"]
        if not ppo:
            lines.append(f"| {ROWS[row]} | {log[-1]['steps']} ({len(random)} + 0): no PPO update |" + " - |" * 6)
            continue
        minutes = sum(r["steps"] / r["update"] / r["steps_per_s"] for r in log) / 60  # an update's steps / its rate
        level = pm(np.mean([r["reward"] for r in random]), math.sqrt(sum(r["reward_se"] ** 2 for r in random)) / len(random), 3) if random else "-"
        returns = [r["game_return"] for r in ppo[-3:] if r["game_return"] is not None]
        lines.append(f"| {ROWS[row]} | {log[-1]['steps']} ({len(random)} + {len(ppo)}) | {minutes:.1f} | {ppo[-1]['entropy']:.3f} | "
                     f"{level} | {ppo[0]['reward']:.3f} | {np.mean([r['reward'] for r in ppo[-3:]]):.3f} | "
                     f"{f'{np.mean(returns):.1f}' if returns else '-'} |")
    return lines + ["", "The curiosity rewards fall as the forward model learns, whatever the policy plays, so random's level "
                    "(its first rollouts, before f has learnt) is no bar for RF and VAE: their entropy shows whether the policy learnt."]


def plot(runs, rank, path):
    """Each row's one-go PSNR ± s.e. with its own copy floor, and its delta_t PSNR by protocol."""
    names = [ROWS[r].split(" (")[0] for r in runs]
    x = np.arange(len(runs))
    fig = Figure(figsize=(10, 3.6), layout="tight")
    left, right = fig.subplots(1, 2)
    one_go = [m["rows"]["one-go"] for m in runs.values()]
    floors = [m["rows"]["copy-last-frame"]["psnr"] for m in runs.values()]
    colours = ["tab:red" if r == "autoexplore" else "grey" if r == "random" else "tab:blue" for r in runs]
    left.bar(x, [m["psnr"] for m in one_go], yerr=[m["psnr_se"] for m in one_go], color=colours, capsize=4)
    left.scatter(x, floors, marker="_", s=600, color="black", label="copy floor of its episodes", zorder=3)
    left.set_xticks(x, [f"{n}\nrank {rank[r]}" for n, r in zip(names, runs)])
    low = min(min(floors), min(m["psnr"] - m["psnr_se"] for m in one_go))
    left.set_ylim(low - 1, None)
    left.set(ylabel="one-go PSNR (dB)", title=f"AutoExplore ranks {rank['autoexplore']} of {len(runs)} (1: the lowest PSNR)")
    left.legend(fontsize=7)
    for k, (key, label) in enumerate((("delta_psnr", "random actions"), ("delta_psnr_swap", "one action swapped"))):
        right.bar(x + (k - 0.5) * 0.4, [m[key] for m in one_go], 0.4, yerr=[m[f"{key}_se"] for m in one_go], capsize=3, label=label)
    right.set_xticks(x, names)
    right.set(ylabel="dB", title="delta_t PSNR (t = 4)")
    right.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/tab6", help="the studies/tab6.sh output folder (default runs/tab6)")
    out = Path(p.parse_args().out)
    runs = {row: json.loads((out / "eval" / row / "metrics.json").read_text()) for row in ROWS}
    first = runs["random"]
    game = str(np.load(next((out / "data" / "random").rglob("*.npz")))["env"])
    table, rank = fidelity_table(runs)
    compare = (out / "eval" / "compare" / "results.md").read_text().split("\n", 1)[1].replace("(results.png)", "(eval/compare/results.png)")
    text = [f"# Tab. 6: where each agent's episodes leave the world model ({game})", "",
            f"The pretrained world model ({first['dynamics']}) one-go on {first['windows']} windows (2 context + 10 "
            f"predicted frames; of those one every 20 frames, spread evenly) of each policy's episodes, the same number of frames each; MaskGIT "
            f"{first['steps']} steps, temperature {first['temperature']}. ± is the standard error across windows; the "
            "gap to random's has the s.e. of a difference. Lower PSNR, SSIM and delta_t PSNR: the agent found more "
            "of what the model gets wrong.", "", *table, "", *verdict(runs, rank), "", "![tab6](tab6.png)", "",
            "## The paper's Tab. 6 beside ours (PSNR / SSIM / delta PSNR)", "", *paper_table(runs), "",
            "Ours: one-go PSNR / SSIM / delta_t PSNR with random actions (Genie's protocol).", "",
            "## The agents' learning (agent.py's log.jsonl)", "", *learning_table(out, [r for r in ROWS if r != "random"]), "",
            *(f"![{r} curves](agent-{r}/curves.png)" for r in ROWS if r != "random"), "",
            "## Exploration without the world model (agent.py --report)", "",
            (out / "report" / "report.md").read_text().strip(), "", "![report](report/report.png)", "",
            "## Every row of the evaluations (evaluate.py --compare)", compare]
    (out / "results.md").write_text("\n".join(text) + "\n")
    plot(runs, rank, out / "tab6.png")
    print("\n".join(text[:text.index("![tab6](tab6.png)")]))


if __name__ == "__main__":
    main()
