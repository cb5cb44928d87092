"""PESQ-WB of Thunder models and the peers at fixed input SNRs, on test-split mixtures (held-out
speakers and noises, no reverberation, no noise-free examples), so a gap can be located by SNR:

    python -m thunder_train.snr_sweep --model ../thunder-16k-base.onnx --snrs 0,5,15 --n 12 \
        --peers dfn3 --out eval/snr-sweep

Every system enhances the same mixtures (seed 99, 4 s each; the same for every SNR except the
noise scale). Thunder runs at --steps (default 0: the regression pass). Writes <out>.json (per
file) and <out>.md (means over the files PESQ could score).
"""

import argparse
from pathlib import Path

import numpy as np

from .data import MixConfig, fixed_set
from .evaluate import ROOT, peer_systems, write_report
from .metrics import pesq_wb
from .onnx_runner import OnnxThunder
from .study import step_list


def snr_list(text):
    return [float(v) for v in text.split(",") if v]


def sweep(corpus, models, peers, snrs, n, steps, seed=99):
    """{snr: {system: [PESQ-WB per mixture]}}; systems: "noisy", the peers, "<model> steps=k"."""
    out = {}
    for snr in snrs:
        cfg = MixConfig(seconds=4.0, snr_db=(snr, snr), p_reverb=0.0, p_clean=0.0)
        rows = {"noisy": []}
        for noisy, clean, _ in fixed_set(corpus, "test", n, seed=seed, cfg=cfg):
            rows["noisy"].append(pesq_wb(noisy, clean))
            for name, enhance in peers.items():
                rows.setdefault(name, []).append(pesq_wb(enhance(noisy), clean))
            for name, model in models.items():
                for k in steps:
                    rows.setdefault(f"{name} steps={k}", []).append(pesq_wb(model.enhance(noisy, k), clean))
        out[snr] = rows
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="Thunder ONNX (repeatable)")
    ap.add_argument("--snrs", type=snr_list, default=[0.0, 5.0, 15.0], help="comma list of SNRs in dB")
    ap.add_argument("--n", type=int, default=12, help="mixtures per SNR")
    ap.add_argument("--steps", type=step_list, default=[0], help="comma list of reverse-step counts")
    ap.add_argument("--peers", default="dfn3", help="comma list from: dfn3, nnnoiseless, none")
    ap.add_argument("--corpus", default=str(ROOT / "models" / ".cache" / "corpus"))
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)
    if not args.model:
        raise SystemExit("give at least one --model (a Thunder ONNX file)")
    models = {Path(m).stem: OnnxThunder(m) for m in args.model}
    res = sweep(args.corpus, models, peer_systems(args.peers), args.snrs, args.n, args.steps)
    systems = list(next(iter(res.values())))
    lines = [f"### PESQ-WB by input SNR ({args.n} test-split mixtures per SNR, no reverberation)", "",
             "| system | " + " | ".join(f"{s:g} dB" for s in args.snrs) + " |",
             "|---|" + "---|" * len(args.snrs)]
    for name in systems:
        lines.append(f"| {name} | " + " | ".join(f"{np.nanmean(res[s][name]):.3f}" for s in args.snrs) + " |")
    write_report(args.out, "\n".join(lines) + "\n", {str(s): r for s, r in res.items()})


if __name__ == "__main__":
    main()
