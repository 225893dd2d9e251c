"""Evaluate a world model: fidelity, controllability and pictures.

GenieRedux paper sec. 5 (FID, PSNR, SSIM, and Genie's delta_t PSNR with t = 4). A test
window is 2 context frames + 10 predicted frames, one every 20 frames of an episode, predicted in one
MaskGIT run ("one-go") or frame by frame ("autoregressive"). Every table also has the tokenizer's own
reconstruction (the ceiling) and a copy of the last context frame (the floor); a GenieRedux model
(latent actions) also the LAM's own reconstruction (paper Tab. 2).

    python evaluate.py --dynamics runs/dynamics/ckpt.pt --data data/airstriker --out runs/eval
    python evaluate.py --compare runs/eval_a runs/eval_b --out runs/compare   # one table over several evaluations
    python evaluate.py --compare runs/eval_a --paper "GenieRedux-G" 33.41 0.92 18.88 --out runs/compare

Reads the episodes in DIR/test, else DIR/val, else every .npz under DIR (any episode files), and the
tokenizer checkpoint named in the dynamics checkpoint (or --tokenizer). Writes to --out: metrics.json,
results.md, horizon.png, rollouts.png/.gif, tokens.png, uncertainty.png (reports.py). FID needs the FID Inception
weights (see metrics.py); without them it is reported unavailable. play.py plays the same models.
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from checkpoints import CheckpointError, load_world_model, torch_device
from dynamics import token_entropy
from episodes import EpisodeError, check_writable, find_episodes, folder_lock, load_episode, write_atomic
from metrics import PSNR_CAP, WEIGHTS_NAME, FeatureStats, FIDUnavailable, inception_features, load_inception, psnr, ssim
from tokenizer import keep_unchanged_patches

CONTEXT, HORIZON, STRIDE = 2, 10, 20  # frames given, frames predicted, frames between window starts
DELTA_T = 4  # delta_t PSNR is read at the 4th predicted frame, as in Genie and the paper
# The two ways of making x^' of delta_t PSNR, and the metrics.json key of each ("random" keeps the original one)
DELTA_PROTOCOLS = {"random": "every action from the first predicted frame on replaced by a uniform random one (Genie)",
                   "swap": f"only the action that makes predicted frame {DELTA_T} replaced, uniformly by one of the "
                           "other actions (the authors' code)"}
DELTA_KEYS = {"random": "delta_psnr", "swap": "delta_psnr_swap"}
ACTION_LETTERS = "RLUDJ"  # RIGHT LEFT UP DOWN JUMP as one letter each: picture titles and play.py's --keys


# ---------------------------------------------------------------------------
# Test windows and the evaluation loop (usable on in-memory models)
# ---------------------------------------------------------------------------

def cut_windows(frames, actions, context=CONTEXT, horizon=HORIZON, stride=STRIDE):
    """Windows of one episode: (frames [context+horizon, H, W, 3], actions [context+horizon-1]) every `stride` frames."""
    n = context + horizon
    return [(frames[s:s + n], actions[s:s + n - 1]) for s in range(0, len(frames) - n + 1, stride)]


def test_folder(root):
    """The episodes to test on: DIR/test, else DIR/val, else every .npz under DIR."""
    root = Path(root)
    return next((root / s for s in ("test", "val") if any((root / s).rglob("*.npz"))), root)


def window_count(path):
    """How many test windows cut_windows gives episode `path`, reading its actions alone (a bad file raises)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            steps = len(data["actions"])
    except Exception:
        load_episode(path)  # raises the EpisodeError that names the file and the fault
        raise
    return max(0, (steps + 1 - CONTEXT - HORIZON) // STRIDE + 1)


def load_windows(folder, max_windows=None, resolution=64, spread=True):
    """Test windows of the episodes under `folder` (see test_folder), at most max_windows.

    spread: the max_windows are spaced evenly over all of the folder's windows, so that every episode, and
    every part of an episode, is as likely to be tested (windows of one episode are alike: the first few
    episodes alone would make a small, correlated sample). spread=False: the first max_windows in file order.
    """
    paths = find_episodes(folder)  # EpisodeError names the folder when it holds none
    counts = [window_count(p) for p in paths]
    total, windows, offset = sum(counts), [], 0
    if not total:
        raise EpisodeError(f"no episode of the {len(paths)} under {folder} is long enough: a test window needs "
                           f"{CONTEXT + HORIZON} frames ({CONTEXT} context + {HORIZON} predicted)")
    n = min(total, max_windows or total)
    chosen = np.linspace(0, total - 1, n).round().astype(int) if spread else np.arange(n)  # global window indices
    for path, count in zip(paths, counts):
        picks = chosen[(chosen >= offset) & (chosen < offset + count)] - offset
        if len(picks):
            episode = load_episode(path, resolution)
            cut = cut_windows(episode["frames"], episode["actions"])
            windows += [(cut[i][0].copy(), cut[i][1].copy()) for i in picks]  # copies: the episode's frames are freed
        offset += count
    return windows


def check_actions(windows, num_actions, folder):
    """A model of num_actions actions cannot play episodes whose action ids go beyond them."""
    if max(int(a.max()) for _, a in windows) >= num_actions:
        raise EpisodeError(f"episodes in {folder} use action ids beyond the model's {num_actions} actions: "
                           f"use episodes of the game it was trained on")


def standard_error(values):
    """Standard error of the mean of per-window values [N]: std / sqrt(N) (0 for a single window)."""
    return values.std().item() / math.sqrt(len(values)) if len(values) > 1 else 0.0


def row_metrics(p, s):
    """A table row from per-window, per-predicted-frame PSNR and SSIM [N, HORIZON]; ± is the standard error.
    psnr_by_window lets --compare set two rows against each other window by window."""
    return {"psnr": p.mean().item(), "psnr_se": standard_error(p.mean(1)), "ssim": s.mean().item(),
            "ssim_se": standard_error(s.mean(1)), "psnr_by_horizon": p.mean(0).tolist(), "ssim_by_horizon": s.mean(0).tolist(),
            "psnr_by_window": p.mean(1).tolist()}


def altered_actions(actions, num_actions, random_rng, swap_rng):
    """x^' of delta_t PSNR (sec. 5): the true actions [B, 11] with some replaced, per protocol (DELTA_PROTOCOLS).

    "random": every action that makes a predicted frame is uniform random (it may equal the true one).
    "swap": only actions[:, CONTEXT + DELTA_T - 2], which makes predicted frame DELTA_T, is replaced, by one of
    the other num_actions - 1 actions, each as likely. Both are drawn for every batch, each from its own generator,
    so either protocol's actions are the same whether or not the other is evaluated.
    """
    B = len(actions)
    random = torch.randint(num_actions, (B, HORIZON), generator=random_rng).to(actions.device)
    other = torch.randint(1, num_actions, (B,), generator=swap_rng).to(actions.device)  # true + other: never true
    at = CONTEXT + DELTA_T - 2
    swapped = actions.clone()
    swapped[:, at] = (actions[:, at] + other) % num_actions
    return {"random": torch.cat([actions[:, :CONTEXT - 1], random], 1), "swap": swapped}


@torch.no_grad()
def evaluate_windows(dynamics, tokenizer, windows, modes=("one-go",), steps=25, temperature=0.0,
                     batch_size=8, seed=0, inception=None, device="cpu", protocols=("random",), anneal=False,
                     frame_order=0.25, keep_unchanged=False):
    """Metrics of a dynamics model on test windows: the whole evaluation, without files.

    windows: (frames uint8 [12, H, W, 3], actions int64 [11]) pairs, e.g. from load_windows.
    tokenizer: encode(frames [B, T, H, W, 3]) -> ids [B, T, h, w]; decode(ids, caches) -> (frames, caches);
    decoder_caches(). modes: "one-go" and/or "autoregressive". inception: a metrics.FIDInceptionV3, or None for no FID.
    protocols: "random" and/or "swap", the delta_t PSNR protocols (DELTA_PROTOCOLS).
    anneal, frame_order (one-go only): see Dynamics.generate; frame_order and temperature 0 are ours, not the paper's.
    keep_unchanged: every decoded row (the tokenizer's too) keeps the last context frame's pixels where its codes do not
    change (tokenizer.keep_unchanged_patches; ours, not the paper's).
    Returns (metrics, a JSON-ready dict; sample, the first window's clips, tokens and actions).
    """
    device = torch.device(device)
    rows = [*modes, "tokenizer", "copy-last-frame"]
    branches = {"random": "random actions", "swap": "swapped action"}  # protocol -> its clips' name
    psnrs, ssims = {r: [] for r in rows}, {r: [] for r in rows}
    altered_psnrs = {(m, p): [] for m in modes for p in protocols}  # PSNR(x_t, x^'_t) per window
    features = {r: FeatureStats() for r in ["truth", *rows]}  # Inception features of the frames, for FID
    random_rng, swap_rng, sample = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1), None
    bar = tqdm(range(0, len(windows), batch_size), desc="evaluate", unit="batch")
    for start in bar:
        batch = windows[start:start + batch_size]
        frames = torch.from_numpy(np.stack([f for f, _ in batch])).to(device).float() / 255  # [B, 12, H, W, 3]
        actions = torch.from_numpy(np.stack([a for _, a in batch])).to(device)  # [B, 11]
        altered = altered_actions(actions, dynamics.config.num_actions, random_rng, swap_rng)
        truth = frames[:, CONTEXT:]  # [B, 10, H, W, 3]
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            tokens = tokenizer.encode(frames)  # [B, 12, h, w]
            # the context is decoded once; every row's predicted frames are decoded after its caches
            context_frames, context_decoder = tokenizer.decode(tokens[:, :CONTEXT], tokenizer.decoder_caches())

            def decode_predicted(ids):  # predicted frames alone, on the decoder's keys and values of the context
                decoded = tokenizer.decode(ids, context_decoder)[0].float()
                if not keep_unchanged:
                    return decoded
                return keep_unchanged_patches(decoded, ids, frames[:, CONTEXT - 1], tokens[:, CONTEXT - 1])

            preds = {"tokenizer": decode_predicted(tokens[:, CONTEXT:]),
                     "copy-last-frame": frames[:, CONTEXT - 1:CONTEXT].expand_as(truth)}
            clips = {}
            for mode in modes:
                for name, acts in (("true actions", actions), *((branches[p], altered[p]) for p in protocols)):
                    generator = torch.Generator(device).manual_seed(seed + start)  # every branch: same sampler noise
                    if mode == "one-go":  # all HORIZON frames in one MaskGIT run, the context run once (TimeCache)
                        caches = dynamics.cache(tokens[:, :CONTEXT], acts[:, :CONTEXT - 1])
                        new = dynamics.generate_cached(caches, acts[:, CONTEXT - 1:], steps, temperature, generator,
                                                       anneal, frame_order)
                    else:  # one MaskGIT run per frame, each fed back
                        new = dynamics.generate_autoregressive(tokens[:, :CONTEXT], acts, HORIZON, steps, temperature,
                                                               generator, anneal)[:, CONTEXT:]
                    # x^' is scored at t only, and the decoder is causal: frames after t are decoded for the picture alone
                    shown = HORIZON if name == "true actions" or sample is None else DELTA_T
                    clips[f"{mode}, {name}"] = decode_predicted(new[:, :shown])  # [B, shown, H, W, 3]
                preds[mode] = clips[f"{mode}, true actions"]
                at_t = DELTA_T - 1
                for p in protocols:
                    altered_psnrs[mode, p].append(psnr(truth[:, at_t], clips[f"{mode}, {branches[p]}"][:, at_t]).cpu())
        for row in rows:
            psnrs[row].append(psnr(truth, preds[row]).cpu())
            ssims[row].append(ssim(truth, preds[row]).cpu())
        if inception is not None:
            for row, x in (("truth", truth), *((r, preds[r]) for r in rows)):
                features[row].add(inception_features(inception, x.flatten(0, 1)))
        if sample is None:  # the first window, for the pictures
            sample = {"clips": {"ground truth": frames[0].cpu(),
                                **{k: torch.cat([context_frames[0].float(), v[0]]).cpu() for k, v in clips.items()}},
                      "tokens": tokens[0].cpu(), "actions": actions[0].cpu()}
        bar.set_postfix(psnr=f"{torch.cat(psnrs[rows[0]]).mean():.2f}")

    metrics = {"windows": len(windows), "context": CONTEXT, "horizon": HORIZON, "delta_t": DELTA_T,
               "steps": steps, "temperature": temperature, "anneal": anneal, "frame_order": frame_order,
               "keep_unchanged": keep_unchanged,
               "psnr_cap": PSNR_CAP,
               "delta_protocols": {DELTA_KEYS[p]: f"{p}: {DELTA_PROTOCOLS[p]}" for p in protocols}, "rows": {}}
    for row in rows:
        p, s = torch.cat(psnrs[row]), torch.cat(ssims[row])  # [N, HORIZON]: per window, per predicted frame
        m = metrics["rows"][row] = row_metrics(p, s)
        m["fid"] = features[row].fid(features["truth"]) if inception else None
        for protocol in protocols if row in modes else ():  # delta_t PSNR = PSNR(x_t, x^_t) - PSNR(x_t, x^'_t)
            delta, key = p[:, DELTA_T - 1] - torch.cat(altered_psnrs[row, protocol]), DELTA_KEYS[protocol]  # [N]
            m[key], m[f"{key}_se"] = delta.mean().item(), standard_error(delta)
    return metrics, sample


