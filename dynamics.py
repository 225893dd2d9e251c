"""Dynamics model: MaskGIT over video tokens, conditioned on actions (GenieRedux-G).

Paper sec. 4 ("GenieRedux-G"). A causal ST transformer reads the tokenizer's
token ids of a clip, some replaced by a mask id, plus the action that produced each
frame, and predicts the codebook index of every token. Trained with MaskGIT masking;
sampled by appending masked frames and unmasking them in a few confident steps: Dynamics.generate
is that sampler as the paper describes it; generate_cached gives the same tokens faster, from a
TimeCache of the frames before (tokenizer.py), and sample_codes draws the codes.
GenieRedux-G's two additions are switches (paper Tab. 4 ablation):
  token input  - the embedding of a token also gets a projection of its codebook vector: a learned one,
                 or the tokenizer's own frozen output projection times 10 (the authors' code);
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

from tokenizer import STBlock, TimeCache


@dataclass
class DynamicsConfig:
    # num_codes, code_dim and grid are the tokenizer's: train.py copies them from it
    num_codes: int = 1024  # tokenizer codebook size; id num_codes is the mask token
    code_dim: int = 32  # tokenizer code vector size (token input)
    grid: tuple = (16, 16)  # tokens per frame (h, w): 64x64 frames, patch 4
    num_actions: int = 5  # RIGHT LEFT UP DOWN JUMP; index num_actions is "no action"
    dim: int = 512
    depth: int = 12
    heads: int = 8
    mlp_ratio: int = 4
    token_input: str = "learned"  # paper sec. 4: add the projected code vector to the embedding: "learned",
    # "frozen" (the tokenizer's own output projection, times 10) or "none"
    tdce: bool = True  # paper eq. 1: token distance cross-entropy
    tdce_lambda: float = 1.0  # weight of the distance term


PRESETS = {
    "tiny": DynamicsConfig(dim=64, depth=4, heads=4),  # CPU, as wide as the tiny tokenizer (token input "frozen")
    "small": DynamicsConfig(dim=256, depth=6, heads=8),  # one GPU
    "paper": DynamicsConfig(dim=512, depth=12, heads=8),  # the paper's: 12 blocks, d=512, 8 heads
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


def frozen_code_input(codebook, proj_out, dim):
    """Token input "frozen" (the authors' code): 10 * proj_out(code) of every unit code vector, zeros for the mask.

    codebook [C, code_dim] (unit vectors), proj_out: the tokenizer's nn.Linear(code_dim, dim) or None (a fixed
    random one). The codes are all the inputs the projection ever sees, so its frozen copy is this table
    [C+1, dim]: computed once, without gradient, and never trained.
    """
    code_dim = codebook.shape[1]
    if proj_out is None:
        weight = torch.randn(dim, code_dim, generator=torch.Generator().manual_seed(1)) / math.sqrt(code_dim)
        bias = None
    else:
        weight, bias = proj_out.weight.detach().float().cpu(), proj_out.bias.detach().float().cpu()
    if weight.shape != (dim, code_dim):
        raise ValueError(f"token input 'frozen' adds the tokenizer's {weight.shape[0]}-wide decoder input to a "
                         f"{dim}-wide embedding: use a dynamics preset of the tokenizer's width, or token input 'learned'")
    return F.pad(10 * F.linear(codebook.float().cpu(), weight, bias), (0, 0, 0, 1))


def token_entropy(logits):
    """Entropy in nats of each token's predicted distribution: logits [..., C] -> [...], in [0, ln C]."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def sample_codes(logits, temperature=1.0, generator=None):
    """One code per row of logits [K, C], drawn from softmax(logits / temperature); temperature 0: the argmax.

    Returns (codes int64 [K], their probability under softmax(logits) [K]: MaskGIT's confidence).
    The draw is torch.multinomial's, made faster by inverse_cdf.
    """
    logits = logits.float()
    probs = logits.softmax(-1)
    if temperature == 0:
        codes = logits.argmax(-1)
    else:
        codes = inverse_cdf(probs if temperature == 1 else (logits / temperature).softmax(-1), generator)
    return codes, probs.gather(-1, codes[:, None])[:, 0]


