"""Tests of the MaskGIT dynamics model (dynamics.py): causality, masking, TDCE, sampler, learning."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import dynamics
from dynamics import PRESETS, Dynamics, code_distance, inverse_cdf, random_mask, sample_codes, tdce_loss, token_entropy
from metrics import psnr
from tokenizer import PRESETS as TOKENIZER_PRESETS, Tokenizer
from toy import MOVES, decode_patches, encode_patches, toy_batch

SMALL = replace(PRESETS["tiny"], grid=(4, 4), num_codes=16)  # fast enough for unit tests
pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return Dynamics(replace(SMALL, **overrides)).eval()


def random_clip(B=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SMALL.num_codes, (B, T, *SMALL.grid), generator=g)
    actions = torch.randint(0, SMALL.num_actions, (B, T - 1), generator=g)
    return tokens, actions


# ---------------------------------------------------------------------------- model

@pytest.mark.parametrize("t", [0, 2])
def test_future_tokens_and_actions_do_not_change_the_past(t):
    model = small_model()
    tokens, actions = random_clip()
    later_tokens, later_actions = tokens.clone(), actions.clone()
    later_tokens[:, t + 1:] = (tokens[:, t + 1:] + 1) % SMALL.num_codes
    later_tokens[:, -1, 0, 0] = model.mask_id
    later_actions[:, t:] = (actions[:, t:] + 1) % SMALL.num_actions  # actions[:, t] produces frame t+1
    with torch.no_grad():
        before, after = model(tokens, actions), model(later_tokens, later_actions)
    assert before.shape == (2, 5, *SMALL.grid, SMALL.num_codes)
    torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1])
    assert not torch.allclose(after[:, t + 1], before[:, t + 1])


def test_action_conditions_the_frame_it_produced():
    model = small_model()
    tokens, actions = random_clip()
    other = actions.clone()
    other[:, 1] = (actions[:, 1] + 1) % SMALL.num_actions  # actions[:, 1] turned frame 1 into frame 2
    with torch.no_grad():
        before, after = model(tokens, actions), model(tokens, other)
    torch.testing.assert_close(after[:, :2], before[:, :2])
    assert (after[:, 2] - before[:, 2]).abs().max() > 1e-4


def test_a_codebook_of_another_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="codebook has shape"):
        Dynamics(SMALL, codebook=torch.randn(8, SMALL.code_dim))


def test_token_input_uses_the_codebook_and_can_be_switched_off():
    tokens, actions = random_clip()
    outputs = {}
    for token_input in ("learned", "frozen", "none"):
        for seed in (1, 2):
            torch.manual_seed(0)
            codebook = torch.randn(SMALL.num_codes, SMALL.code_dim, generator=torch.Generator().manual_seed(seed))
            model = Dynamics(replace(SMALL, token_input=token_input), codebook=codebook).eval()
            with torch.no_grad():
                outputs[token_input, seed] = model(tokens, actions)
    assert not torch.allclose(outputs["learned", 1], outputs["learned", 2])
    assert not torch.allclose(outputs["frozen", 1], outputs["frozen", 2])
    torch.testing.assert_close(outputs["none", 1], outputs["none", 2])
    with pytest.raises(ValueError, match="'learned', 'frozen' or 'none'"):
        Dynamics(replace(SMALL, token_input="both"))


def test_frozen_token_input_is_the_tokenizers_projection_and_never_trains():
    torch.manual_seed(0)
    tokenizer = Tokenizer(TOKENIZER_PRESETS["tiny"])  # as wide as the tiny dynamics model: 64
    config = replace(SMALL, num_codes=tokenizer.config.num_codes, token_input="frozen")
    model = Dynamics(config, codebook=tokenizer.codebook(), proj_out=tokenizer.vq.proj_out)
    with torch.no_grad():  # the tokenizer's own decoder input of every code, times 10; zeros for the mask
        expected = F.pad(10 * tokenizer.vq.embed(torch.arange(config.num_codes)), (0, 0, 0, 1))
    torch.testing.assert_close(model.code_input, expected)
    assert model.code_proj is None and "code_input" in model.state_dict()  # a buffer: the checkpoint carries it
    assert not {id(p) for p in tokenizer.parameters()} & {id(p) for p in model.parameters()}
    projection, table = [p.detach().clone() for p in tokenizer.vq.proj_out.parameters()], model.code_input.clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, config.num_codes, (2, 4, *config.grid), generator=g)
    actions = torch.randint(0, 5, (2, 3), generator=g)
    for _ in range(3):
        loss, _ = model.loss({"tokens": tokens, "actions": actions})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(p.grad is None for p in tokenizer.parameters())  # no gradient reaches the tokenizer
    assert all(torch.equal(p, q) for p, q in zip(tokenizer.vq.proj_out.parameters(), projection))
    assert torch.equal(model.code_input, table)  # and the frozen copy did not train either
    fresh = Dynamics(config).eval()  # no tokenizer at hand: the state dict brings the table
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens, actions), model.eval()(tokens, actions))
    with pytest.raises(ValueError, match="64-wide decoder input to a 32-wide embedding"):
        Dynamics(replace(config, dim=32), codebook=tokenizer.codebook(), proj_out=tokenizer.vq.proj_out)


def test_loss_metrics_and_tdce_switch():
    tokens, actions = random_clip(B=4)
    for tdce in (True, False):
        loss, metrics = small_model(tdce=tdce).loss({"tokens": tokens, "actions": actions})
        assert set(metrics) == {"loss", "ce", "acc", "mask_rate"}
        assert 0 < metrics["mask_rate"] < 1 and 0 <= metrics["acc"] <= 1  # the clean context is never masked
        assert metrics["loss"] > metrics["ce"] if tdce else metrics["loss"] == metrics["ce"]
        loss.backward()


# ---------------------------------------------------------------------------- masking

def test_random_mask_rate_per_sample_is_uniform_between_half_and_one():
    tokens = torch.randint(0, 1024, (4000, 16, 16))
    masked, mask = random_mask(tokens, mask_id=1024, generator=torch.Generator().manual_seed(0))
    rates = mask.float().mean((1, 2))
    assert rates.min() > 0.5 - 0.1 and rates.max() <= 1  # 256 tokens per sample: rate +- ~0.03
    assert rates.min() < 0.55 and rates.max() > 0.95  # the whole range is drawn
    assert abs(rates.mean().item() - 0.75) < 0.01
    assert abs(rates.std().item() - 0.5 / math.sqrt(12)) < 0.01  # std of U(0.5, 1)
    assert (masked[mask] == 1024).all() and torch.equal(masked[~mask], tokens[~mask])


def test_loss_keeps_a_clean_context_of_random_length_and_masks_only_after_it(monkeypatch):
    model, seen = small_model(), []
    hidden = Dynamics.hidden
    monkeypatch.setattr(Dynamics, "hidden", lambda self, tokens, *rest: seen.append(tokens) or hidden(self, tokens, *rest))
    tokens, actions = random_clip(B=400, T=8)
    model.loss({"tokens": tokens, "actions": actions})
    masked = (seen[0] == model.mask_id).flatten(2).any(-1)  # [B, T]: frames with a masked token
    assert not masked[:, 0].any()  # frame 0 is always context
    first = masked.float().argmax(1)  # the first frame with a mask, per sample
    after = torch.arange(8)[None] >= first[:, None]
    # frames after the context are all masked (a rate >= 0.5 over 16 tokens leaves no frame untouched in practice)
    assert (masked == after).float().mean() > 0.99
    assert set(first.tolist()) == set(range(1, 8))  # every context length 1..T-1 is drawn


def test_mask_id_is_never_a_code_id():
    model = small_model()
    assert model.mask_id == SMALL.num_codes  # code ids are 0 .. num_codes-1
    assert model.embed.num_embeddings == SMALL.num_codes + 1
    assert model.head.out_features == SMALL.num_codes  # the mask can never be predicted


# ---------------------------------------------------------------------------- TDCE

def test_tdce_with_lambda_zero_is_cross_entropy():
    logits, targets = torch.randn(50, 16), torch.randint(0, 16, (50,))
    distance = code_distance(torch.randn(16, 8))
    loss, ce = tdce_loss(logits, targets, distance, lam=0.0)
    assert torch.equal(loss, F.cross_entropy(logits, targets)) and torch.equal(ce, loss)
    loss, ce = tdce_loss(logits, targets, distance, lam=0.5)
    assert torch.equal(ce, F.cross_entropy(logits, targets)) and loss > ce


def test_tdce_prefers_mass_on_codes_near_the_target():
    # hand-made codebook on the unit circle: 1 is 10 degrees from 0, 2 is opposite, 3 at 90 degrees
    angles = torch.tensor([0.0, 10.0, 180.0, 90.0]) * math.pi / 180
    codebook = torch.stack([angles.cos(), angles.sin()], dim=1)
    K = code_distance(codebook)
    torch.testing.assert_close(K[0], torch.tensor([0.0, 1 - math.cos(math.pi / 18), 2.0, 1.0]))
    target = torch.tensor([0])
    near = torch.tensor([[0.3, 0.7, 0.0, 0.0]]).log()  # same mass on y, the rest near y
    far = torch.tensor([[0.3, 0.0, 0.7, 0.0]]).log()  # ... or far from y
    loss_near, ce_near = tdce_loss(near, target, K, lam=1.0)
    loss_far, ce_far = tdce_loss(far, target, K, lam=1.0)
    torch.testing.assert_close(ce_near, ce_far)
    assert loss_near.item() == pytest.approx(-math.log(0.3) + 0.7 * (1 - math.cos(math.pi / 18)), rel=1e-5)
    assert loss_far.item() == pytest.approx(-math.log(0.3) + 0.7 * 2.0, rel=1e-5)
    assert loss_near < loss_far


def test_token_entropy_closed_forms():
    assert torch.allclose(token_entropy(torch.zeros(3, 1024)), torch.tensor(math.log(1024)))
    assert token_entropy(torch.tensor([[50.0, 0.0, 0.0]])).item() < 1e-6


# ---------------------------------------------------------------------------- sampler

@pytest.mark.parametrize("generate", ["generate", "generate_autoregressive"])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_sampler_unmasks_every_token_and_keeps_the_context(generate, steps):
    model = small_model()
    tokens, actions = random_clip(T=5)
    out = getattr(model, generate)(tokens[:, :2], actions, n_frames=3, steps=steps)
    assert out.shape == tokens.shape
    assert torch.equal(out[:, :2], tokens[:, :2])
    assert out.min() >= 0 and out.max() < SMALL.num_codes  # no mask id left


@pytest.mark.parametrize("generate", ["generate", "generate_autoregressive"])
def test_sampler_randomness(generate):
    model = small_model()
    tokens, actions = random_clip(T=5)
    run = lambda temperature, seed: getattr(model, generate)(  # noqa: E731
        tokens[:, :2], actions, 3, steps=4, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0.0, 0), run(0.0, 1))  # temperature 0: argmax, no randomness
    assert torch.equal(run(1.0, 0), run(1.0, 0)) and not torch.equal(run(1.0, 0), run(1.0, 1))


@pytest.mark.parametrize("generate", ["generate", "generate_autoregressive"])
def test_annealed_sampling_ends_in_the_argmax(generate):
    model = small_model()
    tokens, actions = random_clip(T=5)
    run = lambda temperature, steps, anneal, seed=0: getattr(model, generate)(  # noqa: E731
        tokens[:, :2], actions, 3, steps=steps, temperature=temperature, generator=torch.Generator().manual_seed(seed),
        anneal=anneal)
    argmax = run(0.0, 4, False)
    assert torch.equal(run(0.0, 4, True), argmax) and torch.equal(run(1e-6, 4, True), argmax)  # temperature -> 0
    assert torch.equal(run(5.0, 1, True), run(0.0, 1, False))  # the last step samples at temperature 0
    assert not torch.equal(run(5.0, 4, True, 0), run(5.0, 4, True, 1))  # but the steps before it sample


def test_annealing_changes_only_the_temperature_of_each_step(monkeypatch):
    model = small_model()
    tokens, actions = random_clip(T=5)
    seen, sample = [], dynamics.sample_codes
    monkeypatch.setattr(dynamics, "sample_codes", lambda logits, t, g=None: seen.append(t) or sample(logits, t, g))
    run = lambda anneal: model.generate(tokens[:, :2], actions, 3, steps=4, temperature=2.0,  # noqa: E731
                                        generator=torch.Generator().manual_seed(0), anneal=anneal)
    annealed = run(True)
    assert seen == pytest.approx([1.5, 1.0, 0.5, 0.0])  # 2 * (1 - (step + 1) / 4): linear to 0 at the last step
    seen.clear()
    constant = run(False)
    assert seen == [2.0] * 4 and not torch.equal(annealed, constant)
    schedule = iter([1.5, 1.0, 0.5, 0.0])  # constant-temperature sampling told the annealed temperatures
    monkeypatch.setattr(dynamics, "sample_codes", lambda logits, t, g=None: sample(logits, next(schedule), g))
    assert torch.equal(run(False), annealed)


def test_cosine_schedule_of_masked_tokens(monkeypatch):
    model = small_model()
    tokens, actions = random_clip(T=5)
    seen, hidden = [], model.hidden  # masked tokens per sample in the clip at each MaskGIT step
    monkeypatch.setattr(model, "hidden", lambda t, *a: seen.append((t == model.mask_id).sum((1, 2, 3))) or hidden(t, *a))
    model.generate(tokens[:, :2], actions, 3, steps=4)
    M = 3 * 16  # 3 new frames of 4x4 tokens
    expected = [M] + [math.floor(M * math.cos(math.pi / 2 * s / 4)) for s in (1, 2, 3)]  # 48, 44, 33, 18
    assert [n.tolist() for n in seen] == [[e, e] for e in expected]


def test_frame_order_commits_earlier_frames_first(monkeypatch):
    model = small_model()
    tokens, actions = random_clip(T=5)
    seen, hidden = [], model.hidden  # committed tokens per frame of the new frames at each MaskGIT step
    monkeypatch.setattr(model, "hidden", lambda t, *a: seen.append((t[:, 2:] != model.mask_id).sum((2, 3))) or hidden(t, *a))

    def committed(order):
        seen.clear()
        model.generate(tokens[:, :2], actions, 3, steps=4, frame_order=order)
        return [n.tolist() for n in seen[1:]]  # seen[0]: all masked

    # 4, 15, 30 of the 3 x 16 tokens committed: frame by frame when lateness outweighs every log-probability
    assert committed(100.0) == [[[4, 0, 0]] * 2, [[15, 0, 0]] * 2, [[16, 14, 0]] * 2]
    assert committed(0.0) != committed(100.0)  # MaskGIT's own order mixes the frames
    assert [sum(map(sum, step)) for step in committed(0.0)] == [8, 30, 60]  # on the same cosine schedule


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("sampling", [{}, {"frame_order": 0.25}, {"anneal": True}])
def test_cached_one_go_gives_the_tokens_of_the_plain_one(temperature, sampling):
    """generate runs the whole clip at every step; on a TimeCache only the new frames run: the same tokens."""
    model = small_model()
    tokens, actions = random_clip(T=8)
    seed = lambda: torch.Generator().manual_seed(3)  # noqa: E731  the same uniform numbers for both
    plain = model.generate(tokens[:, :2], actions, 6, steps=5, temperature=temperature, generator=seed(), **sampling)
    caches = model.cache(tokens[:, :2], actions[:, :1])
    cached = model.generate_cached(caches, actions[:, 1:], steps=5, temperature=temperature, generator=seed(), **sampling)
    assert torch.equal(torch.cat([tokens[:, :2], cached], 1), plain)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_autoregressive_gives_the_tokens_of_plain_generate_frame_by_frame(temperature):
    model = small_model()
    tokens, actions = random_clip(T=8)
    generator = torch.Generator().manual_seed(3)
    plain = tokens[:, :2]
    for _ in range(6):  # one frame at a time, the whole clip through the model at every step
        plain = model.generate(plain, actions[:, :plain.shape[1]], 1, 5, temperature, generator)
    cached = model.generate_autoregressive(tokens[:, :2], actions, 6, steps=5, temperature=temperature,
                                           generator=torch.Generator().manual_seed(3))
    assert torch.equal(cached, plain)


def test_a_cache_never_changes():
    """One cache, several continuations: each is what it would be on a fresh cache of the same frames."""
    model = small_model()
    tokens, actions = random_clip(T=6)
    caches = model.cache(tokens[:, :2], actions[:, :1])
    keys = [cache.k.clone() for cache in caches]
    longer = model.add_frames(caches, tokens[:, 2:4], actions[:, 1:3])
    assert all(len(cache) == 2 for cache in caches) and all(len(cache) == 4 for cache in longer)

    def run(caches, actions):
        return model.generate_cached(caches, actions, steps=3, temperature=1.0, generator=torch.Generator().manual_seed(0))

    first, other = run(caches, actions[:, 1:3]), run(caches, (actions[:, 1:3] + 1) % SMALL.num_actions)
    assert torch.equal(run(caches, actions[:, 1:3]), first) and not torch.equal(first, other)
    assert torch.equal(run(model.cache(tokens[:, :2], actions[:, :1]), actions[:, 1:3]), first)
    assert all(torch.equal(cache.k, k) for cache, k in zip(caches, keys))


def test_cache_runs_the_model_on_the_new_frames_only(monkeypatch):
    model = small_model()
    tokens, actions = random_clip(T=8)
    frames_run, hidden = [], model.hidden
    monkeypatch.setattr(model, "hidden", lambda t, *a: frames_run.append(t.shape[1]) or hidden(t, *a))
    model.generate_autoregressive(tokens[:, :2], actions, 6, steps=5)
    assert frames_run == [2] + [1] * 6 * (5 + 1)  # the context once; per frame 5 MaskGIT steps and 1 to keep it


@pytest.mark.parametrize("num_codes", [8, 37, 1024])  # 37: the sampler's groups of 7 codes end in padding
def test_two_level_lookup_is_the_one_level_one(num_codes):
    """inverse_cdf's groups are a faster way to searchsorted(cumsum(weights), u): the same index for the same u."""
    weights = torch.rand(5000, num_codes, generator=torch.Generator().manual_seed(1)) ** 4
    fast = inverse_cdf(weights, torch.Generator().manual_seed(0))
    u = torch.rand(5000, 1, generator=torch.Generator().manual_seed(0))  # the uniform numbers inverse_cdf drew
    plain = torch.searchsorted(weights.cumsum(-1), u * weights.sum(-1, keepdim=True), right=True)[:, 0]
    assert (fast == plain).float().mean() > 0.999  # sums taken in another order may round across a boundary


