"""Curiosity rewards, the baselines of the paper's Tab. 6: a forward model's error in a feature space.

Burda et al. 2019, "Large-scale study of curiosity-driven learning" (ICLR), reward an agent with how badly a
forward model f predicts the features phi of the next frame from those of this frame and the action,

    r(t) = 0.5 ||phi(o(t+1)) - f(phi(o(t)), a(t))||^2

(their sec. 2: the surprisal -log p(phi(o(t+1)) | o(t), a(t)) of a unit-variance Gaussian forward model, up
to a constant; Pathak et al. 2017, eq. 6). f learns online from the agent's own transitions, so a transition
seen often stops paying and one it cannot predict (noise, a new screen) keeps paying. Two feature spaces:
  rf:  a CNN left at its random initialisation: fixed features;
  vae: the posterior mean of a VAE's encoder, the VAE trained online on the same rollouts as f. We train it
       online, as Burda et al. do, rather than fixed after pretraining: the agent then meets features that
       follow what it has seen, which is the difference from rf that their study (and Tab. 6) measures.

agent.py --reward rf|vae uses it: reward() at every step, learn() on each rollout's transitions after the
PPO epochs. Frames are the raw frames the episodes hold, the ones the world model is judged on. Torch only.

    python agent.py --reward rf --env Airstriker-Genesis-v0 --preset tiny --out runs/agent-rf
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class CuriosityConfig:
    features: str = "rf"  # rf: a fixed random CNN; vae: a VAE's encoder, trained online
    num_actions: int = 5  # RIGHT LEFT UP DOWN JUMP
    feature_dim: int = 512  # phi's size, as Burda et al.
    hidden: int = 512  # the forward model's width
    lr: float = 1e-3  # Adam, for f and the VAE (Burda et al.: 1e-4 over far more updates than a CPU run has)
    resolution: int = 64  # input frames are resolution x resolution RGB


def conv_encoder(out_dim):
    """Burda et al.'s small convnet (conv 8/4, 4/2, 3/1, then linear), on 64x64 RGB: [B, 3, 64, 64] -> [B, out_dim]."""
    return nn.Sequential(nn.Conv2d(3, 32, 8, stride=4), nn.LeakyReLU(),  # [B, 32, 15, 15]
                         nn.Conv2d(32, 64, 4, stride=2), nn.LeakyReLU(),  # [B, 64, 6, 6]
                         nn.Conv2d(64, 64, 3, stride=1), nn.LeakyReLU(),  # [B, 64, 4, 4]
                         nn.Flatten(), nn.Linear(64 * 4 * 4, out_dim))


def conv_decoder(in_dim):
    """The encoder mirrored: [B, in_dim] -> pixel logits [B, 3, 64, 64] (the VAE's Bernoulli likelihood)."""
    return nn.Sequential(nn.Linear(in_dim, 64 * 4 * 4), nn.LeakyReLU(), nn.Unflatten(1, (64, 4, 4)),
                         nn.ConvTranspose2d(64, 64, 3, stride=1), nn.LeakyReLU(),  # [B, 64, 6, 6]
                         nn.ConvTranspose2d(64, 32, 4, stride=2, output_padding=1), nn.LeakyReLU(),  # [B, 32, 15, 15]
                         nn.ConvTranspose2d(32, 3, 8, stride=4))  # [B, 3, 64, 64]


class ForwardModel(nn.Module):
    """f(phi(o(t)), a(t)) -> phi(o(t+1)) predicted: an MLP that sees the one-hot action at every layer, as Burda et al.'s."""

    def __init__(self, dim, hidden, num_actions):
        super().__init__()
        self.num_actions = num_actions
        self.layers = nn.ModuleList([nn.Linear(dim + num_actions, hidden), nn.Linear(hidden + num_actions, hidden),
                                     nn.Linear(hidden + num_actions, dim)])

    def forward(self, phi, actions):
        a, x = F.one_hot(actions, self.num_actions).float(), phi  # [B, A], [B, dim]
        for i, layer in enumerate(self.layers):
            x = layer(torch.cat([x, a], -1))
            x = F.leaky_relu(x) if i < len(self.layers) - 1 else x
        return x


