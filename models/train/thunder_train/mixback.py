"""Does a checkpoint suppress too much or too little? Re-score its output with post-hoc changes.

    python -m thunder_train.mixback --ckpt runs/lines/last.pt --val-set runs/base/val.npz \
        --mix 0,0.05,0.1,0.15,0.2,0.3 --power 0,0.25,0.5,1,-0.1,-0.25 --steps 0,1 --out eval/mixback-lines

Two families of changes, both in the model domain (compressed STFT), applied to the sampler's
output x with the input y:
  * mix λ:   x + λ (y - x)               (puts a share of the input back, noise and speech alike)
  * power γ: x · r^γ, r = min(1, |x|/|y|)  (γ > 0 suppresses more where the model already
                                            suppresses; γ < 0 less)
If PESQ-WB rises with λ > 0 or γ < 0 the network over-suppresses (session 13 found it did, and
train.py --under-weight was the answer). Scores the real dev recordings (PESQ-WB, SI-SDR,
DNSMOS OVRL) and the validation mixtures (PESQ-WB, SI-SDR) with the PyTorch network offline.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import dsp, sampler
from .evaluate import load_dev
from .export import load_checkpoint
from .metrics import dnsmos, pesq_wb, si_sdr
from .snr_sweep import snr_list as float_list
from .study import step_list


def post_mix(x, y, lam):
    """x + lam (y - x): lam = 0 leaves x, lam = 1 returns y."""
    return x + lam * (y - x)


def post_power(x, y, gamma):
    """x · r^gamma with r = min(1, |x| / |y|) per bin; gamma = 0 leaves x."""
    r = (x.pow(2).sum(1, keepdim=True).sqrt() / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)).clamp(1e-4, 1.0)
    return x * r.pow(gamma)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="training checkpoint (.pt; EMA weights)")
    ap.add_argument("--val-set", type=Path, default=Path("runs/base/val.npz"))
    ap.add_argument("--mix", type=float_list, default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3])
    ap.add_argument("--power", type=float_list, default=[0.25, 0.5, 1.0, -0.1, -0.25])
    ap.add_argument("--steps", type=step_list, default=(0, 1))
    ap.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS on the dev files (faster)")
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)

    net = load_checkpoint(args.ckpt)
    v = np.load(args.val_set)
    items = [("dev", n, c) for _, n, c in load_dev()]
    items += [("val", v["noisy"][i], v["clean"][i]) for i in range(len(v["noisy"]))]
    changes = [("mix", lam, post_mix) for lam in args.mix] + [("power", g, post_power) for g in args.power if g != 0]
    scores = {}
    with torch.no_grad():
        for set_name, noisy, clean in items:
            y = dsp.analyse(torch.from_numpy(noisy)[None])
            for n in args.steps:
                x = sampler.enhance(lambda xt, yy, t, pid: net.offline(xt, yy, t), y, n, seed=0)
                for kind, p, fn in changes:
                    est = dsp.synthesise(fn(x, y, p), len(noisy))[0].numpy()
                    row = scores.setdefault(f"{set_name}|{n}|{kind}|{p}", {"pesq": [], "sisdr": [], "ovrl": []})
                    row["pesq"].append(pesq_wb(est, clean))
                    row["sisdr"].append(si_sdr(est, clean))
                    if set_name == "dev" and not args.no_dnsmos:
                        row["ovrl"].append(dnsmos(est)["ovrl"])
    means = {k: {m: float(np.mean(v)) if v else None for m, v in row.items()} for k, row in scores.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"ckpt": args.ckpt, "means": means}, indent=1))
    lines = [f"# Post-hoc mix / power on `{args.ckpt}`", "",
             "| set | steps | change | PESQ-WB | SI-SDR | DNSMOS OVRL |", "|---|---|---|---|---|---|"]
    for k, m in means.items():
        s, n, kind, p = k.split("|")
        ovrl = f"{m['ovrl']:.3f}" if m["ovrl"] is not None else ""
        lines.append(f"| {s} | {n} | {kind} {p} | {m['pesq']:.3f} | {m['sisdr']:.2f} | {ovrl} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
