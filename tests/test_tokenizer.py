"""Tokenizer tests: shapes, causality in time, the quantiser's maths, checkpoints, learning (CPU, tiny preset)."""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tokenizer import PRESETS, Tokenizer, VectorQuantizer, keep_unchanged_patches, patchify, unpatchify


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny():
    return Tokenizer(PRESETS["tiny"]).eval()


def test_encode_decode_shapes_and_ranges():
    model = tiny()
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    ids = model.encode(frames)
    assert ids.shape == (2, 3, *model.grid) and ids.dtype == torch.int64
    assert 0 <= ids.min() and ids.max() < model.config.num_codes
    recon = model.decode(ids)
    assert recon.shape == (2, 3, 64, 64, 3) and recon.dtype == torch.float32
    assert 0 <= recon.min() and recon.max() <= 1
    recon_fwd, ids_fwd, vq_loss, metrics = model(frames.float() / 255)
    assert torch.equal(ids_fwd, ids) and torch.allclose(recon_fwd, recon, atol=1e-5)  # z + (q - z) vs q: rounding
    assert vq_loss.ndim == 0 and set(metrics) == {"usage", "perplexity", "restarts"}


def test_wrong_resolution_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \[B, T, 64, 64, 3\]"):
        tiny().encode(torch.zeros(1, 2, 32, 32, 3))


def test_patchify_layout_and_inverse():
    frames = torch.rand(2, 3, 64, 64, 3)
    patches = patchify(frames, 4)  # [2, 3, 256, 48]
    assert patches.shape == (2, 3, 256, 48)
    i, j = 5, 11  # token i * 16 + j holds pixels [4i:4i+4, 4j:4j+4]
    assert torch.equal(patches[1, 2, i * 16 + j], frames[1, 2, 4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(-1))
    assert torch.equal(unpatchify(patches, 4, (16, 16)), frames)


def test_keep_unchanged_patches_keeps_pixels_until_a_code_changes():
    last_frame, decoded = torch.zeros(1, 16, 16, 3), torch.rand(1, 3, 16, 16, 3)  # 2x2 patches of 8x8
    last_ids = torch.tensor([[[0, 1], [2, 3]]])
    ids = last_ids[:, None].repeat(1, 3, 1, 1)
    ids[0, 1:, 0, 1] = 7  # the top right patch changes at frame 1 and keeps code 7 at frame 2
    kept = keep_unchanged_patches(decoded, ids, last_frame, last_ids)
    assert kept.shape == decoded.shape
    assert (kept[0, 0] == 0).all()  # no code changed: the last frame's pixels
    assert torch.equal(kept[0, 1, :8, 8:], decoded[0, 1, :8, 8:]) and (kept[0, 1, 8:] == 0).all()
    assert torch.equal(kept[0, 2, :8, 8:], decoded[0, 1, :8, 8:])  # frame 1's decoded pixels stay, not frame 2's
    ids[0, 2] = 9  # every code changes: the decoder's frame
    assert torch.equal(keep_unchanged_patches(decoded, ids, last_frame, last_ids)[0, 2], decoded[0, 2])


def test_causal_in_time():
    model = tiny()
    frames = torch.rand(1, 5, 64, 64, 3)
    changed = frames.clone()
    changed[:, 2] = torch.rand(64, 64, 3)  # change frame t + 1 = 2
    recon_a, ids_a, _, _ = model(frames)
    recon_b, ids_b, _, _ = model(changed)
    assert torch.equal(ids_a[:, :2], ids_b[:, :2])
    assert torch.equal(recon_a[:, :2], recon_b[:, :2])
    assert not torch.equal(ids_a[:, 2], ids_b[:, 2])
    for t in (2, 3, 4):  # the change reaches later reconstructions, through temporal attention for t > 2
        assert (recon_a[:, t] - recon_b[:, t]).abs().max() > 1e-4


def test_decoding_frame_by_frame_with_caches_equals_decoding_the_clip():
    model = tiny()
    ids = torch.randint(0, model.config.num_codes, (2, 6, *model.grid))
    whole = model.decode(ids)
    parts, caches = model.decode(ids[:, :2], model.decoder_caches())
    parts = [parts]
    for t in range(2, 6):
        frame, caches = model.decode(ids[:, t:t + 1], caches)
        parts.append(frame)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=0)
    assert all(len(cache) == 6 for cache in caches)  # every decoded frame's keys and values are kept


