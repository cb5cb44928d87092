"""Paired comparison of two systems on the same files, from `evaluate`, `snr_sweep` and `domain_gap`
JSON files (domain_gap's kinds of mixture are its sets).

    python -m thunder_train.paired --a mr-step1000 --b ctl-step1000 --steps 0,1 \
        eval/mr-vs-ctl.json eval/snr-sweep-mr.json

Systems scored in separate runs on the same files pair up when their files are joined with "+":
`eval/wide.json+eval/mr-vs-ctl.json` reads both as one table (their "noisy" rows must agree, which
proves the mixtures are the same).

Per file it takes a − b, then reports, per set and pooled over every file that has the metric, the
mean difference, its standard error and how many files a wins. Three real dev files cannot
separate 0.02 PESQ-WB; pooling the test mixtures and the sweep's files in pairs can.
"""

import argparse
import json
import math
from pathlib import Path

METRICS = ("pesq", "estoi", "sisdr", "dnsmos_ovrl")


def per_file(entry):
    """{metric: [value per file]} for one system's entry in either JSON layout."""
    if isinstance(entry, list):  # snr_sweep: PESQ-WB per file
        return {"pesq": [float(v) for v in entry]}
    files = entry["files"]
    return {m: [float(f[m]) for f in files] for m in METRICS if files and m in files[0]}


def same_scores(entry_a, entry_b, tol=1e-3):
    """Whether two entries scored the same files alike (to `tol`: DNSMOS runs in ONNX Runtime, whose
    float results may differ in the last digits between CPUs)."""
    fa, fb = per_file(entry_a), per_file(entry_b)
    return fa.keys() == fb.keys() and all(
        len(fa[m]) == len(fb[m]) and all(abs(x - y) <= tol for x, y in zip(fa[m], fb[m])) for m in fa)


def tables(data):
    """{set: {system: entry}}; domain_gap writes one row per (kind, mixture, system) instead."""
    if not isinstance(data, list):
        return data
    out = {}
    for row in data:
        out.setdefault(row["kind"], {}).setdefault(row["system"], {"files": []})["files"].append(row)
    return out


def load(arg):
    """One results table from a JSON path, or from several joined with "+" (systems of the same set
    merged; the sets' "noisy" rows must match, or the files did not score the same mixtures)."""
    merged = {}
    for path in map(Path, arg.split("+")):
        for set_name, systems in tables(json.loads(path.read_text())).items():
            have = merged.setdefault(set_name, {})
            if "noisy" in have and "noisy" in systems and not same_scores(have["noisy"], systems["noisy"]):
                raise SystemExit(f"{arg}: set {set_name!r} holds other mixtures in {path} (its noisy scores "
                                 "differ), so its systems cannot be paired")
            for name, entry in systems.items():
                have.setdefault(name, entry)
    return merged


def pairs(results, a, b):
    """Yield (set name, {metric: [a − b per file]}) for every set where both systems ran."""
    for set_name, systems in results.items():
        if a in systems and b in systems:
            fa, fb = per_file(systems[a]), per_file(systems[b])
            yield set_name, {m: [x - y for x, y in zip(fa[m], fb[m])] for m in fa if m in fb}


def summary(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se, sum(d > 0 for d in diffs), n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="evaluate / snr_sweep / domain_gap output (.json); A.json+B.json joins two runs "
                    "on the same files")
    ap.add_argument("--a", required=True, help="system a: model name as in the tables (file stem)")
    ap.add_argument("--b", required=True, help="system b, the reference")
    ap.add_argument("--steps", default="0,1", help="comma list of step counts to compare")
    ap.add_argument("--suffix", default="", help="appended to both names, e.g. ' no-corr'")
    args = ap.parse_args(argv)

    missing = [p for arg in args.json for p in arg.split("+") if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"no such file: {', '.join(missing)} (write it with evaluate, snr_sweep or domain_gap --out)")
    print(f"a = {args.a}, b = {args.b}: mean a − b ± standard error (files where a > b / files)")
    for steps in args.steps.split(","):
        a, b = f"{args.a} steps={steps}{args.suffix}", f"{args.b} steps={steps}{args.suffix}"
        pooled = {}
        for arg in args.json:
            stem = "+".join(Path(p).stem for p in arg.split("+"))
            for set_name, by_metric in pairs(load(arg), a, b):
                for metric, diffs in by_metric.items():
                    mean, se, wins, n = summary(diffs)
                    print(f"steps {steps} {stem}/{set_name} {metric}: {mean:+.4f} ± {se:.4f} ({wins}/{n})")
                    pooled.setdefault(metric, []).extend(diffs)
        if not pooled:
            raise SystemExit(f"no set has both '{a}' and '{b}': check the names against the tables")
        for metric, diffs in pooled.items():
            mean, se, wins, n = summary(diffs)
            print(f"steps {steps} pooled {metric}: {mean:+.4f} ± {se:.4f} ({wins}/{n})")


if __name__ == "__main__":
    main()
