"""How well the LineCanceller's phase coherence tells noise lines from speech on the real dev files.

For each dev recording, its clean speech and its noise (noisy - clean) go through
net.LineCanceller alone; in every frame the 5 loudest bins below 6.25 kHz are taken (for the
noise: its lines, where it has any) and the median and 90th percentile of their coherence are
printed per window length W. A useful W keeps speech low and steady noise lines near 1.

    python -m thunder_train.coherence --frames 8,16,32
"""

import argparse

import numpy as np
import torch

from . import contract as C
from . import dsp
from .evaluate import load_dev
from .net import LineCanceller

TOP_BINS = 5
MAX_BIN = 200  # 6.25 kHz


def loudest_bin_coherence(wave, frames):
    """Coherence of the TOP_BINS loudest bins (1..MAX_BIN) of every frame of `wave`."""
    lines = LineCanceller(frames)
    y = dsp.analyse(torch.from_numpy(np.asarray(wave, np.float32))[None])
    with torch.no_grad():
        feats, _, _ = lines(y, torch.zeros(1, 2, C.N_BINS, lines.history()))
    coh = feats[0, 0, 1:MAX_BIN].numpy()
    mag = y[0, :, 1:MAX_BIN].norm(dim=0).numpy()
    top = np.argsort(-mag, axis=0)[:TOP_BINS]
    return np.take_along_axis(coh, top, 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="8,16,32", help="comma list of window lengths W (frames)")
    args = ap.parse_args(argv)
    print("| W | file | speech median | speech p90 | noise median | noise p90 |\n|---|---|---|---|---|---|")
    for w in (int(v) for v in args.frames.split(",")):
        for name, noisy, clean in load_dev():
            s, n = loudest_bin_coherence(clean, w), loudest_bin_coherence(noisy - clean, w)
            print(f"| {w} | {name} | {np.median(s):.2f} | {np.percentile(s, 90):.2f} | "
                  f"{np.median(n):.2f} | {np.percentile(n, 90):.2f} |")


if __name__ == "__main__":
    main()
