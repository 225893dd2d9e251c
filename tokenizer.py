"""Video tokenizer: the ST-ViViT VQ-VAE that turns 64x64 frames into 16x16 grids of code ids.

Genie (Bruce et al. 2024, sec. 2.1) and GenieRedux (paper sec. 4): patches of 4x4 pixels
pass through spatio-temporal (ST) transformer blocks (PEG for position in space, causal
ALiBi attention in time), a cosine-similarity vector quantiser picks one of 1024 codes per
patch, and a second ST transformer decodes the codes back to pixels. Frame t's tokens and
reconstruction never depend on frames after t. The dynamics model (dynamics.py) predicts
these code ids; after exploration only the decoder is fine-tuned on the new data
(paper sec. 4, "fine-tune the decoder of the Tokenizer for 1,000 iterations").

Needs only torch: copy this file alone into another project and it runs.
lam.py and dynamics.py import its building blocks (Attention, STBlock).
Train it with `python train.py --model tokenizer --data data/airstriker --preset tiny`;
the checkpoint stores {"model": state_dict, "config": asdict(TokenizerConfig)}.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# Building blocks shared by tokenizer.py, lam.py and dynamics.py
# ---------------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head self-attention over the second-last axis, via F.scaled_dot_product_attention."""

    def __init__(self, dim, heads):
        super().__init__()
        assert dim % heads == 0, f"dim {dim} must be divisible by heads {heads}"
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, bias=None, cache=None):
        # x: [N, L, D]; bias: additive float mask broadcastable to [N, heads, L, past + L]
        # cache (time attention while sampling): a TimeCache of the past frames; then returns (output, the new cache)
        N, L, D = x.shape
        q, k, v = self.qkv(x).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            cache = cache.add(k, v)
            k, v = cache.k, cache.v  # [N, heads, past + L, D/heads]: the past frames' were computed once, earlier
        if bias is None:
            out = F.scaled_dot_product_attention(q, k, v)  # [N, heads, L, D/heads]
        else:  # time attention (ALiBi): written out, as SDPA with a float mask is slower on many short sequences
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias.to(q.dtype)  # [N, heads, L, past + L]
            scores = (scores - scores.amax(-1, keepdim=True)).exp()
            out = (scores / scores.sum(-1, keepdim=True)) @ v
        out = self.proj(out.transpose(1, 2).reshape(N, L, D))
        return out if cache is None else (out, cache)


class TimeCache:
    """Keys and values of one block's time attention for the frames it has seen: what sampling remembers.

    A block is causal in time, so a frame's keys and values never change once the frame is final: play and
    MaskGIT compute them once and then run only the new frames. A cache is never changed: a forward pass given
    one returns a new one that also holds the frames it ran on. Keep it when those frames are final (play's new
    frame), drop it when they are not (a MaskGIT step); the old one stays as it was, so one cache can be
    continued in several ways. With `window`, a frame looks back at most window - 1 frames (sliding-window
    attention) and only those are kept: memory and cost of endless play stay bounded.
    """

    def __init__(self, window=None, k=None, v=None):
        self.window = window
        self.k, self.v = k, v  # [N, heads, frames, head_dim], or None before the first frame

    def __len__(self):
        """How many past frames the next frame sees."""
        frames = 0 if self.k is None else self.k.shape[2]
        return frames if self.window is None else min(frames, self.window - 1)

    def add(self, k, v):
        """A new cache: these frames' keys and values [N, heads, L, head_dim] after the past ones they see."""
        if self.k is not None:
            first = self.k.shape[2] - len(self)  # frames beyond the window are forgotten
            k, v = torch.cat([self.k[:, :, first:], k], 2), torch.cat([self.v[:, :, first:], v], 2)
        return TimeCache(self.window, k, v)


