"""The one training loop of every model: tokenizer, LAM and dynamics (GenieRedux paper sec. 4 and 5.1).

As nanoGPT's train.py: one while loop with evaluation, checkpointing, logging, forward/backward and the
optimiser step in plain sight. A model plugs in through `loss(batch) -> (loss, metrics)`.

    python train.py --model tokenizer --data data/airstriker --out runs/tokenizer
    python train.py --model dynamics --tokenizer runs/tokenizer/ckpt.pt --data data/airstriker --out runs/dynamics
    python train.py --model lam --data data/coinrun --out runs/lam   # GenieRedux: actions learnt from video
    python train.py --model dynamics --actions latent --lam runs/lam/ckpt.pt --tokenizer runs/tokenizer/ckpt.pt ...
    python train.py --model tokenizer --init runs/tokenizer/ckpt.pt --decoder-only --steps 1000 --data data/new \
        --out runs/tokenizer_ft   # paper sec. 4: fine-tune the decoder on new data
    torchrun --nproc_per_node 8 train.py --model tokenizer --data data/airstriker   # DDP: one process per GPU
    python train.py --model tokenizer --preset paper --benchmark   # speed, memory, MFU and loader rate; writes nothing

Reads .npz episodes (DIR/train and DIR/val, or any folder of them). Writes to --out: ckpt.pt ({model, optimizer,
config, model_type, preset, step, args, tokenizer}), metrics.jsonl, curves.png, samples.png (real clips above the
model's frames) and, for dynamics, tokens_<split>.npy: the frozen tokenizer's ids of every clip, computed once.
"""
import argparse
import json
import math
import os
import sys
import time
import zlib
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from benchmark import benchmark
from checkpoint import MODELS, check_compatible, load_checkpoint, read_checkpoint
from collect import EpisodeError
from data import Batches, Clips, barrier, clip_order, tokenize_clips
from envs import UserError
from metrics import mean_psnr
from plots import plot_training_curves, save_samples
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer


# ---------------------------------------------------------------------------
# The training step and its schedule (checkpoint.py reads and checks checkpoints)
# ---------------------------------------------------------------------------

