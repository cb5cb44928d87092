"""Brownian bridge forward process and Thunder's two-stage sampler.

Everything here is frame-local except the network passes, so a streaming engine that keeps one
state set per pass reproduces `enhance` exactly. `denoise(x_t, y, t, pass_id)` is any callable that
returns x0 for whole sequences [B, 2, F, T]; pass_id is 0 for the regression pass, then
1 + 2i (corrector of step i) and 2 + 2i (predictor of step i).
"""

import math

import numpy as np
import torch

from . import contract as C
from . import rng


def bridge_mean(x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (x0.dim() - 1)))
    return (1.0 - t) * x0 + t * y


def bridge_std(t: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(t * (1.0 - t))


def bridge_sample(x0, y, t, z):
    """x_t = mean + std * z (z: complex standard normal in channel form, each part N(0, 1/2))."""
    s = bridge_std(t).reshape(-1, *([1] * (x0.dim() - 1)))
    return bridge_mean(x0, y, t) + s * z


def timesteps(n_steps: int) -> np.ndarray:
    return np.linspace(C.T_MAX, C.T_MIN, n_steps)


def network_passes(n_steps: int, corrector: bool = True) -> int:
    return 1 + n_steps * (2 if corrector else 1)


def corrector_update(x, x0, yp, t: float, z):
    """Annealed Langevin step at snr 0.5 with the bridge score written through x0."""
    return 0.5 * x + 0.5 * ((1.0 - t) * x0 + t * yp) + math.sqrt(t * (1.0 - t)) * z


def predictor_update(x, x0, t: float, dt: float, z):
    """Euler–Maruyama reverse step from t to t - dt."""
    return x - (dt / t) * (x - x0) + math.sqrt(dt) * z


def frame_noise_tensor(seed: int, stream: int, first_frame: int, n_frames: int, batch: int):
    z = torch.from_numpy(rng.noise(seed, stream, first_frame, n_frames))
    return z.unsqueeze(0).expand(batch, -1, -1, -1)


def enhance(denoise, y: torch.Tensor, n_steps: int, seed: int = 0, corrector: bool = True, first_frame: int = 0):
    """Run the two-stage sampler offline on y [B, 2, F, T] (compressed STFT)."""
    b, _, _, n = y.shape
    ones = torch.ones(b, dtype=y.dtype)
    x_reg = denoise(y, y, ones * C.T_REGRESSION, 0)
    if n_steps == 0:
        return x_reg
    yp = C.INTERP_WEIGHT * x_reg + (1.0 - C.INTERP_WEIGHT) * y
    x = yp
    ts = timesteps(n_steps)
    for i, t in enumerate(ts):
        t = float(t)
        if corrector:
            x0 = denoise(x, yp, ones * t, 1 + 2 * i)
            z = frame_noise_tensor(seed, 2 * i, first_frame, n, b).to(y.dtype)
            x = corrector_update(x, x0, yp, t, z)
        x0 = denoise(x, yp, ones * t, 2 + 2 * i)
        if i == n_steps - 1:
            return x0
        dt = t - float(ts[i + 1])
        z = frame_noise_tensor(seed, 2 * i + 1, first_frame, n, b).to(y.dtype)
        x = predictor_update(x, x0, t, dt, z)
    raise AssertionError("unreachable")
