"""evaluate.py's reports: metrics.json, results.md and the pictures of one evaluation, and --compare's one
table and figure over several (GenieRedux paper Tabs. 2, 4 and 5). Every table carries the tokenizer's
reconstruction (the ceiling), the copy of the last context frame (the floor) and standard errors.

    python evaluate.py --compare runs/eval_a runs/eval_b --out runs/compare
"""
import itertools
import json
from pathlib import Path

import matplotlib
import numpy as np

from episodes import write_atomic
from evaluate import ACTION_LETTERS, CONTEXT, DELTA_KEYS, DELTA_T, HORIZON
from metrics import PSNR_CAP
from pictures import plot_comparison, plot_confusion, plot_horizon, save_gif, save_grid, to_uint8


ROW_NAMES = {"one-go": "dynamics, one-go", "autoregressive": "dynamics, autoregressive",
             "tokenizer": "tokenizer reconstruction (ceiling)", "lam": "LAM reconstruction",
             "copy-last-frame": "copy last context frame (floor)"}


def protocols_of(metrics):
    """The delta_t PSNR protocols an evaluation reports."""
    return [p for p, key in DELTA_KEYS.items() if key in metrics["delta_protocols"]]


def header(protocols):
    """The table's header after the label column: one delta_t PSNR column per protocol, named by it."""
    deltas = "".join(f" delta_t PSNR (t={DELTA_T}, {p}) ± s.e. |" for p in protocols)
    return [f"| PSNR (dB) ± s.e. | SSIM |{deltas} FID |", "|---|---|---|" + "---|" * (len(protocols) + 1)]


def cells(m, protocols):
    """One row's numbers as table cells; ± is the standard error across windows; "-" where a row has no such number."""
    deltas = "".join(f" {m[k]:.2f} ± {m[k + '_se']:.2f} |" if k in m else " - |" for k in map(DELTA_KEYS.get, protocols))
    fid = "-" if "fid" not in m else "unavailable" if m["fid"] is None else f"{m['fid']:.2f}"
    se = f" ± {m['psnr_se']:.2f}" if "psnr_se" in m else ""
    return f"{m['psnr']:.2f}{se} | {m['ssim']:.4f} |{deltas} {fid} |"


def results_table(metrics):
    """The markdown table of results.md: one row per model, baseline and ceiling."""
    protocols = protocols_of(metrics)
    top, rule = header(protocols)
    lines = ["| " + top, rule] + [f"| {ROW_NAMES[row]} | {cells(m, protocols)}" for row, m in metrics["rows"].items()]
    return "\n".join(lines + notes(metrics))


def notes(metrics):
    """The lines under a table: what each delta_t PSNR column means, and why FID is missing."""
    lines = [f"delta_t PSNR, {text}." for text in metrics["delta_protocols"].values()]
    if metrics.get("fid_unavailable"):
        lines.append(f"FID unavailable: {metrics['fid_unavailable']}")
    return [f"\n{line}" for line in lines]


def sampling(metrics):
    """How the frames were sampled, for the text above a table."""
    anneal = " annealed linearly to 0 over the steps" if metrics["anneal"] else ""
    order = f", one-go frame order {metrics['frame_order']} per frame" if metrics["frame_order"] else ""
    kept = ", unchanged codes keep their pixels (--keep-unchanged)" if metrics.get("keep_unchanged") else ""
    return f"MaskGIT {metrics['steps']} steps, temperature {metrics['temperature']}{anneal}{order}{kept}"


