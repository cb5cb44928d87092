"""Evaluate Thunder ONNX models and the peers on the same files.

    python -m thunder_train.evaluate --model ../thunder-16k-base.onnx --steps 0,1,2,3,5 \
        --sets dev,test --peers dfn3,nnnoiseless --out eval/base

Sets: `dev` = the real DNS-2020 noisy/clean pairs in ../shared/data/dev/dns2020 (real recordings);
`test` = deterministic mixtures from the corpus test split (held-out speakers, noises and rooms).
Writes <out>.json (per file) and <out>.md (means). Thunder runs through ONNX Runtime with the
offline sampler, which is output-identical to the Rust engine's streaming path (parity-tested).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from .data import fixed_set
from .metrics import dnsmos, estoi, pesq_wb, si_sdr
from .onnx_runner import OnnxThunder

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "data"


def thunder_systems(models, steps) -> dict:
    """{"<model stem> steps=k": enhance function} for each Thunder ONNX file and step count."""
    systems = {}
    for m in models:
        model = OnnxThunder(m)
        for k in steps:
            systems[f"{Path(m).stem} steps={k}"] = lambda x, model=model, k=k: model.enhance(x, k)
    return systems


def write_report(prefix, text, data):
    """Print the markdown `text` and write it to <prefix>.md, and `data` to <prefix>.json."""
    print(text)
    Path(prefix + ".md").write_text(text)
    Path(prefix + ".json").write_text(json.dumps(data, indent=1))


def peer_systems(names: str) -> dict:
    """{display name: enhance function} for a --peers comma list (dfn3, nnnoiseless; none/empty: none)."""
    systems = {}
    for p in filter(lambda p: p and p != "none", names.split(",")):
        if p == "dfn3":
            from .peers import DeepFilterNet3

            systems["DeepFilterNet3"] = DeepFilterNet3().enhance
        elif p == "nnnoiseless":
            from .peers import NnNoiseless

            systems["nnnoiseless"] = NnNoiseless().enhance
    return systems


def load_dev(shared=SHARED):
    d = Path(shared) / "dev" / "dns2020"
    items = []
    for f in sorted((d / "noisy").glob("*.wav")):
        n, _ = sf.read(f, dtype="float32")
        c, _ = sf.read(d / "clean" / f.name, dtype="float32")
        items.append((f.stem, n, c))
    if not items:
        raise FileNotFoundError(f"no dev pairs under {d}")
    return items


def load_test(corpus, n, cache: Path):
    if cache.exists():
        z = np.load(cache)
        return [(f"test_{i:03d}", z["noisy"][i], z["clean"][i]) for i in range(len(z["noisy"]))]
    items = fixed_set(corpus, "test", n, seconds=4.0, seed=777)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, noisy=np.stack([a for a, _, _ in items]), clean=np.stack([b for _, b, _ in items]))
    return [(f"test_{i:03d}", a, b) for i, (a, b, _) in enumerate(items)]


def score(est, clean, with_dnsmos=True):
    r = {"pesq": pesq_wb(est, clean), "estoi": estoi(est, clean), "sisdr": si_sdr(est, clean)}
    if with_dnsmos:
        r.update({f"dnsmos_{k}": v for k, v in dnsmos(est).items()})
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="Thunder ONNX (repeatable)")
    ap.add_argument("--steps", default="0,1", help="comma list of reverse-step counts")
    ap.add_argument("--no-corrector", action="store_true", help="also run every steps>0 without the corrector")
    ap.add_argument("--sets", default="dev,test")
    ap.add_argument("--peers", default="dfn3", help="comma list from: dfn3, nnnoiseless, none")
    ap.add_argument("--corpus", default=str(ROOT / "models" / ".cache" / "corpus"))
    ap.add_argument("--test-n", type=int, default=40)
    ap.add_argument("--no-dnsmos", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output prefix (writes .json and .md)")
    args = ap.parse_args(argv)

    sets = {}
    for s in args.sets.split(","):
        if s == "dev":
            sets["dev"] = load_dev()
        elif s == "test":
            sets["test"] = load_test(args.corpus, args.test_n, ROOT / "models" / ".cache" / "eval" / "test.npz")
    systems = {"noisy": lambda x: x, **peer_systems(args.peers)}
    for mpath in args.model:
        m = OnnxThunder(mpath)
        name = Path(mpath).stem
        for n in map(int, args.steps.split(",")):
            systems[f"{name} steps={n}"] = (lambda mm, nn: lambda x: mm.enhance(x, nn, args.seed))(m, n)
            if args.no_corrector and n > 0:
                systems[f"{name} steps={n} no-corr"] = (lambda mm, nn: lambda x: mm.enhance(x, nn, args.seed, False))(m, n)

    results = {}
    for sname, items in sets.items():
        for sys_name, fn in systems.items():
            rows, t0, audio = [], time.time(), 0.0
            for fid, noisy, clean in items:
                est = fn(noisy)
                audio += len(noisy) / 16000
                rows.append({"file": fid, **score(est, clean, not args.no_dnsmos)})
            mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k != "file"}
            results.setdefault(sname, {})[sys_name] = {"mean": mean, "files": rows, "rtf_python": (time.time() - t0) / audio}
            print(sname, sys_name, json.dumps({k: round(v, 3) for k, v in mean.items()}), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = []
    for sname, res in results.items():
        keys = list(next(iter(res.values()))["mean"])
        lines.append(f"### {sname} ({len(sets[sname])} files)\n")
        lines.append("| system | " + " | ".join(keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for sys_name, r in res.items():
            lines.append(f"| {sys_name} | " + " | ".join(f"{r['mean'][k]:.3f}" for k in keys) + " |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
