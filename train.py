"""The one training loop of every model: tokenizer, LAM and dynamics (GenieRedux paper sec. 4 and 5.1).

As nanoGPT's train.py: one while loop with evaluation, checkpointing, logging, forward/backward and the
optimiser step in plain sight. A model plugs in through `loss(batch) -> (loss, metrics)`; what the loop needs
built first (frozen models, data, model, optimiser, the compiled or DDP step, the token cache) is in build.py.

    python train.py --model tokenizer --data data/airstriker --out runs/tokenizer
    python train.py --model dynamics --tokenizer runs/tokenizer/ckpt.pt --data data/airstriker --out runs/dynamics
    python train.py --model lam --data data/coinrun --out runs/lam   # GenieRedux: actions learnt from video
    python train.py --model dynamics --actions latent --lam runs/lam/ckpt.pt --tokenizer runs/tokenizer/ckpt.pt ...
    python train.py --model tokenizer --init runs/tokenizer/ckpt.pt --decoder-only --steps 1000 --data data/new \
        --out runs/tokenizer_ft   # paper sec. 4: fine-tune the decoder on new data
    torchrun --nproc_per_node 8 train.py --model tokenizer --data data/airstriker   # DDP: one process per GPU
    python train.py --model tokenizer --preset paper --benchmark   # speed, memory, MFU and loader rate; writes nothing

Reads .npz episodes (DIR/train and DIR/val, or any folder of them). Writes to --out: ckpt.pt ({model, optimizer,
config, model_type, preset, step, args, val_loss, tokenizer, lam}: the last evaluation, for --resume), best.pt (the
same without the optimizer, at the lowest validation loss so far), metrics.jsonl, curves.png, samples.png (real
clips above the model's frames) and, for dynamics, tokens_<split>.npy: the frozen tokenizer's ids of every clip.
"""
import argparse
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmark import benchmark
from build import (TrainingError, build_model, cache_tokens, init_ddp, load_clips, load_frozen_models, make_optimizer,
                   picture_clips, restore, step_module, train_batches)
from checkpoints import (MODELS, CheckpointError, append_log, lowest_val_loss, restart_log, save_checkpoints,
                         torch_device)
from data import Batches, barrier, own_message
from episodes import CTRL_C, EpisodeError, check_writable, folder_lock, remember_ctrl_c
from lam import PRESETS as LAM_PRESETS
from metrics import mse_to_psnr, psnr
from pictures import plot_training_curves, save_samples


# ---------------------------------------------------------------------------
# The learning-rate schedule
# ---------------------------------------------------------------------------

def learning_rate(step, args):
    """Linear warmup (at most 10% of --steps), then cosine decay to --lr / 10 at --steps."""
    warmup = min(args.warmup, args.steps // 10)
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, args.steps - warmup))
    return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------
# Evaluation during training: validation loss and the frames of the samples picture
# ---------------------------------------------------------------------------

def with_psnr(metrics):
    """The models log MSEs; their PSNRs (metrics.mse_to_psnr, capped as in evaluate.py's tables) join them here."""
    for key in ("mse", "copy_mse"):
        if key in metrics:
            metrics[key.replace("mse", "psnr")] = mse_to_psnr(torch.tensor(metrics[key])).item()
    return metrics


@torch.no_grad()


def evaluate(model, val, args, device, ctx):
    """The model's loss metrics averaged over --eval-batches fixed validation batches (the same masks every time)."""
    model.eval()
    torch.manual_seed(args.seed)
    n = min(args.eval_batches, math.ceil(len(val) / args.batch_size))
    totals = {}
    for _, batch in zip(range(n), DataLoader(val, batch_sampler=Batches(val, args.batch_size, args.seed))):
        with ctx:
            _, metrics = model.loss({k: v.to(device) for k, v in batch.items()})
        totals = {k: totals.get(k, 0.0) + v / n for k, v in metrics.items()}
    model.train()
    return with_psnr(totals)


@torch.no_grad()