@pytest.mark.parametrize("num_codes", [8, 37])
def test_sampled_codes_follow_the_softmax(num_codes):
    """Chi-square test of 200,000 draws against softmax(logits / T), for T = 1 and T = 0.5."""
    logits = torch.randn(num_codes, generator=torch.Generator().manual_seed(num_codes)) * 1.5
    critical = {8: 24.3, 37: 68.0}[num_codes]  # chi-square at p = 0.001, num_codes - 1 degrees of freedom
    for temperature in (1.0, 0.5):
        codes, confidence = sample_codes(logits.expand(200_000, num_codes), temperature, torch.Generator().manual_seed(0))
        expected = 200_000 * (logits / temperature).softmax(-1)
        observed = torch.bincount(codes, minlength=num_codes).float()
        chi2 = ((observed - expected) ** 2 / expected).sum().item()
        assert chi2 < critical, f"T={temperature}: chi-square {chi2:.1f} ({num_codes - 1} degrees of freedom)"
        torch.testing.assert_close(confidence, logits.softmax(-1)[codes])  # confidence: the untempered probability
    assert torch.equal(sample_codes(logits[None], 0.0)[0], logits.argmax()[None])  # temperature 0: the argmax


def test_windowed_cache_forgets_frames_beyond_the_window():
    model = small_model()  # 2 blocks: with window 3 a frame reaches back 2 * 2 = 4 frames in all
    tokens, actions = random_clip(B=1, T=8)
    changed = tokens.clone()
    changed[:, 0] = (tokens[:, 0] + 1) % SMALL.num_codes
    logits = []
    for clip in (tokens, changed):
        caches = model.cache(clip[:, :7], actions[:, :6], window=3)
        assert all(len(cache) == 2 for cache in caches)  # the next frame sees window - 1 = 2 frames
        logits.append(model.head(model.hidden(clip[:, 7:], actions[:, 6:], caches)[0]))
    torch.testing.assert_close(logits[0], logits[1])  # frame 7 no longer depends on frame 0
    full = [model(clip, actions)[:, 7] for clip in (tokens, changed)]
    assert not torch.allclose(full[0], full[1])  # without the window it does


