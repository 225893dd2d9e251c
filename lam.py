"""Latent action model (LAM): discovers a small set of discrete actions from video alone.

Genie (Bruce et al. 2024, sec. 2.1) and GenieRedux (paper sec. 4, "A Latent Action Model
encodes input frame sequences ... and decodes them to reconstruct future prediction";
validated in the CoinRun case study, paper sec. 5, Tab. 2). A causal ST transformer on
16x16-pixel patches reads frames 0..t+1 and summarises the transition t -> t+1 as one of
`num_actions` codes (7, as the paper's CoinRun study). A second ST transformer must
predict frame t+1 from frames 0..t and that code alone, so the code has to carry what
the past cannot tell: the action. The dynamics model of GenieRedux is then conditioned on
the frozen LAM's codes (`infer_actions`), GenieRedux-G uses the true actions instead.

Train (reads .npz episodes, writes runs/lam/ckpt.pt with {"model", "config": asdict(LAMConfig)}):
    python train.py --model lam --data data/coinrun --preset small
Ground-truth actions are never used for training; `action_agreement` compares the codes
with them afterwards (evaluate.py), and `loss` logs that purity per batch.

Against collapse to a single code (the known failure of published re-implementations): the VQ
sees the change of the frame summary from t to t+1, so what the frame shows cancels; the decoder
gets the action at every block and predicts the change from frame t; the quantiser restarts dead
codes. Per-code shares are logged every step; check the codes' purity on real data (evaluate.py).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tokenizer import STBlock, STTransformer, VectorQuantizer, patchify, to_unit, unpatchify


@dataclass
class LAMConfig:
    resolution: int = 64  # frame height = width, pixels
    patch: int = 16  # patch side, pixels: 64x64 frames -> 4x4 tokens
    dim: int = 512  # transformer width
    enc_depth: int = 8  # ST blocks in the encoder
    dec_depth: int = 8  # ST blocks in the decoder
    heads: int = 8  # attention heads
    mlp_ratio: int = 4  # MLP hidden width / dim
    num_actions: int = 7  # latent action codes: 7, as the paper's CoinRun study
    code_dim: int = 32  # length of a code vector
    commitment: float = 0.25  # weight of the commitment term in the VQ loss
    usage_decay: float = 0.99  # per-step EMA decay of each code's usage
    dead_usage: float = 0.1  # a code is dead below this fraction of a uniform code's usage


PRESETS = {
    "tiny": LAMConfig(dim=64, enc_depth=2, dec_depth=2, heads=4, usage_decay=0.9),  # CPU tests, minutes
    "small": LAMConfig(dim=256, enc_depth=4, dec_depth=4, heads=4, usage_decay=0.95),  # one GPU, < 1 hour
    "paper": LAMConfig(),  # 8 + 8 ST blocks, d=512, 8 heads, as the tokenizer
}


def action_agreement(latent, true, num_latent, num_true):
    """How well latent action codes match ground-truth actions.

    latent, true: int tensors of the same shape (one entry per transition).
    Returns (confusion int64 [num_latent, num_true], where confusion[k, a] counts transitions
    given code k whose true action was a; majority int64 [num_latent], each code's most
    frequent true action, -1 for an unused code; purity, the fraction of transitions whose
    true action is their code's majority action, a float in [0, 1]).
    Purity is 1 for a perfect match and about the share of the commonest action for codes
    that carry no information.
    """
    latent, true = latent.reshape(-1).long().cpu(), true.reshape(-1).long().cpu()
    if latent.shape != true.shape:
        raise ValueError(f"{len(latent)} latent codes but {len(true)} true actions: "
                         f"pass one of each per transition")
    in_range = (latent >= 0) & (latent < num_latent) & (true >= 0) & (true < num_true)
    if not in_range.all():
        raise ValueError(f"ids out of range: latent codes must lie in [0, {num_latent}), "
                         f"true actions in [0, {num_true})")
    confusion = torch.bincount(latent * num_true + true, minlength=num_latent * num_true).view(num_latent, num_true)
    majority = confusion.argmax(1).masked_fill(confusion.sum(1) == 0, -1)
    purity = confusion.max(1).values.sum().item() / max(len(latent), 1)
    return confusion, majority, purity


class LAM(nn.Module):
    """Frames [B, T, 64, 64, 3] -> one latent action per transition [B, T-1] and the predicted frames 1..T-1."""

    def __init__(self, config):
        super().__init__()
        self.config = c = config
        self.grid = (c.resolution // c.patch, c.resolution // c.patch)
        patch_dim = c.patch * c.patch * 3
        self.enc_embed = nn.Linear(patch_dim, c.dim)
        self.encoder = STTransformer(c.dim, c.enc_depth, c.heads, self.grid, c.mlp_ratio)
        # a small cosine VQ is the bottleneck: only num_actions different messages reach the decoder
        self.vq = VectorQuantizer(c.dim, c.num_actions, c.code_dim, c.commitment, c.usage_decay, c.dead_usage)
        self.dec_embed = nn.Linear(patch_dim, c.dim)
        self.decoder = nn.ModuleList(STBlock(c.dim, c.heads, self.grid, c.mlp_ratio) for _ in range(c.dec_depth))
        self.dec_norm = nn.LayerNorm(c.dim)
        self.to_pixels = nn.Linear(c.dim, patch_dim)

    def _check(self, frames):
        r = self.config.resolution
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (r, r, 3) or frames.shape[1] < 2:
            raise ValueError(f"frames of shape {tuple(frames.shape)}, expected [B, T >= 2, {r}, {r}, 3]: "
                             f"load episodes at the LAM's resolution, clips of at least 2 frames")
        return to_unit(frames)

    def encode(self, frames):
        """frames [B, T, H, W, 3] in [0, 1] -> continuous latent actions [B, T-1, dim], before the VQ."""
        x = self.encoder(self.enc_embed(patchify(frames, self.config.patch)))  # [B, T, N, dim], causal in time
        x = x.float().mean(2)  # [B, T, dim]: frame t's summary, it has seen frames 0..t and no later one
        # transition t -> t+1 is the change of summary: what stays the same (background, where things
        # are) cancels, so the VQ sorts transitions by what happened, not by what the frame shows.
        # fp32: under bf16 autocast, the difference of two close summaries would keep few bits.
        return x[:, 1:] - x[:, :-1]  # [B, T-1, dim]

    def decode(self, context, actions):
        """Predict frames 1..T-1 from frames 0..T-2 and the latent actions between them.

        context [B, T-1, H, W, 3] in [0, 1] (frames 0..T-2), actions [B, T-1, dim] (quantised).
        Position t sees frames 0..t and actions 0..t (causal attention), never frame t+1 itself.
        """
        c = self.config
        x = self.dec_embed(patchify(context, c.patch))  # [B, T-1, N, dim]
        for block in self.decoder:  # the action enters every block, as the true one in GenieRedux-G
            x = block(x + actions[:, :, None, :])
        delta = unpatchify(self.to_pixels(self.dec_norm(x)), c.patch, self.grid)  # [B, T-1, H, W, 3]
        pred = context + delta  # predict the change: copying frame t is free, the action explains the rest
        return pred + (pred.clamp(0, 1) - pred).detach()  # clamp, straight-through: no dead pixels

    def forward(self, frames):
        """frames [B, T, H, W, 3] -> (predicted frames 1..T-1 [B, T-1, H, W, 3], ids [B, T-1], vq_loss, vq_metrics)."""
        frames = self._check(frames)
        actions, ids, vq_loss, metrics = self.vq(self.encode(frames))  # [B, T-1, dim], [B, T-1]
        return self.decode(frames[:, :-1], actions), ids, vq_loss, metrics

    @torch.no_grad()
    def infer_actions(self, frames):
        """frames [B, T, H, W, 3] (uint8 or float in [0, 1]) -> int64 latent action ids [B, T-1].

        ids[:, t] is the code of transition t -> t+1, the same convention as ground-truth
        actions, so dynamics.py can take them in their place. Never updates the codebook.
        """
        return self.vq(self.encode(self._check(frames)))[1]

    @torch.no_grad()
    def predict(self, context, ids):
        """Frames 0..T-2 [B, T-1, H, W, 3] and chosen latent actions [B, T-1] -> predicted frames 1..T-1."""
        return self.decode(to_unit(context), self.vq.embed(ids))

    def loss(self, batch):
        """batch {"frames": uint8 [B, T, H, W, 3], "actions": [B, T-1] (logging only)} -> (MSE + VQ, metrics)."""
        frames = self._check(batch["frames"])
        pred, ids, vq_loss, m = self(frames)
        target = frames[:, 1:]
        mse = F.mse_loss(pred.float(), target)
        copy_mse = F.mse_loss(frames[:, :-1], target)  # the floor: predict "nothing moved"
        loss = mse + vq_loss
        share = torch.bincount(ids.flatten(), minlength=self.config.num_actions).float() / ids.numel()
        names = ["loss", "mse", "copy_mse", "vq_loss", "usage", "perplexity", "restarts"]  # train.py adds PSNRs
        values = [loss, mse, copy_mse, vq_loss, m["usage"], m["perplexity"], m["restarts"]]
        metrics = dict(zip(names, torch.stack([v.detach().float() for v in values]).tolist()))  # one host sync
        metrics.update({f"code_{k}": s for k, s in enumerate(share.tolist())})  # collapse shows here first
        if "actions" in batch:  # ground truth is only looked at, never trained on
            true = batch["actions"].cpu()
            metrics["purity"] = action_agreement(ids, true, self.config.num_actions, int(true.max()) + 1)[2]
        return loss, metrics