def test_decoding_after_caches_leaves_them_as_they_were():
    """Several continuations of one context, each on the context's caches, as evaluate.py decodes them."""
    model = tiny()
    ids = torch.randint(0, model.config.num_codes, (1, 5, *model.grid))
    other = torch.randint(0, model.config.num_codes, (1, 3, *model.grid))
    _, context = model.decode(ids[:, :2], model.decoder_caches())
    keys = [cache.k.clone() for cache in context]
    first, longer = model.decode(ids[:, 2:], context)
    model.decode(other, context)  # another continuation of the same caches
    assert torch.equal(model.decode(ids[:, 2:], context)[0], first)
    torch.testing.assert_close(first, model.decode(ids)[:, 2:], atol=1e-5, rtol=0)
    assert all(torch.equal(cache.k, k) for cache, k in zip(context, keys)) and len(longer[0]) == 5


def test_windowed_decoder_cache_forgets_frames_beyond_the_window():
    model = tiny()
    ids = torch.randint(0, model.config.num_codes, (1, 7, *model.grid))
    other = ids.clone()
    other[:, 0] = (ids[:, 0] + 1) % model.config.num_codes  # frame 0 is more than window - 1 = 2 frames before frame 6 ...
    outputs = []
    for clip in (ids, other):
        caches, frames = model.decoder_caches(window=3), []
        for t in range(7):
            frame, caches = model.decode(clip[:, t:t + 1], caches)
            frames.append(frame)
        outputs.append(torch.cat(frames, 1))
        assert all(len(cache) == 2 for cache in caches)  # the next frame sees window - 1 frames
    assert not torch.allclose(outputs[0][:, 1], outputs[1][:, 1])  # ... and frame 1 sees it ...
    torch.testing.assert_close(outputs[0][:, 6], outputs[1][:, 6])  # ... but frame 6 does not


def test_windowed_decoder_cache_keeps_every_frame_until_it_is_full():
    model = tiny()
    ids = torch.randint(0, model.config.num_codes, (1, 9, *model.grid))
    caches, frames = model.decoder_caches(window=10), []
    for t in range(9):
        frame, caches = model.decode(ids[:, t:t + 1], caches)
        frames.append(frame)
        assert all(len(cache) == t + 1 for cache in caches)
    torch.testing.assert_close(torch.cat(frames, 1), model.decode(ids), atol=1e-5, rtol=0)


def test_straight_through_gradient_reaches_encoder():
    model = tiny().train()
    recon, _, _, _ = model(torch.rand(1, 2, 64, 64, 3))
    recon.square().mean().backward()  # reconstruction only: the VQ loss is left out on purpose
    assert model.patch_embed.weight.grad.abs().sum() > 0
    assert model.vq.proj_in.weight.grad.abs().sum() > 0


def hand_made_quantizer():
    """8 codes in 4 dims (+/- unit axes) and identity projections: input e_i picks code i."""
    vq = VectorQuantizer(dim=4, num_codes=8, code_dim=4).eval()
    with torch.no_grad():
        vq.proj_in.weight.copy_(torch.eye(4))
        vq.proj_in.bias.zero_()
        vq.codes.copy_(torch.cat([torch.eye(4), -torch.eye(4)]))
    return vq


def test_usage_and_perplexity_closed_form():
    vq = hand_made_quantizer()
    _, ids, _, m = vq(torch.eye(4).repeat(5, 1))  # codes 0..3, 5 times each
    assert torch.equal(ids, torch.arange(4).repeat(5))
    assert m["usage"].item() == pytest.approx(4 / 8)
    assert m["perplexity"].item() == pytest.approx(4.0)
    _, _, _, m = vq(torch.eye(4)[[0, 0, 0, 1]])  # shares 3/4 and 1/4
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert m["usage"].item() == pytest.approx(2 / 8)
    assert m["perplexity"].item() == pytest.approx(math.exp(entropy))