def predict(model, kind, show, tokenizer):
    """The model's frames of the eval picture: the tokenizer's reconstructions, or the dynamics model's one-go
    rollout from 2 context frames (paper sec. 5.2) decoded by the frozen tokenizer."""
    if kind == "tokenizer":
        return model(show["frames"].float() / 255)[0]
    if kind == "lam":  # frame 0 as it is, then frames 1.. predicted from the past and the inferred latent action
        frames = show["frames"].float() / 255
        return torch.cat([frames[:, :1], model(frames)[0]], 1)
    tokens = show["tokens"]  # [n, T, h, w]
    return tokenizer.decode(model.generate(tokens[:, :2], show["actions"], tokens.shape[1] - 2))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="tokenizer", help="what to train (default tokenizer)")
    p.add_argument("--data", help="folder of .npz episodes; DIR/train and DIR/val are used when they exist")
    p.add_argument("--preset", choices=["tiny", "small", "paper"], default="small", help="model size (default small)")
    p.add_argument("--tokenizer", help="dynamics: checkpoint of the frozen tokenizer whose tokens it learns")
    p.add_argument("--token-input", choices=["learned", "frozen", "none"], default="learned",
                   help="dynamics: add each token's code vector to its embedding through a learned projection (default), "
                        "the tokenizer's frozen output projection times 10 (the authors' code), or not at all (paper Tab. 4)")
    p.add_argument("--no-tdce", action="store_true", help="dynamics: plain cross-entropy, no TDCE (paper eq. 1, Tab. 4)")
    p.add_argument("--tdce-lambda", type=float, default=1.0, help="dynamics: weight of the TDCE distance term (default 1.0)")
    p.add_argument("--actions", choices=["gt", "latent"], default="gt",
                   help="dynamics: the true actions (GenieRedux-G, default) or a frozen LAM's codes (GenieRedux)")
    p.add_argument("--lam", help="dynamics --actions latent: checkpoint of the frozen LAM (train one with --model lam)")
    p.add_argument("--num-actions", type=int, default=7, help="lam: latent action codes (default 7, the paper's CoinRun)")
    p.add_argument("--lam-patch", type=int, help="lam: patch side in pixels, e.g. 8 or 4 on 64x64 frames (default: the preset's, 16)")
    p.add_argument("--seq-len", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=8, help="frames between the starts of an episode's clips (default 8)")
    p.add_argument("--steps", type=int, default=20000, help="optimiser steps in total (default 20000)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per micro-batch per process (default 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step (default 1)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak AdamW learning rate (default 1e-4, the paper's; 2e-3 for --preset tiny, whose small models need it)")
    p.add_argument("--warmup", type=int, default=500, help="warmup steps, at most 10%% of --steps (default 500)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay of matrices (default 1e-4)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 = off (default 1.0)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between evaluation + checkpoint (default 500)")
    p.add_argument("--eval-batches", type=int, default=8, help="validation batches per evaluation (default 8)")
    p.add_argument("--log-every", type=int, default=10, help="steps between lines of metrics.jsonl (default 10)")
    p.add_argument("--out", help="run folder: checkpoint, logs, pictures (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where its checkpoint stopped")
    p.add_argument("--init", help="start from this checkpoint's weights (fine-tuning; same model and config)")
    p.add_argument("--decoder-only", action="store_true", help="tokenizer: train only the decoder (paper sec. 4 fine-tuning)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and masks (default 0)")
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default cuda when present, else cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--workers", type=int, default=4, help="data loader processes (default 4)")
    p.add_argument("--benchmark", action="store_true", help="print speed, memory, MFU and loader clips/s; write nothing")
    p.add_argument("--peak-flops", type=float, default=989e12,
                   help="peak dense bf16 FLOP/s of the GPU for MFU (default 989e12: an H100 or H200 SXM); a CPU measures its own")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = 2e-3 if args.preset == "tiny" else 1e-4
    for flag in ("lr", "steps", "batch_size", "seq_len", "stride", "grad_accum", "eval_every", "eval_batches", "log_every"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.workers < 0:
        p.error(f"--workers must be 0 (load in this process) or more, got {args.workers}")
    shortest = {"tokenizer": 1, "lam": 2, "dynamics": 3}[args.model]  # lam: a frame and the next; dynamics: 2 context + 1
    if args.seq_len < shortest:
        p.error(f"--seq-len {args.seq_len} is too short for --model {args.model}: it needs clips of {shortest} frames or more"
                + (" (2 context frames and one to predict)" if args.model == "dynamics" else ""))
    resolution = LAM_PRESETS[args.preset].resolution
    if args.lam_patch is not None and (args.lam_patch <= 0 or resolution % args.lam_patch):
        p.error(f"--lam-patch must divide the LAM's {resolution}-pixel frames, got {args.lam_patch}")
    return args


def diverged(what, value, step, saved_step, ckpt_path, args):
    return TrainingError(f"{what} is {value} at step {step}: training diverged; {ckpt_path} keeps step {saved_step}; "
                         f"lower --lr (now {args.lr:g}) and --resume")


def standing(saved_step, ckpt_path):
    """Where a stopped run stands, for the line that ends it: the checkpoint it goes on from."""
    if not ckpt_path.exists():
        return "no checkpoint yet: run the same command again"
    return f"checkpoint of step {saved_step} at {ckpt_path}; continue with --resume"


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------

def run(args, out, ddp, rank, world_size, device):
    """The run: frozen models, data, model and optimizer, then the loop, until --steps."""
    ckpt_path, log_path = out / "ckpt.pt", out / "metrics.jsonl"
    master = rank == 0
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ctx = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()

    tokenizer, tokenizer_ckpt, lam = load_frozen_models(args, device)  # dynamics only
    train, val = load_clips(args, tokenizer)
    model = build_model(args, tokenizer, lam, train, val, device)
    ckpt = restore(args, model, ckpt_path, device)
    start = ckpt["step"] if ckpt else 0
    optimizer, params = make_optimizer(model, args, device)
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    step_model = step_module(model, args, ddp, device)
    if args.benchmark:
        return benchmark(model, step_model, optimizer, train, args, device, ctx, (model if tokenizer is None else tokenizer).grid)

    if master:
        out.mkdir(parents=True, exist_ok=True)
    barrier()
    show = picture_clips(args, val, tokenizer, lam, device, ctx)  # before the cache, while clips still read as frames
    if args.model == "dynamics":
        cache_tokens(args, out, tokenizer, tokenizer_ckpt, lam, train, val, rank, world_size, device, ctx)
    log_rows = restart_log(log_path, args, start, master)
    best_loss = lowest_val_loss(out, args)
    batches = train_batches(train, args, start, rank, world_size, device)
    frames_per_step = args.batch_size * args.grad_accum * world_size * args.seq_len
    step, saved_step, val_metrics, tick, tick_step = start, start, {}, time.perf_counter(), start
    bar = tqdm(total=args.steps, initial=start, unit="step", disable=not master)
    try:
        while True:
            if CTRL_C:  # a Ctrl-C that landed in a finaliser, where Python swallowed its KeyboardInterrupt
                raise KeyboardInterrupt
            # evaluate, draw and checkpoint (rank 0) every --eval-every steps and at the end
            if master and (step % args.eval_every == 0 or step == args.steps) and not (args.resume and step == start):
                val_metrics = evaluate(model, val, args, device, ctx)
                with ctx:
                    pred, real = predict(model, args.model, show, tokenizer).float(), show["frames"].float() / 255
                if args.model == "dynamics":  # one-go PSNR of the predicted frames (not the 2 context frames)
                    val_metrics["psnr"] = psnr(pred[:, 2:], real[:, 2:]).mean().item()
                if not math.isfinite(val_metrics["loss"]):
                    raise diverged("validation loss", val_metrics["loss"], step, saved_step, ckpt_path, args)
                append_log(log_path, log_rows, {"step": step, "split": "val", **val_metrics})
                save_samples(real.cpu().numpy(), pred.cpu().numpy(), out / "samples.png")
                plot_training_curves(log_rows, out / "curves.png")
                best_loss = save_checkpoints(out, model, optimizer, args, step, val_metrics["loss"], best_loss)
                saved_step, tick, tick_step = step, time.perf_counter(), step  # frames/s leaves out evaluation
            if step >= args.steps:
                break

            # one optimiser step over --grad-accum micro-batches; randomness (masks, code restarts) from (seed, step, rank)
            lr = learning_rate(step, args)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(int(np.random.SeedSequence([args.seed, step, rank]).generate_state(1)[0]))
            metrics = {}
            for micro in range(args.grad_accum):
                batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
                if ddp:  # all-reduce the gradients after the last micro-batch only
                    step_model.require_backward_grad_sync = micro == args.grad_accum - 1
                with ctx:
                    loss, micro_metrics = step_model(batch)
                if not math.isfinite(micro_metrics["loss"]):
                    raise diverged("loss", micro_metrics["loss"], step, saved_step, ckpt_path, args)
                (loss / args.grad_accum).backward()
                metrics = {k: metrics.get(k, 0.0) + v / args.grad_accum for k, v in micro_metrics.items()}
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            # log (rank 0)
            if master and (step % args.log_every == 0 or step == args.steps - 1):
                frames_per_s = frames_per_step * (step + 1 - tick_step) / (time.perf_counter() - tick)
                tick, tick_step = time.perf_counter(), step + 1
                append_log(log_path, log_rows, {"step": step, "split": "train", **with_psnr(metrics), "lr": lr,
                                                "frames_per_s": frames_per_s})
                shown = {"loss": metrics["loss"], "psnr": metrics.get("psnr"), "val_psnr": val_metrics.get("psnr"),
                         "val_acc": val_metrics.get("acc"), "frames/s": frames_per_s}
                bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None})
            step += 1
            bar.update()
    except KeyboardInterrupt:  # Ctrl-C: one line that says where the run stands
        raise KeyboardInterrupt(f"interrupted at step {step}; {standing(saved_step, ckpt_path)}") from None
    except (OSError, EpisodeError) as e:  # a full disk, an episode broken since the start
        raise type(e)(f"{own_message(e)}; {standing(saved_step, ckpt_path)}") from None
    finally:
        bar.close()
    if ddp:
        dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out or f"runs/{args.model}")
    ddp, rank, world_size, device = init_ddp(args)
    if rank > 0 or args.benchmark:  # rank 0 alone writes to --out; a benchmark writes nothing
        return run(args, out, ddp, rank, world_size, device)
    check_writable(out)  # before any work
    with folder_lock(out):  # one run per folder: a second one fails in one line naming this one
        run(args, out, ddp, rank, world_size, device)


if __name__ == "__main__":
    remember_ctrl_c()
    try:
        main()
    except KeyboardInterrupt as e:  # Ctrl-C: the loop's line says where the run stands
        print(str(e) or "interrupted before the first step: run the same command again", file=sys.stderr)
        sys.exit(130)
    except (TrainingError, CheckpointError, EpisodeError, OSError) as e:
        sys.exit(f"error: {own_message(e)}")
