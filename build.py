"""What train.py builds before its loop: the frozen models, the data, the model, its checkpoint, the optimiser
and the training step (compiled with --compile, DDP under torchrun), and the cached tokens of a dynamics run.

train.py's run() calls these in order; each takes train.py's parsed arguments. A run that cannot start
raises TrainingError, whose one line train.py prints.
"""
import logging
import os
import sys
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, default_collate

from checkpoints import MODELS, CheckpointError, load_checkpoint, read_checkpoint
from data import Batches, Clips, clip_order, tokenize_clips
from episodes import quiet_workers
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer


class TrainingError(Exception):
    """A run that cannot start or go on (missing flag, diverged loss); train.py's main() prints its one line."""


# ---------------------------------------------------------------------------
# The process, the frozen models, the data and the model
# ---------------------------------------------------------------------------

def init_ddp(args):
    """Under torchrun (RANK in the environment, nanoGPT's pattern) one process per GPU, else one process.

    Returns (ddp, rank, world_size, device); a DDP rank on CUDA takes the GPU of its LOCAL_RANK.
    """
    if "RANK" not in os.environ:
        return False, 0, 1, torch.device(args.device)
    dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    if args.device.startswith("cuda"):
        args.device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(args.device)
    return True, dist.get_rank(), dist.get_world_size(), torch.device(args.device)


def load_frozen_models(args, device):
    """The frozen models a dynamics run learns on: (tokenizer, its checkpoint, LAM or None); (None, None, None) else.

    A dynamics model learns the ids of a frozen tokenizer (its codebook feeds token input and TDCE); with
    --actions latent (GenieRedux) it is conditioned on a frozen LAM's codes (stop-gradient, as Genie).
    """
    if args.model != "dynamics":
        return None, None, None
    if args.tokenizer:
        tokenizer, tokenizer_ckpt = load_checkpoint(args.tokenizer, "tokenizer", "--tokenizer", device)
    elif args.benchmark:
        tokenizer, tokenizer_ckpt = Tokenizer(TOKENIZER_PRESETS[args.preset]).to(device).eval(), None  # untrained stand-in
    else:
        raise TrainingError("--model dynamics needs --tokenizer CKPT: the frozen tokenizer whose ids it learns "
                            "(train one with --model tokenizer)")
    lam = None
    if args.actions == "latent":
        if not args.lam:
            raise TrainingError("--actions latent needs --lam CKPT: a LAM trained with --model lam")
        lam = load_checkpoint(args.lam, "lam", "--lam", device)[0].requires_grad_(False)
    return tokenizer.requires_grad_(False), tokenizer_ckpt, lam


def load_clips(args, tokenizer):
    """(train, val) clips of --data at the model's resolution; val is train when DIR/val is absent; (None, None)
    for --benchmark without --data."""
    if not args.data:
        if args.benchmark:
            return None, None
        raise TrainingError("--data DIR is needed: a folder of .npz episodes (python collect.py --out DIR writes one)")
    train = Clips(args.data, "train", args.seq_len, args.stride, args.workers)
    has_val = (Path(args.data) / "val").is_dir()  # otherwise validate on the training clips
    val = Clips(args.data, "val", args.seq_len, args.stride, args.workers) if has_val else train
    train.resolution = val.resolution = (tokenizer.config if tokenizer is not None else MODELS[args.model][2][args.preset]).resolution
    return train, val


def build_model(args, tokenizer, lam, train, val, device):
    """The model of --model and --preset; a dynamics model takes its sizes from the tokenizer and the data's actions."""
    Model, _, presets = MODELS[args.model]
    config = presets[args.preset]
    if args.model == "lam":
        return Model(replace(config, num_actions=args.num_actions, patch=args.lam_patch or config.patch)).to(device)
    if args.model == "tokenizer":
        return Model(config).to(device)
    paths, names = (train.paths + val.paths, train.action_names + val.action_names) if train and not lam else ([], [])
    for path, other in zip(paths, names):
        if other != names[0]:
            raise TrainingError(f"{path} has actions {other} but {paths[0]} has {names[0]}: "
                                f"a dynamics model needs one action set; train on episodes that share it")
    config = replace(config, num_codes=tokenizer.config.num_codes, code_dim=tokenizer.config.code_dim, grid=tokenizer.grid,
                     num_actions=lam.config.num_actions if lam else len(names[0]) if names else config.num_actions,
                     token_input=args.token_input,
                     tdce=not args.no_tdce, tdce_lambda=args.tdce_lambda)  # the paper's Tab. 4 ablation switches
    if args.token_input == "frozen" and tokenizer.config.dim != config.dim:
        raise TrainingError(f"--token-input frozen adds the tokenizer's {tokenizer.config.dim}-wide decoder input to the "
                            f"dynamics model's {config.dim}-wide embedding: use a --preset of the same width, or "
                            f"--token-input learned")
    return Model(config, codebook=tokenizer.codebook(), proj_out=tokenizer.vq.proj_out).to(device)


def check_compatible(ckpt, path, flag, args, config):
    """--resume and --init need a checkpoint of the same model type and configuration."""
    diff = [k for k, v in asdict(config).items() if ckpt["config"].get(k) != v]
    if ckpt["model_type"] != args.model or diff:
        raise CheckpointError(f"{flag} {path} holds a {ckpt['model_type']} --preset {ckpt.get('preset')} model"
                              + (f" (other {', '.join(diff)})" if ckpt["model_type"] == args.model else "")
                              + f", but this run builds {args.model} --preset {args.preset}: pass the --model, --preset "
                              + ("and flags of that run, or a new --out" if flag == "--resume" else "and flags of the run that wrote it"))


