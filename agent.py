"""AutoExplore agent: an actor-critic that seeks out the world model's uncertainty (paper sec. 4, eqs. 2-4).

IRIS's actor-critic (actor_critic.py: 4 conv3x3 + max-pool layers, an LSTM, actor and critic heads)
plays a real game, trained with PPO over a gymnasium AsyncVectorEnv (as CleanRL's ppo_atari_lstm). The
game's reward is never used: at each step the frozen tokenizer and dynamics model see o(t-4), o(t-3) and
the four actions since, predict o(t-2)..o(t), and the reward is the mean of the top 25% of o(t)'s
normalised token entropies. `--reward env` trains the same agent on the game's own reward instead.

    python agent.py --env Airstriker-Genesis-v0 --dynamics runs/dynamics/ckpt.pt --out runs/agent
    python agent.py --report --agent runs/agent/agent.pt --dynamics runs/dynamics/ckpt.pt --out runs/agent
    python collect.py --policy agent --agent runs/agent/agent.pt --out data/explore

Reads a train.py dynamics checkpoint (it names its tokenizer). Writes OUT/agent.pt (atomic; --resume
goes on from it), OUT/log.jsonl, OUT/curves.png; --report writes OUT/report.json and OUT/report.png.
"""
import argparse
import functools
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from torch.distributions import Categorical

from actor_critic import PRESETS, ActorCritic, AgentConfig, Policy
from checkpoints import CheckpointError, load_world_model, read_checkpoint, save_checkpoint
from dynamics import token_entropy
from envs import AgentGame, GameError, agent_envs, check_env, default_frame_skip, last_frames, make_game
from episodes import check_writable


# ---------------------------------------------------------------------------
# The AutoExplore reward (paper eqs. 2-4)
# ---------------------------------------------------------------------------

def autoexplore_reward(logits, top=0.25):
    """logits [B, h, w, C] of the predicted o(t) -> reward [B], the mean of the top 25% of u (eqs. 3-4)."""
    u = 2 * token_entropy(logits).flatten(1) / math.log(logits.shape[-1])  # eq. 2: [B, h*w], in [0, 2]
    # most tokens are the static background code, certain and uninformative: only the top quarter counts
    return u.topk(max(1, round(top * u.shape[1])), dim=1).values.mean(1)


class History:
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

    def context(self):
        """What the reward sees: (o(t-4), o(t-3)) [N, 2, H, W, 3], a(t-4)..a(t-1) [N, 4], ready [N] bool."""
        return self.frames[:, :2], self.actions, self.count >= 5