class Curiosity(nn.Module):
    """The feature map phi (random or a VAE's encoder), the forward model f and their optimiser."""

    def __init__(self, config):
        super().__init__()
        self.config = c = config
        if c.features not in ("rf", "vae"):
            raise ValueError(f"features must be rf or vae, got {c.features!r}")
        vae = c.features == "vae"
        self.encoder = conv_encoder(2 * c.feature_dim if vae else c.feature_dim)  # the VAE's: mean and scale
        self.decoder = conv_decoder(c.feature_dim) if vae else None
        self.encoder.requires_grad_(vae)  # rf: phi stays at its random initialisation
        self.forward_model = ForwardModel(c.feature_dim, c.hidden, c.num_actions)
        self.optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=c.lr)

    def features(self, frames):
        """phi: uint8 frames [B, H, W, 3] -> (features [B, D], the VAE's posterior scale [B, D] or None)."""
        out = self.encoder(frames.permute(0, 3, 1, 2).float() / 255)
        if self.decoder is None:
            # a random CNN's outputs have no set scale: each frame's features standardised (Burda et al.'s layernorm option)
            return F.layer_norm(out, out.shape[-1:]), None
        mean, scale = out.chunk(2, -1)
        return mean, F.softplus(scale) + 1e-4  # the posterior mean is phi, as Burda et al.'s VAE features

    def error(self, before, actions, after):
        """0.5 ||phi(o(t+1)) - f(phi(o(t)), a(t))||^2 per transition [B]; phi is a target here, never trained by f."""
        with torch.no_grad():
            phi, phi_next = self.features(before)[0], self.features(after)[0]
        return 0.5 * (phi_next - self.forward_model(phi, actions)).pow(2).sum(-1)

    @torch.no_grad()
    def reward(self, before, actions, after):
        """The reward of transitions given as numpy: o(t) uint8 [B, H, W, 3], a(t) int [B], o(t+1) -> float32 [B]."""
        device = next(self.parameters()).device
        as_tensor = lambda x: torch.as_tensor(x, device=device)
        return self.error(as_tensor(before), as_tensor(actions).long(), as_tensor(after)).float().cpu().numpy()

    def vae_loss(self, frames):
        """The negative ELBO per frame: Bernoulli reconstruction of the pixels plus KL(q(z|o) || N(0, I))."""
        mean, scale = self.features(frames)
        z = mean + scale * torch.randn_like(mean)  # the reparameterisation trick
        target = frames.permute(0, 3, 1, 2).float() / 255
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(z), target, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mean.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
        return (reconstruction + kl).mean()

    def learn(self, before, actions, after, epochs=4, minibatches=4):
        """Fit f (and the VAE) on one rollout's transitions, numpy as in reward(): `epochs` passes of
        `minibatches` shuffled minibatches, as PPO's. Returns the last minibatch's losses, for the log."""
        device = next(self.parameters()).device
        before, after = torch.as_tensor(before, device=device), torch.as_tensor(after, device=device)
        actions, losses = torch.as_tensor(actions, device=device).long(), {}
        for epoch in range(epochs):
            for mb in torch.randperm(len(actions), device=device).chunk(minibatches):
                forward_loss = self.error(before[mb], actions[mb], after[mb]).mean()
                loss, losses["forward_loss"] = forward_loss, forward_loss.item()
                # Burda et al.: the VAE learns on the same minibatches as f; here in the first pass only, since its
                # decoder is the costliest part of an update on a CPU
                if self.decoder is not None and epoch == 0:
                    vae_loss = self.vae_loss(before[mb])
                    loss, losses["vae_loss"] = loss + vae_loss, vae_loss.item()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        return losses

    def checkpoint(self):
        """What --resume needs: the weights, the optimiser and the config."""
        return {"model": self.state_dict(), "optimizer": self.optimizer.state_dict(), "config": asdict(self.config)}

    def load_checkpoint(self, ckpt):
        self.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
