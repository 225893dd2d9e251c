"""Dynamics model: MaskGIT over video tokens, conditioned on actions (GenieRedux-G).

Paper sec. 4 ("GenieRedux-G"), SPEC sec. 5. A causal ST transformer reads the tokenizer's
token ids of a clip, some replaced by a mask id, plus the action that produced each
frame, and predicts the codebook index of every token. Trained with MaskGIT masking;
sampled by appending masked frames and unmasking them in a few confident steps.
GenieRedux-G's two additions are switches (paper Tab. 4 ablation):
  token input  - the embedding of a token also gets a projection of its codebook vector;
  TDCE         - the loss also penalises probability put on codes far from the target.

Train (reads .npz episodes and the frozen tokenizer, writes runs/dynamics/ckpt.pt):
    python train.py --model dynamics --tokenizer runs/tokenizer/ckpt.pt --data data/airstriker
Print the parameter counts of the presets:
    python dynamics.py
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tokenizer import STBlock


@dataclass
class DynamicsConfig:
    num_codes: int = 1024  # tokenizer codebook size; id num_codes is the mask token
    code_dim: int = 32  # tokenizer code vector size (token input)
    grid: tuple = (16, 16)  # tokens per frame (h, w): 64x64 frames, patch 4
    num_actions: int = 5  # RIGHT LEFT UP DOWN JUMP; index num_actions is "no action"
    dim: int = 512
    depth: int = 12
    heads: int = 8
    mlp_ratio: int = 4
    token_input: bool = True  # paper sec. 4: add the projected codebook vector to the embedding
    tdce: bool = True  # paper eq. 1: token distance cross-entropy
    tdce_lambda: float = 1.0  # weight of the distance term


PRESETS = {
    "tiny": DynamicsConfig(dim=32, depth=2, heads=4),  # CPU tests, learns toy data in ~1 min
    "small": DynamicsConfig(dim=256, depth=6, heads=8),  # one GPU, < 1 hour
    "paper": DynamicsConfig(dim=512, depth=12, heads=8),  # paper / SPEC: 12 blocks, d=512, 8 heads
}


def random_mask(tokens, mask_id, generator=None):
    """MaskGIT training mask: per sample a rate r ~ U(0.5, 1), then each token is masked with prob. r.

    tokens: int64 [B, ...]. Returns (masked tokens, bool mask of the same shape).
    """
    B = tokens.shape[0]
    # one rate per sample, not per batch: the model sees every difficulty in every batch
    rate = 0.5 + 0.5 * torch.rand(B, generator=generator, device=tokens.device)
    rate = rate.view(B, *[1] * (tokens.dim() - 1))
    mask = torch.rand(tokens.shape, generator=generator, device=tokens.device) < rate
    return tokens.masked_fill(mask, mask_id), mask


def code_distance(codebook):
    """K[i, j] = 1 - cos(codebook_i, codebook_j): the TDCE table, [num_codes, num_codes], in [0, 2]."""
    c = F.normalize(codebook.float(), dim=-1)
    return 1 - c @ c.T


def tdce_loss(logits, targets, distance=None, lam=1.0):
    """Token Distance Cross-Entropy, paper eq. 1: CE(x, y) + lam * K[y] . softmax(x), averaged.

    logits: [M, C], targets: int64 [M], distance: K [C, C] or None (plain CE).
    Returns (loss, ce): both scalars, ce is the plain cross-entropy part.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, targets)
    if distance is None or lam == 0:
        return ce, ce
    # expected codebook distance of the prediction from y: mass on far codes costs more
    penalty = (distance[targets] * logits.softmax(-1)).sum(-1).mean()
    return ce + lam * penalty, ce


