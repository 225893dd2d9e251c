"""Training data: clips of episodes, a resumable order, and the frozen tokenizer's token cache.

train.py reads episodes through this file. A clip is --seq-len consecutive frames of one episode with
the actions between them. Every file is validated once (episodes.load_episode) but frames are read
lazily, a few episodes at a time, so datasets larger than RAM work. The batch order depends only on
(seed, step, rank), so a resumed run reads exactly the batches an uninterrupted one would. For the
dynamics model, each clip is tokenised once by the frozen tokenizer into a memory-mapped .npy.
"""
import json
import os
from functools import lru_cache
from itertools import count
from multiprocessing import Pool

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm import tqdm

from episodes import EpisodeError, find_episodes, load_episode, quiet_workers, write_atomic


def read_actions(path):
    episode = load_episode(path)  # validates the file: EpisodeError names it and what is wrong
    return episode["actions"], episode["action_names"]


@lru_cache(maxsize=8)  # per loader worker: the episodes of the current block of clip_order
def cached_episode(path, resolution):
    return load_episode(path, resolution)  # frames of another size are resized


class Clips(Dataset):
    """Clip i = frames [s, s + seq_len) of one episode and the seq_len - 1 actions between them.

    Every file is validated once up front, but frames are read lazily, a few episodes at a time, so
    datasets larger than RAM work. Once `tokens` is set (dynamics), a clip is its cached token ids.
    """

    def __init__(self, root, split, seq_len, stride, workers):
        self.paths = find_episodes(root, split)  # EpisodeError names the folder when it holds none
        with quiet_workers():  # Ctrl-C is the main process's
            pool = Pool(max(1, workers))
        with pool:
            self.actions, self.action_names = zip(*pool.map(read_actions, self.paths, chunksize=4))
        lengths = [len(a) + 1 for a in self.actions]
        self.clips = np.array([(e, s) for e, n in enumerate(lengths) for s in range(0, n - seq_len + 1, stride)])
        short = sum(n < seq_len for n in lengths)
        print(f"{root} [{split}]: {len(self.paths)} episodes, {len(self.clips)} clips of {seq_len} frames"
              + (f", {short} episodes shorter than that skipped" if short else ""))
        if not len(self.clips):
            raise EpisodeError(f"no episode in {root} has {seq_len} frames (longest: {max(lengths)}): "
                            f"lower --seq-len or collect longer episodes (collect.py --max-steps)")
        self.seq_len, self.resolution, self.tokens, self.latent = seq_len, None, None, None

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        e, s = self.clips[i]
        actions = torch.from_numpy(self.actions[e][s:s + self.seq_len - 1])  # [T-1]
        if self.tokens is not None:
            if isinstance(self.tokens, str):  # paths: open the memory maps once per loader worker
                self.tokens = np.load(self.tokens, mmap_mode="r")
                self.latent = None if self.latent is None else np.load(self.latent, mmap_mode="r")
            if self.latent is not None:  # GenieRedux: the frozen LAM's codes stand in for the true actions
                actions = torch.from_numpy(self.latent[i].astype(np.int64))
            return {"tokens": torch.from_numpy(self.tokens[i].astype(np.int64)), "actions": actions}
        frames = cached_episode(self.paths[e], self.resolution)["frames"][s:s + self.seq_len]
        return {"frames": torch.from_numpy(frames), "actions": actions}  # uint8 [T, H, W, 3]


