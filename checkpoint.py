"""Reading train.py's checkpoints: the three model types, and any model rebuilt with no flags.

A checkpoint (OUT/ckpt.pt) holds {model, optimizer, config, model_type, preset, step, args, tokenizer, lam}:
the config is the model's dataclass as a dict, so `load_checkpoint` needs nothing else; a dynamics
checkpoint names the frozen tokenizer (and LAM) it was trained on. `check_compatible` guards train.py's
--resume and --init. Not a script: train.py, evaluate.py and agent.py import it.
"""
from dataclasses import asdict
from pathlib import Path

import torch

from dynamics import PRESETS as DYNAMICS_PRESETS, Dynamics, DynamicsConfig
from envs import UserError
from lam import LAM, PRESETS as LAM_PRESETS, LAMConfig
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer, TokenizerConfig

MODELS = {"tokenizer": (Tokenizer, TokenizerConfig, TOKENIZER_PRESETS),  # model type -> class, config, presets
          "dynamics": (Dynamics, DynamicsConfig, DYNAMICS_PRESETS), "lam": (LAM, LAMConfig, LAM_PRESETS)}


def read_checkpoint(path, device):
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} not found: train.py writes OUT/ckpt.pt")
    return torch.load(path, map_location=device)


def load_checkpoint(path, device="cpu"):
    """Rebuild any model from a train.py checkpoint, no flags needed -> (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path, device)
    Model, Config, _ = MODELS[ckpt["model_type"]]
    model = Model(Config(**ckpt["config"])).to(device)  # a dynamics codebook comes back with the weights
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def check_compatible(ckpt, path, flag, args, config):
    """--resume and --init need a checkpoint of the same model type and configuration."""
    diff = [k for k, v in asdict(config).items() if ckpt["config"].get(k) != v]
    if ckpt["model_type"] != args.model or diff:
        raise UserError(f"{flag} {path} holds a {ckpt['model_type']} --preset {ckpt['preset']} model"
                        + (f" (other {', '.join(diff)})" if ckpt["model_type"] == args.model else "")
                        + f", but this run builds {args.model} --preset {args.preset}: pass the --model, --preset and "
                        + ("flags of that run, or a new --out" if flag == "--resume" else "flags of the run that wrote it"))


def load_world_model(path, device):
    """A train.py dynamics checkpoint -> (tokenizer, dynamics), frozen, on `device` (agent.py's world model)."""
    dynamics, ckpt = load_checkpoint(path, device)
    if ckpt["model_type"] != "dynamics" or not ckpt.get("tokenizer"):
        raise UserError(f"--dynamics {path} holds a {ckpt['model_type']} model: pass a dynamics checkpoint of train.py")
    tokenizer, _ = load_checkpoint(ckpt["tokenizer"], device)  # the frozen tokenizer it was trained on
    return tokenizer.requires_grad_(False), dynamics.requires_grad_(False)