def test_vq_loss_and_codebook_gradient():
    vq = hand_made_quantizer().train()
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0]])  # normalised: (0.6, 0.8, 0, 0) -> code 1 = (0, 1, 0, 0)
    q, ids, loss, _ = vq(x)
    assert ids.item() == 1
    sq_dist = 0.6 ** 2 + 0.2 ** 2  # |z - code|^2, averaged over the 4 dims below
    assert loss.item() == pytest.approx((1 + 0.25) * sq_dist / 4)
    loss.backward()
    assert vq.codes.grad[1].abs().sum() > 0 and vq.codes.grad[0].abs().sum() == 0


def test_dead_code_is_restarted_from_encoder_outputs():
    vq = VectorQuantizer(dim=8, num_codes=16, code_dim=4).train()
    with torch.no_grad():
        vq.usage[3] = 0.0  # code 3 unused for a long time
    before = vq.codebook().detach().clone()
    x = torch.randn(32, 8)
    _, _, _, m = vq(x)
    after = vq.codebook().detach()
    assert m["restarts"].item() == 1
    assert not torch.allclose(after[3], before[3])
    z = torch.nn.functional.normalize(vq.proj_in(x), dim=-1).detach()
    assert torch.cdist(after[3:4], z).min() < 1e-5  # re-seeded from one of this batch's inputs
    assert torch.equal(torch.cat([after[:3], after[4:]]), torch.cat([before[:3], before[4:]]))
    assert vq.usage[3] > vq.dead_usage / 16  # a grace period before it can die again


def test_no_restart_in_eval_or_decoder_only_fine_tuning():
    model = tiny().train()
    with torch.no_grad():
        model.vq.usage.zero_()  # every code looks dead
    codes = model.vq.codes.detach().clone()
    model.eval()
    model(torch.rand(1, 2, 64, 64, 3))
    assert torch.equal(model.vq.codes, codes)
    model.train().requires_grad_(False)
    for p in model.decoder_parameters():
        p.requires_grad_(True)
    loss, metrics = model.loss({"frames": torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8)})
    loss.backward()
    assert torch.equal(model.vq.codes, codes) and metrics["restarts"] == 0
    assert model.patch_embed.weight.grad is None and model.to_pixels.weight.grad.abs().sum() > 0


def _restart_on_two_ranks(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # different data and different restart seeds on each rank
    vq = VectorQuantizer(dim=8, num_codes=16, code_dim=4).train()
    with torch.no_grad():
        vq.codes.copy_(torch.arange(64.0).view(16, 4))  # same start everywhere, as DDP would make it
        vq.usage[:5] = 0.0  # codes 0..4 dead
    _, _, _, metrics = vq(torch.randn(32, 8))
    gathered = [torch.zeros(16, 4) for _ in range(2)]
    dist.all_gather(gathered, vq.codes.detach())
    usages = [torch.zeros(16) for _ in range(2)]
    dist.all_gather(usages, vq.usage)
    dist.destroy_process_group()
    assert metrics["restarts"].item() == 5
    assert torch.equal(gathered[0], gathered[1]) and torch.equal(usages[0], usages[1])


@pytest.mark.slow
def test_dead_code_restart_agrees_across_ranks(tmp_path):
    mp.spawn(_restart_on_two_ranks, args=(str(tmp_path / "rendezvous"),), nprocs=2)


def moving_square_clip(T=4):
    """A red 16x16 square moving 4 pixels right per frame on a grey background: uint8 [1, T, 64, 64, 3]."""
    clip = torch.full((1, T, 64, 64, 3), 60, dtype=torch.uint8)
    for t in range(T):
        clip[0, t, 24:40, 8 + 4 * t:24 + 4 * t] = torch.tensor([220, 30, 30], dtype=torch.uint8)
    return clip


def test_loss_falls_on_a_tiny_clip():
    model = Tokenizer(PRESETS["tiny"]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    batch = {"frames": moving_square_clip(), "actions": torch.zeros(1, 3, dtype=torch.int64)}
    losses = []
    for _ in range(50):
        loss, metrics = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["loss"])
    assert sum(losses[-5:]) / 5 < 0.2 * sum(losses[:5]) / 5
    assert metrics["mse"] < 0.01  # PSNR > 20 dB
