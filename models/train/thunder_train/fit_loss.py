"""Training objective of checkpoints on the same fixed batches, per split, paired against the first:

    python -m thunder_train.fit_loss --corpus ../.cache/corpus --splits train,val --batches 12 \
        --eq 0.5 --tonal 0.3 runs/ctl/best.pt runs/wide/best.pt

Why: a larger network that lowers the loss on fresh mixtures of the *training* speakers and noises
but not on held-out ones (or on the real recordings) is limited by its data, not by its size. Every
checkpoint sees the same mixtures and the same t, z and stage-2 draws (EMA weights, eval mode, fp32),
so differences are paired per batch: mean ± standard error over the batches.
"""

import argparse
import json
from pathlib import Path

import torch

from .data import MixConfig, Mixer, collate
from .paired import summary
from .train import ema_network, training_step


def fixed_batches(corpus, split, n, batch, mix, seed):
    """n batches (noisy, clean, band) drawn once from `split` with the training mixer."""
    m = Mixer(corpus, split, mix, seed=seed)
    return [collate([m.example() for _ in range(batch)]) for _ in range(n)]


@torch.no_grad()
def batch_losses(net, batches, seed, reg_frac, stage2_frac, under_weight):
    """The objective per batch, with the draws of a generator seeded alike for every network."""
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    return [float(training_step(net, noisy, clean, band, reg_frac, gen, False, stage2_frac,
                                under_weight=under_weight)) for noisy, clean, band in batches]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", type=Path, nargs="+", help="training checkpoints (.pt); the first is the reference")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--splits", default="train,val", help="comma list of corpus splits")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--eq", type=float, default=0.0, help="as train.py --eq")
    ap.add_argument("--tonal", type=float, default=0.0, help="as train.py --tonal")
    ap.add_argument("--reg-frac", type=float, default=0.3, help="as train.py")
    ap.add_argument("--stage2-frac", type=float, default=0.3, help="as train.py")
    ap.add_argument("--under-weight", type=float, default=0.5, help="as train.py")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    missing = [str(p) for p in args.ckpt if not p.is_file()]
    if missing:
        raise SystemExit(f"no such checkpoint: {', '.join(missing)}")
    mix = MixConfig(seconds=args.seconds, p_eq_speech=args.eq, p_eq_noise=args.eq, p_tonal=args.tonal)
    nets = []
    for path in args.ckpt:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        nets.append((path, ck["step"], ema_network(ck)))
    for split in args.splits.split(","):
        batches = fixed_batches(args.corpus, split, args.batches, args.batch, mix, args.seed)
        ref = None
        for path, step, net in nets:
            losses = batch_losses(net, batches, args.seed, args.reg_frac, args.stage2_frac, args.under_weight)
            row = {"split": split, "ckpt": str(path), "step": step, "loss": sum(losses) / len(losses)}
            if ref is None:
                ref = losses
            else:
                mean, se, _, _ = summary([x - y for x, y in zip(losses, ref)])
                row |= {"minus_first": mean, "se": se, "relative": mean / (sum(ref) / len(ref)),
                        "better_batches": sum(x < y for x, y in zip(losses, ref))}
            print(json.dumps({k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
