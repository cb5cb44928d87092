import math

import numpy as np
import torch

from thunder_train import contract as C
from thunder_train import dsp, rng, sampler


def test_stft_istft_round_trip():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 5000)).astype(np.float32))
    spec = dsp.stft(x)
    assert spec.shape == (2, C.N_BINS, dsp.n_frames(5000))
    y = dsp.istft(spec, 5000)
    assert torch.allclose(x, y, atol=1e-5)


def test_compression_round_trip_and_zero():
    c = torch.complex(torch.randn(1000), torch.randn(1000)) * 10
    c[0] = 0
    back = dsp.decompress(dsp.compress(c))
    assert torch.allclose(back, c, atol=1e-4, rtol=1e-4)
    assert dsp.compress(c)[0] == 0
    # |c~| = beta |c|^alpha
    assert torch.allclose(dsp.compress(c)[1:].abs(), C.BETA * c[1:].abs() ** C.ALPHA, rtol=1e-5)


def test_bridge_mean_std():
    x0, y = torch.full((1, 2, 3, 4), 2.0), torch.full((1, 2, 3, 4), -1.0)
    for t in [0.0, 0.25, 0.5, 1.0]:
        tt = torch.tensor([t])
        assert torch.allclose(sampler.bridge_mean(x0, y, tt), torch.full_like(x0, (1 - t) * 2 - t))
        assert math.isclose(float(sampler.bridge_std(tt)), math.sqrt(t * (1 - t)), abs_tol=1e-7)
    # at t = 1 the bridge sample is y exactly: the regression pass sees D(y, y, 1)
    z = torch.randn_like(x0)
    assert torch.equal(sampler.bridge_sample(x0, y, torch.tensor([1.0]), z), y)


def test_bridge_sample_statistics():
    x0, y = torch.zeros(1, 2, 256, 4000), torch.ones(1, 2, 256, 4000)
    z = torch.randn(x0.shape) * math.sqrt(0.5)
    xt = sampler.bridge_sample(x0, y, torch.tensor([0.3]), z)
    assert abs(xt.mean().item() - 0.3) < 0.01
    assert abs(xt.var().item() - 0.3 * 0.7 * 0.5) < 0.01  # per real part


def test_corrector_is_bridge_langevin_step():
    # ALD at snr 0.5 with score -(x - mean)/std^2 and step 2 (snr std)^2 gives 1/2 x + 1/2 mean + std z
    x, x0, yp, z = (torch.randn(2, 256, 3) for _ in range(4))
    t = 0.7
    std2 = t * (1 - t)
    mean = (1 - t) * x0 + t * yp
    step = 2 * (C.CORRECTOR_SNR**2) * std2
    ald = x + step * (-(x - mean) / std2) + math.sqrt(2 * step) * z
    assert torch.allclose(sampler.corrector_update(x, x0, yp, t, z), ald, atol=1e-6)


def test_predictor_keeps_bridge_mean():
    # without noise, a predictor step maps the bridge mean at t to the bridge mean at t - dt
    x0, y = torch.randn(2, 256, 3), torch.randn(2, 256, 3)
    t, dt = 0.6, 0.2
    xt = (1 - t) * x0 + t * y
    out = sampler.predictor_update(xt, x0, t, dt, torch.zeros_like(x0))
    assert torch.allclose(out, (1 - (t - dt)) * x0 + (t - dt) * y, atol=1e-6)


def test_timesteps_and_passes():
    assert sampler.timesteps(1).tolist() == [C.T_MAX]
    assert np.allclose(sampler.timesteps(3), [0.999, 0.5145, 0.03])
    assert sampler.network_passes(1) == 3 and sampler.network_passes(3, corrector=False) == 4


def test_sampler_pass_sequence_and_reproducibility():
    calls = []

    def denoise(xt, y, t, pid):
        calls.append((pid, round(float(t[0]), 4)))
        return 0.5 * y

    y = torch.randn(1, 2, 256, 5)
    a = sampler.enhance(denoise, y, 2, seed=7)
    assert calls == [(0, 1.0), (1, 0.999), (2, 0.999), (3, 0.03), (4, 0.03)]
    b = sampler.enhance(denoise, y, 2, seed=7)
    assert torch.equal(a, b)


def test_noise_is_complex_standard_normal_and_chunk_invariant():
    z = rng.noise(1, 0, 0, 400)
    assert z.shape == (2, C.N_BINS, 400)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 0.5) < 0.01
    assert np.array_equal(rng.noise(1, 0, 100, 5), z[..., 100:105])
    assert not np.array_equal(rng.frame_noise(1, 0, 3), rng.frame_noise(1, 1, 3))
