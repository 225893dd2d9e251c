"""Dynamics model: MaskGIT over video tokens, conditioned on actions (GenieRedux-G).

Paper sec. 4 ("GenieRedux-G"). A causal ST transformer reads the tokenizer's
token ids of a clip, some replaced by a mask id, plus the action that produced each
frame, and predicts the codebook index of every token. Trained with MaskGIT masking;
sampled by appending masked frames and unmasking them in a few confident steps.
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

from tokenizer import STBlock, TimeCache, commit


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
    token_input: str = "learned"  # paper sec. 4: add the projected code vector to the embedding: "learned",
    # "frozen" (the tokenizer's own output projection, times 10) or "none"
    tdce: bool = True  # paper eq. 1: token distance cross-entropy
    tdce_lambda: float = 1.0  # weight of the distance term

    def __post_init__(self):  # checkpoints written before the frozen variant stored token_input as a bool
        self.token_input = {True: "learned", False: "none"}.get(self.token_input, self.token_input)


PRESETS = {
    # CPU: the main job's world model in ~8 minutes, on the tiny tokenizer's 8x8 tokens of 256 codes
    "tiny": DynamicsConfig(num_codes=256, grid=(8, 8), dim=64, depth=4, heads=4),
    "small": DynamicsConfig(dim=256, depth=6, heads=8),  # one GPU, < 1 hour
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
    """One code per row of logits [K, C], drawn from softmax(logits / temperature); temperature 0 = argmax.

    Inverse transform sampling: one uniform number per token, looked up in the cumulative distribution.
    It draws from the same distribution as torch.multinomial (and Gumbel-max) at a fraction of the cost.
    Returns (codes int64 [K], their probability under softmax(logits) [K]: MaskGIT's confidence).
    """
    logits = logits.float()
    top = logits.amax(-1, keepdim=True)
    weights = (logits - top).exp_()  # softmax(logits) times its sum (in place: a second buffer costs page faults)
    if temperature == 0:
        codes = logits.argmax(-1)
    else:
        tempered = weights if temperature == 1 else ((logits - top) / temperature).exp_()
        codes = inverse_cdf(tempered, generator)
    return codes, weights.gather(-1, codes[:, None])[:, 0] / weights.sum(-1)


def inverse_cdf(weights, generator=None):
    """Per row of non-negative weights [K, C], the index i drawn with probability weights[i] / sum(weights).

    A uniform u in [0, sum) picks the first index whose running sum exceeds u. The running sum is taken in two
    levels, over groups of ~sqrt(C) codes and then inside the chosen group: a full cumsum over C codes is a
    sequential scan, 3-4x slower on a CPU. The same u gives the same index as the one-level lookup.
    """
    K, C = weights.shape
    size = math.isqrt(C - 1) + 1  # codes per group
    groups = (F.pad(weights, (0, -C % size)) if C % size else weights).view(K, -1, size)  # [K, G, size]
    group_sums = groups.sum(-1)  # [K, G]
    ends = group_sums.cumsum(-1)  # running sum at the end of each group
    u = torch.rand(K, 1, generator=generator, device=weights.device) * ends[:, -1:]
    group = torch.searchsorted(ends, u, right=True).clamp_max(ends.shape[1] - 1)  # [K, 1]
    u_inside = u - (ends.gather(1, group) - group_sums.gather(1, group))  # u minus the running sum before the group
    inside = groups.gather(1, group[:, :, None].expand(K, 1, size))[:, 0].cumsum(-1)  # [K, size]
    index = torch.searchsorted(inside, u_inside, right=True).clamp_max(size - 1)
    return (group * size + index)[:, 0].clamp_max(C - 1)


class Context:
    """The frames a sample continues from (Dynamics.context makes one; Dynamics.maskgit reads it).

    use_cache (default): a frame's keys and values are computed once, when it is appended, and each
    MaskGIT step runs only the frames being generated. use_cache=False keeps the tokens and re-runs
    every frame at every step: the plain reference the cache must match token for token.
    window: the cache keeps the last window frames at most (sliding-window attention for endless play).
    """

    def __init__(self, model, window=None, use_cache=True):
        assert use_cache or window is None, "a window needs the cache"
        self.model = model
        self.caches = [TimeCache(window) for _ in model.blocks] if use_cache else None
        self.tokens = self.frame_actions = None  # use_cache=False: the frames so far, [B, T, h, w] and [B, T]

    def hidden(self, tokens, frame_actions):
        """Hidden states [B, n, h*w, dim] of frames tokens [B, n, h, w] (frame_actions [B, n]) after the context."""
        if self.caches is not None:
            return self.model.hidden(tokens, frame_actions, self.caches)
        n = tokens.shape[1]
        return self.model.hidden(torch.cat([self.tokens, tokens], 1), torch.cat([self.frame_actions, frame_actions], 1))[:, -n:]

    @torch.no_grad()
    def append(self, tokens, frame_actions):
        """These frames [B, n, h, w], made by frame_actions [B, n], are final: they join the context."""
        if self.caches is not None:
            self.model.hidden(tokens, frame_actions, self.caches)
            commit(self.caches)
        elif self.tokens is None:
            self.tokens, self.frame_actions = tokens, frame_actions
        else:
            self.tokens = torch.cat([self.tokens, tokens], 1)
            self.frame_actions = torch.cat([self.frame_actions, frame_actions], 1)


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

        With caches (one TimeCache per block), tokens are the frames after the cached ones.
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
        for block, action_embed, cache in zip(self.blocks, self.action_embed, caches or [None] * len(self.blocks)):
            x = block(x + action_embed(frame_actions)[:, :, None, :], cache)  # causal in time
        return self.norm(x)

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
        # The first frames of a clip are its context and stay clean, as the frames a sample continues
        # from do: frame 0 always (nothing in the clip could predict it) and, per sample, a random
        # number of frames after it, so the model also learns to continue 2 clean frames (evaluation),
        # or 10 (autoregressive play). Later frames are masked at the sample's rate.
        context = torch.randint(1, T, (B,), device=tokens.device)  # [B] clean frames per sample
        _, mask = random_mask(tokens, self.mask_id)
        mask &= torch.arange(T, device=tokens.device)[None, :, None, None] >= context[:, None, None, None]
        logits = self(tokens.masked_fill(mask, self.mask_id), actions)[mask]  # [M, C]: only masked positions are scored
        targets = tokens[mask]  # [M]
        distance = self.distance if self.config.tdce else None
        loss, ce = tdce_loss(logits, targets, distance, self.config.tdce_lambda)
        acc = (logits.argmax(-1) == targets).float().mean()
        return loss, {"loss": loss.item(), "ce": ce.item(), "acc": acc.item(), "mask_rate": mask.float().mean().item()}

    # -----------------------------------------------------------------------
    # Sampling: MaskGIT on top of a context whose frames are computed once
    # -----------------------------------------------------------------------

    @torch.no_grad()
    def context(self, tokens, actions, window=None, use_cache=True):
        """The frames to continue from: tokens [B, Tc, h, w] and the Tc-1 actions between them -> a Context."""
        context = Context(self, window, use_cache)
        context.append(tokens, F.pad(actions, (1, 0), value=self.config.num_actions))  # frame 0: "no action"
        return context

    @torch.no_grad()
    def maskgit(self, context, actions, steps=25, temperature=1.0, generator=None, anneal=False, frame_order=0.0):
        """Sample the frames that follow `context`, made by actions [B, n], in `steps` MaskGIT steps.

        MaskGIT (Chang et al. 2022): start from fully masked frames; each step predicts every masked
        token, keeps the most confident ones and re-masks the rest, fewer every step (cosine schedule).
        Only the new frames run through the model. anneal: step s samples at temperature
        * (1 - (s+1)/steps), falling linearly to 0 (argmax) at the last step, as the authors' sampler does.
        frame_order (several frames at once): a token's confidence is its log-probability minus frame_order
        per frame after the first, so earlier frames tend to be committed first and, the model being causal
        in time, later frames are predicted from them; 0 is MaskGIT's order.
        Returns tokens [B, n, h, w]; `context.append` them to go on from there.
        """
        assert steps >= 1, f"MaskGIT needs at least one step, got steps={steps}"
        (B, n), (h, w) = actions.shape, self.config.grid
        M = n * h * w
        ids = actions.new_full((B, M), self.mask_id)  # [B, M] the frames being generated
        lateness = frame_order * torch.arange(n, device=ids.device).repeat_interleave(h * w)  # [M]
        for step in range(steps):
            masked = ids == self.mask_id
            hidden = context.hidden(ids.view(B, n, h, w), actions).reshape(B, M, -1)  # [B, M, dim]
            # only masked tokens are scored; in blocks of rows whose logits stay in the CPU's cache (3x faster)
            tau = temperature * (1 - (step + 1) / steps) if anneal else temperature
            samples = [sample_codes(self.head(rows), tau, generator) for rows in hidden[masked].split(2048)]
            codes, confidence = (torch.cat(x) for x in zip(*samples))  # [K] each
            candidates = ids.masked_scatter(masked, codes)
            # tokens fixed earlier stay fixed: infinite confidence (inf - lateness is still inf)
            confidence = torch.full(ids.shape, float("inf"), device=ids.device).masked_scatter(masked, confidence.log())
            confidence = confidence - lateness  # [B, M] - [M]
            # cosine schedule (MaskGIT): after this step cos(pi/2 * (step+1)/steps) of the tokens stay masked
            n_masked = math.floor(M * math.cos(math.pi / 2 * (step + 1) / steps))
            keep = torch.zeros_like(masked).scatter_(1, confidence.topk(M - n_masked, dim=1).indices, True)
            ids = torch.where(keep, candidates, self.mask_id)
        return ids.view(B, n, h, w)

    def _check_actions(self, context, actions, n_frames):
        B, Tc = context.shape[:2]
        assert actions.shape == (B, Tc - 1 + n_frames), \
            f"actions {tuple(actions.shape)} should be [B, Tc-1+n_frames] = {(B, Tc - 1 + n_frames)}"

    @torch.no_grad()
    def generate(self, context_tokens, actions, n_frames, steps=25, temperature=1.0, generator=None, use_cache=True,
                 anneal=False, frame_order=0.0):
        """Single-pass ("one go"): all n_frames future frames masked at once, one MaskGIT run over them.

        context_tokens [B, Tc, h, w], actions [B, Tc-1+n_frames] -> tokens [B, Tc+n_frames, h, w].
        temperature 0 samples the argmax (deterministic); steps=1 at temperature 0 = one argmax pass.
        use_cache=False re-runs the context at every step: slower, the same tokens. anneal, frame_order: see maskgit.
        """
        self._check_actions(context_tokens, actions, n_frames)
        Tc = context_tokens.shape[1]
        context = self.context(context_tokens, actions[:, :Tc - 1], use_cache=use_cache)
        new = self.maskgit(context, actions[:, Tc - 1:], steps, temperature, generator, anneal, frame_order)
        return torch.cat([context_tokens, new], dim=1)

    @torch.no_grad()
    def generate_autoregressive(self, context_tokens, actions, n_frames, steps=25, temperature=1.0, generator=None,
                                use_cache=True, anneal=False):
        """Like generate, but one frame at a time: each new frame is generated, then fed back as context."""
        self._check_actions(context_tokens, actions, n_frames)
        Tc = context_tokens.shape[1]
        context, frames = self.context(context_tokens, actions[:, :Tc - 1], use_cache=use_cache), [context_tokens]
        for t in range(Tc - 1, Tc - 1 + n_frames):
            frames.append(self.maskgit(context, actions[:, t:t + 1], steps, temperature, generator, anneal))
            context.append(frames[-1], actions[:, t:t + 1])
        return torch.cat(frames, dim=1)

    @torch.no_grad()
    def predict_logits(self, context_tokens, actions, n_frames, steps=1, temperature=0.0):
        """Logits of the last of n_frames predicted frames: the input of the AutoExplore reward (paper eq. 2).

        context_tokens [B, Tc, h, w] (the paper: Tc = 2 frames o(t-4), o(t-3)), actions
        [B, Tc-1+n_frames] (the actions since; the paper: n_frames = 3, predicting o(t-2)..o(t)).
        The first n_frames-1 frames are generated as `generate` does (default: one argmax pass);
        then the last frame is appended fully masked and one forward pass gives its
        distribution over codes. Returns float32 logits [B, h, w, num_codes];
        pass them to token_entropy for the per-token uncertainty. Batch all envs in B.
        """
        self._check_actions(context_tokens, actions, n_frames)
        B, Tc, h, w = context_tokens.shape
        context = self.context(context_tokens, actions[:, :Tc - 1])
        if n_frames > 1:
            between = actions[:, Tc - 1:-1]
            context.append(self.maskgit(context, between, steps, temperature), between)
        masked = context_tokens.new_full((B, 1, h, w), self.mask_id)
        return self.head(context.hidden(masked, actions[:, -1:]))[:, 0].view(B, h, w, -1).float()


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, config in PRESETS.items():
        print(f"{name:6s} {count_parameters(Dynamics(config)) / 1e6:6.2f}M parameters  {config}")
