"""How much of the key two frames show: the ceiling of a latent action model's purity (paper Tab. 2's LAM).

A small CNN learns, from the true keys, to read the key of each transition t -> t+1 from frame t and the
difference t+1 - t, on the episodes of DIR/train; it is scored on the held-out episodes (DIR/test, else
DIR/val). A LAM learns its codes from the same two frames without the keys, so its purity cannot go much
beyond this reader's accuracy: in CoinRun DOWN does nothing, and neither does a key held against a wall.
With --lam, each LAM's purity on the held-out windows (lam.action_agreement, as evaluate.py reports it)
beside its chance level (the same codes against the true keys shuffled). Ours, not the paper's.

    python studies/key_reader.py --data runs/tab2/data --lam runs/tab2/lam/ckpt.pt
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's modules
from checkpoints import CheckpointError, load_checkpoint  # noqa: E402
from episodes import EpisodeError, find_episodes, load_episode  # noqa: E402
from evaluate import latent_windows, load_windows, test_folder  # noqa: E402


def transitions(folder, resolution):
    """Every transition of the episodes under folder: (frames uint8 [N, H, W, 3], starts int64 [M], keys [M]);
    transition j goes from frames[starts[j]] to frames[starts[j] + 1] with key keys[j]."""
    frames, starts, keys, offset = [], [], [], 0
    for path in find_episodes(folder):
        episode = load_episode(path, resolution)
        n = len(episode["actions"])
        frames.append(episode["frames"])
        starts.append(offset + np.arange(n))
        keys.append(episode["actions"])
        offset += n + 1
    return np.concatenate(frames), np.concatenate(starts), np.concatenate(keys).astype(np.int64)


def reader_input(frames, starts):
    """Frame t (in [0, 1]) and the change to t+1 (in [-1, 1]), channels first: [B, 6, H, W]."""
    before = torch.from_numpy(frames[starts]).float() / 255
    after = torch.from_numpy(frames[starts + 1]).float() / 255
    return torch.cat([before, after - before], -1).permute(0, 3, 1, 2)


class KeyReader(nn.Module):
    """Three stride-2 convolutions and a small MLP: two frames -> logits over the keys."""

    def __init__(self, num_keys, resolution):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(6, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                   nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64 * (resolution // 8) ** 2, 128), nn.ReLU(), nn.Linear(128, num_keys))

    def forward(self, x):
        return self.head(self.convs(x))


def train_reader(frames, starts, keys, num_keys, steps, batch_size, seed):
    """The reader after `steps` Adam steps on random batches of the transitions."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    reader = KeyReader(num_keys, frames.shape[1])
    optimizer = torch.optim.Adam(reader.parameters(), lr=1e-3)
    bar = tqdm(range(steps), desc="key reader", unit="step")
    for _ in bar:
        pick = torch.randint(len(starts), (batch_size,), generator=generator).numpy()
        loss = F.cross_entropy(reader(reader_input(frames, starts[pick])), torch.from_numpy(keys[pick]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return reader.eval()


@torch.no_grad()
def accuracy(reader, frames, starts, keys, batch_size=256):
    """The share of transitions whose key the reader names."""
    named = torch.cat([reader(reader_input(frames, starts[i:i + batch_size])).argmax(1)
                       for i in range(0, len(starts), batch_size)])
    return (named.numpy() == keys).mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="episodes: DIR/train to learn from, DIR/test (else DIR/val) to score")
    p.add_argument("--lam", nargs="*", default=[], metavar="CKPT", help="LAM checkpoints whose purity to report beside")
    p.add_argument("--steps", type=int, default=3000, help="the reader's training steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=64, help="transitions per step (default 64)")
    p.add_argument("--resolution", type=int, default=64, help="frames resized to this square side (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.resolution % 8:
        p.error("--steps and --batch-size must be positive, --resolution a multiple of 8")
    try:
        train = transitions(Path(args.data) / "train", args.resolution)
        held_out = test_folder(args.data)
        test = transitions(held_out, args.resolution)
        num_keys = int(max(train[2].max(), test[2].max())) + 1
        reader = train_reader(*train, num_keys, args.steps, args.batch_size, args.seed)
        rows = [("key reader (supervised)", accuracy(reader, *test), np.bincount(test[2]).max() / len(test[2]),
                 "commonest key")]
        windows_at = {}  # resolution -> the held-out windows, read once for all LAMs of that resolution
        for path in args.lam:
            lam = load_checkpoint(path, "lam", "--lam")[0]
            resolution = lam.config.resolution
            if resolution not in windows_at:
                windows_at[resolution] = load_windows(held_out, None, resolution)
            agreement = latent_windows(lam, windows_at[resolution], 16, "cpu")[1]
            rows.append((f"LAM {path}", agreement["purity"], agreement["chance"],
                         f"chance, sd {agreement['chance_sd']:.3f}"))
    except (EpisodeError, CheckpointError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"{len(train[1])} training transitions, {len(test[1])} held out ({held_out})")
    print("| who names the key | held-out accuracy / purity | level of no information |\n|---|---|---|")
    for name, score, level, what in rows:
        print(f"| {name} | {score:.3f} | {level:.3f} ({what}) |")
    return rows


if __name__ == "__main__":
    main()