@torch.no_grad()
def lam_reconstruction(lam, windows, batch_size=8, device="cpu"):
    """The LAM's own reconstruction (paper Tab. 2, "LAM"): each predicted frame of the windows made by the LAM's
    decoder from the frames before it and the latent action its encoder infers from the frame itself.

    Returns a table row as evaluate_windows makes them (no FID).
    """
    device, psnrs, ssims = torch.device(device), [], []
    for start in tqdm(range(0, len(windows), batch_size), desc="LAM reconstruction", unit="batch"):
        frames = torch.from_numpy(np.stack([f for f, _ in windows[start:start + batch_size]])).to(device).float() / 255
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            pred = lam(frames)[0][:, CONTEXT - 1:].float()  # lam predicts frames 1..11; the windows' 10 predicted ones
        psnrs.append(psnr(frames[:, CONTEXT:], pred).cpu())
        ssims.append(ssim(frames[:, CONTEXT:], pred).cpu())
    return row_metrics(torch.cat(psnrs), torch.cat(ssims))


@torch.no_grad()
def token_uncertainty(dynamics, tokens, actions):
    """Per-token entropy of each frame's prediction from the true frames before it (paper Fig. 6).

    tokens [T, h, w], actions [T-1] -> entropy / ln(codebook size), in [0, 1], [T-1, h, w] for frames 1..T-1.
    """
    logits = [dynamics.predict_logits(tokens[None, :t], actions[None, :t], 1)[0] for t in range(1, len(tokens))]
    logits = torch.stack(logits)  # [T-1, h, w, C]
    return (token_entropy(logits) / math.log(logits.shape[-1])).float().cpu()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def latent_windows(lam, windows, batch_size, device):
    """GenieRedux (Genie's protocol): the LAM's codes, inferred from each true clip, replace its actions.

    Returns the windows with latent actions and the agreement of codes with the true actions
    (lam.action_agreement: per code its majority true action and the overall purity, beside purity's chance level).
    """
    from lam import action_agreement
    latent = []
    for start in tqdm(range(0, len(windows), batch_size), desc="latent actions", unit="batch"):
        frames = torch.from_numpy(np.stack([f for f, _ in windows[start:start + batch_size]])).to(device)
        latent.append(lam.infer_actions(frames).cpu())  # [B, 11]
    latent, true = torch.cat(latent), torch.from_numpy(np.stack([a for _, a in windows]))
    num_true = int(true.max()) + 1
    confusion, majority, purity = action_agreement(latent, true, lam.config.num_actions, num_true)
    # chance: the same codes against the true actions shuffled, so codes that carry nothing score it (any code count)
    generator = torch.Generator().manual_seed(0)
    shuffled = [action_agreement(latent, true.reshape(-1)[torch.randperm(true.numel(), generator=generator)],
                                 lam.config.num_actions, num_true)[2] for _ in range(100)]
    agreement = {"purity": purity, "chance": float(np.mean(shuffled)), "chance_sd": float(np.std(shuffled)),
                 "majority": majority.tolist(), "confusion": confusion.tolist()}
    return [(f, a.numpy()) for (f, _), a in zip(windows, latent)], agreement


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dynamics", help="dynamics checkpoint written by train.py (required but for --compare)")
    p.add_argument("--data", help="episodes: DIR/test, else DIR/val, else every .npz under DIR (required but for --compare)")
    p.add_argument("--tokenizer", help="tokenizer checkpoint (default: the one the dynamics checkpoint records)")
    p.add_argument("--out", default="runs/eval", help="folder for metrics.json, results.md, pictures (default runs/eval)")
    p.add_argument("--mode", choices=["one-go", "autoregressive", "both"], default="both",
                   help="10 frames in one MaskGIT run, one frame at a time, or both (default both)")
    p.add_argument("--steps", type=int, default=25, help="MaskGIT steps per generated frame or run (default 25)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature, 0 = argmax (default 0, our choice; the paper's MaskGIT samples at 1, "
                        "or with --anneal)")
    p.add_argument("--anneal", action="store_true",
                   help="MaskGIT step s of S samples at temperature * (1 - (s+1)/S), linear to argmax at the last step "
                        "(the authors' code)")
    p.add_argument("--frame-order", type=float, default=0.25,
                   help="one-go: a token's confidence loses this much log-probability per frame after the first, so "
                        "earlier frames settle first (default 0.25, our addition; 0: MaskGIT's own order, the paper's)")
    p.add_argument("--keep-unchanged", action="store_true",
                   help="where a predicted code equals the one before it, keep the pixels before (a codec's skip blocks; "
                        "our addition): what stays still then costs no tokenizer error. Every decoded row, the "
                        "tokenizer's too")
    p.add_argument("--delta-protocol", choices=["random", "swap", "both"], default="random",
                   help=f"delta_t PSNR's altered actions: random, every action from the first predicted frame on uniform "
                        f"random (Genie's; default); swap, only the action that makes predicted frame {DELTA_T}, by another "
                        f"one (the authors' code); both")
    p.add_argument("--max-windows", type=int, help="evaluate at most this many test windows (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per batch (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the random actions (default 0)")
    p.add_argument("--inception-weights", help=f"FID Inception weights (default: torch hub dir/checkpoints/{WEIGHTS_NAME})")
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default cuda if present)")
    p.add_argument("--compare", nargs="+", metavar="EVAL_DIR", help="tabulate several evaluation folders into OUT/results.md and OUT/results.png")
    p.add_argument("--paper", nargs=4, action="append", default=[], metavar=("LABEL", "PSNR", "SSIM", "FID"),
                   help="--compare: add a row of the paper's numbers under ours (FID - when there is none); repeatable")
    args = p.parse_args(argv)
    try:
        args.paper = [(label, float(a), float(b), None if c == "-" else float(c)) for label, a, b, c in args.paper]
    except ValueError:
        p.error("--paper takes LABEL PSNR SSIM FID: three numbers after the label (FID may be -)")
    if not args.compare and not (args.dynamics and args.data):
        p.error("--dynamics CKPT and --data DIR are required (or --compare EVAL_DIR ...)")
    for flag in ("steps", "batch_size", "max_windows"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    for folder in args.compare or []:
        if not (Path(folder) / "metrics.json").is_file():
            p.error(f"--compare {folder} holds no metrics.json: evaluate there first "
                    f"(python evaluate.py --dynamics CKPT --data DIR --out {folder})")
    return args


def main(argv=None):
    args = parse_args(argv)
    check_writable(args.out)  # before any work
    with folder_lock(args.out):  # one run per folder: a second one fails in one line naming this one
        from reports import compare, results_table, write_agreement, write_report  # reports.py reads this file's constants
        if args.compare:
            return compare(args.compare, args.out, args.paper)
        dynamics, tokenizer, lam = load_world_model(args.dynamics, args.tokenizer, args.device)
        folder = test_folder(args.data)
        windows = load_windows(folder, args.max_windows, tokenizer.config.resolution)
        action_names, agreement = load_episode(find_episodes(folder)[0])["action_names"], None
        if lam is not None:
            lam_row = lam_reconstruction(lam, windows, args.batch_size, args.device)
            windows, agreement = latent_windows(lam, windows, args.batch_size, args.device)
        else:
            check_actions(windows, dynamics.config.num_actions, folder)
        try:
            inception, fid_reason = load_inception(args.inception_weights, args.device), None
        except FIDUnavailable as e:
            inception, fid_reason = None, str(e)
        modes = ["one-go", "autoregressive"] if args.mode == "both" else [args.mode]
        protocols = ["random", "swap"] if args.delta_protocol == "both" else [args.delta_protocol]
        metrics, sample = evaluate_windows(dynamics, tokenizer, windows, modes, args.steps, args.temperature, args.batch_size,
                                           args.seed, inception, args.device, protocols, args.anneal, args.frame_order,
                                           args.keep_unchanged)
        if lam is not None:
            metrics["rows"]["lam"] = lam_row
        metrics.update(dynamics=str(args.dynamics), data=str(folder), fid_unavailable=fid_reason, lam_agreement=agreement)
        uncertainty = token_uncertainty(dynamics, sample["tokens"].to(args.device), sample["actions"].to(args.device))
        write_report(args.out, metrics, sample, uncertainty)
        if agreement:
            write_agreement(args.out, agreement, action_names)
    print(f"{results_table(metrics)}\nwrote metrics.json, results.md and pictures to {args.out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every file is written whole or not at all
        print("interrupted: no file in --out is half-written; run the same command again", file=sys.stderr)
        sys.exit(130)
    except (CheckpointError, EpisodeError, OSError) as e:
        sys.exit(f"error: {e}")
