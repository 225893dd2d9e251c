"""How frames are scored (GenieRedux paper sec. 5): PSNR, SSIM and FID. Needs numpy and torch only.

Frames are float [..., H, W, 3] in [0, 1]. train.py's logs, evaluate.py's tables and the tests all use
the one `psnr` below (train.py turns the models' logged MSEs into PSNRs with the same cap).

FID (Frechet Inception Distance, Heusel et al. 2017), the fidelity metric of the paper's Tab. 2-5, needs
the standard FID network: the 2015 TensorFlow InceptionV3 that TTUR's reference code used, whose weights
pytorch-fid ported to the file `pt_inception-2015-12-05-6726825d.pth`. It is not torchvision's
InceptionV3: its average pools ignore padding (TensorFlow's default) and its last block max-pools.
This file rebuilds that network in plain torch with the same parameter names, so the ported file loads
as it is. Download it once (about 100 MB):

    mkdir -p ~/.cache/torch/hub/checkpoints && cd ~/.cache/torch/hub/checkpoints
    wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

evaluate.py finds it there (torch.hub.get_dir()/checkpoints/) or takes --inception-weights PATH.
FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) over the 2048-d pool features of real and
generated frames (each resized to 299x299), computed with numpy alone.
"""
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Identical frames (MSE 0) score PSNR_CAP instead of inf, so averages stay finite: the PSNR of the rounding
# noise of 8-bit pixels (MSE = 1 / (12 * 255^2)), ~58.9 dB. Closer than that, uint8 frames cannot tell.
PSNR_CAP = 10 * math.log10(12 * 255 ** 2)


def psnr(x, y):
    """PSNR in dB with peak 1: [..., H, W, 3] -> [...], one per frame; identical frames give PSNR_CAP."""
    return mse_to_psnr((x.float() - y.float()).square().mean((-3, -2, -1)))


def mse_to_psnr(mse):
    """The PSNR (dB, peak 1) of mean squared errors (a tensor), capped at PSNR_CAP."""
    return (-10 * torch.log10(mse)).clamp(max=PSNR_CAP)


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


# ---------------------------------------------------------------------------
# FID: the TensorFlow InceptionV3 of TTUR, in plain torch
# ---------------------------------------------------------------------------

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"


class FIDUnavailable(Exception):
    """FID cannot be computed; the message is the one-line reason shown in place of the number."""


class Conv(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as TensorFlow) -> ReLU; parameters named conv.*, bn.*."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def tf_avg_pool(x):
    """3x3 stride-1 average pool that, like TensorFlow, leaves the zero padding out of the mean."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1."""

    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1 = Conv(cin, 48, 1)
        self.branch5x5_2 = Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x),
                          self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: strided 3x3 | 1x1 -> 3x3 -> strided 3x3 | max pool."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = conv(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1 -> strided 3x3 | 1x1 -> 1x7 -> 7x1 -> strided 3x3 | max pool."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = Conv(cin, 192, 1)
        self.branch3x3_2 = Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches. The FID network pools differently in its two copies:
    Mixed_7b averages (without padding), Mixed_7c max-pools (a quirk of the TF graph kept for comparability)."""

    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else tf_avg_pool(x)
        return torch.cat([self.branch1x1(x),
                          self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
                          self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """frames [N, H, W, 3] in [0, 1] -> pool features [N, 2048]. The file's classifier (fc.*) is not needed."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)

    def forward(self, frames):
        x = frames.permute(0, 3, 1, 2).float()  # [N, 3, H, W]
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1  # the TF network expects pixels in [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # [N, 64, 147, 147]
        x = F.max_pool2d(x, 3, stride=2)  # [N, 64, 73, 73]
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)  # [N, 192, 35, 35]
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)  # ... -> [N, 768, 17, 17] -> [N, 2048, 8, 8]
        return x.mean((2, 3))  # [N, 2048] global average pool


def find_weights(path=None):
    """The weights file: `path` if given, else torch's hub cache. Raises FIDUnavailable with the reason."""
    if path is None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME
        if not path.is_file():
            raise FIDUnavailable(f"FID Inception weights not found at {path}; download {WEIGHTS_URL} "
                                 f"there or pass --inception-weights PATH")
    elif not Path(path).is_file():
        raise FIDUnavailable(f"--inception-weights {path}: no such file")
    return Path(path)


def load_inception(path=None, device="cpu"):
    """Build FIDInceptionV3 and load the pytorch-fid weights; raises FIDUnavailable with a one-line reason."""
    path = find_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the ImageNet classifier: unused
    except Exception as e:  # not a zip/pickle, or not a dict of tensors
        raise FIDUnavailable(f"{path}: not a readable state_dict ({type(e).__name__})") from None
    model = FIDInceptionV3()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # the 2018 port predates this buffer
    if missing or unexpected:
        raise FIDUnavailable(f"{path}: not the FID Inception weights ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[0]})")
    return model.to(device).eval()


@torch.no_grad()
def inception_features(model, frames, batch_size=50):
    """frames float [N, H, W, 3] in [0, 1] (any device) -> float64 numpy features [N, 2048]."""
    device = next(model.parameters()).device
    out = [model(frames[i:i + batch_size].to(device)).double().cpu() for i in range(0, len(frames), batch_size)]
    return torch.cat(out).numpy()


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) for Gaussians N(mu1, S1), N(mu2, S2).

    tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the inner matrix is symmetric PSD,
    so both square roots come from numpy's eigh (no scipy.linalg.sqrtm needed).
    """
    def eig_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    root1 = eig_sqrt(sigma1)
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


class FeatureStats:
    """Mean and covariance of features added batch by batch: a large test set needs no list of all features."""

    def __init__(self):
        self.n, self.total, self.outer = 0, 0.0, 0.0

    def add(self, features):
        """features: numpy [N, 2048] (float64 keeps the sums exact enough)."""
        self.n += len(features)
        self.total = self.total + features.sum(0)
        self.outer = self.outer + features.T @ features

    def mean_cov(self):
        mu = self.total / self.n
        return mu, (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)  # unbiased, as np.cov

    def fid(self, other):
        """FID between the two feature sets; needs at least 2 features in each."""
        return frechet_distance(*self.mean_cov(), *other.mean_cov())