@torch.no_grad()
def world_uncertainty(world, frames, actions, chunk=256):
    """frames uint8 [B, 2, H, W, 3] = o(t-4), o(t-3), actions [B, 4] = a(t-4)..a(t-1) -> rewards [B]."""
    dynamics, tokenizer = world
    device = dynamics.codebook.device
    out = []
    for i in range(0, len(frames), chunk):
        with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
            tokens = tokenizer.encode(torch.from_numpy(frames[i:i + chunk]).to(device).float() / 255)  # [b, 2, 16, 16]
            # o(t-2), o(t-1) from one argmax pass, then the distribution of every token of o(t)
            logits = dynamics.predict_logits(tokens, torch.from_numpy(actions[i:i + chunk]).to(device), n_frames=3)
        out.append(autoexplore_reward(logits).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def intrinsic_reward(world, history):
    """The reward [N] of every env's last step, in one batched call; 0 until 5 frames exist."""
    frames, actions, ready = history.context()
    reward = np.zeros(len(ready), np.float32)
    if ready.any():
        reward[ready] = world_uncertainty(world, frames[ready], actions[ready])
    return reward


# ---------------------------------------------------------------------------
# PPO training (as CleanRL's ppo_atari_lstm): rollout, bootstrap/GAE, minibatch epochs, logging
# ---------------------------------------------------------------------------

def train(args, make_env=None):
    """PPO. make_env() -> an envs.py-style game at frame_skip 1, picklable (it runs in the workers);
    None plays --env. Tests pass a toy game here."""
    from tqdm import tqdm
    device, out, path = torch.device(args.device), Path(args.out), Path(args.out) / "agent.pt"
    ckpt = read_checkpoint(path, "--resume", device) if args.resume and path.exists() else None
    config = AgentConfig(**ckpt["config"]) if ckpt else PRESETS[args.preset]
    model = ActorCritic(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-5)
    start, rows = (ckpt["update"], ckpt["log"]) if ckpt else (0, [])
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # drop rows past the checkpoint
    torch.manual_seed(args.seed + start)
    world = load_world_model(args.dynamics, device=device)[:2] if args.reward == "autoexplore" else None
    make_env = make_env or functools.partial(make_game, args.env, 1, config.resolution)
    N, T, R = args.num_envs, args.num_steps, config.resolution
    envs = agent_envs(make_env, N, args.frame_skip, args.max_steps, R)
    num_updates = max(1, args.total_steps // (N * T))
    obs_buf = torch.zeros(T, N, R, R, 3, dtype=torch.uint8, device=device)
    starts_buf, actions_buf, logp_buf, values_buf, rewards_buf = torch.zeros(5, T, N, device=device)
    frames, _ = envs.reset(seed=[[args.seed + start, i] for i in range(N)])  # seeds from (seed, env index); obs is the frame
    history, obs, starts = History(frames), torch.from_numpy(frames).to(device), torch.ones(N, device=device)
    state, ep_length, ep_return = model.initial_state(N, device), np.zeros(N, np.int64), np.zeros(N)
    bar = tqdm(range(start, num_updates), initial=start, total=num_updates, desc=f"agent ({args.reward})", unit="update")
    for update in bar:
        tic, finished = time.perf_counter(), []
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (1 - update / num_updates)  # linear annealing to 0
        first_state = tuple(s.clone() for s in state)  # stage 3 re-runs the LSTM from here

        # 1. Rollout: N envs x T steps; the LSTM state carries across steps and updates
        for t in range(T):
            obs_buf[t], starts_buf[t] = obs, starts
            with torch.no_grad():
                logits, value, state = model(obs[None], state, starts[None])
            dist = Categorical(logits=logits[0])
            action = dist.sample()
            actions_buf[t], logp_buf[t], values_buf[t] = action, dist.log_prob(action), value[0]
            action_np = action.cpu().numpy()
            next_obs, env_reward, terminated, truncated, infos = envs.step(action_np)
            done = terminated | truncated
            history.push(action_np, last_frames(infos, done))
            # paper eqs. 2-4: the world model's uncertainty; the game's reward only with --reward env
            # (sign-clipped, as for Atari)
            reward = intrinsic_reward(world, history) if world else np.sign(env_reward)
            history.restart(done, next_obs)
            rewards_buf[t] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            ep_length, ep_return = ep_length + 1, ep_return + reward
            finished += [(ep_length[i], ep_return[i]) for i in np.flatnonzero(done)]
            ep_length[done], ep_return[done] = 0, 0
            obs, starts = torch.from_numpy(next_obs).to(device), torch.as_tensor(done, dtype=torch.float32, device=device)

        # 2. Bootstrap from the value of the next observation; GAE (Schulman et al. 2016)
        with torch.no_grad():
            next_value = model(obs[None], state, starts[None])[1][0]
        advantages, gae = torch.zeros_like(rewards_buf), 0
        for t in reversed(range(T)):
            next_starts, next_v = (starts_buf[t + 1], values_buf[t + 1]) if t + 1 < T else (starts, next_value)
            delta = rewards_buf[t] + args.gamma * next_v * (1 - next_starts) - values_buf[t]
            advantages[t] = gae = delta + args.gamma * args.gae_lambda * (1 - next_starts) * gae
        returns = advantages + values_buf

        # 3. PPO epochs; a minibatch is a set of whole env sequences, so the LSTM re-runs from first_state
        for _ in range(args.epochs):
            for mb in torch.randperm(N, device=device).chunk(min(args.minibatches, N)):
                logits, value, _ = model(obs_buf[:, mb], (first_state[0][mb], first_state[1][mb]), starts_buf[:, mb])
                dist = Categorical(logits=logits)
                ratio = (dist.log_prob(actions_buf[:, mb].long()) - logp_buf[:, mb]).exp()
                adv = (advantages[:, mb] - advantages[:, mb].mean()) / (advantages[:, mb].std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                v_loss = 0.5 * (value - returns[:, mb]).pow(2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()

        # 4. Logging: a JSONL row per update; curves and an atomic checkpoint every --save-every updates
        lengths, ep_returns = zip(*finished) if finished else (None, None)
        rows.append({"update": update + 1, "steps": (update + 1) * N * T, "reward": rewards_buf.mean().item(),
                     "episode_length": float(np.mean(lengths)) if finished else None,
                     "episode_return": float(np.mean(ep_returns)) if finished else None,
                     "pg_loss": pg_loss.item(), "v_loss": v_loss.item(), "entropy": entropy.item(),
                     "steps_per_s": N * T / (time.perf_counter() - tic)})
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        bar.set_postfix(reward=f"{rows[-1]['reward']:.3f}", steps_per_s=f"{rows[-1]['steps_per_s']:.0f}")
        if (update + 1) % args.save_every == 0 or update + 1 == num_updates:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(config),
                                   "model_type": "agent", "args": vars(args), "update": update + 1, "log": rows})
            plot_curves(rows, out / "curves.png")
    envs.close()


# ---------------------------------------------------------------------------
# Exploration report: the random agent and the trained agent, same game and step budget
# ---------------------------------------------------------------------------

X_KEYS = ("x", "xpos", "x_position", "player_x")  # RAM variables that hold the player's x, where a game names one


def ram_x(game):
    """The player's x from stable-retro's named RAM variables; None where the game names none."""
    data = getattr(getattr(game, "env", None), "data", None)
    info = data.lookup_all() if data is not None else {}
    return next((info[k] for k in X_KEYS if k in info), None)


def play(policy, game, budget, max_steps):
    """`budget` steps of `policy` -> per episode (frames [T+1, H, W, 3], actions [T], farthest |x - x0| or None,
    the game's reward summed over the episode)."""
    episodes = []
    while budget > 0:
        policy.reset(len(episodes))
        frames, actions, total = [game.reset(len(episodes))], [], 0.0
        xs = [ram_x(game.game)]
        while len(actions) < min(budget, max_steps):
            frame, reward, done = game.step(action := policy.act(game.obs))
            total += reward
            if frame is None:
                break
            frames.append(frame), actions.append(action), xs.append(ram_x(game.game))
            if done:
                break
        budget -= max(1, len(actions))
        far = max(abs(x - xs[0]) for x in xs) if xs[0] is not None else None
        episodes.append((np.stack(frames), np.array(actions), far, total))
    return episodes


def coverage(frames, side=8, levels=4):
    """How many distinct coarse pictures were seen after each frame: uint8 [N, H, W, 3] -> int [N].

    A frame is shrunk to side x side cells (cell averages) with `levels` values per colour channel, so
    small changes (a flicker, a moving enemy) do not count as new places; only reaching new screens does.
    It needs no world model: the measure of how much of the game an agent reaches.
    """
    N, H, W, _ = frames.shape
    coarse = frames.reshape(N, side, H // side, side, W // side, 3).mean((2, 4)).astype(np.uint16) * levels // 256
    seen, counts = set(), np.zeros(N, np.int64)
    for i, picture in enumerate(coarse.astype(np.uint8)):
        seen.add(picture.tobytes())
        counts[i] = len(seen)
    return counts


def report(args):
    """The random agent against --agent on the same game and step budget; writes OUT/report.json, .md and .png.

    World-model-free measures: coarse pictures reached (coverage curve), distinct frames, x reached (where the
    game names it in RAM), the game's return. With --dynamics also the AutoExplore reward the agent trained on.
    """
    world, results = load_world_model(args.dynamics, device=args.device)[:2] if args.dynamics else None, {}
    agent = Policy.from_checkpoint(read_checkpoint(args.agent, "--agent"), f"agent:{args.agent}", args.epsilon)
    for policy in (Policy(), agent):
        game = AgentGame(make_game(args.env, 1, 64), args.frame_skip)
        episodes = play(policy, game, args.report_steps, args.max_steps)
        game.close()
        frames = np.concatenate([f for f, *_ in episodes])
        far = [d for _, _, d, _ in episodes if d is not None]
        name = policy.name.split(":")[0]
        curve = coverage(frames)
        results[name] = {"episodes": len(episodes), "steps": sum(len(a) for _, a, _, _ in episodes),
                         "coverage": int(curve[-1]), "distinct_frames": len({f.tobytes() for f in frames}),
                         "x_displacement": float(np.mean(far)) if far else None,  # None: the game names no x in RAM
                         "game_return": float(np.mean([r for *_, r in episodes]))}
        if world is not None:  # the reward of each step t >= 4 from o(t-4), o(t-3) and a(t-4)..a(t-1), as in training
            windows = [(f[t - 4:t - 2], a[t - 4:t]) for f, a, _, _ in episodes for t in range(4, len(f))]
            rewards = world_uncertainty(world, *map(np.stack, zip(*windows))) if windows else np.zeros(1)
            results[name]["autoexplore_reward"] = float(rewards.mean())
        print(f"{name:6s} " + ", ".join(f"{k} {v}" for k, v in results[name].items()))
        results[name]["coverage_curve"] = curve.tolist()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"env": args.env, "agent": args.agent, **results}, indent=2))
    rows = [f"| {name} | {r['steps']} | {r['coverage']} | {r['distinct_frames']} | "
            f"{'-' if r['x_displacement'] is None else round(r['x_displacement'], 1)} | {r['game_return']:.2f} |"
            for name, r in results.items()]
    (out / "report.md").write_text("| agent | steps | coarse pictures reached | distinct frames | x reached | "
                                   "game return per episode |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    plot_exploration(results, f"{args.env}: {args.report_steps} steps per agent", out / "report.png")


# ---------------------------------------------------------------------------
# Pictures: training curves and the exploration report
# ---------------------------------------------------------------------------

def plot_curves(rows, path):
    """The agent's log rows: mean reward per step and episode length against agent steps."""
    fig = Figure(figsize=(9, 3.2), layout="tight")
    for ax, key, title in zip(fig.subplots(1, 2), ("reward", "episode_length"),
                              ("mean reward per step", "episode length, steps")):
        ax.plot([r["steps"] for r in rows if r[key] is not None], [r[key] for r in rows if r[key] is not None])
        ax.set(xlabel="agent steps", title=title)
    fig.savefig(path, dpi=100)


def plot_exploration(results, title, path):
    """Coverage curves of the random agent and the trained one ({name: report figures}), then a bar per agent
    for the game's return, the x reached and (where measured) the AutoExplore reward."""
    keys = [k for k in ("game_return", "x_displacement", "autoexplore_reward") if k in results["random"]]
    fig = Figure(figsize=(4 + 3 * len(keys), 3), layout="tight")
    axes = fig.subplots(1, 1 + len(keys))
    for (name, r), colour in zip(results.items(), ("grey", "tab:blue")):
        axes[0].plot(range(1, len(r["coverage_curve"]) + 1), r["coverage_curve"], color=colour, label=name)
    axes[0].set(xlabel="frames seen", title="coarse pictures reached (coverage)")
    axes[0].legend(fontsize=7)
    for ax, key in zip(axes[1:], keys):
        ax.bar(list(results), [r[key] or 0 for r in results.values()], color=["grey", "tab:blue"])
        ax.set_title(key.replace("_", " "))
        if results["random"][key] is None:
            ax.text(0.5, 0.5, "the game names no x in RAM:\nsee coverage", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default="Airstriker-Genesis-v0", help="stable-retro game id or procgen:<name>")
    p.add_argument("--reward", choices=["autoexplore", "env"], default="autoexplore", help="world-model uncertainty (paper eqs. 2-4) or the game's own reward")
    p.add_argument("--dynamics", help="dynamics checkpoint of train.py (it names its tokenizer): the AutoExplore reward; optional in --report")
    p.add_argument("--preset", choices=list(PRESETS), default="paper", help="actor-critic size")
    p.add_argument("--num-envs", type=int, default=8, help="parallel games, one worker process each")
    p.add_argument("--num-steps", type=int, default=128, help="rollout length per env and update, agent steps")
    p.add_argument("--total-steps", type=int, default=1_000_000, help="agent steps over all envs")
    p.add_argument("--max-steps", type=int, default=500, help="agent steps per episode at most")
    p.add_argument("--frame-skip", type=int, default=None, help="action repeat (default: 4 for retro, 1 for procgen, as collect.py)")
    p.add_argument("--lr", type=float, default=2.5e-4, help="Adam learning rate, annealed linearly to 0")
    p.add_argument("--gamma", type=float, default=0.99, help="discount per agent step")
    p.add_argument("--gae-lambda", type=float, default=0.95, help="GAE lambda")
    p.add_argument("--epochs", type=int, default=4, help="PPO epochs per rollout")
    p.add_argument("--minibatches", type=int, default=4, help="minibatches per epoch (the envs are split)")
    p.add_argument("--clip", type=float, default=0.1, help="PPO ratio clip")
    p.add_argument("--ent-coef", type=float, default=0.01, help="entropy bonus weight")
    p.add_argument("--vf-coef", type=float, default=0.5, help="value loss weight")
    p.add_argument("--max-grad-norm", type=float, default=0.5, help="gradient clip, global L2 norm")
    p.add_argument("--save-every", type=int, default=10, help="checkpoint and curves every this many updates")
    p.add_argument("--seed", type=int, default=0, help="seed of the policy and of the episodes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device of the agent and the world model")
    p.add_argument("--out", default="runs/agent", help="folder of agent.pt, log.jsonl, curves.png and the report")
    p.add_argument("--resume", action="store_true", help="continue from OUT/agent.pt")
    p.add_argument("--report", action="store_true", help="compare the random agent and --agent instead of training")
    p.add_argument("--agent", help="agent checkpoint for --report")
    p.add_argument("--report-steps", type=int, default=2000, help="agent steps per agent in --report")
    p.add_argument("--epsilon", type=float, default=0.15, help="share of uniformly random actions in --report, as collect.py")
    args = p.parse_args(argv)
    if args.reward == "autoexplore" and not args.report and not args.dynamics:
        p.error("--dynamics CKPT is needed for the AutoExplore reward (or train with --reward env)")
    if args.report and not args.agent:
        p.error("--report needs --agent CKPT, an agent.py checkpoint")
    args.frame_skip = args.frame_skip or default_frame_skip(args.env)
    return args


def main(argv=None, make_env=None):
    args = parse_args(argv)
    check_writable(args.out)  # before any work
    if make_env is None:
        check_env(args.env)
    if args.report:
        return report(args)
    train(args, make_env)


if __name__ == "__main__":
    try:
        main()
    except (GameError, CheckpointError, OSError) as e:
        sys.exit(f"error: {e}")
