"""Where the residual noise is: per-band levels of enhanced dev recordings against the clean ones.

For each real dev file (../shared/data/dev, noisy/clean pairs) and each system, two rows over
10 bands (0-8 kHz):
  speech  = output level / clean level in the clean signal's speech frames (dB; < 0: speech lost),
  pauses  = output level in the clean signal's pauses (frames > 50 dB below its loudest) relative
            to the clean speech level (dB; higher: more noise left where there is no speech).

    python -m thunder_train.bands --model ../thunder-16k-base.onnx --steps 1 --peers dfn3 \\
        --out eval/bands-base-step14000
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.signal import stft

from .evaluate import load_dev, peer_systems
from .onnx_runner import OnnxThunder

EDGES_HZ = (0, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000)


def band_levels(est, clean, sr=16000):
    """(speech dB per band, pauses dB per band) of `est` against `clean` (same length)."""
    f, _, c = stft(clean, sr, nperseg=512, noverlap=384)
    _, _, e = stft(est, sr, nperseg=512, noverlap=384)
    pc, pe = np.abs(c) ** 2, np.abs(e) ** 2
    frame_db = 10 * np.log10(pc.sum(0) + 1e-12)
    speech = frame_db > frame_db.max() - 35
    pause = frame_db < frame_db.max() - 50
    sp, pa = [], []
    for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:]):
        m = (f >= lo) & (f < hi)
        ref = pc[m][:, speech].sum() / max(speech.sum(), 1)
        sp.append(10 * np.log10(pe[m][:, speech].sum() / max(speech.sum(), 1) / ref))
        pa.append(10 * np.log10(pe[m][:, pause].sum() / max(pause.sum(), 1) / ref + 1e-12) if pause.any() else np.nan)
    return np.array(sp), np.array(pa)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="Thunder ONNX model (repeatable)")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--peers", default="dfn3", help="comma list from: dfn3, nnnoiseless, none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="report path without suffix (.md)")
    args = ap.parse_args(argv)

    systems = {"noisy": lambda x: x, **peer_systems(args.peers)}
    for m in args.model:
        runner = OnnxThunder(m)
        systems[f"{Path(m).stem} steps={args.steps}"] = (lambda r: lambda x: r.enhance(x, args.steps, args.seed))(runner)

    bands = " | ".join(f"{lo}-{hi}" for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:]))
    head = f"| file | system | rows | {bands} |"
    md = ["## Per-band levels on the real dev recordings (dB; Hz bands)", "", __doc__.split("\n\n")[1], "",
          head, "|---" * (len(EDGES_HZ) + 2) + "|"]
    mean_pause = {}
    for fid, noisy, clean in load_dev():
        for name, fn in systems.items():
            est = np.asarray(fn(noisy), np.float32)
            n = min(len(est), len(clean))
            sp, pa = band_levels(est[:n], clean[:n])
            mean_pause.setdefault(name, []).append(pa)
            for label, row in (("speech", sp), ("pauses", pa)):
                md.append(f"| {fid} | {name} | {label} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    md += ["", "Pauses, mean over files:", "", f"| system | {bands} |", "|---" * len(EDGES_HZ) + "|"]
    for name, rows in mean_pause.items():
        md.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in np.nanmean(rows, 0)) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md[-len(mean_pause) - 2:]))


if __name__ == "__main__":
    main()