def inverse_cdf(weights, generator=None):
    """Per row of non-negative weights [K, C], the index i drawn with probability weights[i] / sum(weights).

    Inverse transform sampling: a uniform u in [0, sum) picks the first index whose running sum exceeds u.
    The running sum is taken in two levels, over groups of ~sqrt(C) codes and then inside the chosen group,
    as one cumsum over all C codes is a long sequential scan on a CPU. The same u gives the index of the
    one-level lookup, searchsorted(weights.cumsum(-1), u).
    """
    K, C = weights.shape
    size = math.isqrt(C - 1) + 1  # codes per group
    groups = F.pad(weights, (0, -C % size)).view(K, -1, size)  # [K, G, size]
    group_sums = groups.sum(-1)  # [K, G]
    ends = group_sums.cumsum(-1)  # running sum at the end of each group
    u = torch.rand(K, 1, generator=generator, device=weights.device) * ends[:, -1:]
    group = torch.searchsorted(ends, u, right=True).clamp_max(ends.shape[1] - 1)  # [K, 1]
    u_inside = u - (ends.gather(1, group) - group_sums.gather(1, group))  # u minus the running sum before the group
    inside = groups.gather(1, group[:, :, None].expand(K, 1, size))[:, 0].cumsum(-1)  # [K, size]
    index = torch.searchsorted(inside, u_inside, right=True).clamp_max(size - 1)
    return (group * size + index)[:, 0].clamp_max(C - 1)


