"""AutoExplore agent: an actor-critic that seeks out the world model's uncertainty (paper sec. 4, eqs. 2-4).

IRIS's actor-critic (actor_critic.py: 4 conv3x3 + max-pool layers, an LSTM, actor and critic heads)
plays a real game, trained with PPO over a gymnasium AsyncVectorEnv (as CleanRL's ppo_atari_lstm). The
game's reward is never used: at each step the frozen tokenizer and dynamics model see o(t-4), o(t-3) and
the four actions since, predict o(t-2)..o(t), and the reward is the mean of the top 25% of o(t)'s
normalised token entropies. `--reward env` trains the same agent on the game's own reward instead;
`--reward rf` and `--reward vae` on Burda et al.'s curiosity, a forward model's error in random or VAE
features (curiosity.py), the baselines of the paper's Tab. 6.
The first `--random-updates` rollouts are played by the uniform random policy, so the log and
curves.png carry random's level of the same reward. An intrinsic reward's return runs on across an
episode's end (`--episodic` cuts it there, the default of `--reward env`).

    python agent.py --env Airstriker-Genesis-v0 --dynamics runs/dynamics/ckpt.pt --out runs/agent
    python collect.py --policy agent --agent runs/agent/agent.pt --out data/explore
    python agent.py --report --data data/random data/explore --dynamics runs/dynamics/ckpt.pt --out runs/report

Reads a train.py dynamics checkpoint (it names its tokenizer). Writes OUT/agent.pt (atomic; --resume
goes on from it), OUT/log.jsonl, OUT/curves.png. --report runs exploration.py on episode folders (any
policy's): game return, time alive, places reached and the actions' entropy per episode, which need no
world model, and with --dynamics the AutoExplore reward of each step.
"""
import argparse
import functools
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium
import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from torch.distributions import Categorical

from actor_critic import PRESETS, ActorCritic, AgentConfig
from checkpoints import (CheckpointError, append_log, load_world_model, read_checkpoint, save_checkpoint, torch_device,
                         write_log)
from curiosity import Curiosity, CuriosityConfig
from dynamics import token_entropy
from envs import GameError, agent_envs, check_env, default_frame_skip, last_frames, make_game
from episodes import CTRL_C, EpisodeError, check_writable, folder_lock, remember_ctrl_c
from pictures import save_figure


# ---------------------------------------------------------------------------
# The AutoExplore reward (paper eqs. 2-4)
# ---------------------------------------------------------------------------

def autoexplore_reward(logits, top=0.25):
    """logits [B, h, w, C] of the predicted o(t) -> reward [B], the mean of the top 25% of u (eqs. 3-4)."""
    u = 2 * token_entropy(logits).flatten(1) / math.log(logits.shape[-1])  # eq. 2: [B, h*w], in [0, 2]
    # most tokens are the static background code, certain and uninformative: only the top quarter counts
    return u.topk(max(1, round(top * u.shape[1])), dim=1).values.mean(1)


class RecentFrames:
    """Per env the last 5 frames o(t-4)..o(t) and the 4 actions a(t-4)..a(t-1) between them."""

    def __init__(self, first_frames):
        N = len(first_frames)
        self.frames = np.zeros((N, 5, *first_frames.shape[1:]), np.uint8)  # [N, 5, H, W, 3]
        self.actions = np.zeros((N, 4), np.int64)  # actions[:, k] turned frames[:, k] into frames[:, k+1]
        self.count = np.zeros(N, np.int64)  # frames seen since the env's last reset
        self.restart(np.ones(N, bool), first_frames)

    def push(self, actions, frames):
        """a(t-1) [N] produced o(t) [N, H, W, 3]: slide the window by one step."""
        self.frames[:, :-1], self.frames[:, -1] = self.frames[:, 1:], frames
        self.actions[:, :-1], self.actions[:, -1] = self.actions[:, 1:], actions
        self.count += 1

    def restart(self, where, frames):
        """Envs in `where` [N] bool begin a new episode at frames[where]."""
        self.frames[where, -1], self.count[where] = frames[where], 1

    def reward_inputs(self):
        """What the reward sees: (o(t-4), o(t-3)) [N, 2, H, W, 3], a(t-4)..a(t-1) [N, 4], ready [N] bool."""
        return self.frames[:, :2], self.actions, self.count >= 5