def token_entropy(logits):
    """Entropy in nats of each token's predicted distribution: logits [..., C] -> [...], in [0, ln C]."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


class Dynamics(nn.Module):
    """GenieRedux-G dynamics: tokens [B, T, h, w] + actions [B, T-1] -> logits [B, T, h, w, C].

    codebook: the frozen tokenizer codebook [num_codes, code_dim]; it is kept as a buffer,
    so a checkpoint carries it. None (tests, toy data) uses a fixed random unit codebook:
    token input and TDCE then run on meaningless but deterministic code vectors.
    """

    def __init__(self, config, codebook=None):
        super().__init__()
        self.config = c = config
        self.mask_id = c.num_codes  # never a real code id
        if codebook is None:
            codebook = torch.randn(c.num_codes, c.code_dim, generator=torch.Generator().manual_seed(0))
        if tuple(codebook.shape) != (c.num_codes, c.code_dim):
            raise ValueError(f"codebook has shape {tuple(codebook.shape)}, config expects "
                             f"({c.num_codes}, {c.code_dim}): pass the tokenizer's codebook")
        codebook = F.normalize(codebook.detach().float(), dim=-1)  # the tokenizer's codes are on the unit sphere
        self.register_buffer("codebook", codebook)  # [C, code_dim]
        self.register_buffer("distance", code_distance(codebook))  # [C, C], TDCE's K, precomputed once

        h, w = c.grid
        self.embed = nn.Embedding(c.num_codes + 1, c.dim)  # +1: the mask token
        self.code_proj = nn.Linear(c.code_dim, c.dim, bias=False) if c.token_input else None  # no bias: mask stays pure
        # masked frames are identical everywhere: a position embedding tells their tokens apart
        self.pos = nn.Parameter(torch.zeros(h * w, c.dim))
        # GenieRedux-G: the action enters every block. An embedding of the action added to the block
        # input equals concatenating its one-hot and projecting back. +1: "no action" for frame 0.
        self.action_embed = nn.ModuleList(nn.Embedding(c.num_actions + 1, c.dim) for _ in range(c.depth))
        self.blocks = nn.ModuleList(STBlock(c.dim, c.heads, c.grid, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_codes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens, actions):
        """tokens int64 [B, T, h, w] (may hold mask_id), actions int64 [B, T-1] -> logits [B, T, h, w, C]."""
        B, T, h, w = tokens.shape
        assert actions.shape == (B, T - 1), f"actions {tuple(actions.shape)} should be [B, T-1] = {(B, T - 1)}"
        ids = tokens.reshape(B, T, h * w)  # [B, T, N]
        x = self.embed(ids)  # [B, T, N, dim]
        if self.config.token_input:
            # paper sec. 4 skip connection: the code vector itself; the mask gets a zero vector
            codes = F.pad(self.codebook, (0, 0, 0, 1))[ids]  # [B, T, N, code_dim]
            x = x + self.code_proj(codes)
        x = x + self.pos
        # frame t is conditioned on the action that produced it: actions[:, t-1]; frame 0 on "no action"
        frame_actions = F.pad(actions, (1, 0), value=self.config.num_actions)  # [B, T]
        for block, action_embed in zip(self.blocks, self.action_embed):
            x = block(x + action_embed(frame_actions)[:, :, None, :])  # causal in time
        return self.head(self.norm(x)).view(B, T, h, w, -1)

    def loss(self, batch):
        """MaskGIT objective on a clip: batch {"tokens": [B, T, h, w], "actions": [B, T-1]}."""
        tokens, actions = batch["tokens"], batch["actions"]
        # Frame 0 is never masked: it is the context, as at sampling time, and nothing in the
        # clip could predict it. Every later frame is masked at the sample's rate, so the model
        # learns to predict from clean and from partly masked history alike (Genie masks all).
        future, mask = random_mask(tokens[:, 1:], self.mask_id)
        inputs = torch.cat([tokens[:, :1], future], dim=1)  # [B, T, h, w]
        # train.py --compile compiles this whole step, the TDCE loss included (1.44x faster on an H200)
        logits = self(inputs, actions)[:, 1:][mask]  # [M, C]: only masked positions are scored
        targets = tokens[:, 1:][mask]  # [M]
        distance = self.distance if self.config.tdce else None
        loss, ce = tdce_loss(logits, targets, distance, self.config.tdce_lambda)
        acc = (logits.argmax(-1) == targets).float().mean()
        return loss, {"loss": loss.item(), "ce": ce.item(), "acc": acc.item(), "mask_rate": mask.float().mean().item()}

    @torch.no_grad()
    def _maskgit(self, tokens, actions, start, steps, temperature, generator):
        """Fill every masked token of frames start.. in `steps` MaskGIT steps (cosine schedule)."""
        assert steps >= 1, f"MaskGIT needs at least one step, got steps={steps}"
        B, T, h, w = tokens.shape
        ids = tokens[:, start:].reshape(B, -1).clone()  # [B, M] the frames being generated
        M = ids.shape[1]
        for step in range(steps):
            logits = self(tokens, actions)[:, start:].float().reshape(B, M, -1)  # [B, M, C]
            if temperature == 0:
                sampled = logits.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1)
                sampled = torch.multinomial(probs.view(B * M, -1), 1, generator=generator).view(B, M)
            confidence = logits.softmax(-1).gather(-1, sampled[..., None])[..., 0]  # [B, M]
            known = ids != self.mask_id
            sampled = torch.where(known, ids, sampled)
            confidence = confidence.masked_fill(known, float("inf"))  # tokens fixed earlier stay fixed
            # cosine schedule (MaskGIT): after this step cos(pi/2 * (step+1)/steps) of the tokens stay masked
            n_masked = math.floor(M * math.cos(math.pi / 2 * (step + 1) / steps))
            keep = torch.zeros_like(known)
            keep.scatter_(1, confidence.topk(M - n_masked, dim=1).indices, True)
            ids = torch.where(keep, sampled, self.mask_id)
            tokens = torch.cat([tokens[:, :start], ids.view(B, T - start, h, w)], dim=1)
        return tokens

    def _check_actions(self, context, actions, n_frames):
        B, Tc = context.shape[:2]
        assert actions.shape == (B, Tc - 1 + n_frames), \
            f"actions {tuple(actions.shape)} should be [B, Tc-1+n_frames] = {(B, Tc - 1 + n_frames)}"

    @torch.no_grad()
    def generate(self, context_tokens, actions, n_frames, steps=25, temperature=1.0, generator=None):
        """Single-pass ("one go"): all n_frames future frames masked at once, one MaskGIT run over them.

        context_tokens [B, Tc, h, w], actions [B, Tc-1+n_frames] -> tokens [B, Tc+n_frames, h, w].
        temperature 0 samples the argmax (deterministic); steps=1 at temperature 0 = one argmax pass.
        """
        self._check_actions(context_tokens, actions, n_frames)
        B, Tc, h, w = context_tokens.shape
        masked = context_tokens.new_full((B, n_frames, h, w), self.mask_id)
        tokens = torch.cat([context_tokens, masked], dim=1)
        return self._maskgit(tokens, actions, Tc, steps, temperature, generator)

    @torch.no_grad()
    def generate_autoregressive(self, context_tokens, actions, n_frames, steps=25, temperature=1.0, generator=None):
        """Like generate, but one frame at a time: each new frame is generated, then fed back as context."""
        self._check_actions(context_tokens, actions, n_frames)
        tokens = context_tokens
        for _ in range(n_frames):
            T = tokens.shape[1]
            masked = torch.full_like(tokens[:, :1], self.mask_id)
            tokens = self._maskgit(torch.cat([tokens, masked], dim=1), actions[:, :T], T, steps, temperature, generator)
        return tokens

    @torch.no_grad()
    def predict_logits(self, context_tokens, actions, n_frames, steps=1, temperature=0.0):
        """Logits of the last of n_frames predicted frames: the input of the AutoExplore reward (paper eq. 2).

        context_tokens [B, Tc, h, w] (the paper: Tc = 2 frames o(t-4), o(t-3)), actions
        [B, Tc-1+n_frames] (the actions since; the paper: n_frames = 3, predicting o(t-2)..o(t)).
        The first n_frames-1 frames are generated with `generate` (default: one argmax pass);
        then the last frame is appended fully masked and one forward pass gives its
        distribution over codes. Returns float32 logits [B, h, w, num_codes];
        pass them to token_entropy for the per-token uncertainty. Batch all envs in B.
        """
        self._check_actions(context_tokens, actions, n_frames)
        tokens = context_tokens
        if n_frames > 1:
            tokens = self.generate(context_tokens, actions[:, :-1], n_frames - 1, steps, temperature)
        tokens = torch.cat([tokens, torch.full_like(tokens[:, :1], self.mask_id)], dim=1)
        return self(tokens, actions)[:, -1].float()


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, config in PRESETS.items():
        print(f"{name:6s} {count_parameters(Dynamics(config)) / 1e6:6.2f}M parameters  {config}")