class Dynamics(nn.Module):
    """GenieRedux-G dynamics: tokens [B, T, h, w] + actions [B, T-1] -> logits [B, T, h, w, C].

    codebook: the frozen tokenizer codebook [num_codes, code_dim]; it is kept as a buffer,
    so a checkpoint carries it. None (tests, toy data) uses a fixed random unit codebook:
    token input and TDCE then run on meaningless but deterministic code vectors.
    proj_out: the tokenizer's output projection (tokenizer.vq.proj_out, code_dim -> dim), needed by
    token_input "frozen"; a frozen copy of its output for every code is kept as a buffer. None: a fixed
    random projection, as for the codebook.
    """

    def __init__(self, config, codebook=None, proj_out=None):
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
        if c.token_input not in ("learned", "frozen", "none"):
            raise ValueError(f"token_input is 'learned', 'frozen' or 'none', got {c.token_input!r}")
        # no bias: the mask stays pure
        self.code_proj = nn.Linear(c.code_dim, c.dim, bias=False) if c.token_input == "learned" else None
        if c.token_input == "frozen":
            self.register_buffer("code_input", frozen_code_input(codebook, proj_out, c.dim))  # [C+1, dim]
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

    def hidden(self, tokens, frame_actions, caches=None):
        """tokens int64 [B, T, h, w] (may hold mask_id), frame_actions int64 [B, T]: the action that produced
        each frame (num_actions = none, an episode's first frame) -> hidden states [B, T, h*w, dim].

        Given caches (one TimeCache per block, of the frames before), tokens are the frames after those, and
        hidden returns (hidden states, the caches with these frames added); the caches given stay as they were.
        """
        B, T, h, w = tokens.shape
        ids = tokens.reshape(B, T, h * w)  # [B, T, N]
        x = self.embed(ids)  # [B, T, N, dim]
        if self.config.token_input == "learned":
            # paper sec. 4 skip connection: the code vector itself; the mask gets a zero vector
            codes = F.pad(self.codebook, (0, 0, 0, 1))[ids]  # [B, T, N, code_dim]
            x = x + self.code_proj(codes)
        elif self.config.token_input == "frozen":  # the same through the tokenizer's frozen projection: a lookup
            x = x + self.code_input[ids]
        x = x + self.pos
        caches = None if caches is None else list(caches)  # a new list: the caller's stays as it was
        for i, block in enumerate(self.blocks):
            x = x + self.action_embed[i](frame_actions)[:, :, None, :]
            if caches is None:
                x = block(x)  # causal in time
            else:
                x, caches[i] = block(x, caches[i])
        return self.norm(x) if caches is None else (self.norm(x), caches)

    def forward(self, tokens, actions):
        """tokens int64 [B, T, h, w] (may hold mask_id), actions int64 [B, T-1] -> logits [B, T, h, w, C]."""
        B, T, h, w = tokens.shape
        assert actions.shape == (B, T - 1), f"actions {tuple(actions.shape)} should be [B, T-1] = {(B, T - 1)}"
        # frame t is conditioned on the action that produced it: actions[:, t-1]; frame 0 on "no action"
        frame_actions = F.pad(actions, (1, 0), value=self.config.num_actions)  # [B, T]
        return self.head(self.hidden(tokens, frame_actions)).view(B, T, h, w, -1)

    def loss(self, batch):
        """MaskGIT objective on a clip: batch {"tokens": [B, T, h, w], "actions": [B, T-1]}."""
        tokens, actions = batch["tokens"], batch["actions"]
        B, T = tokens.shape[:2]
        # The first frames of a clip stay clean, as the frames a sample continues from do: frame 0
        # always (nothing in the clip could predict it) and, per sample, a random number of frames
        # after it, so the model also learns to continue 2 clean frames (evaluation), or 10
        # (autoregressive play). Later frames are masked at the sample's rate.
        n_clean = torch.randint(1, T, (B,), device=tokens.device)  # [B] clean frames per sample
        _, mask = random_mask(tokens, self.mask_id)
        mask &= torch.arange(T, device=tokens.device)[None, :, None, None] >= n_clean[:, None, None, None]
        frame_actions = F.pad(actions, (1, 0), value=self.config.num_actions)  # as in forward
        hidden = self.hidden(tokens.masked_fill(mask, self.mask_id), frame_actions)  # [B, T, h*w, dim]
        logits = self.head(hidden[mask.flatten(2)])  # [M, C]: only masked positions are scored, and computed
        targets = tokens[mask]  # [M]
        distance = self.distance if self.config.tdce else None
        loss, ce = tdce_loss(logits, targets, distance, self.config.tdce_lambda)
        acc = (logits.argmax(-1) == targets).float().mean()
        return loss, {"loss": loss.item(), "ce": ce.item(), "acc": acc.item(), "mask_rate": mask.float().mean().item()}

    # -----------------------------------------------------------------------
    # Sampling: MaskGIT, the plain algorithm first
    # -----------------------------------------------------------------------

    def _check_actions(self, tokens, actions, n_frames):
        B, T = tokens.shape[:2]
        assert actions.shape == (B, T - 1 + n_frames), \
            f"actions {tuple(actions.shape)} should be [B, T-1+n_frames] = {(B, T - 1 + n_frames)}"

    @torch.no_grad()
    def generate(self, tokens, actions, n_frames, steps=25, temperature=1.0, generator=None, anneal=False,
                 frame_order=0.0, predict=None):
        """MaskGIT (Chang et al. 2022), as Genie and the paper sample: n_frames frames after tokens [B, T, h, w].

        actions [B, T-1+n_frames]: the T-1 between the given frames, then the n_frames that make the new ones.
        Append n_frames fully masked frames ("one go"); each of `steps` steps predicts every masked token, keeps
        the most confident ones and re-masks the rest, fewer at every step along a cosine, none after the last.
        temperature: codes are drawn from softmax(logits / temperature); 0 takes the argmax.
        anneal (the authors' code): step s samples at temperature * (1 - (s+1)/steps), down to the argmax.
        frame_order: a token's confidence is its log-probability minus frame_order per frame after the first,
        so earlier frames settle first and, the model being causal in time, later frames are predicted from
        them; 0 is MaskGIT's own order. The paper's sampler is the defaults here (temperature 1, or anneal;
        frame_order 0); evaluate.py's defaults, temperature 0 and frame_order 0.25, are ours.
        predict(new frames [B, n, h, w]) -> their logits [B, n, h, w, C]. The default runs the whole clip
        through the model at every step; generate_cached gives the same logits running only the new frames.
        Returns tokens [B, T+n_frames, h, w].
        """
        B, T, h, w = tokens.shape

        def whole_clip(new):  # the plain way: the given frames and the new ones through the model
            return self(torch.cat([tokens, new], 1), actions)[:, T:]

        if predict is None:
            self._check_actions(tokens, actions, n_frames)
            predict = whole_clip
        new = tokens.new_full((B, n_frames, h, w), self.mask_id)  # the frames to make, fully masked
        M = n_frames * h * w  # tokens to make per sample
        lateness = frame_order * torch.arange(n_frames, device=new.device)[:, None, None]  # [n, 1, 1]
        for step in range(steps):
            masked = new == self.mask_id  # [B, n, h, w]
            tau = temperature * (1 - (step + 1) / steps) if anneal else temperature
            codes, probability = sample_codes(predict(new)[masked], tau, generator)  # every masked token: [K]
            # tokens kept earlier stay: infinite confidence (inf - lateness is still inf)
            confidence = torch.full(new.shape, math.inf, device=new.device).masked_scatter(masked, probability.log())
            confidence = (confidence - lateness).view(B, M)
            # cosine schedule (MaskGIT): after step s of S, cos(pi/2 * (s+1)/S) of the tokens are still masked
            n_masked = math.floor(M * math.cos(math.pi / 2 * (step + 1) / steps))
            keep = torch.zeros_like(masked).view(B, M).scatter_(1, confidence.topk(M - n_masked).indices, True)
            new = torch.where(keep.view_as(new), new.masked_scatter(masked, codes), self.mask_id)
        return torch.cat([tokens, new], 1)

    # -----------------------------------------------------------------------
    # The fast way: each frame's keys and values of time attention are computed once, into a TimeCache
    # -----------------------------------------------------------------------

    @torch.no_grad()
    def cache(self, tokens, actions, window=None):
        """The TimeCaches (one per block) of frames tokens [B, T, h, w] and the T-1 actions between them.

        window: a frame looks back at most window - 1 frames (sliding-window attention, for endless play).
        """
        frame_actions = F.pad(actions, (1, 0), value=self.config.num_actions)  # frame 0: "no action"
        return self.add_frames([TimeCache(window) for _ in self.blocks], tokens, frame_actions)

    @torch.no_grad()
    def add_frames(self, caches, tokens, actions):
        """The caches with frames tokens [B, n, h, w], made by actions [B, n], added after their frames."""
        return self.hidden(tokens, actions, caches)[1]

    @torch.no_grad()
    def generate_cached(self, caches, actions, steps=25, temperature=1.0, generator=None, anneal=False,
                        frame_order=0.0):
        """generate after the frames of caches (Dynamics.cache) instead of their tokens: the same tokens, and
        each MaskGIT step runs only the new frames, made by actions [B, n]. Returns them, [B, n, h, w].

        Pass them to add_frames to go on from there.
        """
        (B, n), (h, w) = actions.shape, self.config.grid

        def predict(new):  # the caches serve the keys and values of the frames before
            return self.head(self.hidden(new, actions, caches)[0]).view(B, n, h, w, -1)

        before = actions.new_zeros(B, 0, h, w)  # no frame before is given as tokens: the caches hold them
        return self.generate(before, None, n, steps, temperature, generator, anneal, frame_order, predict)

    @torch.no_grad()
    def generate_autoregressive(self, tokens, actions, n_frames, steps=25, temperature=1.0, generator=None,
                                anneal=False):
        """Like generate, but one frame at a time, each fed back as context: the tokens of calling generate
        for one frame n_frames times, on a TimeCache of the frames so far."""
        self._check_actions(tokens, actions, n_frames)
        T = tokens.shape[1]
        caches, frames = self.cache(tokens, actions[:, :T - 1]), [tokens]
        for t in range(T - 1, T - 1 + n_frames):
            frames.append(self.generate_cached(caches, actions[:, t:t + 1], steps, temperature, generator, anneal))
            caches = self.add_frames(caches, frames[-1], actions[:, t:t + 1])
        return torch.cat(frames, 1)

    @torch.no_grad()
    def predict_logits(self, tokens, actions, n_frames, steps=1, temperature=0.0):
        """Logits of the last of n_frames predicted frames: the input of the AutoExplore reward (paper eq. 2).

        tokens [B, T, h, w] (the paper: T = 2 frames o(t-4), o(t-3)), actions [B, T-1+n_frames] (the actions
        since; the paper: n_frames = 3, predicting o(t-2)..o(t)). The first n_frames-1 frames are generated as
        `generate` does (default: one argmax pass); then the last frame is appended fully masked and one
        forward pass gives its distribution over codes. Returns float32 logits [B, h, w, num_codes];
        pass them to token_entropy for the per-token uncertainty. Batch all envs in B.
        """
        self._check_actions(tokens, actions, n_frames)
        B, T, h, w = tokens.shape
        caches, between = self.cache(tokens, actions[:, :T - 1]), tokens[:, :0]
        if n_frames > 1:
            between = self.generate_cached(caches, actions[:, T - 1:-1], steps, temperature)
        masked = tokens.new_full((B, 1, h, w), self.mask_id)
        hidden = self.hidden(torch.cat([between, masked], 1), actions[:, T - 1:], caches)[0]  # [B, n, h*w, dim]
        return self.head(hidden[:, -1]).view(B, h, w, -1).float()


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, config in PRESETS.items():
        print(f"{name:6s} {count_parameters(Dynamics(config)) / 1e6:6.2f}M parameters  {config}")