class LossOf(torch.nn.Module):
    """DDP synchronises gradients only through forward(): route the model's loss(batch) through it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def learning_rate(step, args):
    """Linear warmup (at most 10% of --steps), then cosine decay to --lr / 10 at --steps."""
    warmup = min(args.warmup, args.steps // 10)
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, args.steps - warmup))
    return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------
# Evaluation (pictures: plots.py; --benchmark: benchmark.py)
# ---------------------------------------------------------------------------

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
    return totals


@torch.no_grad()
def predict(model, kind, show, frozen):
    """The model's frames of the eval picture: the tokenizer's reconstructions, or the dynamics model's one-go
    rollout from 2 context frames (paper sec. 5.2) decoded by the frozen tokenizer."""
    if kind == "tokenizer":
        return model(show["frames"].float() / 255)[0]
    if kind == "lam":  # frame 0 as it is, then frames 1.. predicted from the past and the inferred latent action
        frames = show["frames"].float() / 255
        return torch.cat([frames[:, :1], model(frames)[0]], 1)
    tokens = show["tokens"]  # [n, T, h, w]
    return frozen.decode(model.generate(tokens[:, :2], show["actions"], tokens.shape[1] - 2))


# ---------------------------------------------------------------------------
# Command line and the training loop
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="tokenizer", help="what to train (default tokenizer)")
    p.add_argument("--data", help="folder of .npz episodes; DIR/train and DIR/val are used when they exist")
    p.add_argument("--preset", choices=["tiny", "small", "paper"], default="small", help="model size (default small)")
    p.add_argument("--tokenizer", help="dynamics: checkpoint of the frozen tokenizer whose tokens it learns")
    p.add_argument("--no-token-input", action="store_true", help="dynamics: no codebook vectors in the input (paper Tab. 4)")
    p.add_argument("--no-tdce", action="store_true", help="dynamics: plain cross-entropy, no TDCE (paper eq. 1, Tab. 4)")
    p.add_argument("--tdce-lambda", type=float, default=1.0, help="dynamics: weight of the TDCE distance term (default 1.0)")
    p.add_argument("--actions", choices=["gt", "latent"], default="gt",
                   help="dynamics: the true actions (GenieRedux-G, default) or a frozen LAM's codes (GenieRedux)")
    p.add_argument("--lam", help="dynamics --actions latent: checkpoint of the frozen LAM (train one with --model lam)")
    p.add_argument("--num-actions", type=int, default=7, help="lam: latent action codes (default 7, the paper's CoinRun)")
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
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default cuda when present, else cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--workers", type=int, default=4, help="data loader processes (default 4)")
    p.add_argument("--benchmark", action="store_true", help="print speed, memory, MFU and loader clips/s; write nothing")
    p.add_argument("--peak-flops", type=float, default=989e12,
                   help="peak dense bf16 FLOP/s of the GPU for MFU (default 989e12: an H100 or H200 SXM)")
    args = p.parse_args(argv)
    args.lr = args.lr or (2e-3 if args.preset == "tiny" else 1e-4)  # tiny tokenizer, Airstriker, 300 steps: 25.0 dB at 1e-4
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out or f"runs/{args.model}")
    ckpt_path, log_path = out / "ckpt.pt", out / "metrics.jsonl"
    ddp = "RANK" in os.environ  # launched by torchrun (nanoGPT's pattern)
    if ddp:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(args.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    master, device = rank == 0, torch.device(args.device)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ctx = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()

    # a dynamics model learns the ids of a frozen tokenizer; its codebook feeds token input and TDCE
    frozen = tokenizer_ckpt = None
    if args.model == "dynamics" and args.tokenizer:
        frozen, tokenizer_ckpt = load_checkpoint(args.tokenizer, device)
        if tokenizer_ckpt["model_type"] != "tokenizer":
            raise UserError(f"--tokenizer {args.tokenizer} holds a {tokenizer_ckpt['model_type']}, not a tokenizer")
        frozen.requires_grad_(False)
    elif args.model == "dynamics" and args.benchmark:
        frozen = Tokenizer(TOKENIZER_PRESETS[args.preset]).to(device).eval()  # untrained stand-in of the same size
    elif args.model == "dynamics":
        raise UserError("--model dynamics needs --tokenizer CKPT: the frozen tokenizer whose ids it learns "
                        "(train one with --model tokenizer)")
    lam = None  # GenieRedux: the dynamics model is conditioned on a frozen LAM's codes (stop-gradient, as Genie)
    if args.model == "dynamics" and args.actions == "latent":
        if not args.lam:
            raise UserError("--actions latent needs --lam CKPT: a LAM trained with --model lam")
        lam, lam_ckpt = load_checkpoint(args.lam, device)
        if lam_ckpt["model_type"] != "lam":
            raise UserError(f"--lam {args.lam} holds a {lam_ckpt['model_type']}, not a LAM")
        lam.requires_grad_(False)

    Model, _, presets = MODELS[args.model]
    train = val = None
    if args.data:
        train = Clips(args.data, "train", args.seq_len, args.stride, args.workers)
        has_val = (Path(args.data) / "val").is_dir()  # otherwise validate on the training clips
        val = Clips(args.data, "val", args.seq_len, args.stride, args.workers) if has_val else train
        train.resolution = val.resolution = (frozen.config if frozen else presets[args.preset]).resolution
    elif not args.benchmark:
        raise UserError("--data DIR is needed: a folder of .npz episodes (python collect.py --out DIR writes one)")

    # the model; a dynamics model takes its sizes from the tokenizer and the data's action set
    config = presets[args.preset]
    if args.model == "lam":
        config = replace(config, num_actions=args.num_actions)
    if args.model == "dynamics":
        paths, names = (train.paths + val.paths, train.action_names + val.action_names) if train and not lam else ([], [])
        for path, other in zip(paths, names):
            if other != names[0]:
                raise UserError(f"{path} has actions {other} but {paths[0]} has {names[0]}: "
                                f"a dynamics model needs one action set; train on episodes that share it")
        config = replace(config, num_codes=frozen.config.num_codes, code_dim=frozen.config.code_dim, grid=frozen.grid,
                         num_actions=lam.config.num_actions if lam else len(names[0]) if names else config.num_actions,
                         token_input=not args.no_token_input,
                         tdce=not args.no_tdce, tdce_lambda=args.tdce_lambda)  # the paper's Tab. 4 ablation switches
        model = Model(config, codebook=frozen.codebook()).to(device)
    else:
        model = Model(config).to(device)
    start, ckpt = 0, None
    if args.resume:
        ckpt = read_checkpoint(ckpt_path, device)
        check_compatible(ckpt, ckpt_path, "--resume", args, config)
        model.load_state_dict(ckpt["model"])
        start = ckpt["step"]
    elif ckpt_path.exists() and not args.benchmark:
        raise UserError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    elif args.init:
        init = read_checkpoint(args.init, device)
        check_compatible(init, args.init, "--init", args, config)
        model.load_state_dict(init["model"])
    if args.decoder_only:  # paper sec. 4: after exploration only the tokenizer's decoder is fine-tuned
        if args.model != "tokenizer":
            raise UserError("--decoder-only fine-tunes a tokenizer's decoder: use it with --model tokenizer")
        model.requires_grad_(False)
        for p in model.decoder_parameters():
            p.requires_grad_(True)

    # AdamW, betas (0.9, 0.99), weight decay on matrices only (not on biases, norms and gains)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), fused=device.type == "cuda")
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    step_model = LossOf(model)
    if args.compile:
        # A graph the compiler cannot build runs eagerly (with a warning) instead of ending the run:
        # seen on an H200, torch 2.11: Triton's "PassManager::run failed" on the tokenizer's step.
        torch._dynamo.config.suppress_errors = True
        step_model = torch.compile(step_model)
    if ddp:  # no buffer sync per step needed: the tokenizer all-reduces its code usage itself
        step_model = DDP(step_model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    if args.benchmark:
        return benchmark(model, step_model, optimizer, train, args, device, ctx, (model if frozen is None else frozen).grid)

    if master:
        out.mkdir(parents=True, exist_ok=True)
    barrier()
    show = default_collate([val[int(i)] for i in clip_order(val.clips[:, 0], args.seed, 0)[:4]])  # the picture's clips
    if args.model == "dynamics":
        for split, clips in [("train", train)] + ([("val", val)] if val is not train else []):
            meta = {"tokenizer": [str(Path(args.tokenizer).resolve()), tokenizer_ckpt["step"]], "seq_len": args.seq_len,
                    "lam": str(Path(args.lam).resolve()) if lam else None,
                    "episodes": [str(p) for p in clips.paths], "clips": zlib.crc32(clips.clips.tobytes())}
            tokenize_clips(frozen, lam, clips, out / f"tokens_{split}.npy", meta, args.batch_size, args.workers,
                           rank, world, device, ctx)
        with ctx:
            show["tokens"] = frozen.encode(show["frames"].to(device))
            if lam:
                show["actions"] = lam.infer_actions(show["frames"].to(device))
    show = {k: v.to(device) for k, v in show.items()}
    history = []
    if args.resume and log_path.exists():  # forget what the interrupted run logged after its checkpoint
        history = [r for r in map(json.loads, log_path.read_text().splitlines())
                   if r["step"] < start or r["split"] == "val" and r["step"] == start]
    if master:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    first_slot = start * args.grad_accum * world + rank  # see Batches: where an uninterrupted run would be
    batches = iter(DataLoader(train, batch_sampler=Batches(train, args.batch_size, args.seed, first_slot, world),
                              num_workers=args.workers, pin_memory=device.type == "cuda"))
    frames_per_step = args.batch_size * args.grad_accum * world * args.seq_len
    step, saved_step, val_metrics, tick, tick_step = start, start, {}, time.perf_counter(), start
    with tqdm(total=args.steps, initial=start, unit="step", disable=not master) as bar:
        while True:
            # evaluate, draw and checkpoint (rank 0) every --eval-every steps and at the end
            if master and (step % args.eval_every == 0 or step == args.steps) and not (args.resume and step == start):
                val_metrics = evaluate(model, val, args, device, ctx)
                with ctx:
                    pred, real = predict(model, args.model, show, frozen).float(), show["frames"].float() / 255
                if args.model == "dynamics":  # one-go PSNR of the predicted frames (not the 2 context frames)
                    val_metrics["psnr"] = mean_psnr(pred[:, 2:], real[:, 2:])
                if not math.isfinite(val_metrics["loss"]):
                    raise UserError(f"validation loss is {val_metrics['loss']} at step {step}: training diverged; "
                                    f"{ckpt_path} keeps step {saved_step}; lower --lr (now {args.lr:g}) and --resume")
                history.append({"step": step, "split": "val", **val_metrics})
                with open(log_path, "a") as f:
                    f.write(json.dumps(history[-1]) + "\n")
                save_samples(real, pred, out / "samples.png")
                plot_training_curves(history, out / "curves.png")
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(config),
                            "model_type": args.model, "preset": args.preset, "step": step, "args": vars(args),
                            "tokenizer": str(Path(args.tokenizer).resolve()) if frozen else None,
                            "lam": str(Path(args.lam).resolve()) if lam else None}, f"{ckpt_path}.tmp")
                os.replace(f"{ckpt_path}.tmp", ckpt_path)  # atomic: a kill mid-save never leaves a half checkpoint
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
                if step == start and micro == 0 and world > 1:
                    crc = zlib.crc32(batch["actions"].cpu().numpy())  # shows that ranks read different clips
                    print(f"rank {rank}/{world}: first batch crc32 {crc:08x}", flush=True)
                if ddp:  # all-reduce the gradients after the last micro-batch only
                    step_model.require_backward_grad_sync = micro == args.grad_accum - 1
                with ctx:
                    loss, micro_metrics = step_model(batch)
                if not math.isfinite(micro_metrics["loss"]):
                    raise UserError(f"loss is {micro_metrics['loss']} at step {step}: training diverged; {ckpt_path} keeps "
                                    f"step {saved_step}; lower --lr (now {args.lr:g}) and --resume")
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
                history.append({"step": step, "split": "train", **metrics, "lr": lr, "frames_per_s": frames_per_s})
                with open(log_path, "a") as f:
                    f.write(json.dumps(history[-1]) + "\n")
                shown = {"loss": metrics["loss"], "psnr": metrics.get("psnr"), "val_psnr": val_metrics.get("psnr"),
                         "val_acc": val_metrics.get("acc"), "frames/s": frames_per_s}
                bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None})
            step += 1
            bar.update()
    if ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except (UserError, EpisodeError) as e:
        sys.exit(f"error: {e}")