def test_a_window_forgets_nothing_until_it_is_full():
    """Frame by frame, as play grows its memory: within the window, the windowed cache is the whole one."""
    model = small_model()
    tokens, actions = random_clip(B=1, T=13)
    windowed, whole = model.cache(tokens[:, :1], actions[:, :0], window=16), model.cache(tokens[:, :1], actions[:, :0])
    for t in range(1, 12):
        windowed = model.add_frames(windowed, tokens[:, t:t + 1], actions[:, t - 1:t])
        whole = model.add_frames(whole, tokens[:, t:t + 1], actions[:, t - 1:t])
        assert all(len(cache) == t + 1 for cache in windowed)
    logits = [model.head(model.hidden(tokens[:, 12:], actions[:, 11:], c)[0]) for c in (windowed, whole)]
    torch.testing.assert_close(logits[0], logits[1])
    for t in range(12, 30):  # and once it is full, it keeps window - 1 frames
        windowed = model.add_frames(windowed, tokens[:, 12:], actions[:, 11:])
    assert all(len(cache) == 15 and cache.k.shape[2] == 16 for cache in windowed)


def test_one_step_at_temperature_zero_is_one_argmax_pass():
    model = small_model()
    tokens, actions = random_clip(T=5)
    masked = tokens.clone()
    masked[:, 2:] = model.mask_id
    with torch.no_grad():
        expected = model(masked, actions).argmax(-1)[:, 2:]
    assert torch.equal(model.generate(tokens[:, :2], actions, 3, steps=1, temperature=0)[:, 2:], expected)


