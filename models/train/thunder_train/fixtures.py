"""Write the Python↔Rust parity fixtures under tests/fixtures/ (repository root).

    python -m thunder_train.fixtures

contract.json: DSP constants, a test waveform with its compressed STFT and iSTFT round trip,
counter-based noise samples, and the two-stage sampler run through ONNX Runtime on a small
exported graph (tiny-thunder-la1.onnx, random weights, look-ahead 1) at steps 0, 1 and 2;
"sampler_lines" the same for a graph with the optional blocks the trained models use
(tiny-thunder-lines.onnx: frame GRU and line canceller, look-ahead 0), whose extra state tensors
the engine must carry like any other.
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


def sampler_fixture(cfg: NetConfig, name: str, y: torch.Tensor, n: int) -> dict:
    """Export a random-weight graph as tests/fixtures/<name>.onnx and run the offline sampler
    through ONNX Runtime at steps 0, 1 and 2 (seed 42): the Rust engine must reproduce each run."""
    torch.manual_seed(1234)
    net = ThunderNet(cfg).eval()
    with torch.no_grad():  # make the random net's masks non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    onnx_path = FIXTURES / f"{name}.onnx"
    export_onnx(net, onnx_path, name=name, version="0.0.0", training_data="none (random weights, test fixture)")
    denoise = OnnxThunder(onnx_path).denoise
    runs = {}
    for steps in (0, 1, 2):
        out = sampler.enhance(denoise, y, steps, seed=42)
        wave = dsp.synthesise(out, n)[0].numpy()
        runs[str(steps)] = {"x0": out[0].numpy().ravel().tolist(), "wave": wave.tolist()}
    return {"model": onnx_path.name, "seed": 42, "shape": list(y.shape[1:]), "runs": runs}


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    x = test_signal()
    spec = dsp.stft(torch.from_numpy(x)[None])[0]
    comp = dsp.compress(spec)
    y = dsp.to_channels(comp[None])
    recon = dsp.istft(spec[None], len(x))[0].numpy()
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
        "sampler": sampler_fixture(NetConfig(lookahead=1), "tiny-thunder-la1", y, len(x)),
        # Small stand-ins for the trained models' frame GRU (192) and line canceller (32 frames).
        "sampler_lines": sampler_fixture(NetConfig(frame_hidden=16, line_frames=8), "tiny-thunder-lines", y, len(x)),
    }
    (FIXTURES / "contract.json").write_text(json.dumps(fx))
    print("wrote", FIXTURES / "contract.json", "and", ", ".join(fx[k]["model"] for k in ("sampler", "sampler_lines")))


if __name__ == "__main__":
    main()