def write_report(out, metrics, sample, uncertainty):
    """metrics.json, results.md, horizon.png, rollouts.png/.gif, tokens.png, uncertainty.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    write_atomic(
        out / "results.md",
        f"# Evaluation of {metrics.get('dynamics', 'a model')}\n\n{metrics['windows']} windows ({CONTEXT} context + "
        f"{HORIZON} predicted frames) of {metrics.get('data', 'episodes')}; {sampling(metrics)}; "
        f"PSNR capped at {PSNR_CAP:.1f} dB (8-bit rounding noise).\n\n"
        f"{results_table(metrics)}\n\n![PSNR by horizon](horizon.png)\n![rollouts](rollouts.png)\n")
    plot_horizon({ROW_NAMES[row]: m["psnr_by_horizon"] for row, m in metrics["rows"].items()}, out / "horizon.png")

    letters = [ACTION_LETTERS[a] if a < len(ACTION_LETTERS) else str(a) for a in sample["actions"].tolist()]
    titles = [f"ctx {t}" if t < CONTEXT else f"+{t - CONTEXT + 1} {letters[t - 1]}" for t in range(CONTEXT + HORIZON)]
    clips = {k: v.clamp(0, 1).numpy() for k, v in sample["clips"].items()}
    save_grid(clips, titles, out / "rollouts.png")
    save_gif(out / "rollouts.gif", [to_uint8(np.concatenate([c[t] for c in clips.values()], 1))
                                    for t in range(CONTEXT + HORIZON)], scale=2)  # left to right: the rows of rollouts.png
    truth, tokens = clips["ground truth"], sample["tokens"].numpy()  # [T, H, W, 3], [T, h, w]
    scale = truth.shape[1] // tokens.shape[1]  # pixels per token
    palette = np.random.default_rng(0).random((tokens.max() + 1, 3))  # paper Fig. 5: one fixed colour per code id
    token_map = palette[tokens].repeat(scale, 1).repeat(scale, 2)
    save_grid({"frames": truth, "token ids": token_map}, titles, out / "tokens.png")
    heat = matplotlib.colormaps["magma"](uncertainty.numpy())[..., :3].repeat(scale, 1).repeat(scale, 2)  # paper Fig. 6
    save_grid({"frames": truth[1:], "uncertainty": heat}, titles[1:], out / "uncertainty.png",
              colorbar=("magma", "entropy / ln(codes)"))


def purity_line(agreement):
    """The LAM's purity against its chance level, in words (evaluations before the chance level give purity alone)."""
    line = f"Purity {agreement['purity']:.3f} (share of transitions whose true action is their code's majority)"
    if "chance" not in agreement:
        return line + "."
    return (f"{line} against chance {agreement['chance']:.3f} ± {agreement['chance_sd']:.3f} (the same codes, the true "
            f"actions shuffled; mean ± sd of 100 shuffles).")


def write_agreement(out, agreement, action_names):
    """The LAM's codes against the true actions: a table appended to results.md and lam_agreement.png."""
    confusion = np.array(agreement["confusion"])  # [codes, true actions]
    rows = [f"| {k} | {confusion[k].sum()} | {action_names[m] if m >= 0 else 'unused'} | "
            f"{confusion[k].max() / max(1, confusion[k].sum()):.2f} |" for k, m in enumerate(agreement["majority"])]
    table = (f"\n## Latent actions against true actions\n\n{purity_line(agreement)}\n\n"
             "| code | transitions | majority action | purity |\n"
             "|---|---|---|---|\n" + "\n".join(rows) + "\n\n![agreement](lam_agreement.png)\n")
    results = Path(out) / "results.md"
    write_atomic(results, results.read_text() + table)  # below the evaluation's table
    plot_confusion(confusion, action_names, Path(out) / "lam_agreement.png")