def causal_alibi_bias(T, heads, device, past=0, window=None):
    """ALiBi (Press et al.) for causal time: -slope_h * (t - s) for s <= t, -inf for s > t.

    Queries are the T frames after `past` cached ones, keys all past + T frames: [heads, T, past + T].
    With `window`, a frame sees at most window - 1 frames before it.
    """
    slopes = 2.0 ** (-8 * torch.arange(1, heads + 1, device=device) / heads)  # made on device: no host copy
    distance = (torch.arange(past, past + T, device=device)[:, None]
                - torch.arange(past + T, device=device)[None, :]).float()  # [T, past+T], >0 looks into the past
    bias = -slopes[:, None, None] * distance  # [heads, T, past+T]
    hidden = (distance < 0) | (distance >= (window or past + T))
    return bias.masked_fill(hidden, float("-inf"))


class STBlock(nn.Module):
    """Spatio-temporal block: PEG -> spatial attention -> causal temporal attention -> MLP.

    x: [B, T, N, D] with N = h * w tokens per frame laid out row-major on a (h, w) grid.
    Frame t never sees frames after t: spatial attention and PEG stay inside a frame and
    temporal attention is causal, so the block is causal in time. Given a TimeCache, x holds
    the frames after the cached ones, and the block returns (x, the cache with x's frames added).
    """

    def __init__(self, dim, heads, grid, mlp_ratio=4):
        super().__init__()
        self.grid = grid
        self.heads = heads
        self.peg = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)  # position from a depthwise conv
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = Attention(dim, heads)
        self.norm_time = nn.LayerNorm(dim)
        self.attn_time = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, cache=None):
        B, T, N, D = x.shape
        h, w = self.grid
        frames = x.reshape(B * T, h, w, D).permute(0, 3, 1, 2)  # [B*T, D, h, w]
        x = x + self.peg(frames).permute(0, 2, 3, 1).reshape(B, T, N, D)
        s = self.norm_space(x).reshape(B * T, N, D)
        x = x + self.attn_space(s).reshape(B, T, N, D)
        t = self.norm_time(x).transpose(1, 2).reshape(B * N, T, D)
        if cache is None:
            out = self.attn_time(t, causal_alibi_bias(T, self.heads, x.device))
        else:  # the frames of x come after those of the cache
            out, cache = self.attn_time(t, causal_alibi_bias(T, self.heads, x.device, len(cache), cache.window), cache)
        x = x + out.reshape(B, N, T, D).transpose(1, 2)
        x = x + self.mlp(self.norm_mlp(x))
        return x if cache is None else (x, cache)


class STTransformer(nn.Sequential):
    """Encoder or decoder body: `depth` ST blocks, then a LayerNorm, on x [B, T, N, D].

    Given caches (one TimeCache per block), returns (x, the caches with x's frames added).
    """

    def __init__(self, dim, depth, heads, grid, mlp_ratio):
        super().__init__(*(STBlock(dim, heads, grid, mlp_ratio) for _ in range(depth)), nn.LayerNorm(dim))

    def forward(self, x, caches=None):
        *blocks, norm = self
        if caches is None:
            for block in blocks:
                x = block(x)
            return norm(x)
        caches = list(caches)  # a new list: the caller's caches stay as they were
        for i, block in enumerate(blocks):
            x, caches[i] = block(x, caches[i])
        return norm(x), caches


# ---------------------------------------------------------------------------
# The tokenizer: pixels -> patches -> ST encoder -> quantiser -> ST decoder -> pixels
# ---------------------------------------------------------------------------

