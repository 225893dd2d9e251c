"""The speed of one training step, as `python train.py --benchmark` measures it: writes nothing.

train.py builds the model, optimiser and (compiled, DDP) step exactly as for training and hands them here:

    python train.py --model tokenizer --preset paper --benchmark   # params, ms/step, frames/s, memory, MFU, loader
    python train.py --model dynamics --preset small --compile --benchmark   # an untrained tokenizer stands in
"""
import math
import time

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from data import Batches


def matmul_peak(n=2048, repeats=5):
    """This CPU's fp32 FLOP/s at its best: the fastest of a few n x n matmuls on torch's threads (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * n**3 / fastest


def benchmark(model, step_model, optimizer, train, args, device, ctx, grid):
    """Print parameters, ms/step, frames/s, tokens/s, peak memory and MFU of a training step, and loader clips/s.

    The model, optimiser and (compiled, DDP) step are exactly the training ones. MFU = FLOPs per step /
    seconds per step / peak: --peak-flops on CUDA, the measured fp32 matmul peak on a CPU. FLOPs are counted by torch's FlopCounterMode on one eager forward and
    backward: 2 per multiply-add of every matmul, convolution and attention product (the backward counted
    too, about twice the forward); elementwise work (norms, softmax, GELU, the optimiser) is not counted,
    as in the usual MFU definition.
    """
    B, T, c = args.batch_size, args.seq_len, model.config
    batch = {"tokens": torch.randint(0, c.num_codes, (B, T, *c.grid))} if args.model == "dynamics" \
        else {"frames": torch.randint(0, 256, (B, T, c.resolution, c.resolution, 3), dtype=torch.uint8)}
    batch = {k: v.to(device) for k, v in {**batch, "actions": torch.zeros(B, T - 1, dtype=torch.long)}.items()}
    with FlopCounterMode(display=False) as flops, ctx:  # eager: a compiled model hides its FLOPs
        model.loss(batch)[0].backward()
    optimizer.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(13):  # 3 warm-up (and compilation) steps, 10 timed
        if i == 3:
            sync()
            start = time.perf_counter()
        with ctx:
            loss, _ = step_model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    seconds = (time.perf_counter() - start) / 10
    print(f"{args.model} --preset {args.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"batch {B} x {T} frames: {1000 * seconds:.1f} ms/step | {B * T / seconds:.0f} frames/s | "
          f"{B * T * math.prod(grid) / seconds:.0f} tokens/s")
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB | MFU "
              f"{flops.get_total_flops() / seconds / args.peak_flops:.1%} of {args.peak_flops:.3g} FLOP/s (bf16)")
    else:
        import resource
        achieved, peak = flops.get_total_flops() / seconds, matmul_peak()
        print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS) | "
              f"{achieved / 1e9:.1f} GFLOP/s | MFU {achieved / peak:.1%} of this CPU's measured fp32 matmul peak, "
              f"{peak / 1e9:.0f} GFLOP/s on {torch.get_num_threads()} threads")
    if train is not None:  # reading and decoding episode files, the loader's real work
        loader = iter(DataLoader(train, batch_sampler=Batches(train, B, args.seed), num_workers=args.workers))
        next(loader)  # worker start-up is not loading
        start = time.perf_counter()
        for _ in range(20):
            next(loader)
        note = " (dynamics trains on cached tokens)" if args.model == "dynamics" else ""
        print(f"loader: {20 * B / (time.perf_counter() - start):.0f} clips/s from .npz files with --workers "
              f"{args.workers}; the model trains on {B / seconds:.0f} clips/s{note}")
