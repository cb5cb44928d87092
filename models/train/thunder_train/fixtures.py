"""Write the Python↔Rust parity fixtures under tests/fixtures/ (repository root).

    python -m thunder_train.fixtures

contract.json: DSP constants, a test waveform with its compressed STFT and iSTFT round trip,
counter-based noise samples, and the two-stage sampler run through ONNX Runtime on a small
exported graph (tiny-thunder-la1.onnx, random weights, look-ahead 1) at steps 0, 1 and 2.
"""

import json
from pathlib import Path

import numpy as np
import torch

from . import contract as C
from . import dsp, rng, sampler
from .export import export_onnx
from .net import NetConfig, ThunderNet
from .onnx_runner import OnnxThunder

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"


def test_signal(n=2000, seed=3):
    r = np.random.default_rng(seed)
    t = np.arange(n) / C.SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * r.standard_normal(n)
    return x.astype(np.float32)


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    net = ThunderNet(NetConfig(lookahead=1)).eval()
    with torch.no_grad():  # make the random net's masks non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    onnx_path = FIXTURES / "tiny-thunder-la1.onnx"
    export_onnx(net, onnx_path, name="tiny-thunder-la1", version="0.0.0", training_data="none (random weights, test fixture)")

    x = test_signal()
    spec = dsp.stft(torch.from_numpy(x)[None])[0]
    comp = dsp.compress(spec)
    y = dsp.to_channels(comp[None])
    recon = dsp.istft(spec[None], len(x))[0].numpy()
    denoise = OnnxThunder(onnx_path).denoise
    runs = {}
    for steps in (0, 1, 2):
        out = sampler.enhance(denoise, y, steps, seed=42)
        wave = dsp.synthesise(out, len(x))[0].numpy()
        runs[str(steps)] = {"x0": out[0].numpy().ravel().tolist(), "wave": wave.tolist()}
    fx = {
        "constants": {
            "sample_rate": C.SAMPLE_RATE, "n_fft": C.N_FFT, "hop": C.HOP, "n_bins": C.N_BINS,
            "center_pad": C.CENTER_PAD, "alpha": C.ALPHA, "beta": C.BETA, "t_min": C.T_MIN,
            "t_max": C.T_MAX, "interp_weight": C.INTERP_WEIGHT, "corrector_snr": C.CORRECTOR_SNR,
            "window": C.WINDOW, "noise_rng": C.NOISE_RNG, "contract_version": C.CONTRACT_VERSION,
            "meta_keys": list(C.META_KEYS),
        },
        "window": dsp.window().numpy().tolist(),
        "signal": x.tolist(),
        "stft_shape": [C.N_BINS, spec.shape[-1]],
        "stft_re": spec.real.numpy().ravel().tolist(),  # [F, T] row-major
        "stft_im": spec.imag.numpy().ravel().tolist(),
        "compressed": y[0].numpy().ravel().tolist(),  # [2, F, T]
        "istft": recon.tolist(),
        "noise": {"seed": 42, "stream": 3, "frame": 17, "z": rng.frame_noise(42, 3, 17).ravel().tolist()},
        "noise_mix": [[s, int(rng.mix(np.uint64(s)))] for s in (0, 1, 42, 2**63)],
        "timesteps": {str(n): sampler.timesteps(n).tolist() for n in (1, 2, 3, 5)},
        "sampler": {"model": onnx_path.name, "seed": 42, "shape": list(y.shape[1:]), "runs": runs},
    }
    (FIXTURES / "contract.json").write_text(json.dumps(fx))
    print("wrote", FIXTURES / "contract.json", "and", onnx_path)


if __name__ == "__main__":
    main()
