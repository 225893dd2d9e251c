"""evaluate.py, metrics.py and play.py: metric closed forms, delta_t PSNR, reports, scripted play, the CLI end to end."""
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import evaluate
import reports
from checkpoints import CheckpointError
from conftest import ROOT
from dynamics import PRESETS as DYNAMICS_PRESETS, Dynamics
from episodes import EpisodeError
from metrics import (PSNR_CAP, WEIGHTS_NAME, FeatureStats, FIDInceptionV3, FIDUnavailable, frechet_distance,
                     inception_features, load_inception, psnr, ssim)
from pictures import save_gif
from play import PlayError, Player, play_keys
from toy import ACTION_NAMES, MOVES, decode_patches, encode_patches, toy_episode, write_toy_dataset


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def toy_windows(n_episodes=2, T=40, seed=0):
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n_episodes):
        windows += evaluate.cut_windows(*toy_episode(T, rng))
    return windows


class Oracle:
    """A perfectly controllable world model for toy data: moves the square's 2x2 tokens by the action."""
    config = SimpleNamespace(num_actions=len(ACTION_NAMES))

    def generate(self, tokens, actions, n_frames, steps=25, temperature=1.0, generator=None, anneal=False,
                 frame_order=0.0):
        frames = list(tokens.unbind(1))
        for k in range(n_frames):
            frames.append(torch.stack([self.move(f, int(a)) for f, a in
                                       zip(frames[-1], actions[:, tokens.shape[1] - 1 + k])]))
        return torch.stack(frames, 1)

    generate_autoregressive = generate

    def predict_logits(self, tokens, actions, n_frames, steps=1, temperature=0.0):
        return 5.0 * F.one_hot(self.generate(tokens, actions, n_frames)[:, -1], 2).float()

    # the cached sampler of one-go and play: the oracle's "cache" is the last frame
    def cache(self, tokens, actions, window=None):
        return tokens[:, -1:]

    def add_frames(self, cache, tokens, actions):
        return tokens[:, -1:]

    def generate_cached(self, cache, actions, steps=25, temperature=1.0, generator=None, anneal=False, frame_order=0.0):
        return self.generate(cache, actions, actions.shape[1])[:, 1:]

    @staticmethod
    def move(tokens, action):  # tokens [h, w] with one 2x2 block of ids 1; clamped at the borders as toy.py
        ys, xs = torch.nonzero(tokens, as_tuple=True)
        (h, w), (dy, dx) = tokens.shape, MOVES[action]
        y, x = min(max(int(ys.min()) + dy, 0), h - 2), min(max(int(xs.min()) + dx, 0), w - 2)
        out = torch.zeros_like(tokens)
        out[y:y + 2, x:x + 2] = 1
        return out


class ToyTokenizer:
    """The toy patch code (toy.py) as a tokenizer: it has no memory of earlier frames, so no caches."""

    def __init__(self, decode=decode_patches):
        self.decode_ids = decode

    def encode(self, frames):  # uint8 or float in [0, 1]
        return encode_patches(frames if frames.dtype == torch.uint8 else frames * 255)

    def decode(self, ids, caches=None):
        return self.decode_ids(ids) if caches is None else (self.decode_ids(ids), caches)

    def decoder_caches(self, window=None):
        return []


# --- metrics -------------------------------------------------------------------------------

def test_psnr_cap_and_closed_form():
    x = torch.rand(2, 3, 64, 64, 3) * 0.5
    assert PSNR_CAP == pytest.approx(58.92, abs=0.01)  # documented cap for identical frames, not inf
    assert torch.allclose(psnr(x, x), torch.full((2, 3), PSNR_CAP))
    assert torch.allclose(psnr(x, x + 0.1), torch.full((2, 3), 20.0), atol=1e-4)  # -10 log10(0.01)


