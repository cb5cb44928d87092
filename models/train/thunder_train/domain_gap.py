"""Is the gap to DeepFilterNet3 on the real dev recordings in their speech or in their noise?

    python -m thunder_train.domain_gap --model ../thunder-16k-base.onnx --steps 0,1 --draws 4 \
        --out eval/domain-gap

The dev pairs are synthetic mixtures of real recordings (DNS 2020), so each noise track is exactly
noisy − clean. Six kinds, the mixtures at the SNR of their dev file and at its noisy file's RMS
level:
  dev speech + dev noise     the dev files themselves;
  dev speech + test noise    the dev speech with noise from our held-out test split;
  test speech + dev noise    held-out test speech (LibriVox, the held-out voices) under the dev noise;
  test speech + test noise   both ours;
  dev speech alone, test speech alone   no noise at all, at the speech's level in its mixture:
                             what each system does to clean speech (PESQ-WB against the input
                             itself measures the distortion; 4.64 is transparent).
Where Thunder's shortfall against DeepFilterNet3 follows the dev noise, more or other noise is the
lever; where it follows the dev speech, the speech is. Test tracks are 10 s test-split mixtures
(seed 4242, no reverberation), `--draws` of them per dev file. Writes <out>.json (per mixture)
and <out>.md (means); `python -m thunder_train.paired` pairs two systems in it per mixture.
"""

import argparse

import numpy as np

from .data import MixConfig, fixed_set, rms
from .evaluate import ROOT, load_dev, peer_systems, thunder_systems, write_report
from .metrics import dnsmos, pesq_wb
from .study import step_list

KINDS = ("dev speech + dev noise", "dev speech + test noise", "test speech + dev noise", "test speech + test noise",
         "dev speech alone", "test speech alone")


def remix(speech, noise, snr_db, level):
    """speech + noise with the noise scaled to snr_db below the speech, the sum at RMS `level`.
    Returns (noisy, clean) scaled alike, so the clean reference matches the mixture."""
    n = len(speech)
    noise = np.resize(noise, n)  # loops a shorter noise track
    noise = noise * (rms(speech) / rms(noise) / 10 ** (snr_db / 20))
    mix = speech + noise
    g = level / rms(mix)
    return (g * mix).astype(np.float32), (g * speech).astype(np.float32)


def mixtures(dev, test_tracks, draws):
    """[(kind, name, noisy, clean)] for the six kinds; test_tracks: [(speech, noise)] of 10 s,
    `draws` per dev file."""
    out = []
    for i, (name, noisy, clean) in enumerate(dev):
        noise = noisy - clean
        snr = 20 * np.log10(rms(clean) / rms(noise))
        level = rms(noisy)
        out.append((KINDS[0], name, noisy.astype(np.float32), clean.astype(np.float32)))
        out.append((KINDS[4], name, clean.astype(np.float32), clean.astype(np.float32)))
        for d in range(draws):
            t_speech, t_noise = test_tracks[i * draws + d]
            tag = f"{name}/{d}"
            out.append((KINDS[1], tag, *remix(clean, t_noise, snr, level)))
            out.append((KINDS[2], tag, *remix(t_speech, noise, snr, level)))
            out.append((KINDS[3], tag, *remix(t_speech, t_noise, snr, level)))
            alone = (t_speech * (rms(clean) / rms(t_speech))).astype(np.float32)
            out.append((KINDS[5], tag, alone, alone))
    return out


def test_tracks(corpus, n, seconds=10.0, seed=4242):
    """n (speech, noise) pairs from the test split: held-out voices and noise files, no reverb."""
    cfg = MixConfig(seconds=seconds, snr_db=(5.0, 5.0), p_reverb=0.0, p_clean=0.0)
    return [(clean, noisy - clean) for noisy, clean, _ in fixed_set(corpus, "test", n, seed=seed, cfg=cfg)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="Thunder ONNX (repeatable)")
    ap.add_argument("--steps", type=step_list, default=[1], help="comma list of reverse-step counts")
    ap.add_argument("--draws", type=int, default=4, help="test tracks per dev file")
    ap.add_argument("--peers", default="dfn3", help="comma list from: dfn3, nnnoiseless, none")
    ap.add_argument("--no-dnsmos", action="store_true")
    ap.add_argument("--corpus", default=str(ROOT / "models" / ".cache" / "corpus"))
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error("--draws must be at least 1")
    dev = load_dev()
    mixes = mixtures(dev, test_tracks(args.corpus, len(dev) * args.draws), args.draws)
    systems = {"noisy": lambda x: x, **peer_systems(args.peers), **thunder_systems(args.model, args.steps)}
    rows = []
    for kind, name, noisy, clean in mixes:
        for system, enhance in systems.items():
            est = enhance(noisy)
            row = {"kind": kind, "mixture": name, "system": system, "pesq": pesq_wb(est, clean)}
            if not args.no_dnsmos:
                row.update({f"dnsmos_{k}": v for k, v in dnsmos(est).items()})
            rows.append(row)
        print(kind, name, {r["system"]: round(r["pesq"], 3) for r in rows[-len(systems):]}, flush=True)
    metrics = ["pesq"] + ([] if args.no_dnsmos else ["dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"])
    lines = [f"### Dev speech and noise against ours ({len(dev)} dev files, {args.draws} test tracks each)", ""]
    for metric in metrics:
        lines += [f"**{metric}** (mean over the mixtures of each kind)", "",
                  "| system | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
        for system in systems:
            cells = [np.nanmean([r[metric] for r in rows if r["kind"] == k and r["system"] == system]) for k in KINDS]
            lines.append(f"| {system} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        lines.append("")
    write_report(args.out, "\n".join(lines), rows)


if __name__ == "__main__":
    main()