@torch.no_grad()
def world_model_uncertainty(world_model, frames, actions, chunk=256):
    """frames uint8 [B, 2, H, W, 3] = o(t-4), o(t-3), actions [B, 4] = a(t-4)..a(t-1) -> rewards [B]."""
    dynamics, tokenizer = world_model
    device = dynamics.codebook.device
    out = []
    for i in range(0, len(frames), chunk):
        with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
            tokens = tokenizer.encode(torch.from_numpy(frames[i:i + chunk]).to(device).float() / 255)  # [b, 2, h, w]
            # o(t-2), o(t-1) from one argmax pass, then the distribution of every token of o(t)
            logits = dynamics.predict_logits(tokens, torch.from_numpy(actions[i:i + chunk]).to(device), n_frames=3)
        out.append(autoexplore_reward(logits).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def intrinsic_reward(world_model, recent):
    """The reward [N] of every env's last step, in one batched call; 0 until 5 frames exist."""
    frames, actions, ready = recent.reward_inputs()
    reward = np.zeros(len(ready), np.float32)
    if ready.any():
        reward[ready] = world_model_uncertainty(world_model, frames[ready], actions[ready])
    return reward


class ReturnScaler:
    """Divides each env's reward by the running standard deviation of its discounted return, as the
    curiosity and RND agents do (Burda et al. 2019). The world model's uncertainty is positive at every
    step and has no fixed scale: unscaled, value targets near r / (1 - gamma) swamp the policy's share of
    the clipped gradient."""

    def __init__(self, n_envs, gamma):
        self.gamma, self.returns = gamma, np.zeros(n_envs)
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0  # running moments of the discounted return

    def __call__(self, reward, done):
        self.returns = self.gamma * self.returns + reward
        n, mean, var = len(reward), self.returns.mean(), self.returns.var()
        total = self.count + n  # merge this step's moments into the running ones (Chan et al. 1979)
        delta = mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.count = total
        self.returns[done] = 0
        return reward / np.sqrt(self.var + 1e-8)

    def state_dict(self):  # plain floats: a checkpoint holds no numpy objects
        return {"returns": self.returns.tolist(), "count": float(self.count), "mean": float(self.mean), "var": float(self.var)}

    def load_state_dict(self, state):
        self.returns, self.count, self.mean, self.var = np.array(state["returns"]), state["count"], state["mean"], state["var"]


def advantage_estimates(rewards, values, starts, next_value, next_starts, gamma, lam, episodic):
    """GAE (Schulman et al. 2016) over one rollout: rewards, values, starts [T, N] (starts[t] = 1 where o(t) begins
    an episode), and the value and starts of the observation after the rollout [N] -> advantages [T, N].

    episodic: the discounted return ends where an episode ends. Without it the return runs on into the next
    episode, as Burda et al.'s curiosity agents and RND treat their intrinsic rewards: a reward paid at every step
    would otherwise teach the agent to avoid whatever ends an episode (in CoinRun dying, or reaching the coin)
    rather than to seek the world model's doubt.
    """
    next_values, next_starts = torch.cat([values[1:], next_value[None]]), torch.cat([starts[1:], next_starts[None]])
    carry = 1 - next_starts if episodic else torch.ones_like(next_starts)  # does step t's return see step t+1's?
    deltas = rewards + gamma * next_values * carry - values
    advantages, gae = torch.zeros_like(rewards), 0
    for t in reversed(range(len(rewards))):
        advantages[t] = gae = deltas[t] + gamma * lam * carry[t] * gae
    return advantages


# ---------------------------------------------------------------------------
# PPO training (as CleanRL's ppo_atari_lstm): rollout, bootstrap/GAE, minibatch epochs, logging
# ---------------------------------------------------------------------------

def train(args, make_env=None, world_model=None):
    """PPO. make_env() -> an envs.py-style game at frame_skip 1, picklable (it runs in the workers);
    None plays --env. world_model: (dynamics, tokenizer) for the AutoExplore reward; None loads --dynamics.
    Tests pass a toy game and a toy world model here."""
    from tqdm import tqdm
    device, out, path = torch.device(args.device), Path(args.out), Path(args.out) / "agent.pt"
    if device.type == "cpu" and args.reward != "autoexplore":
        torch.set_num_threads(1)  # the small policy (and curiosity's nets) gain nothing from more threads; the world model's reward,
        # computed while the game workers wait for their next action, does use every core
    ckpt = read_checkpoint(path, "--resume", device, "agent") if args.resume and path.exists() else None
    config = AgentConfig(**ckpt["config"]) if ckpt else PRESETS[args.preset]
    start, rows = (ckpt["update"], ckpt["log"]) if ckpt else (0, [])
    torch.manual_seed(args.seed + start)  # the initial weights, then the actions: a run is repeatable
    model = ActorCritic(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-5)
    N, T, R = args.num_envs, args.num_steps, config.resolution
    scaler = ReturnScaler(N, args.gamma)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["reward_scaler"])
    out.mkdir(parents=True, exist_ok=True)
    write_log(out / "log.jsonl", rows)  # drop rows past the checkpoint
    if args.reward == "autoexplore" and world_model is None:
        world_model = load_world_model(args.dynamics, device=device)[:2]
    curiosity = Curiosity(CuriosityConfig(args.reward, config.num_actions, resolution=R)).to(device) if args.reward in ("rf", "vae") else None
    if curiosity and ckpt:
        curiosity.load_checkpoint(ckpt["curiosity"])
    pairs = np.zeros((T, N, 2, R, R, 3), np.uint8) if curiosity else None  # o(t), o(t+1) of every step: curiosity learns from them
    make_env = make_env or functools.partial(make_game, args.env, 1, R)
    envs = agent_envs(make_env, N, args.frame_skip, args.max_steps, R)
    num_updates = max(1, args.total_steps // (N * T))
    obs_buf = torch.zeros(T, N, R, R, 3, dtype=torch.uint8, device=device)
    starts_buf, last_buf, actions_buf, logp_buf, values_buf, rewards_buf = torch.zeros(6, T, N, device=device)
    frames, _ = envs.reset(seed=[[args.seed + start, i] for i in range(N)])  # seeds from (seed, env index); obs is the frame
    recent, obs, starts = RecentFrames(frames), torch.from_numpy(frames).to(device), torch.ones(N, device=device)
    last_action = torch.zeros(N, dtype=torch.long, device=device)  # the action that led to obs (none at a start)
    state, ep_length, ep_return = model.initial_state(N, device), np.zeros(N, np.int64), np.zeros(N)
    bar = tqdm(range(start, num_updates), initial=start, total=num_updates, desc=f"agent ({args.reward})", unit="update")
    for update in bar:
        if CTRL_C:  # a Ctrl-C that landed in a finaliser, where Python swallowed its KeyboardInterrupt
            raise KeyboardInterrupt
        tic, finished = time.perf_counter(), []
        uniform = update < args.random_updates  # the uniform random policy plays: random's level of the reward
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (1 - update / num_updates)  # linear annealing to 0
        first_state = tuple(s.clone() for s in state)  # stage 3 re-runs the LSTM from here
        raw_rewards, entropies = np.zeros((T, N), np.float32), np.zeros(T)

        # 1. Rollout: N envs x T steps; the LSTM state carries across steps and updates
        for t in range(T):
            obs_buf[t], starts_buf[t], last_buf[t] = obs, starts, last_action
            with torch.no_grad():
                logits, value, state = model(obs[None], last_action[None], state, starts[None])
            dist = Categorical(logits=torch.zeros_like(logits[0]) if uniform else logits[0])
            action = dist.sample()
            actions_buf[t], logp_buf[t], values_buf[t], entropies[t] = action, dist.log_prob(action), value[0], dist.entropy().mean()
            action_np = action.cpu().numpy()
            next_obs, env_reward, terminated, truncated, infos = envs.step(action_np)
            done = terminated | truncated
            recent.push(action_np, last_frames(infos, done))
            # paper eqs. 2-4: the world model's uncertainty; rf, vae: Burda et al.'s forward-model error (curiosity.py);
            # the game's reward only with --reward env (sign-clipped, as for Atari)
            if args.reward == "autoexplore":
                raw_rewards[t] = intrinsic_reward(world_model, recent)
            elif curiosity:
                pairs[t] = recent.frames[:, -2:]  # the step just played: o(t), o(t+1) (a finished episode's last frame)
                raw_rewards[t] = curiosity.reward(pairs[t, :, 0], action_np, pairs[t, :, 1])
            else:
                raw_rewards[t] = np.sign(env_reward)
            recent.restart(done, next_obs)
            rewards_buf[t] = torch.as_tensor(scaler(raw_rewards[t], done & args.episodic) if args.scale_reward else raw_rewards[t], device=device)
            ep_length, ep_return = ep_length + 1, ep_return + env_reward
            finished += [(ep_length[i], ep_return[i]) for i in np.flatnonzero(done)]
            ep_length[done], ep_return[done] = 0, 0
            obs, starts = torch.from_numpy(next_obs).to(device), torch.as_tensor(done, dtype=torch.float32, device=device)
            last_action = action

        # 2. Bootstrap from the value of the next observation; GAE
        with torch.no_grad():
            next_value = model(obs[None], last_action[None], state, starts[None])[1][0]
        advantages = advantage_estimates(rewards_buf, values_buf, starts_buf, next_value, starts, args.gamma, args.gae_lambda, args.episodic)
        returns = advantages + values_buf

        # 3. PPO epochs; a minibatch is a set of whole env sequences, so the LSTM re-runs from first_state
        for _ in range(0 if uniform else args.epochs):
            for mb in torch.randperm(N, device=device).chunk(min(args.minibatches, N)):
                logits, value, _ = model(obs_buf[:, mb], last_buf[:, mb], (first_state[0][mb], first_state[1][mb]), starts_buf[:, mb])
                dist = Categorical(logits=logits)
                log_ratio = dist.log_prob(actions_buf[:, mb].long()) - logp_buf[:, mb]
                ratio = log_ratio.exp()
                adv = (advantages[:, mb] - advantages[:, mb].mean()) / (advantages[:, mb].std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                v_loss = 0.5 * (value - returns[:, mb]).pow(2).mean()
                loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                with torch.no_grad():  # CleanRL's diagnostics: how far the policy moved, how often the clip bit
                    approx_kl, clip_fraction = ((ratio - 1) - log_ratio).mean(), ((ratio - 1).abs() > args.clip).float().mean()

        # 3b. Curiosity: the forward model (and the VAE) learns from every rollout, random ones too: online, as Burda et al.
        curiosity_losses = curiosity.learn(pairs[:, :, 0].reshape(-1, R, R, 3), actions_buf.flatten().long().cpu().numpy(),
                                           pairs[:, :, 1].reshape(-1, R, R, 3), args.epochs, args.minibatches) if curiosity else {}

        # 4. Logging: a JSONL row per update; curves and an atomic checkpoint every --save-every updates
        lengths, game_returns = zip(*finished) if finished else ([], [])
        env_means = raw_rewards.mean(0)  # one mean per env: the standard error runs across envs
        row = {"update": update + 1, "steps": (update + 1) * N * T, "policy": "random" if uniform else "ppo",
               "reward": float(env_means.mean()), "reward_se": float(env_means.std(ddof=1) / math.sqrt(N)) if N > 1 else 0.0,
               "entropy": float(entropies.mean()), "episodes": len(lengths),
               "episode_length": float(np.mean(lengths)) if finished else None,
               "game_return": float(np.mean(game_returns)) if finished else None,
               "steps_per_s": N * T / (time.perf_counter() - tic), **curiosity_losses}
        if not uniform:
            variance = returns.var()
            row.update(pg_loss=pg_loss.item(), v_loss=v_loss.item(), approx_kl=approx_kl.item(), clip_fraction=clip_fraction.item(),
                       explained_variance=(1 - (returns - values_buf).var() / variance).item() if variance > 0 else None)
        append_log(out / "log.jsonl", rows, row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", entropy=f"{row['entropy']:.3f}", steps_per_s=f"{row['steps_per_s']:.0f}")
        if (update + 1) % args.save_every == 0 or update + 1 == num_updates:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(config),
                                   "model_type": "agent", "args": vars(args), "update": update + 1, "log": rows,
                                   "reward_scaler": scaler.state_dict(), **({"curiosity": curiosity.checkpoint()} if curiosity else {})})
            plot_curves(rows, args.reward, out / "curves.png")
    envs.close()


# ---------------------------------------------------------------------------
# Pictures: training curves
# ---------------------------------------------------------------------------

def plot_curves(rows, reward, path):
    """The agent's log rows against agent steps, random's level (its first updates) drawn as a dashed line."""
    ppo, random = [r for r in rows if r.get("policy") != "random"], [r for r in rows if r.get("policy") == "random"]
    panels = [("reward", f"{reward} reward per step (raw)"), ("entropy", "policy entropy"),
              ("game_return", "game return per episode"), ("episode_length", "episode length, steps")]
    fig = Figure(figsize=(13, 3.2), layout="tight")
    for ax, (key, title) in zip(fig.subplots(1, 4), panels):
        points = [(r["steps"], r[key]) for r in ppo if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), color="tab:blue", label="PPO")
        levels = [r[key] for r in random if r.get(key) is not None]
        if levels:
            level = float(np.mean(levels))
            ax.axhline(level, color="grey", ls="--", label=f"random {level:.3g}")
            if key == "reward":  # the standard error of random's level, across envs and its updates
                se = math.sqrt(sum(r["reward_se"] ** 2 for r in random)) / len(random)
                ax.axhspan(level - se, level + se, color="grey", alpha=0.2)
        if key == "entropy":
            ax.axhline(math.log(5), color="black", lw=0.5, ls=":", label="ln 5 (uniform)")
        ax.set(xlabel="agent steps", title=title)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default="Airstriker-Genesis-v0", help="stable-retro game id, or procgen:<name>[:plain|:mono] (procgen visuals: the paper's, no backgrounds, flat colours)")
    p.add_argument("--reward", choices=["autoexplore", "env", "rf", "vae"], default="autoexplore",
                   help="world-model uncertainty (paper eqs. 2-4), the game's own reward, or Burda et al.'s curiosity in random (rf) or VAE features (curiosity.py)")
    p.add_argument("--dynamics", help="dynamics checkpoint of train.py (it names its tokenizer): the AutoExplore reward; optional in --report")
    p.add_argument("--preset", choices=list(PRESETS), default="paper", help="actor-critic size")
    p.add_argument("--num-envs", type=positive, default=8, help="parallel games, one worker process each")
    p.add_argument("--num-steps", type=positive, default=128, help="rollout length per env and update, agent steps")
    p.add_argument("--total-steps", type=positive, default=1_000_000, help="agent steps over all envs, the random updates included")
    p.add_argument("--random-updates", type=int, default=1, help="first updates played by the uniform random policy, without learning: random's level of the reward")
    p.add_argument("--max-steps", type=positive, default=500, help="agent steps per episode at most")
    p.add_argument("--frame-skip", type=positive, default=None, help="action repeat (default: 4 for retro, 1 for procgen, as collect.py)")
    p.add_argument("--lr", type=float, default=2.5e-4, help="Adam learning rate, annealed linearly to 0")
    p.add_argument("--gamma", type=float, default=0.99, help="discount per agent step")
    p.add_argument("--gae-lambda", type=float, default=0.95, help="GAE lambda")
    p.add_argument("--epochs", type=int, default=4, help="PPO epochs per rollout")
    p.add_argument("--minibatches", type=positive, default=4, help="minibatches per epoch (the envs are split)")
    p.add_argument("--clip", type=float, default=0.1, help="PPO ratio clip")
    p.add_argument("--ent-coef", type=float, default=0.01, help="entropy bonus weight")
    p.add_argument("--vf-coef", type=float, default=0.5, help="value loss weight")
    p.add_argument("--max-grad-norm", type=float, default=0.5, help="gradient clip, global L2 norm")
    p.add_argument("--episodic", action=argparse.BooleanOptionalAction, default=None,
                   help="end the discounted return at an episode's end (default: yes for --reward env; no for the intrinsic rewards, whose return runs on into the next episode)")
    p.add_argument("--scale-reward", action=argparse.BooleanOptionalAction, default=True,
                   help="divide rewards by the running std of the discounted return (as RND); the log keeps the raw reward")
    p.add_argument("--save-every", type=positive, default=10, help="checkpoint and curves every this many updates")
    p.add_argument("--seed", type=int, default=0, help="seed of the policy and of the episodes")
    p.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu", help="torch device of the agent and the world model")
    p.add_argument("--out", default="runs/agent", help="folder of agent.pt, log.jsonl, curves.png, or of the report")
    p.add_argument("--resume", action="store_true", help="continue from OUT/agent.pt")
    p.add_argument("--report", action="store_true", help="measure the episodes of --data folders instead of training")
    p.add_argument("--data", nargs="+", help="--report: episode folders (collect.py's, or anyone's), one row each")
    p.add_argument("--agents", nargs="*", help="--report: agent checkpoints whose episodes are in --data, for their policy entropy")
    args = p.parse_args(argv)
    if args.reward == "autoexplore" and not args.report and not args.dynamics:
        p.error("--dynamics CKPT is needed for the AutoExplore reward (or train with --reward env)")
    if args.report and not args.data:
        p.error("--report needs --data DIR [DIR ...], folders of .npz episodes")
    args.frame_skip = args.frame_skip or default_frame_skip(args.env)
    args.episodic = args.reward == "env" if args.episodic is None else args.episodic
    return args