def patchify(frames, patch):
    """[B, T, H, W, C] -> [B, T, (H/p)*(W/p), p*p*C]: flattened patches on a row-major grid."""
    B, T, H, W, C = frames.shape
    x = frames.reshape(B, T, H // patch, patch, W // patch, patch, C).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(B, T, (H // patch) * (W // patch), patch * patch * C)


def unpatchify(x, patch, grid):
    """Inverse of patchify: [B, T, h*w, p*p*C] -> [B, T, h*p, w*p, C]."""
    B, T = x.shape[:2]
    h, w = grid
    x = x.reshape(B, T, h, w, patch, patch, -1).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(B, T, h * patch, w * patch, -1)


def keep_unchanged_patches(frames, ids, last_frame, last_ids):
    """Skip blocks, as a video codec has them: a patch whose code did not change keeps the pixels it had.

    frames [B, T, H, W, 3], the decoded frames of codes ids [B, T, h, w], which follow a frame whose pixels
    and codes are last_frame [B, H, W, 3] and last_ids [B, h, w] (the last real context frame). Where frame t's
    code equals frame t-1's at the same place, frame t keeps frame t-1's pixels there, else takes the decoder's.
    What stays still then costs nothing, where decoding it anew would cost the tokenizer's reconstruction error.
    Our addition, not the paper's (evaluate.py --keep-unchanged, play.py --keep-unchanged).
    """
    patch = frames.shape[2] // ids.shape[2]
    kept, canvas, canvas_ids = [], last_frame.to(frames.dtype), last_ids
    for t in range(ids.shape[1]):
        unchanged = (ids[:, t] == canvas_ids).repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # [B, H, W]
        canvas, canvas_ids = torch.where(unchanged[..., None], canvas, frames[:, t]), ids[:, t]
        kept.append(canvas)
    return torch.stack(kept, 1)


class VectorQuantizer(nn.Module):
    """Cosine-similarity VQ (ViT-VQGAN, Yu et al. 2022) with a straight-through estimator.

    x [..., dim] is projected to code_dim and l2-normalised; its code is the most similar
    unit-length codebook vector. Codes whose usage (an EMA of their share of the tokens)
    falls below `dead_usage` of a uniform share are re-seeded from random encoder outputs
    of the current batch: without restarts, most codes are never used.
    """

    def __init__(self, dim, num_codes, code_dim, commitment=0.25, usage_decay=0.99, dead_usage=0.03):
        super().__init__()
        self.commitment, self.usage_decay, self.dead_usage = commitment, usage_decay, dead_usage
        self.proj_in = nn.Linear(dim, code_dim)
        self.codes = nn.Parameter(torch.randn(num_codes, code_dim))
        self.proj_out = nn.Linear(code_dim, dim)
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))  # EMA of each code's share

    def codebook(self):
        """Unit-length code vectors [num_codes, code_dim] (dynamics.py: token input and TDCE distances)."""
        return F.normalize(self.codes, dim=-1)

    def embed(self, ids):
        """Code ids [...] -> decoder inputs [..., dim]."""
        return self.proj_out(self.codebook()[ids])

    def forward(self, x):
        """x [..., dim] -> (quantised [..., dim], ids [...], loss, metrics as 0-d tensors)."""
        # the codebook learns (and restarts codes) only when trained: not in eval, under
        # no_grad, or in decoder-only fine-tuning, where token ids must stay fixed
        learning = self.training and self.codes.requires_grad and torch.is_grad_enabled()
        distributed = learning and dist.is_available() and dist.is_initialized()
        with torch.autocast(x.device.type, enabled=False):  # pick codes in fp32: bf16 would flip near-ties
            z = F.normalize(self.proj_in(x.float()), dim=-1)  # [..., code_dim] on the unit sphere
            flat = z.reshape(-1, z.shape[-1])  # [M, code_dim]
            restarts = self.restart_dead_codes(flat.detach(), distributed) if learning else flat.new_zeros(())
            codebook = self.codebook()
            ids = (flat @ codebook.T).argmax(-1)  # [M] most similar code (all vectors are unit length)
            q = codebook[ids].view_as(z)
            # VQ-VAE loss (van den Oord et al. 2017): codebook term + commitment term
            loss = F.mse_loss(q, z.detach()) + self.commitment * F.mse_loss(z, q.detach())
            q = z + (q - z).detach()  # straight-through: the decoder's gradient reaches z unchanged
            counts = flat.new_zeros(len(self.codes)).index_add_(0, ids, flat.new_ones(len(ids)))  # [num_codes]
            if distributed:
                dist.all_reduce(counts)  # global histogram: every rank agrees on which codes are dead
            if learning:
                self.usage.lerp_(counts / counts.sum(), 1 - self.usage_decay)
        p = counts / counts.sum()
        metrics = {"usage": (counts > 0).float().mean(),  # fraction of codes used in this batch
                   "perplexity": torch.special.entr(p).sum().exp(),  # exp(entropy): codes in effective use
                   "restarts": restarts}
        return self.proj_out(q), ids.view(z.shape[:-1]), loss, metrics

    @torch.no_grad()
    def restart_dead_codes(self, z, distributed):
        """Re-seed codes whose usage EMA is below dead_usage / num_codes from random rows of z [M, code_dim]."""
        num_codes = len(self.codes)
        dead = self.usage < self.dead_usage / num_codes  # [num_codes]
        seeds = z[torch.randint(len(z), (num_codes,), device=z.device)]
        self.codes.copy_(torch.where(dead[:, None], seeds, self.codes))  # branch-free: no host sync
        self.usage.masked_fill_(dead, 1.0 / num_codes)  # a fresh code gets a grace period
        if distributed:
            dist.broadcast(self.codes, src=0)  # ranks drew different seeds: keep rank 0's
        return dead.sum().float()