def test_predict_logits_of_the_last_frame():
    model = small_model()
    tokens, actions = random_clip(T=5)
    logits = model.predict_logits(tokens[:, :2], actions, n_frames=3)
    assert logits.shape == (2, *SMALL.grid, SMALL.num_codes) and logits.dtype == torch.float32
    # contract: first frames by one argmax pass, then the last frame fully masked, one forward
    frames = model.generate(tokens[:, :2], actions[:, :-1], 2, steps=1, temperature=0)
    masked = torch.cat([frames, torch.full_like(frames[:, :1], model.mask_id)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(masked, actions)[:, -1])


# ---------------------------------------------------------------------------- toy data

def test_toy_patch_code_is_lossless_and_the_square_follows_the_action():
    frames, actions = toy_batch(8, 6)  # 64x64 canvas, 8 px square, 4 px steps = 1 patch
    tokens = encode_patches(frames)
    assert tokens.shape == (8, 7, 16, 16) and set(tokens.unique().tolist()) <= {0, 1}
    assert torch.equal(decode_patches(tokens), frames.float() / 255)
    corner = lambda ids: torch.stack(torch.where(ids == 1)).min(1).values  # noqa: E731  top-left (row, col)
    for b in range(8):
        for k in range(6):
            step = corner(tokens[b, k + 1]) - corner(tokens[b, k])
            expected = torch.tensor(MOVES[int(actions[b, k])])
            assert torch.equal(step, expected) or not step.any()  # or clamped at the border


# ---------------------------------------------------------------------------- learning

@pytest.mark.slow
def test_learns_to_move_the_square_with_the_action():
    """A tiny model learns toy dynamics and its predictions follow the actions."""
    torch.manual_seed(0)
    # the tiny preset's blocks at half its width and depth, 32x32 toy frames, 4x4 patches
    config = replace(PRESETS["tiny"], grid=(8, 8), num_codes=16, dim=32, depth=2)
    model = Dynamics(config)
    frames, actions = toy_batch(2048, 3, seed=0, size=32)  # clips of 4 frames
    tokens = encode_patches(frames)  # [2048, 4, 8, 8]: 0 black, 1 white
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(500):
        i = torch.randint(0, len(tokens), (32,))
        loss, _ = model.loss({"tokens": tokens[i], "actions": actions[i]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # predict frames 1..3 from frame 0, with the true actions and with random ones (Genie's delta PSNR)
    model.eval()
    frames, actions = toy_batch(128, 3, seed=1, size=32)  # unseen episodes
    tokens = encode_patches(frames)
    random_actions = torch.randint(0, 5, actions.shape, generator=torch.Generator().manual_seed(0))
    truth = decode_patches(tokens[:, 1:])  # [128, 3, 32, 32, 3]
    copy_baseline = psnr(truth, decode_patches(tokens[:, :1]).expand_as(truth)).mean()
    for generate in (model.generate, model.generate_autoregressive):
        predicted = decode_patches(generate(tokens[:, :1], actions, 3, steps=4, temperature=0)[:, 1:])
        wrong = decode_patches(generate(tokens[:, :1], random_actions, 3, steps=4, temperature=0)[:, 1:])
        delta_psnr = (psnr(truth, predicted) - psnr(truth, wrong)).mean()
        assert delta_psnr > 2, f"{generate.__name__}: delta PSNR {delta_psnr:.2f} dB"
        assert psnr(truth, predicted).mean() > copy_baseline + 2, f"{generate.__name__}: no better than copying frame 0"