def paired_differences(runs):
    """Model rows set against each other on the same windows: for each dynamics row over the copy floor, then for
    every two runs on the same episodes, the mean of the per-window PSNR differences ± their standard error. The
    windows' own difficulty, shared by both rows, cancels, so this error is the one that says whether two rows
    differ (two rows' own errors overlap far more easily)."""
    def by_window(metrics, row):
        return np.array(metrics["rows"].get(row, {}).get("psnr_by_window", []))

    def line(label, a, b):
        d = a - b
        return f"| {label} | {d.mean():+.2f} ± {d.std() / np.sqrt(len(d)):.2f} |"

    models = [(name, row) for name, m in runs.items() for row in ("one-go", "autoregressive") if len(by_window(m, row))]
    lines = [line(f"{name}, {row} - floor", by_window(runs[name], row), by_window(runs[name], "copy-last-frame"))
             for name, row in models if len(by_window(runs[name], "copy-last-frame"))]
    for (a, row_a), (b, row_b) in itertools.combinations(models, 2):
        same_windows = (runs[a].get("data"), runs[a]["windows"]) == (runs[b].get("data"), runs[b]["windows"])
        if row_a == row_b and same_windows:
            lines.append(line(f"{a} - {b}, {row_a}", by_window(runs[a], row_a), by_window(runs[b], row_b)))
    if not lines:  # evaluations written before psnr_by_window existed
        return []
    return ["\n\nPaired on the same windows (PSNR difference, dB, ± the standard error of the per-window differences):\n",
            "| rows | difference |", "|---|---|"] + lines


def compare(run_dirs, out, paper=()):
    """One table and one figure over several evaluations on the same test set (loop.sh, paper Tabs. 2, 4, 5).

    run_dirs: evaluate.py output folders (their metrics.json); writes OUT/results.md and OUT/results.png.
    paper: (label, PSNR, SSIM, FID or None) rows of the paper's own numbers, added under ours for reference.
    """
    runs = {Path(d).name: json.loads((Path(d) / "metrics.json").read_text()) for d in run_dirs}
    protocols = [p for p in DELTA_KEYS if any(p in protocols_of(m) for m in runs.values())]
    top, rule = header(protocols)
    lines, bars, shown = ["| model " + top, rule], {}, (protocols or ["random"])[0]  # the bars: the first protocol
    key = DELTA_KEYS[shown]
    floor_run = {}  # the floor depends only on the episodes: the first run of each data folder shows it
    for name, metrics in runs.items():
        floor_run.setdefault(metrics.get("data"), name)
    for name, metrics in runs.items():
        for row, m in metrics["rows"].items():
            if row == "copy-last-frame" and floor_run[metrics.get("data")] != name:
                continue
            label = ROW_NAMES[row] if row == "copy-last-frame" and len(floor_run) == 1 else f"{name}, {ROW_NAMES[row]}"
            lines.append(f"| {label} | {cells(m, protocols)}")
            if key in m:
                bars[f"{name}\n{row}"] = (m["psnr"], m[key])
    for label, psnr_db, ssim_value, fid in paper:  # no standard errors: the paper gives none
        m = {"psnr": psnr_db, "ssim": ssim_value, **({"fid": fid} if fid is not None else {})}
        lines.append(f"| paper: {label} | {cells(m, protocols)}")
    first = next(iter(runs.values()))
    merged = {"delta_protocols": {k: v for m in runs.values() for k, v in m["delta_protocols"].items()},
              "fid_unavailable": first.get("fid_unavailable")}
    purities = [f"\n{name}'s LAM: {purity_line(m['lam_agreement'])}" for name, m in runs.items() if m.get("lam_agreement")]
    where = first.get("data", "the test set") if len(floor_run) == 1 else "each run's own episodes: " + ", ".join(map(str, floor_run))
    Path(out).mkdir(parents=True, exist_ok=True)
    write_atomic(
        Path(out) / "results.md",
        f"# Results\n\n{first['windows']} test windows of {where} ({CONTEXT} context + "
        f"{HORIZON} predicted frames), {sampling(first)}.\n\n"
        + "\n".join(lines + notes(merged) + purities + paired_differences(runs)) + "\n\n![results](results.png)\n")
    floor = first["rows"]["copy-last-frame"]["psnr"]
    plot_comparison(bars, ("PSNR (dB)", f"delta_t PSNR (t={DELTA_T}, {shown})"), floor, Path(out) / "results.png")
    print((Path(out) / "results.md").read_text())
