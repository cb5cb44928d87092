"""STFT, iSTFT and amplitude compression in the model's convention (see contract.py)."""

import numpy as np
import torch

from . import contract as C


def window(dtype=torch.float32, device=None) -> torch.Tensor:
    return torch.hann_window(C.N_FFT, periodic=True, dtype=dtype, device=device)


def n_frames(n_samples: int) -> int:
    """Frames produced offline for a signal of n_samples (centred framing)."""
    return 1 + n_samples // C.HOP


def stft(x: torch.Tensor) -> torch.Tensor:
    """[..., N] real -> [..., 256, T] complex. Zero-padded centred framing."""
    shape = x.shape
    spec = torch.stft(
        x.reshape(-1, shape[-1]),
        n_fft=C.N_FFT,
        hop_length=C.HOP,
        window=window(x.dtype, x.device),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """[..., 256, T] complex -> [..., length] real, window-envelope normalised overlap-add."""
    shape = spec.shape
    x = torch.istft(
        spec.reshape(-1, *shape[-2:]),
        n_fft=C.N_FFT,
        hop_length=C.HOP,
        window=window(spec.real.dtype, spec.device),
        center=True,
        length=length,
    )
    return x.reshape(*shape[:-2], length)


def compress(c: torch.Tensor) -> torch.Tensor:
    """c~ = beta * |c|^alpha * exp(j angle c); exact zero stays zero."""
    mag = c.abs()
    scale = torch.where(mag > 0, C.BETA * mag.clamp_min(1e-30) ** (C.ALPHA - 1.0), torch.zeros_like(mag))
    return c * scale


def decompress(c: torch.Tensor) -> torch.Tensor:
    """Inverse of compress: |c| = (|c~| / beta)^(1/alpha)."""
    mag = c.abs()
    inv = 1.0 / C.ALPHA
    scale = torch.where(
        mag > 0, (mag.clamp_min(1e-30) / C.BETA) ** inv / mag.clamp_min(1e-30), torch.zeros_like(mag)
    )
    return c * scale


def to_channels(c: torch.Tensor) -> torch.Tensor:
    """[B, F, T] complex -> [B, 2, F, T] real (re, im)."""
    return torch.stack([c.real, c.imag], dim=1)


def from_channels(x: torch.Tensor) -> torch.Tensor:
    """[B, 2, F, T] real -> [B, F, T] complex."""
    return torch.complex(x[:, 0], x[:, 1])


def analyse(wave: torch.Tensor) -> torch.Tensor:
    """Waveform [B, N] -> model domain [B, 2, 256, T] (compressed STFT, re/im channels)."""
    return to_channels(compress(stft(wave)))


def synthesise(x: torch.Tensor, length: int) -> torch.Tensor:
    """Model domain [B, 2, 256, T] -> waveform [B, length]."""
    return istft(decompress(from_channels(x)), length)


def np_analyse(wave: np.ndarray) -> np.ndarray:
    return analyse(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])[0].numpy()
