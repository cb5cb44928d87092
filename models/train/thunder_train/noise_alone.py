"""How much of a noise does each system take out when nobody speaks?

    python -m thunder_train.noise_alone --model ../thunder-16k-base.onnx --steps 0,1 --out eval/noise-alone

Real recordings pause between words and sentences, and there the listener (and PESQ, and DNSMOS's
background score) hears whatever noise is left. Each noise track is enhanced on its own, with no
speech in it: the three dev noises (noisy − clean of the DNS pairs) and `--draws` held-out
test-split noises per dev file, each at its dev file's noise level and 20 dB below it (a quiet
room). A test-split draw can be babble (voices of held-out speakers), which every system keeps as
speech: the test columns mix such draws with real noise. The score is the output's level against the input's in dB over the track after its first
0.5 s (the time a causal system needs to hear the noise): −40 means the noise is 40 dB quieter.
Writes <out>.json (per track) and <out>.md (means per kind).
"""

import argparse

import numpy as np

from .data import rms
from .domain_gap import test_tracks
from .evaluate import ROOT, load_dev, peer_systems, thunder_systems, write_report
from .study import step_list

SETTLE_S = 0.5
LEVELS_DB = (0.0, -20.0)  # relative to the dev file's noise level
KINDS = tuple(f"{src} noise, {lvl:+.0f} dB" for src in ("dev", "test") for lvl in LEVELS_DB)


def attenuation_db(noise, out, sr=16000):
    """Output level against input level in dB after the first SETTLE_S seconds (-inf-safe)."""
    s = int(SETTLE_S * sr)
    return float(20 * np.log10((rms(out[s:]) + 1e-10) / (rms(noise[s:]) + 1e-10)))


def tracks(dev, test_noises, draws):
    """[(kind, name, noise)] at each dev file's noise level and LEVELS_DB below it."""
    out = []
    for i, (name, noisy, clean) in enumerate(dev):
        noise = (noisy - clean).astype(np.float64)
        for lvl in LEVELS_DB:
            g = 10 ** (lvl / 20)
            out.append((f"dev noise, {lvl:+.0f} dB", name, (g * noise).astype(np.float32)))
            for d in range(draws):
                t = np.resize(test_noises[i * draws + d].astype(np.float64), len(noise))  # loops a shorter one
                t *= rms(noise) / rms(t) * g
                out.append((f"test noise, {lvl:+.0f} dB", f"{name}/{d}", t.astype(np.float32)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="Thunder ONNX (repeatable)")
    ap.add_argument("--steps", type=step_list, default=[1], help="comma list of reverse-step counts")
    ap.add_argument("--draws", type=int, default=2, help="test-split noises per dev file")
    ap.add_argument("--peers", default="dfn3", help="comma list from: dfn3, nnnoiseless, none")
    ap.add_argument("--corpus", default=str(ROOT / "models" / ".cache" / "corpus"))
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error("--draws must be at least 1")
    dev = load_dev()
    test_noises = [n for _, n in test_tracks(args.corpus, len(dev) * args.draws)]
    systems = {**peer_systems(args.peers), **thunder_systems(args.model, args.steps)}
    rows = []
    for kind, name, noise in tracks(dev, test_noises, args.draws):
        for system, enhance in systems.items():
            rows.append({"kind": kind, "track": name, "system": system,
                         "attenuation_db": attenuation_db(noise, enhance(noise))})
        print(kind, name, {r["system"]: round(r["attenuation_db"], 1) for r in rows[-len(systems):]}, flush=True)
    lines = [f"### Noise alone: output level against input in dB after {SETTLE_S} s "
             f"({len(dev)} dev noises, {args.draws} test noises each)", "",
             "| system | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for system in systems:
        cells = [np.mean([r["attenuation_db"] for r in rows if r["kind"] == k and r["system"] == system]) for k in KINDS]
        lines.append(f"| {system} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