def restore(args, model, ckpt_path, device):
    """--resume: the run's checkpoint (weights loaded; its optimizer state is for later); --init: its weights only."""
    if args.resume:
        ckpt = read_checkpoint(ckpt_path, "--resume", device)
        check_compatible(ckpt, ckpt_path, "--resume", args, model.config)
        model.load_state_dict(ckpt["model"])
        return ckpt
    if ckpt_path.exists() and not args.benchmark:
        raise TrainingError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    if args.init:
        init = read_checkpoint(args.init, "--init", device)
        check_compatible(init, args.init, "--init", args, model.config)
        model.load_state_dict(init["model"])
    return None


# ---------------------------------------------------------------------------
# The optimiser and the step the loop calls
# ---------------------------------------------------------------------------

def make_optimizer(model, args, device):
    """AdamW, betas (0.9, 0.99), weight decay on matrices only (not on biases, norms and gains).
    --decoder-only (paper sec. 4: after exploration only the tokenizer's decoder is fine-tuned) freezes the rest."""
    if args.decoder_only:
        if args.model != "tokenizer":
            raise TrainingError("--decoder-only fine-tunes a tokenizer's decoder: use it with --model tokenizer")
        model.requires_grad_(False)
        for p in model.decoder_parameters():
            p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), fused=device.type == "cuda"), params


class LossOf(torch.nn.Module):
    """DDP synchronises gradients only through forward(): route the model's loss(batch) through it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def warn_eager_fallback(record):
    """A logging filter on torch's compiler: each graph it gives up on is named in one line; its full report
    (a traceback per graph) is shown only when asked for with TORCH_LOGS=dynamo."""
    if record.levelno < logging.WARNING or not record.exc_info:
        return True
    error = getattr(record.exc_info[1], "inner_exception", record.exc_info[1])  # the compiler backend's own error
    print(f"warning: --compile: {record.getMessage().splitlines()[0].strip()} ({type(error).__name__}): that graph "
          f"runs eagerly; TORCH_LOGS=dynamo shows why", file=sys.stderr, flush=True)
    return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def step_module(model, args, ddp, device):
    """What the loop calls: model.loss through forward(), compiled with --compile, wrapped in DDP under torchrun."""
    step_model = LossOf(model)
    if args.compile:  # a graph the compiler cannot build runs eagerly instead of ending the run, with a warning
        torch._dynamo.config.suppress_errors = True
        logging.getLogger("torch._dynamo.convert_frame").addFilter(warn_eager_fallback)
        step_model = torch.compile(step_model)
    if ddp:  # no buffer sync per step needed: the tokenizer all-reduces its code usage itself
        step_model = DDP(step_model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    return step_model


# ---------------------------------------------------------------------------
# What the loop reads: the picture's clips, the token cache, the training batches
# ---------------------------------------------------------------------------

def picture_clips(args, val, tokenizer, lam, device, ctx):
    """The 4 validation clips of samples.png, on `device`; for dynamics with their token ids (and latent actions)."""
    show = default_collate([val[int(i)] for i in clip_order(val.clips[:, 0], args.seed, 0)[:4]])
    if args.model == "dynamics":
        with ctx:
            show["tokens"] = tokenizer.encode(show["frames"].to(device))  # [4, T, h, w]
            if lam:
                show["actions"] = lam.infer_actions(show["frames"].to(device))  # [4, T-1]
    return {k: v.to(device) for k, v in show.items()}


def cache_tokens(args, out, tokenizer, tokenizer_ckpt, lam, train, val, rank, world_size, device, ctx):
    """Dynamics trains on token ids: each clip's ids (and latent actions) computed once, cached in OUT/tokens_<split>.npy.
    From here on a clip reads as its ids (data.Clips)."""
    for split, clips in [("train", train)] + ([("val", val)] if val is not train else []):
        meta = {"tokenizer": [str(Path(args.tokenizer).resolve()), tokenizer_ckpt["step"]], "seq_len": args.seq_len,
                "lam": str(Path(args.lam).resolve()) if lam else None,
                "episodes": [str(p) for p in clips.paths], "clips": zlib.crc32(clips.clips.tobytes())}
        tokenize_clips(tokenizer, lam, clips, out / f"tokens_{split}.npy", meta, batch_size=args.batch_size,
                       workers=args.workers, rank=rank, world_size=world_size, device=device, ctx=ctx)


def train_batches(train, args, start, rank, world_size, device):
    """The training micro-batches from step `start` on: this rank's batch slots of data.Batches, so ranks read
    different clips and a resumed run reads exactly the batches an uninterrupted one would."""
    sampler = Batches(train, args.batch_size, args.seed, start * args.grad_accum * world_size + rank, world_size)
    if world_size > 1:  # shows that the ranks read different clips
        print(f"rank {rank}/{world_size}: first batch crc32 {zlib.crc32(np.array(next(iter(sampler)))):08x}", flush=True)
    with quiet_workers():  # the loader's workers start here; Ctrl-C is the main process's
        return iter(DataLoader(train, batch_sampler=sampler, num_workers=args.workers, pin_memory=device.type == "cuda"))