@dataclass
class TokenizerConfig:
    resolution: int = 64  # frame height = width, pixels
    patch: int = 4  # patch side, pixels: 64x64 frames -> 16x16 tokens
    dim: int = 512  # transformer width
    enc_depth: int = 8  # ST blocks in the encoder
    dec_depth: int = 8  # ST blocks in the decoder
    heads: int = 8  # attention heads; dim / heads = 64 suits flash attention
    mlp_ratio: int = 8  # MLP hidden width / dim
    num_codes: int = 1024  # codebook size
    code_dim: int = 32  # length of a code vector
    commitment: float = 0.25  # weight of the commitment term in the VQ loss
    usage_decay: float = 0.99  # per-step EMA decay of each code's usage
    dead_usage: float = 0.03  # a code is dead below this fraction of a uniform code's usage


PRESETS = {
    # CPU. 8x8 patches: 64 tokens a frame, 4x fewer than patch 4, which the dynamics model
    # needs to learn on a CPU. No encoder blocks: a code depends on its own patch alone, so what
    # stays still keeps its code from frame to frame and the dynamics model can predict it.
    "tiny": TokenizerConfig(patch=8, dim=64, enc_depth=0, dec_depth=2, heads=4, mlp_ratio=4, num_codes=256,
                            usage_decay=0.9),
    "small": TokenizerConfig(dim=256, enc_depth=4, dec_depth=4, heads=4, mlp_ratio=4, usage_decay=0.95),  # one GPU
    # paper scale, ~100M parameters: the reference implementation follows both the spatial and
    # the temporal attention with a 4x MLP; one 8x MLP per block has the same size and FLOPs
    "paper": TokenizerConfig(),
}


def to_unit(frames):
    """uint8 pixels -> float in [0, 1]; float frames pass through."""
    return frames.float() / 255 if frames.dtype == torch.uint8 else frames