def test_ssim_identical_constant_and_noise():
    x = torch.rand(4, 64, 64, 3)
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-5)
    a, b = torch.full((1, 32, 32, 3), 0.2), torch.full((1, 32, 32, 3), 0.6)
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)  # no variance: only the luminance term is left
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-4)
    scores = [ssim(x, (x + s * torch.randn_like(x)).clamp(0, 1)).mean().item() for s in (0.02, 0.1, 0.3)]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    sigma, mu = A @ A.T, rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-8)
    d1, d2, mu2 = rng.random(6) + 0.1, rng.random(6) + 0.1, rng.normal(size=6)
    expected = np.sum((mu - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert frechet_distance(mu, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected, rel=1e-10)
    features = rng.normal(size=(50, 8)) + 3
    stats = FeatureStats()
    stats.add(features[:20]), stats.add(features[20:])  # batch by batch = all at once
    mu, cov = stats.mean_cov()
    assert np.allclose(mu, features.mean(0)) and np.allclose(cov, np.cov(features, rowvar=False))
    assert stats.fid(stats) == pytest.approx(0, abs=1e-8)


def test_fid_inception_matches_pytorch_fid_layout():
    model = FIDInceptionV3().eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
                       "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5), "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
                       "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3), "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
                       "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3), "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
                       "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1)}.items():
        assert shapes[key] == shape, key
    # Keras' InceptionV3 is the same TF graph; its BatchNorm has no scale (bn.weight) but counts the running
    # statistics, and its 1000-class classifier has 2048 * 1000 + 1000 parameters: 23,851,784 in all
    keras_like = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith(("bn.weight", "num_batches_tracked")))
    assert keras_like + 2048 * 1000 + 1000 == 23_851_784
    assert model(torch.rand(2, 64, 64, 3)).shape == (2, 2048)


def test_inception_weights_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FIDUnavailable, match=WEIGHTS_NAME):  # nothing in the hub cache
        load_inception()
    with pytest.raises(FIDUnavailable, match="no such file"):
        load_inception(tmp_path / "absent.pth")
    model = FIDInceptionV3().eval()
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)  # statistics unlike a fresh network's: loading must carry them over
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}  # as the 2018 port
    state |= {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    torch.save(state, tmp_path / WEIGHTS_NAME)
    loaded = load_inception(tmp_path / WEIGHTS_NAME)
    frames = torch.rand(2, 64, 64, 3)
    assert np.allclose(inception_features(loaded, frames), model(frames).detach().numpy(), atol=1e-4)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(FIDUnavailable, match="not the FID Inception weights"):
        load_inception(tmp_path / "wrong.pth")


# --- the evaluation loop -------------------------------------------------------------------

def test_windows_and_data_folders(tmp_path):
    frames, actions = toy_episode(40, np.random.default_rng(0))
    windows = evaluate.cut_windows(frames, actions)
    assert [len(f) for f, _ in windows] == [12, 12] and [len(a) for _, a in windows] == [11, 11]  # starts 0, 20
    assert np.array_equal(windows[1][0], frames[20:32]) and np.array_equal(windows[1][1], actions[20:31])
    for split, T in (("val", 10), ("test", 40)):  # test wins over val; val's 11 frames are too few anyway
        (tmp_path / split).mkdir()
        f, a = toy_episode(T, np.random.default_rng(1))
        np.savez_compressed(tmp_path / split / "ep.npz", frames=f, actions=a, rewards=np.zeros(T, np.float32),
                            action_names=np.array(ACTION_NAMES), env="toy", policy="random", frame_skip=1)
    assert evaluate.test_folder(tmp_path) == tmp_path / "test"
    assert len(evaluate.load_windows(tmp_path / "test")) == 2 and len(evaluate.load_windows(tmp_path / "test", 1)) == 1
    (tmp_path / "test" / "ep.npz").unlink()
    assert evaluate.test_folder(tmp_path) == tmp_path / "val"
    with pytest.raises(EpisodeError, match="long enough"):
        evaluate.load_windows(tmp_path / "val")


def test_max_windows_are_spread_over_every_episode_and_play_can_take_them_in_file_order(tmp_path):
    for e, T in enumerate((60, 10, 100, 40)):  # 3, 0, 5 and 2 windows
        frames = np.zeros((T + 1, 8, 8, 3), np.uint8)  # each frame: its episode number and its index
        frames[..., 0], frames[..., 1] = e, np.arange(T + 1)[:, None, None]
        np.savez_compressed(tmp_path / f"ep{e}.npz", frames=frames, actions=np.zeros(T, np.int64), rewards=np.zeros(T, np.float32),
                            action_names=np.array(ACTION_NAMES), env="toy", policy="random", frame_skip=1)
    where = lambda windows: [(int(f[0, 0, 0, 0]), int(f[0, 0, 0, 1])) for f, _ in windows]  # (episode, first frame)
    every = [(0, 0), (0, 20), (0, 40), (2, 0), (2, 20), (2, 40), (2, 60), (2, 80), (3, 0), (3, 20)]
    assert where(evaluate.load_windows(tmp_path, resolution=8)) == every
    assert where(evaluate.load_windows(tmp_path, 4, resolution=8)) == [(0, 0), (2, 0), (2, 60), (3, 20)]  # first to last, evenly
    assert where(evaluate.load_windows(tmp_path, 4, resolution=8, spread=False)) == every[:4]
    assert where(evaluate.load_windows(tmp_path, 50, resolution=8)) == every
    (tmp_path / "ep3.npz").write_bytes(b"not a zip")
    with pytest.raises(EpisodeError, match="ep3.npz.*not a readable"):
        evaluate.load_windows(tmp_path, 4, resolution=8)


class PooledPixels(torch.nn.Module):
    """A cheap stand-in for the FID Inception: frames [N, H, W, 3] -> 48 features (8x8-pooled pixels, projected)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8 * 8 * 3, 48)

    def forward(self, frames):
        return self.proj(F.adaptive_avg_pool2d(frames.permute(0, 3, 1, 2), 8).flatten(1))


def test_oracle_is_controllable_and_beats_the_floor():
    windows = toy_windows()
    metrics, sample = evaluate.evaluate_windows(Oracle(), ToyTokenizer(), windows, batch_size=3,
                                                modes=("one-go", "autoregressive"), inception=PooledPixels())
    rows = metrics["rows"]
    assert metrics["windows"] == 4 and set(rows) == {"one-go", "autoregressive", "tokenizer", "copy-last-frame"}
    for mode in ("one-go", "autoregressive"):
        assert rows[mode]["psnr"] == pytest.approx(PSNR_CAP)  # exact predictions
        assert rows[mode]["ssim"] == pytest.approx(1)
        assert rows[mode]["delta_psnr"] > 5  # random actions move the square elsewhere
        assert rows[mode]["fid"] == pytest.approx(0, abs=1e-6) and len(rows[mode]["psnr_by_horizon"]) == evaluate.HORIZON
    assert rows["copy-last-frame"]["fid"] > 1e-3  # a frozen square is a different distribution of frames
    assert rows["tokenizer"]["psnr"] == pytest.approx(PSNR_CAP)  # the toy patch code is lossless
    frames = np.stack([f for f, _ in windows]).astype(np.float64) / 255  # [4, 12, 64, 64, 3]
    mse = ((frames[:, 2:] - frames[:, 1:2]) ** 2).mean((2, 3, 4))  # every predicted frame vs the last context frame
    floor = np.minimum(-10 * np.log10(np.maximum(mse, 1e-30)), PSNR_CAP).mean()
    assert rows["copy-last-frame"]["psnr"] == pytest.approx(floor, rel=1e-5) and floor < 40
    assert "delta_psnr" not in rows["copy-last-frame"]
    clips = sample["clips"]
    assert list(clips) == ["ground truth", "one-go, true actions", "one-go, random actions",
                           "autoregressive, true actions", "autoregressive, random actions"]
    assert all(c.shape == (12, 64, 64, 3) for c in clips.values())
    assert torch.equal(clips["one-go, true actions"], clips["ground truth"])  # the oracle is exact


def test_keep_unchanged_keeps_the_last_context_pixels_where_codes_stay():
    windows = toy_windows(1)
    lossy = ToyTokenizer(lambda ids: 0.9 * decode_patches(ids) + 0.05)  # every decoded pixel 0.05 off
    plain, _ = evaluate.evaluate_windows(Oracle(), lossy, windows)
    kept, _ = evaluate.evaluate_windows(Oracle(), lossy, windows, keep_unchanged=True)
    assert plain["rows"]["tokenizer"]["psnr"] == pytest.approx(26.02, abs=0.01)  # -20 log10(0.05)
    for row in ("one-go", "tokenizer"):  # only the square's patches are decoded: far fewer wrong pixels
        assert kept["rows"][row]["psnr"] > plain["rows"][row]["psnr"] + 5
    assert kept["rows"]["copy-last-frame"] == plain["rows"]["copy-last-frame"]
    assert kept["keep_unchanged"] and not plain["keep_unchanged"]


def test_delta_psnr_is_zero_for_a_model_that_ignores_actions():
    model = Dynamics(replace(DYNAMICS_PRESETS["tiny"], num_codes=256, grid=(16, 16))).eval()  # the toy code's 4x4 patches
    for embed in model.action_embed:
        torch.nn.init.zeros_(embed.weight)  # the actions no longer reach the model
    tokenizer = ToyTokenizer(lambda ids: decode_patches(ids % 2))  # random codes -> random black/white patches
    metrics, _ = evaluate.evaluate_windows(model, tokenizer, toy_windows(1), steps=2, temperature=1.0,
                                           protocols=("random", "swap"))
    m = metrics["rows"]["one-go"]
    assert m["delta_psnr"] == 0 and m["delta_psnr_swap"] == 0  # same sampler noise in all branches: identical frames
    assert m["psnr"] < 20  # and they were sampled, not trivially exact


def test_swapped_action_changes_only_the_action_of_frame_t_and_never_keeps_it():
    actions = torch.randint(5, (20000, evaluate.CONTEXT + evaluate.HORIZON - 1), generator=torch.Generator().manual_seed(1))
    altered = evaluate.altered_actions(actions, 5, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    at = evaluate.CONTEXT + evaluate.DELTA_T - 2  # actions[:, at] makes predicted frame t
    changed = altered["swap"] != actions
    assert changed[:, at].all() and not changed[:, :at].any() and not changed[:, at + 1:].any()
    offsets = torch.bincount((altered["swap"][:, at] - actions[:, at]) % 5, minlength=5)  # uniform over the 4 others
    assert offsets[0] == 0 and (offsets[1:] - 5000).abs().max() < 250  # 5000 +- ~3.5 sigma
    assert torch.equal(altered["random"][:, :evaluate.CONTEXT - 1], actions[:, :evaluate.CONTEXT - 1])
    assert (altered["random"][:, evaluate.CONTEXT - 1:] == actions[:, evaluate.CONTEXT - 1:]).float().mean() < 0.25


def test_swap_delta_of_the_oracle_is_the_psnr_lost_at_frame_t():
    windows = toy_windows(3)
    metrics, sample = evaluate.evaluate_windows(Oracle(), ToyTokenizer(), windows, ("one-go", "autoregressive"),
                                                batch_size=2, protocols=("random", "swap"))
    at = evaluate.CONTEXT + evaluate.DELTA_T - 2
    swap_rng, lost = torch.Generator().manual_seed(1), []
    for start in range(0, len(windows), 2):  # the oracle's frame t after the swapped action, by hand
        actions = torch.from_numpy(np.stack([a for _, a in windows[start:start + 2]]))
        other = torch.randint(1, 5, (len(actions),), generator=swap_rng)
        for (frames, _), a, o in zip(windows[start:start + 2], actions, other):
            t_tokens = Oracle.move(encode_patches(torch.from_numpy(frames[at])), (int(a[at]) + int(o)) % 5)
            truth = torch.from_numpy(frames[at + 1]).float() / 255
            lost.append(PSNR_CAP - psnr(truth, decode_patches(t_tokens)).item())
    for mode in ("one-go", "autoregressive"):
        m = metrics["rows"][mode]
        assert m["delta_psnr_swap"] == pytest.approx(np.mean(lost), rel=1e-5) and m["delta_psnr_swap"] > 5
        assert m["delta_psnr"] > 5
    assert set(metrics["delta_protocols"]) == {"delta_psnr", "delta_psnr_swap"}
    assert "random" in metrics["delta_protocols"]["delta_psnr"] and "swap" in metrics["delta_protocols"]["delta_psnr_swap"]
    swapped, true = sample["clips"]["one-go, swapped action"], sample["clips"]["one-go, true actions"]
    assert torch.equal(swapped[:at + 1], true[:at + 1])  # the frames before t are the true ones


def test_random_protocol_numbers_do_not_depend_on_the_swap_protocol():
    model = Dynamics(replace(DYNAMICS_PRESETS["tiny"], num_codes=256, grid=(16, 16))).eval()
    tokenizer = ToyTokenizer(lambda ids: decode_patches(ids % 2))
    sampled = dict(steps=2, temperature=1.0, batch_size=1)  # random weights: only sampling makes the branches differ
    alone, _ = evaluate.evaluate_windows(model, tokenizer, toy_windows(1), **sampled)
    both, _ = evaluate.evaluate_windows(model, tokenizer, toy_windows(1), **sampled, protocols=("random", "swap"))
    assert alone["rows"]["one-go"]["delta_psnr"] == both["rows"]["one-go"]["delta_psnr"] != 0
    assert "delta_psnr_swap" not in alone["rows"]["one-go"] and list(alone["delta_protocols"]) == ["delta_psnr"]


def test_report_files(tmp_path):
    windows = toy_windows(1)
    oracle = Oracle()
    metrics, sample = evaluate.evaluate_windows(oracle, ToyTokenizer(), windows)
    metrics["fid_unavailable"] = "FID Inception weights not found"
    uncertainty = evaluate.token_uncertainty(oracle, sample["tokens"], sample["actions"])
    assert uncertainty.shape == (11, 16, 16) and uncertainty.max() < 0.1  # the oracle is sure of every token
    reports.write_report(tmp_path, metrics, sample, uncertainty)
    table = (tmp_path / "results.md").read_text()
    for text in ("dynamics, one-go", "tokenizer reconstruction (ceiling)", "copy last context frame (floor)",
                 "FID unavailable: FID Inception weights not found", "delta_t PSNR"):
        assert text in table
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rows"]["one-go"]["psnr"] == pytest.approx(PSNR_CAP)
    for name in ("horizon.png", "rollouts.png", "tokens.png", "uncertainty.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"), np.float32)
        assert pixels.shape[0] > 50 and pixels.std() > 10, name
    assert gif_seconds(tmp_path / "rollouts.gif") == 12 / 4  # 12 frames at 4 fps
    assert Image.open(tmp_path / "rollouts.gif").size == (3 * 64 * 2, 64 * 2)  # truth | true actions | random actions


def test_compare_tabulates_several_evaluations(tmp_path):
    oracle, windows = Oracle(), toy_windows(1)
    for name in ("pretrained", "finetuned-explore"):
        metrics, sample = evaluate.evaluate_windows(oracle, ToyTokenizer(), windows, ("one-go", "autoregressive"))
        reports.write_report(tmp_path / name, metrics, sample, torch.zeros(11, 16, 16))
    evaluate.main(["--compare", str(tmp_path / "pretrained"), str(tmp_path / "finetuned-explore"), "--out", str(tmp_path)])
    table = (tmp_path / "results.md").read_text()
    for row in ("pretrained, dynamics, one-go", "pretrained, dynamics, autoregressive", "finetuned-explore, dynamics, one-go",
                "finetuned-explore, tokenizer reconstruction (ceiling)"):
        assert f"| {row} |" in table
    assert table.count("copy last context frame (floor)") == 1
    assert np.asarray(Image.open(tmp_path / "results.png").convert("RGB"), np.float32).std() > 10


def test_compare_sets_rows_against_each_other_window_by_window(tmp_path):
    oracle, windows = Oracle(), toy_windows(1)
    per_window = {"a": [20.0, 30, 40, 50], "b": [19.0, 29, 38, 49], "other-data": [10.0, 10, 10, 10]}  # dB, 4 windows
    for name, psnrs in per_window.items():
        metrics, sample = evaluate.evaluate_windows(oracle, ToyTokenizer(), windows)
        metrics.update(windows=4, data="data/other" if name == "other-data" else "data/test")
        metrics["rows"]["one-go"]["psnr_by_window"] = psnrs
        metrics["rows"]["copy-last-frame"]["psnr_by_window"] = [18.0, 28, 37, 47]
        reports.write_report(tmp_path / name, metrics, sample, torch.zeros(11, 16, 16))
    evaluate.main(["--compare", *(str(tmp_path / name) for name in per_window), "--out", str(tmp_path)])
    table = (tmp_path / "results.md").read_text()
    # a - b = 1, 1, 2, 1: mean 1.25, standard error 0.433 / 2, far under either row's own error (~5.6)
    assert "| a - b, one-go | +1.25 ± 0.22 |" in table and "| a, one-go - floor | +2.50 ± 0.25 |" in table
    assert "a - other-data" not in table and "b - other-data" not in table  # other episodes: no windows in common
    assert "| other-data, one-go - floor | -22.50 ± 5.37 |" in table


def test_compare_gives_each_data_folder_its_own_floor(tmp_path):
    oracle = Oracle()
    for name, folder, seed in (("on-random", "data/random", 1), ("on-explore", "data/explore", 2)):
        metrics, sample = evaluate.evaluate_windows(oracle, ToyTokenizer(), toy_windows(1, seed=seed))
        reports.write_report(tmp_path / name, {**metrics, "data": folder}, sample, torch.zeros(11, 16, 16))
    evaluate.main(["--compare", str(tmp_path / "on-random"), str(tmp_path / "on-explore"), "--out", str(tmp_path)])
    table = (tmp_path / "results.md").read_text()
    assert "| on-random, copy last context frame (floor) |" in table and "| on-explore, copy last context frame (floor) |" in table
    assert "data/random" in table and "data/explore" in table


def test_compare_names_each_protocol_and_adds_the_papers_numbers(tmp_path):
    oracle, windows = Oracle(), toy_windows(1)
    for name, protocols in (("both", ("random", "swap")), ("random", ("random",)), ("swap", ("swap",))):
        metrics, sample = evaluate.evaluate_windows(oracle, ToyTokenizer(), windows, protocols=protocols, anneal=True)
        reports.write_report(tmp_path / name, metrics, sample, torch.zeros(11, 16, 16))
    assert "delta_t PSNR (t=4, swap)" in (tmp_path / "swap" / "results.md").read_text()
    evaluate.main(["--compare", *(str(tmp_path / n) for n in ("both", "random", "swap")), "--out", str(tmp_path),
                   "--paper", "GenieRedux-G", "33.41", "0.92", "18.88", "--paper", "LAM", "33.97", "0.92", "-"])
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| model | PSNR (dB) ± s.e. | SSIM | delta_t PSNR (t=4, random) ± s.e. | delta_t PSNR (t=4, swap) ± s.e. | FID |" in lines
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines if line.startswith("| ")}
    assert rows["random, dynamics, one-go"][2] != "-" and rows["random, dynamics, one-go"][3] == "-"
    assert rows["swap, dynamics, one-go"][2] == "-" and rows["swap, dynamics, one-go"][3] != "-"
    assert "-" not in rows["both, dynamics, one-go"][2:4]
    assert rows["paper: GenieRedux-G"] == ["33.41", "0.9200", "-", "-", "18.88 |"]
    assert rows["paper: LAM"][-1] == "- |"
    text = "\n".join(lines)
    assert "annealed linearly to 0" in text and "delta_t PSNR, swap: only the action" in text
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--compare", str(tmp_path / "random"), "--paper", "x", "high", "0.9", "-"])


def test_lam_reconstruction_row():
    class CopyLAM(torch.nn.Module):  # "predicts" each frame as the one before it: the floor, exactly
        def forward(self, frames):
            return frames[:, :-1], None, None, None

    windows = toy_windows(1)
    row = evaluate.lam_reconstruction(CopyLAM(), windows, batch_size=1)
    frames = torch.from_numpy(np.stack([f for f, _ in windows])).float() / 255
    assert row["psnr"] == pytest.approx(psnr(frames[:, 2:], frames[:, 1:-1]).mean().item(), rel=1e-6)
    assert len(row["psnr_by_horizon"]) == evaluate.HORIZON and "fid" not in row
    assert reports.cells(row, ["random"]).endswith("| - | - |")


def gif_seconds(path):
    """Play time of a GIF: Pillow merges repeated frames into one longer frame, so count time, not frames."""
    gif, total = Image.open(path), 0
    for i in range(gif.n_frames):
        gif.seek(i)
        total += gif.info["duration"]
    return total / 1000


def square_x(frame):
    return np.nonzero(frame[..., 0] > 127)[1].mean()


def test_scripted_play_follows_the_keys(tmp_path):
    frames, actions = toy_episode(12, np.random.default_rng(3))
    player = Player(Oracle(), ToyTokenizer(), frames[:2], actions[:1])
    played = play_keys(player, "LRRR")
    assert len(played) == 5 and np.array_equal(played[0], frames[1])
    xs = [square_x(f) for f in played]
    assert np.diff(xs[1:]).tolist() == [4, 4, 4]  # R moves the square 4 px right
    save_gif(tmp_path / "play.gif", played)
    assert gif_seconds(tmp_path / "play.gif") == 5 / 4
    with pytest.raises(PlayError, match="only the letters"):
        play_keys(player, "RX")


def test_play_with_keep_unchanged_keeps_the_real_pixels_of_what_does_not_move():
    frames, actions = toy_episode(12, np.random.default_rng(3))
    lossy = ToyTokenizer(lambda ids: 0.9 * decode_patches(ids) + 0.05)  # every decoded pixel 0.05 off
    played = play_keys(Player(Oracle(), lossy, frames[:2], actions[:1], keep_unchanged=True), "RRRR")
    plain = play_keys(Player(Oracle(), lossy, frames[:2], actions[:1]), "RRRR")
    still = ~(frames[1][..., 0] > 127).any(1)  # rows without the square: R moves it along its own rows only
    for kept, decoded in zip(played[1:], plain[1:]):
        assert (kept[still] == frames[1][still]).all() and not (decoded[still] == frames[1][still]).any()
        assert square_x(kept) == square_x(decoded)  # the moving square comes from the decoder either way


# --- the command line, end to end on episodes no script here wrote ----------------------------

def run_script(script, *flags, cwd):
    env = {**os.environ, "TORCH_HOME": str(cwd / "torch"), "OMP_NUM_THREADS": "1"}  # an empty hub cache: no FID weights
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, flags)], capture_output=True,
                          text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny tokenizer and dynamics checkpoints written by train.py itself (one step each) on toy episodes."""
    folder = tmp_path_factory.mktemp("runs")
    write_toy_dataset(folder / "toy", n_train=2, n_val=1, T=20)
    tiny = ["--preset", "tiny", "--data", folder / "toy", "--steps", 1, "--batch-size", 2, "--seq-len", 4, "--workers", 0]
    for model, extra in (("tokenizer", []), ("dynamics", ["--tokenizer", folder / "tokenizer" / "ckpt.pt"])):
        result = run_script("train.py", "--model", model, *tiny, *extra, "--out", folder / model, cwd=folder)
        assert result.returncode == 0, result.stderr
    ckpt = torch.load(folder / "dynamics" / "ckpt.pt", weights_only=False)
    torch.save({**ckpt, "tokenizer": str(folder / "gone.pt")}, folder / "orphan.pt")  # its tokenizer was deleted
    tokenizer = torch.load(folder / "tokenizer" / "ckpt.pt", weights_only=False)
    tokenizer["model"]["vq.codes"] = torch.randn_like(tokenizer["model"]["vq.codes"])
    torch.save(tokenizer, folder / "other_tokenizer.pt")  # a tokenizer the dynamics model never saw
    return {"dynamics": folder / "dynamics" / "ckpt.pt", "tokenizer": folder / "tokenizer" / "ckpt.pt",
            "orphan": folder / "orphan.pt", "other tokenizer": folder / "other_tokenizer.pt"}


@pytest.mark.slow
def test_cli_on_foreign_episodes(tmp_path, checkpoints):
    rng = np.random.default_rng(0)
    for i in range(2):  # written directly with numpy, 35 frames of noise at 48x48: resized to the tokenizer's 64x64
        frames = rng.integers(0, 256, (35, 48, 48, 3), dtype=np.uint8)
        np.savez_compressed(tmp_path / f"foreign_{i}.npz", frames=frames, actions=rng.integers(0, 5, 34),
                            rewards=np.zeros(34, np.float32), action_names=np.array(ACTION_NAMES),
                            env="elsewhere", policy="human", frame_skip=2)
    out = tmp_path / "eval"
    result = run_script("evaluate.py", "--dynamics", checkpoints["dynamics"], "--data", tmp_path, "--out", out,
                        "--mode", "both", "--steps", 2, "--max-windows", 2, "--batch-size", 2, "--frame-order", 0.25,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_order"] == 0.25 and "one-go frame order 0.25" in (out / "results.md").read_text()
    assert metrics["windows"] == 2 and set(metrics["rows"]) == {"one-go", "autoregressive", "tokenizer", "copy-last-frame"}
    assert all(math.isfinite(m["psnr"]) and m["fid"] is None for m in metrics["rows"].values())
    assert WEIGHTS_NAME in metrics["fid_unavailable"]
    for name in ("results.md", "horizon.png", "rollouts.png", "rollouts.gif", "tokens.png", "uncertainty.png"):
        assert (out / name).stat().st_size > 0, name
    result = run_script("play.py", "--keys", "RRJ", "--window", 1, "--dynamics", checkpoints["dynamics"],
                        "--data", tmp_path, "--out", out, "--steps", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert gif_seconds(out / "play.gif") == 4 / 4 and (out / "play.png").stat().st_size > 0
    result = run_script("play.py", "--keys", "R", "--window", 10**6, "--dynamics", checkpoints["dynamics"],
                        "--data", tmp_path, "--out", out, cwd=tmp_path)
    assert result.returncode != 0 and "--window 1000000" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path, checkpoints):
    (tmp_path / "data").mkdir()
    frames, actions = toy_episode(30, np.random.default_rng(0))
    np.savez_compressed(tmp_path / "data" / "bad.npz", frames=frames, actions=actions)  # no rewards, names, ...
    data = ["--data", tmp_path / "data"]
    for flags, message in [(["--dynamics", tmp_path / "none.pt"], "not found"),
                           (["--dynamics", checkpoints["tokenizer"]], "not a dynamics model"),
                           (["--dynamics", checkpoints["orphan"]], "pass --tokenizer"),
                           (["--dynamics", checkpoints["dynamics"], "--tokenizer", checkpoints["dynamics"]],
                            "not a tokenizer model"),
                           (["--dynamics", checkpoints["dynamics"], "--tokenizer", checkpoints["other tokenizer"]],
                            "other codes")]:
        with pytest.raises(CheckpointError, match=message):
            evaluate.main([*map(str, flags), *map(str, data), "--out", str(tmp_path / "eval")])
    result = run_script("evaluate.py", "--dynamics", checkpoints["dynamics"], *data, cwd=tmp_path)  # as a user sees it
    assert result.returncode == 1 and result.stderr.startswith(f"error: {tmp_path / 'data' / 'bad.npz'}: missing key")
    assert result.stderr.count("\n") == 1  # one line, no traceback
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoints["dynamics"].read_bytes()[:5000])  # as a copy cut short leaves it
    for script, flags in (("evaluate.py", ["--dynamics", truncated, *data]),
                          ("play.py", ["--dynamics", truncated, *data, "--keys", "R"]),
                          ("evaluate.py", ["--dynamics", checkpoints["dynamics"], *data, "--out", "/proc/foo"]),
                          ("play.py", ["--dynamics", checkpoints["dynamics"], *data, "--keys", "R", "--out", "/proc/foo"])):
        result = run_script(script, *flags, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "truncated or corrupt" in result.stderr or "/proc/foo cannot be written" in result.stderr


def test_play_help_works(tmp_path):
    result = run_script("play.py", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--keys" in result.stdout and "--benchmark" in result.stdout
    assert "--anneal" in result.stdout
    result = run_script("evaluate.py", "--help", cwd=tmp_path)
    assert result.returncode == 0 and all(flag in result.stdout for flag in ("--anneal", "--delta-protocol", "--paper"))