def standing(out):
    """Where a stopped run stands, for the line that ends it: its last logged update and the checkpoint to go on from."""
    log, path = Path(out) / "log.jsonl", Path(out) / "agent.pt"
    done = f"interrupted after update {len(log.read_text().splitlines()) if log.exists() else 0}"
    if not path.exists():
        return f"{done}; no checkpoint yet: run the same command again"
    return f"{done}; checkpoint of update {read_checkpoint(path, '--resume')['update']} at {path}; continue with --resume"


def main(argv=None, make_env=None, world_model=None):
    args = parse_args(argv)
    check_writable(args.out)  # before any work
    with folder_lock(args.out):  # one run per folder: a second one fails in one line naming this one
        if args.report:
            from exploration import report  # exploration.py reads this file's world_model_uncertainty
            return report(args)
        if make_env is None:
            check_env(args.env)
        try:
            train(args, make_env, world_model)
        except KeyboardInterrupt:  # Ctrl-C: one line that says where the run stands
            gymnasium.logger.min_level = gymnasium.logger.ERROR  # its game workers stop mid-step: no warning of that
            raise KeyboardInterrupt(standing(args.out)) from None


if __name__ == "__main__":
    remember_ctrl_c()
    try:
        main()
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted before the first update: run the same command again", file=sys.stderr)
        sys.exit(130)
    except (GameError, CheckpointError, EpisodeError, OSError) as e:
        sys.exit(f"error: {e}")
