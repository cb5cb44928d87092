"""The committed parity fixture (read by the Rust tests) must match the Python contract."""

import json
from pathlib import Path

import numpy as np
import torch

from thunder_train import contract as C
from thunder_train import dsp, rng

FIX = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "contract.json"


def test_fixture_matches_python_contract():
    fx = json.loads(FIX.read_text())
    c = fx["constants"]
    assert (c["sample_rate"], c["n_fft"], c["hop"], c["n_bins"]) == (C.SAMPLE_RATE, C.N_FFT, C.HOP, C.N_BINS)
    assert (c["alpha"], c["beta"], c["t_min"], c["t_max"]) == (C.ALPHA, C.BETA, C.T_MIN, C.T_MAX)
    assert c["interp_weight"] == C.INTERP_WEIGHT and c["noise_rng"] == C.NOISE_RNG
    assert c["meta_keys"] == list(C.META_KEYS)
    x = np.asarray(fx["signal"], np.float32)
    spec = dsp.stft(torch.from_numpy(x)[None])[0]
    assert np.allclose(spec.real.numpy().ravel(), fx["stft_re"], atol=1e-5)
    n = fx["noise"]
    assert np.array_equal(rng.frame_noise(n["seed"], n["stream"], n["frame"]).ravel(), np.asarray(n["z"], np.float32))
    for s, v in fx["noise_mix"]:
        assert int(rng.mix(np.uint64(s))) == v
