"""The AutoExplore agent's network, IRIS's actor-critic (GenieRedux paper sec. 4), and the policy that plays it.

4 conv3x3 + max-pool layers encode a 64x64 frame, an LSTM carries the episode, and two linear heads
give the policy's logits and the value. The LSTM also reads the action played just before each frame
(as R2D2 and Agent57 do): a policy that must alternate two keys (fire on a press, then move) can not
tell from the picture alone which one it pressed last. agent.py trains it with PPO; `Policy` plays one
game with it, one step at a time, as collect.py does. Needs numpy and torch only.

    python agent.py --env Airstriker-Genesis-v0 --dynamics runs/dynamics/ckpt.pt --out runs/agent
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class AgentConfig:
    num_actions: int = 5  # RIGHT LEFT UP DOWN JUMP
    channels: tuple = (32, 32, 64, 64)  # conv3x3 widths, each followed by a 2x2 max-pool
    hidden: int = 512  # LSTM size
    resolution: int = 64  # input frames are resolution x resolution RGB


PRESETS = {
    "tiny": AgentConfig(channels=(8, 8, 16, 16), hidden=64),  # CPU tests
    "small": AgentConfig(channels=(16, 16, 32, 32), hidden=256),
    "paper": AgentConfig(),  # IRIS's actor-critic, as the paper
}


class ActorCritic(nn.Module):
    """CNN encoder -> LSTM -> actor and critic heads."""

    def __init__(self, config):
        super().__init__()
        self.config = c = config
        layers, width = [], 3
        for channels in c.channels:
            layers += [nn.Conv2d(width, channels, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
            width = channels
        self.encoder = nn.Sequential(*layers, nn.Flatten())  # [B, width * side * side]
        side = c.resolution // 2 ** len(c.channels)  # 64 -> 4
        self.lstm = nn.LSTMCell(width * side * side + c.num_actions, c.hidden)  # the frame's features and the last action
        self.actor = nn.Linear(c.hidden, c.num_actions)
        self.critic = nn.Linear(c.hidden, 1)
        nn.init.orthogonal_(self.actor.weight, 0.01)  # start from a near-uniform policy (as CleanRL)
        nn.init.zeros_(self.actor.bias)

    def initial_state(self, n, device="cpu"):
        return torch.zeros(n, self.config.hidden, device=device), torch.zeros(n, self.config.hidden, device=device)

    def forward(self, frames, last_actions, state, starts):
        """frames uint8 [T, N, H, W, 3], last_actions [T, N] (the action that led to each frame), state (h, c)
        [N, hidden], starts [T, N] (1: the frame begins an episode) -> logits [T, N, A], values [T, N], state
        after the last step."""
        T, N = frames.shape[:2]
        x = self.encoder(frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255).view(T, N, -1)
        keep = 1 - starts.float()[..., None]  # [T, N, 1]: a new episode starts from a zero state and no last action
        x = torch.cat([x, F.one_hot(last_actions.long(), self.config.num_actions).float() * keep], -1)
        h, c, hs = *state, []
        for t in range(T):
            h, c = self.lstm(x[t], (h * keep[t], c * keep[t]))
            hs.append(h)
        hs = torch.stack(hs)  # [T, N, hidden]
        return self.actor(hs), self.critic(hs)[..., 0], (h, c)


class Policy:
    """One game, one step at a time: actions sampled from the network, and with probability epsilon a
    uniformly random one. Without a model it is the random agent over num_actions actions."""

    def __init__(self, model=None, epsilon=0.15, name="random", num_actions=5):
        self.model, self.epsilon, self.name = model, epsilon, name
        self.num_actions = model.config.num_actions if model else num_actions
        self.device = next(model.parameters()).device if model else None
        self.reset(0)

    def reset(self, seed):
        """A new episode: zero LSTM state; the actions depend only on `seed` and the frames."""
        self.rng, self.generator = np.random.default_rng(seed), torch.Generator().manual_seed(int(seed))
        self.state = self.model.initial_state(1, self.device) if self.model else None
        self.start, self.last_action = torch.ones(1, 1, device=self.device), torch.zeros(1, 1, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def act(self, obs):
        """obs uint8 [H, W, 3] (what the agent sees) -> action index. The LSTM sees every frame."""
        uniform = int(self.rng.integers(self.num_actions))
        if self.model is None:
            return uniform
        logits, _, self.state = self.model(torch.from_numpy(obs).to(self.device)[None, None], self.last_action, self.state, self.start)
        self.start = torch.zeros_like(self.start)
        sampled = int(torch.multinomial(logits[0, 0].softmax(-1).cpu(), 1, generator=self.generator))
        action = uniform if self.rng.random() < self.epsilon else sampled
        self.last_action.fill_(action)  # the LSTM reads what was played, the random actions included
        return action

    @classmethod
    def from_checkpoint(cls, ckpt, name, epsilon=0.15, device="cpu"):
        """agent.py's checkpoint dict {model, config, ...} -> the Policy it trained, named `name`."""
        model = ActorCritic(AgentConfig(**ckpt["config"])).to(device)
        model.load_state_dict(ckpt["model"])
        return cls(model.eval(), epsilon, name)
