"""Score checkpoints' EMA weights on a run's validation mixtures, exactly as train.py logs them
(PESQ-WB / SI-SDR at --steps 0 and 1, score = their PESQ mean), so that runs and branches
compare on the same mixtures:

    python -m thunder_train.score_val --val-set runs/base/val.npz runs/restart/best.pt runs/base/best.pt
"""

import argparse
import json
from pathlib import Path

import torch

from .train import ema_network, load_val, validate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val-set", type=Path, required=True, help="a run's val.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("ckpt", type=Path, nargs="+", help="training checkpoints (.pt)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    val = load_val(args.val_set)
    for path in args.ckpt:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        sc = {k: round(float(x), 4) for k, x in validate(ema_network(ck), val).items()}
        print(json.dumps({"ckpt": str(path), "step": ck["step"], **sc}), flush=True)


if __name__ == "__main__":
    main()
