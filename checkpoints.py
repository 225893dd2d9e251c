"""Checkpoints of every model: written atomically, read back with one-line errors, rebuilt from the file alone;
the --device every script checks before it starts; and the bookkeeping of a train.py run folder (its log, ckpt.pt
and best.pt).

A train.py checkpoint is a dict {model, optimizer, config, model_type, preset, step, args, val_loss, tokenizer, lam};
the config alone rebuilds the model, so evaluate.py, play.py, agent.py and collect.py need no other flags.

    from checkpoints import load_checkpoint, load_world_model
    tokenizer, ckpt = load_checkpoint("runs/tokenizer/ckpt.pt", "tokenizer", "--tokenizer")
    dynamics, tokenizer, lam = load_world_model("runs/dynamics/ckpt.pt")   # lam is None for GenieRedux-G
"""
import argparse
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from dynamics import PRESETS as DYNAMICS_PRESETS, Dynamics, DynamicsConfig
from episodes import write_atomic
from lam import LAM, PRESETS as LAM_PRESETS, LAMConfig
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer, TokenizerConfig

MODELS = {"tokenizer": (Tokenizer, TokenizerConfig, TOKENIZER_PRESETS),  # model type -> class, config, presets
          "dynamics": (Dynamics, DynamicsConfig, DYNAMICS_PRESETS), "lam": (LAM, LAMConfig, LAM_PRESETS)}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or of another model or configuration; one line with the fix."""


def save_checkpoint(path, ckpt):
    """Serialise in memory, then write atomically: a kill or a full disk never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    write_atomic(path, buffer.getbuffer())


def article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def read_checkpoint(path, flag, device="cpu", kind=None):
    """The checkpoint dict at `path` (given as `flag`), or a CheckpointError saying what is wrong with the file;
    with `kind` (tokenizer, lam, dynamics, agent) it must hold a model of that kind."""
    if not Path(path).is_file():
        raise CheckpointError(f"{flag} {path} not found: train.py writes OUT/ckpt.pt, agent.py OUT/agent.pt")
    try:
        ckpt = torch.load(path, map_location=device)
    except Exception as e:  # truncated zip, not a torch file, pickle errors
        raise CheckpointError(f"{flag} {path} is not a readable checkpoint ({type(e).__name__}): the file is "
                              f"truncated or corrupt; write it again") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "model_type"} <= ckpt.keys():
        raise CheckpointError(f"{flag} {path} is not a checkpoint of this project (no model, config and model_type in it)")
    if kind is not None and ckpt["model_type"] != kind:
        raise CheckpointError(f"{flag} {path} holds {article(ckpt['model_type'])} model, not {article(kind)} model")
    return ckpt


def load_checkpoint(path, kind, flag, device="cpu"):
    """Rebuild a `kind` model (tokenizer, lam, dynamics) from its checkpoint, no other flags needed.

    Returns (model in eval mode, checkpoint dict); a dynamics codebook comes back with the weights.
    """
    ckpt = read_checkpoint(path, flag, device, kind)
    Model, Config, _ = MODELS[kind]
    try:
        model = Model(Config(**ckpt["config"])).to(device)
        model.load_state_dict(ckpt["model"])
    except (TypeError, RuntimeError) as e:  # a config or weights written by another version of the code
        raise CheckpointError(f"{flag} {path} does not fit this code's {kind} ({type(e).__name__}); "
                              f"train it again") from None
    return model.eval(), ckpt


def load_world_model(dynamics_path, tokenizer_path=None, device="cpu"):
    """A dynamics checkpoint -> (dynamics, tokenizer, lam or None), frozen and in eval mode, on `device`.

    The tokenizer defaults to the one the dynamics model recorded; a GenieRedux model (trained on latent
    actions) comes with the LAM it recorded.
    """
    dynamics, ckpt = load_checkpoint(dynamics_path, "dynamics", "--dynamics", device)
    if tokenizer_path is None:
        tokenizer_path = ckpt["tokenizer"]
        if not tokenizer_path or not Path(tokenizer_path).is_file():
            raise CheckpointError(f"the tokenizer {dynamics_path} was trained on ({tokenizer_path}) is not there: "
                                  f"pass --tokenizer PATH")
    tokenizer = load_checkpoint(tokenizer_path, "tokenizer", "--tokenizer", device)[0]
    codes = tokenizer.codebook()  # the dynamics model keeps a copy of the codebook its tokens index
    if dynamics.codebook.shape != codes.shape or not torch.allclose(dynamics.codebook, codes, atol=1e-5):
        raise CheckpointError(f"--tokenizer {tokenizer_path} has other codes than the tokenizer {dynamics_path} "
                              f"was trained on")
    lam = load_checkpoint(ckpt["lam"], "lam", f"the LAM of --dynamics {dynamics_path}", device)[0] if ckpt["lam"] else None
    return dynamics.requires_grad_(False), tokenizer.requires_grad_(False), lam and lam.requires_grad_(False)


def torch_device(name):
    """argparse type of every script's --device: a device this machine can use, else one line saying why."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{name} is not a torch device: use cpu, cuda or cuda:N") from None
    try:
        torch.empty(0, device=device)
    except Exception as e:  # no such GPU, a torch built without CUDA, a backend this build lacks
        raise argparse.ArgumentTypeError(f"{name} cannot be used here ({str(e).splitlines()[0].split('. ')[0]}): "
                                         f"use --device cpu") from None
    return name


# ---------------------------------------------------------------------------
# A train.py run folder: metrics.jsonl, ckpt.pt and best.pt
# ---------------------------------------------------------------------------

def restart_log(log_path, args, start, master):
    """The log rows the run starts with: none, or on --resume those up to its checkpoint (what an interrupted run
    logged after it is forgotten, as those steps run again). Rank 0 rewrites metrics.jsonl to match."""
    log_rows = []
    if args.resume and log_path.exists():
        log_rows = [r for r in map(json.loads, log_path.read_text().splitlines())
                    if r["step"] < start or r["split"] == "val" and r["step"] == start]
    if master:
        write_log(log_path, log_rows)
    return log_rows


def write_log(log_path, log_rows):
    """The whole log as JSON lines, atomically: a full disk names the file and keeps the log as it was."""
    write_atomic(log_path, "".join(json.dumps(r) + "\n" for r in log_rows))


def append_log(log_path, log_rows, row):
    log_rows.append(row)
    write_log(log_path, log_rows)


def lowest_val_loss(out, args):
    """The validation loss best.pt was saved at: the one to beat. A new run has none yet."""
    best_path = out / "best.pt"
    return read_checkpoint(best_path, "--resume")["val_loss"] if args.resume and best_path.exists() else math.inf


def save_checkpoints(out, model, optimizer, args, step, val_loss, best_loss):
    """ckpt.pt: this evaluation with the optimizer, for --resume; best.pt: the weights alone when `val_loss` is the
    lowest so far (paper sec. 5.3 keeps the best model on validation). Returns the lowest validation loss."""
    dynamics = args.model == "dynamics"
    weights = {"model": model.state_dict(), "config": asdict(model.config), "model_type": args.model,
               "preset": args.preset, "step": step, "args": vars(args), "val_loss": val_loss,
               "tokenizer": str(Path(args.tokenizer).resolve()) if dynamics else None,
               "lam": str(Path(args.lam).resolve()) if dynamics and args.actions == "latent" else None}
    save_checkpoint(out / "ckpt.pt", {**weights, "optimizer": optimizer.state_dict()})
    if val_loss < best_loss:
        save_checkpoint(out / "best.pt", weights)
    return min(val_loss, best_loss)
