"""Frame quality metrics: PSNR and SSIM (GenieRedux paper sec. 5). Needs only torch.

Frames are float [..., H, W, 3] in [0, 1]. Two PSNRs, which differ only for near-identical frames:
`psnr` is evaluate.py's per-frame figure, capped at PSNR_CAP (8-bit rounding noise) so averages of
tables stay finite; `mean_psnr` is train.py's one logged number, with the MSE floored at 1e-10 (100 dB)
as the models' own loss metrics are. Not a script: evaluate.py and train.py import it.
"""
import math

import torch
import torch.nn.functional as F

# Identical frames (MSE 0) score PSNR_CAP instead of inf, so averages stay finite: the PSNR of the rounding
# noise of 8-bit pixels (MSE = 1 / (12 * 255^2)), ~58.9 dB. Closer than that, uint8 frames cannot tell.
PSNR_CAP = 10 * math.log10(12 * 255 ** 2)


def psnr(x, y):
    """PSNR in dB with peak 1: [..., H, W, 3] -> [...]; identical frames give PSNR_CAP."""
    mse = (x.float() - y.float()).square().mean((-3, -2, -1))
    return (-10 * torch.log10(mse)).clamp(max=PSNR_CAP)


def mean_psnr(pred, real):
    """PSNR in dB (peak 1.0) of each frame, averaged: pred, real float [..., H, W, 3] in [0, 1].

    One float for train.py's log; the MSE is floored at 1e-10, so identical frames give 100 dB, not PSNR_CAP.
    """
    mse = ((pred.float() - real.float()) ** 2).mean((-3, -2, -1)).clamp_min(1e-10)
    return (-10 * mse.log10()).mean().item()


def ssim(x, y, size=11, sigma=1.5):
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, data range 1, each RGB channel, averaged.

    [..., H, W, 3] -> [...]. Only windows that lie fully inside the image count (no padding).
    """
    lead, (H, W) = x.shape[:-3], x.shape[-3:-1]
    x, y = (z.float().reshape(-1, H, W, 3).permute(0, 3, 1, 2) for z in (x, y))  # [N, 3, H, W]
    g = torch.exp(-(torch.arange(size, device=x.device) - size // 2) ** 2 / (2 * sigma ** 2))
    g = g / g.sum()

    def blur(z):  # separable Gaussian mean, per channel
        z = F.conv2d(z, g.view(1, 1, 1, size).expand(3, 1, 1, size), groups=3)
        return F.conv2d(z, g.view(1, 1, size, 1).expand(3, 1, size, 1), groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3)).view(lead)