class Tokenizer(nn.Module):
    """Frames [B, T, 64, 64, 3] <-> code ids [B, T, 16, 16], causal in time."""

    def __init__(self, config):
        super().__init__()
        self.config = c = config
        self.grid = (c.resolution // c.patch, c.resolution // c.patch)
        self.patch_embed = nn.Linear(c.patch * c.patch * 3, c.dim)
        self.encoder = STTransformer(c.dim, c.enc_depth, c.heads, self.grid, c.mlp_ratio)
        self.vq = VectorQuantizer(c.dim, c.num_codes, c.code_dim, c.commitment, c.usage_decay, c.dead_usage)
        self.decoder = STTransformer(c.dim, c.dec_depth, c.heads, self.grid, c.mlp_ratio)
        self.to_pixels = nn.Linear(c.dim, c.patch * c.patch * 3)

    def codebook(self):
        """Unit-length code vectors [num_codes, code_dim]."""
        return self.vq.codebook()

    def decoder_parameters(self):
        """What decoder-only fine-tuning trains (paper sec. 4); the token ids stay fixed.

        Freeze everything else with requires_grad_(False): that also stops dead-code restarts.
        """
        return [*self.vq.proj_out.parameters(), *self.decoder.parameters(), *self.to_pixels.parameters()]

    def _encode(self, frames):
        """frames [B, T, H, W, 3] (uint8 or float in [0, 1]) -> encoder output [B, T, N, D]."""
        c = self.config
        if tuple(frames.shape[2:]) != (c.resolution, c.resolution, 3):
            raise ValueError(f"frames of shape {tuple(frames.shape)}, expected [B, T, {c.resolution}, "
                             f"{c.resolution}, 3]: load episodes at the tokenizer's resolution")
        return self.encoder(self.patch_embed(patchify(to_unit(frames), c.patch)))

    def _decode(self, x, caches=None):
        """Decoder inputs [B, T, N, D] -> frames [B, T, H, W, 3] in [0, 1]; given caches, (frames, new caches)."""
        x, caches = (self.decoder(x), None) if caches is None else self.decoder(x, caches)
        frames = unpatchify(self.to_pixels(x), self.config.patch, self.grid)
        frames = frames + (frames.clamp(0, 1) - frames).detach()  # clamp, straight-through: no dead pixels
        return frames if caches is None else (frames, caches)

    def forward(self, frames):
        """frames [B, T, H, W, 3] -> (recon [B, T, H, W, 3], ids [B, T, h, w], vq_loss, vq_metrics)."""
        B, T = frames.shape[:2]
        x, ids, vq_loss, vq_metrics = self.vq(self._encode(frames))  # [B, T, N, D], [B, T, N]
        return self._decode(x), ids.view(B, T, *self.grid), vq_loss, vq_metrics

    @torch.no_grad()
    def encode(self, frames):
        """frames [B, T, H, W, 3] -> int64 code ids [B, T, h, w]."""
        B, T = frames.shape[:2]
        return self.vq(self._encode(frames))[1].view(B, T, *self.grid)

    def decoder_caches(self, window=None):
        """One empty TimeCache per decoder block: with them, `decode` computes only the frames it is given."""
        return [TimeCache(window) for _ in range(self.config.dec_depth)]

    @torch.no_grad()
    def decode(self, ids, caches=None):
        """int64 code ids [B, T, h, w] -> frames [B, T, H, W, 3] in [0, 1].

        Given caches (decoder_caches, or what an earlier decode returned), ids are the frames after those decoded
        before, and decode returns (frames, the caches with these frames added); the caches given stay as they
        were. Play decodes each new frame alone, on the decoder's keys and values of the frames before it.
        """
        B, T = ids.shape[:2]
        return self._decode(self.vq.embed(ids.reshape(B, T, -1)), caches)

    def loss(self, batch):
        """batch {"frames": uint8 [B, T, H, W, 3], ...} -> (MSE + VQ loss, metrics of floats)."""
        frames = to_unit(batch["frames"])
        recon, _, vq_loss, m = self(frames)
        mse = F.mse_loss(recon.float(), frames)
        loss = mse + vq_loss
        names = ["loss", "mse", "vq_loss", "usage", "perplexity", "restarts"]  # train.py adds PSNR from the MSE
        values = [loss, mse, vq_loss, m["usage"], m["perplexity"], m["restarts"]]
        return loss, dict(zip(names, torch.stack(values).tolist()))  # one host sync for all metrics