def clip_order(episode_of_clip, seed, epoch, block=8):
    """One epoch's clip order: episodes shuffled, then taken `block` at a time with their clips shuffled
    together. Batches mix episodes, yet a loader worker needs only a few episodes in memory at once."""
    rng = np.random.default_rng([seed, epoch])
    place = rng.permutation(episode_of_clip.max() + 1)  # shuffled place of each episode
    return np.lexsort((rng.random(len(episode_of_clip)), place[episode_of_clip] // block))


class Batches(Sampler):
    """Endless batches of clip ids; batch slot k = places [k*B, (k+1)*B) of the epochs laid end to end.

    The loop reads slot (step * grad_accum + micro) * world_size + rank: ranks see different clips, and a
    resumed run reads exactly the batches that the uninterrupted run would have read.
    """

    def __init__(self, clips, batch_size, seed, first=0, every=1):
        self.episode_of_clip, self.B, self.seed, self.first, self.every = clips.clips[:, 0], batch_size, seed, first, every

    def __iter__(self):
        n, epoch = len(self.episode_of_clip), -1
        for slot in count(self.first, self.every):
            ids = []
            for place in range(slot * self.B, (slot + 1) * self.B):
                if place // n != epoch:
                    epoch, order = place // n, clip_order(self.episode_of_clip, self.seed, place // n)
                ids.append(int(order[place % n]))
            yield ids


def barrier():
    if dist.is_initialized():
        dist.barrier()


def reserve_npy(tmp, shape, path):
    """An int16 .npy of `shape` at `tmp` whose disk space is taken now: a full disk is an OSError naming `path`
    here, not a SIGBUS when the memory map writes a page that has no room."""
    try:
        np.lib.format.open_memmap(tmp, "w+", np.int16, shape)
        with open(tmp, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise OSError(f"cannot write {path} ({np.prod(shape) * 2 / 2**20:.1f} MiB): {e.strerror or e}") from None


@torch.no_grad()
def tokenize_clips(tokenizer, lam, clips, path, meta, *, batch_size, workers, rank, world_size, device, ctx):
    """Ids of every clip by the frozen tokenizer, computed once into a memory-mapped int16 [N, T, h, w] .npy
    (and with a frozen LAM its latent actions [N, T-1] into latent_<split>.npy beside it).

    The tokenizer is causal in time but attends to all of its input's past, so a frame's ids depend on
    where its clip starts: each clip is tokenised on its own, as evaluate.py tokenises a test window.
    Each rank tokenises its share; `meta` (tokenizer, clips) says whether an existing cache still fits.
    """
    meta_path, latent_path = path.with_suffix(".json"), path.with_name(path.name.replace("tokens", "latent"))
    if not (meta_path.exists() and json.loads(meta_path.read_text()) == meta):
        shapes = {path: (clips.seq_len, *tokenizer.grid), **({latent_path: (clips.seq_len - 1,)} if lam else {})}
        tmp = {p: p.with_name(p.name + ".tmp") for p in shapes}
        try:
            if rank == 0:
                for p, shape in shapes.items():
                    reserve_npy(tmp[p], (len(clips), *shape), p)
            barrier()
            arrays = {p: np.lib.format.open_memmap(tmp[p], "r+") for p in shapes}
            part = range(rank * len(clips) // world_size, (rank + 1) * len(clips) // world_size)  # this rank's clips
            loader = DataLoader(Subset(clips, part), batch_size=batch_size, num_workers=workers)
            with quiet_workers():  # the loader's workers start here; Ctrl-C is the main process's
                batches = iter(loader)
            for k, batch in enumerate(tqdm(batches, total=len(loader), desc=f"tokenise {path.name}", disable=rank > 0)):
                frames, at = batch["frames"].to(device), part.start + k * batch_size
                with ctx:
                    arrays[path][at:at + len(frames)] = tokenizer.encode(frames).cpu().numpy()  # [B, T, h, w]
                    if lam:
                        arrays[latent_path][at:at + len(frames)] = lam.infer_actions(frames).cpu().numpy()  # [B, T-1]
            for array in arrays.values():
                array.flush()
            barrier()
            if rank == 0:
                for p in shapes:
                    os.replace(tmp[p], p)
                write_atomic(meta_path, json.dumps(meta))
        except BaseException:  # a full disk, Ctrl-C, a broken episode: no half-written cache stays behind
            for p in tmp.values():
                p.unlink(missing_ok=True)
            raise
        barrier()
    clips.tokens, clips.latent = str(path), str(latent_path) if lam else None


def own_message(error):
    """An error's one-line message. A DataLoader raises a worker's error again with the worker's whole traceback as
    its message; the last line of that is the error's own."""
    text = str(error)
    if "DataLoader worker" not in text.split("\n", 1)[0]:
        return text
    return text.strip().splitlines()[-1].split(": ", 1)[-1]
