"""The domain-expert study (issue 5): fine-tune experts, merge them every way, evaluate with the Rust engine.

    python -m thunder_train.study --base-ckpt runs/base/best.pt --work ../.cache/study \\
        --report eval/study --ft-steps 300

Stages (each skips what is already on disk, so the command resumes):
  1. sets     deterministic val/test WAV sets per domain (corpus val/test split: speakers, noise
              files and rooms that no training run sees) + the real dev recordings
  2. base     export the base checkpoint (ONNX + safetensors)
  3. finetune one expert per domain (--ft-steps each) and one multi-domain model on the union
              (--ft-steps x number of domains: the same total budget); budgets recorded
  4. merge    every method of thunder-merge, without and with SVC; each method's main coefficient
              tuned on the validation sets only (mean PESQ-WB over the domains and --val-steps,
              by default --steps 1 and 0, the base run's checkpoint rule)
  5. eval     every model through `enhance --steps 1` and `--steps 0` on every domain's test
              set and on the dev recordings: PESQ-WB, ESTOI, SI-SDR, DNSMOS
  6. report   <report>.md / .json (rows = models, columns = domains + average) and <report>.png
`--ship` then copies the merge that is best on validation to models/thunder-16k.onnx, the experts'
safetensors to models/experts/ and its recipe to models/merge-recipe.toml.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .domains import EXPERT_DOMAINS, domain_set
from .metrics import dnsmos, estoi, pesq_wb, si_sdr

ROOT = Path(__file__).resolve().parents[3]
SHARED_DEV = ROOT.parent / "shared" / "data" / "dev" / "dns2020"

# name -> (recipe [method] table, optional [dare] table, the tuned knob, its grid).
# The knob is the method's main coefficient; DRM has none in the reference, so its experts'
# (uniform) weights play that role, as the reference's merge coefficients do.
METHODS = {
    "ta": ({"name": "ta"}, None, "lambda", (0.1, 0.25, 0.5, 0.75, 1.0)),
    "ties": ({"name": "ties"}, None, "lambda", (0.25, 0.5, 1.0, 1.5)),
    "dare-ties": ({"name": "ties"}, {"p": 0.8}, "lambda", (0.25, 0.5, 1.0, 1.5)),
    "tsv-m": ({"name": "tsv-m"}, None, "alpha", (0.25, 0.5, 1.0, 1.5)),
    "boosted-tsv-m": ({"name": "boosted-tsv-m"}, None, "alpha", (0.25, 0.5, 1.0, 1.5)),
    "drm-h": ({"name": "drm", "direction": "horizontal"}, None, "weight", (0.25, 0.5, 1.0, 1.5)),
    "drm-v": ({"name": "drm", "direction": "vertical"}, None, "weight", (0.25, 0.5, 1.0, 1.5)),
    "iso-c": ({"name": "iso-c"}, None, "alpha", (0.25, 0.5, 1.0, 1.5)),
}
METRICS = ("pesq", "estoi", "sisdr", "dnsmos_ovrl")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def wav_write(path, x):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")


# ---------------------------------------------------------------- 1. sets
def build_sets(work, corpus, domains, n_val, n_test, dev):
    sets = {}
    for d in domains:
        for split, n, seed in (("val", n_val, 4242), ("test", n_test, 7777)):
            root = work / "sets" / d / split
            if not (root / "done").exists():
                for i, (noisy, clean, _) in enumerate(domain_set(corpus, split, d, n, seconds=4.0, seed=seed)):
                    wav_write(root / "noisy" / f"{d}_{i:03d}.wav", noisy)
                    wav_write(root / "clean" / f"{d}_{i:03d}.wav", clean)
                (root / "done").write_text(str(n))
                log(f"sets: {d}/{split}: {n} mixtures")
            sets[(d, split)] = root
    if dev:
        root = work / "sets" / "dev" / "test"
        if not (root / "done").exists():
            for f in sorted((SHARED_DEV / "noisy").glob("*.wav")):
                for kind in ("noisy", "clean"):
                    x, sr = sf.read(SHARED_DEV / kind / f.name, dtype="float32")
                    assert sr == 16000, f"{f}: {sr} Hz"
                    wav_write(root / kind / f.name, x)
            (root / "done").write_text("dev")
        sets[("dev", "test")] = root
    return sets


# ---------------------------------------------------------------- 2./3. models
def export(ckpt, out_onnx, name, version):
    if out_onnx.exists() and out_onnx.with_suffix(".safetensors").exists():
        return out_onnx
    from .export import main as export_main

    export_main(["--ckpt", str(ckpt), "--out", str(out_onnx), "--name", name, "--version", version])
    return out_onnx


def finetune(args, run, domain, steps):
    """Fine-tune from the base checkpoint (resumes; returns the run's recorded budget)."""
    budget = run / "budget.json"
    if budget.exists() and json.loads(budget.read_text()).get("steps", 0) >= steps:
        return json.loads(budget.read_text())
    cmd = [sys.executable, "-m", "thunder_train.train", "--corpus", str(args.corpus), "--run", str(run),
           "--init", str(args.base_ckpt), "--domain", domain, "--steps", str(steps), "--batch", str(args.batch),
           "--seconds", str(args.seconds), "--lr", str(args.ft_lr), "--warmup", str(max(1, steps // 20)),
           "--val-every", str(max(1, steps // 2)), "--val-n", str(args.ft_val_n), "--threads", str(args.threads),
           "--workers", str(args.workers), "--seed", str(args.seed), "--ema-decay", str(args.ft_ema_decay),
           "--stage2-frac", str(args.ft_stage2_frac)]
    if args.no_bf16:
        cmd.append("--no-bf16")
    if args.ft_opt == "continue":
        cmd.append("--init-opt")
    log(f"finetune {domain}: {steps} steps -> {run}")
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(budget.read_text())


# ---------------------------------------------------------------- 4. merge
def recipe_toml(base, graph, experts, method, knob, value, svc_alpha, outputs, threads=1):
    meth, dare, key, _ = METHODS[method]
    # BatchNorm running statistics are statistics, not weights: the experts' mean, never extrapolated
    # (task arithmetic with lambda * K > 1 would push a running variance below zero).
    lines = [f'base = "{base}"', f'graph = "{graph}"', "outputs = [" + ", ".join(f'"{o}"' for o in outputs) + "]",
             "seed = 0", f"threads = {threads}", 'average = ["*.running_mean", "*.running_var"]', "", "[method]"]
    for k, v in meth.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    if key != "weight":
        lines.append(f"{key} = {value}")
    if dare:
        lines += ["", "[dare]"] + [f"{k} = {v}" for k, v in dare.items()]
    if svc_alpha is not None:
        lines += ["", "[svc]", f"alpha = {svc_alpha}"]
    for e in experts:
        lines += ["", "[[experts]]", f'path = "{e}"', f"weight = {value if key == 'weight' else 1.0}"]
    return "\n".join(lines) + "\n"


def svc_alpha_for(method, k):
    # The SVC reference scripts: alpha 1.0 after TSV-M-style merges, 1/K after the others.
    return 1.0 if method in ("tsv-m", "boosted-tsv-m") else round(1.0 / k, 6)


def merge(args, work, base, experts, method, value, svc):
    tag = f"{method}{'+svc' if svc else ''}@{value}"
    out = work / "merges" / f"{tag}.onnx"
    recipe = work / "merges" / f"{tag}.toml"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        svc_alpha = svc_alpha_for(method, len(experts)) if svc else None
        recipe.write_text(recipe_toml(base.with_suffix(".safetensors"), base, [e.with_suffix(".safetensors") for e in experts],
                                      method, METHODS[method][2], value, svc_alpha,
                                      [out, out.with_suffix(".safetensors")]))
        subprocess.run([str(args.bin_dir / "thunder-merge"), "--recipe", str(recipe), "--quiet"], check=True)
    return out, recipe


# ---------------------------------------------------------------- 5. eval
def enhance_dir(args, model, noisy_dir, out_dir, steps):
    if (out_dir / "done").exists():
        return
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    subprocess.run([str(args.bin_dir / "enhance"), str(noisy_dir), str(out_dir), "--model", str(model),
                    "--steps", str(steps), "--jobs", str(args.jobs), "--quiet"], check=True)
    (out_dir / "done").write_text("")


def score_file(job):
    f, est_path, full = job
    clean, _ = sf.read(f, dtype="float32")
    est, _ = sf.read(est_path, dtype="float32")
    r = {"file": f.name, "pesq": pesq_wb(est, clean), "sisdr": si_sdr(est, clean)}
    if full:
        r["estoi"] = estoi(est, clean)
        r["dnsmos_ovrl"] = dnsmos(est)["ovrl"]
    return r


_POOL = None


def score_dir(est_dir, clean_dir, full, procs=1):
    global _POOL
    jobs = [(f, est_dir / f.name, full) for f in sorted(clean_dir.glob("*.wav"))]
    if procs <= 1:
        return [score_file(j) for j in jobs]
    if _POOL is None:  # one process per core: DNSMOS and PESQ are single-threaded
        import multiprocessing as mp

        _POOL = mp.get_context("spawn").Pool(procs)
    return _POOL.map(score_file, jobs)


def evaluate(args, work, name, model, set_root, set_name, steps, full=True):
    """Mean metrics of `model` on one set (cached as JSON; the enhanced audio is kept for listening)."""
    cache = work / "scores" / f"{name}__{set_name}__s{steps}{'' if full else '_quick'}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    est = work / "enhanced" / name / f"{set_name}_s{steps}"
    enhance_dir(args, model, set_root / "noisy", est, steps)
    rows = score_dir(est, set_root / "clean", full, args.jobs)
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k != "file"}
    res = {"mean": mean, "files": rows}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return res


def step_list(text):
    """A comma list of reverse-step counts ("1,0") as a tuple of ints (argparse type)."""
    return tuple(int(x) for x in text.split(","))


def val_score(args, work, name, model, sets, domains):
    """Mean validation PESQ-WB over the domains and `--val-steps` (what chooses coefficients and the default)."""
    return float(np.mean([evaluate(args, work, name, model, sets[(d, "val")], f"{d}-val", steps, full=False)["mean"]["pesq"]
                          for d in domains for steps in args.val_steps]))


def evaluate_tests(args, work, sets, cols, models, tag=lambda name: name, steps_of=lambda name: (1, 0)):
    """Every model through the Rust engine on every test set at its steps (--steps 1 and 0 unless
    `steps_of` says otherwise): {name: {"<set>__s<steps>": evaluate() result (means, per-file rows)}}."""
    runs = {}
    for name, path in models.items():
        runs[name] = {f"{c}__s{steps}": evaluate(args, work, tag(name), path, sets[(c, "test")], f"{c}-test", steps)
                      for steps in steps_of(name) for c in cols}
        log(f"eval {name}: " + ", ".join(f"{c} {runs[name][f'{c}__s1']['mean']['pesq']:.3f}" for c in cols))
    return runs


def paired(before, after, key="pesq"):
    """after - before over the files both scored (a gain is only worth reporting next to its
    standard error): mean, standard error, files where `after` wins, n."""
    b = {r["file"]: r[key] for r in before}
    diff = np.array([r[key] - b[r["file"]] for r in after
                     if r["file"] in b and np.isfinite(r[key]) and np.isfinite(b[r["file"]])])
    n = len(diff)
    return {"mean": float(diff.mean()) if n else float("nan"), "n": n, "wins": int((diff > 0).sum()),
            "se": float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else None}


def paired_line(label, p):
    se = f" ± {p['se']:.3f}" if p["se"] is not None else ""
    return f"- {label}: {p['mean']:+.3f}{se} ({p['wins']}/{p['n']})"


# ---------------------------------------------------------------- 6. report
def experts_report(args, work, sets, domains, models, budgets, t_start):
    """Base vs experts on every test set (for comparing fine-tuning settings; no merges, no multi)."""
    cols = domains + (["dev"] if not args.no_dev else [])
    runs = evaluate_tests(args, work, sets, cols, models)
    results = {name: {k: r["mean"] for k, r in cells.items()} for name, cells in runs.items()}
    gain = {f"{d}__s{steps}": paired(runs["base"][f"{d}__s{steps}"]["files"], runs[f"expert-{d}"][f"{d}__s{steps}"]["files"])
            for d in domains for steps in (1, 0)}
    report = {"domains": domains, "budgets": budgets, "results": results, "expert_minus_base_pesq_paired": gain,
              "settings": {k: str(v) for k, v in vars(args).items()}, "wall_s": round(time.time() - t_start)}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [f"## Fine-tuning check: base vs experts ({', '.join(domains)})", "",
          f"Experts: {args.ft_steps} steps, lr {args.ft_lr}, EMA {args.ft_ema_decay}, "
          f"{'continued' if args.ft_opt == 'continue' else 'fresh'} AdamW moments; {args.n_test} test mixtures per domain.", ""]
    for metric in METRICS:
        md += [f"### {metric} at --steps 1", "", table(results, domains, cols, 1, metric), ""]
    md += ["Expert minus base on its own domain, PESQ-WB, paired over the test files (± standard error, "
           "files where the expert wins):", ""]
    md += [paired_line(k.replace("__s", " --steps "), p) for k, p in gain.items()] + [""]
    args.report.with_suffix(".md").write_text("\n".join(md))
    log(f"wrote {args.report.with_suffix('.md')}; expert gain on own domain: "
        + ", ".join(f"{d} {gain[f'{d}__s1']['mean']:+.3f}" for d in domains))


def table(results, domains, cols, steps, metric):
    head = "| model | " + " | ".join(cols) + " | avg (domains) |"
    lines = [head, "|---" * (len(cols) + 2) + "|"]
    for name, res in results.items():
        if f"{domains[0]}__s{steps}" not in res:
            continue  # not evaluated at these steps (--merge-test-steps)
        vals = [res.get(f"{c}__s{steps}", {}).get(metric, float("nan")) for c in cols]
        avg = float(np.mean([res[f"{d}__s{steps}"][metric] for d in domains]))
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | **{avg:.3f}** |")
    return "\n".join(lines)


def plot(results, domains, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    base = np.array([results["base"][f"{d}__s1"]["pesq"] for d in domains])
    delta = np.array([[results[n][f"{d}__s1"]["pesq"] for d in domains] for n in names]) - base
    avg = np.array([np.mean([results[n][f"{d}__s1"]["pesq"] for d in domains]) for n in names])
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 1.8), gridspec_kw={"width_ratios": [1.2, 1]})
    lim = max(np.abs(delta).max(), 1e-3)
    im = a.imshow(delta, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    a.set_xticks(range(len(domains)), domains)
    a.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(domains)):
            a.text(j, i, f"{delta[i, j]:+.3f}", ha="center", va="center", fontsize=8)
    a.set_title("PESQ-WB vs base, per domain test set (--steps 1)")
    fig.colorbar(im, ax=a, fraction=0.04)
    colors = ["0.5" if n == "base" else "tab:orange" if n.startswith("expert") else "tab:green" if n == "multi"
              else "tab:blue" for n in names]
    b.barh(range(len(names)), avg, color=colors)
    for i, v in enumerate(avg):
        b.text(v, i, f" {v:.3f}", va="center", fontsize=8)
    b.set_yticks(range(len(names)), [""] * len(names))
    b.set_ylim(len(names) - 0.5, -0.5)  # rows line up with the heat map's
    b.set_xlim(avg.min() - 0.05, avg.max() + 0.04)
    for ref, style in (("base", ":"), ("multi", "--")):
        if ref in results:
            b.axvline(avg[names.index(ref)], color="k", ls=style, lw=1, label=f"{ref} average")
    from matplotlib.patches import Patch

    handles = b.get_legend_handles_labels()[0] + [Patch(color=c, label=lbl) for c, lbl in (
        ("0.5", "base"), ("tab:orange", "expert"), ("tab:green", "multi-domain"), ("tab:blue", "merge"))]
    b.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.03), ncol=3, fontsize=8)
    b.set_title("mean PESQ-WB over the domain test sets (--steps 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-ckpt", type=Path, help="base training checkpoint (.pt, EMA weights used)")
    ap.add_argument("--corpus", type=Path, default=ROOT / "models" / ".cache" / "corpus")
    ap.add_argument("--work", type=Path, default=ROOT / "models" / ".cache" / "study",
                    help="runs, models, sets, enhanced audio, score cache")
    ap.add_argument("--report", type=Path, required=True, help="output prefix for .md/.json/.png")
    ap.add_argument("--domains", default=",".join(EXPERT_DOMAINS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--ft-steps", type=int, default=300, help="fine-tuning steps per expert")
    ap.add_argument("--ft-lr", type=float, default=3e-4)
    ap.add_argument("--ft-ema-decay", type=float, default=0.995,
                    help="EMA decay while fine-tuning (continued from the base's EMA; 0.995 leaves the base "
                         "0.995^N of the exported weights after N steps, 0.22 at N = 300)")
    ap.add_argument("--ft-stage2-frac", type=float, default=0.3, help="train.py --stage2-frac while fine-tuning")
    ap.add_argument("--ft-opt", choices=("continue", "fresh"), default="continue",
                    help="fine-tunes continue the base's AdamW moments (train.py --init-opt; measured better, "
                         "eval/finetune-ab-2026-11-22-*.md) or start fresh ones (sessions 1-4)")
    ap.add_argument("--ft-val-n", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--n-val", type=int, default=8, help="validation mixtures per domain (coefficient tuning)")
    ap.add_argument("--n-test", type=int, default=16, help="test mixtures per domain")
    ap.add_argument("--val-steps", type=step_list, default=(1, 0),
                    help="reverse steps whose mean validation PESQ tunes the coefficients and picks the default "
                         "(1,0: the base run's checkpoint rule; the default also runs at 0 when live mode is overloaded)")
    ap.add_argument("--grid", help="override every method's coefficient grid (comma list)")
    ap.add_argument("--no-dev", action="store_true", help="skip the real dev recordings")
    ap.add_argument("--merge-test-steps", type=step_list, default=(1, 0),
                    help="--steps values the merges are tested at (base, experts and multi: 1,0); "
                         "'1' halves the test evaluation of the 16 merge variants")
    ap.add_argument("--jobs", type=int, default=2, help="enhance --jobs")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-multi", action="store_true",
                    help="skip the multi-domain fine-tune (re-making the default from a new base: the merges are "
                         "still compared with the base and the experts)")
    ap.add_argument("--base-version", help="version string of the base in the models' metadata (default: step<N> "
                                           "from the checkpoint; set it when the step counts a branch, not the run)")
    ap.add_argument("--experts-only", action="store_true",
                    help="stop after the experts: score base and experts on the test sets (fine-tuning A/B runs)")
    ap.add_argument("--ship", action="store_true", help="install the best-on-validation merge as the default model")
    ap.add_argument("--ship-to", type=Path, default=ROOT / "models", help="where --ship installs (default: models/)")
    ap.add_argument("--replot", action="store_true", help="only redraw <report>.png from <report>.json")
    args = ap.parse_args(argv)
    if args.replot:
        rep = json.loads(args.report.with_suffix(".json").read_text())
        plot(rep["results"], rep["domains"], args.report.with_suffix(".png"))
        return

    if args.base_ckpt is None:
        raise SystemExit("--base-ckpt is required (the base training checkpoint the experts start from)")
    domains = args.domains.split(",")
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for b in ("enhance", "thunder-merge"):
        if not (args.bin_dir / b).exists():
            raise SystemExit(f"{args.bin_dir / b} is missing: run `cargo build --release --bins` first")
    # Absolute paths: recipes resolve relative paths against their own folder.
    work = args.work = args.work.resolve()
    args.corpus, args.base_ckpt, args.bin_dir = args.corpus.resolve(), args.base_ckpt.resolve(), args.bin_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    sets = build_sets(work, args.corpus, domains, args.n_val, args.n_test, dev=not args.no_dev)
    mdir = work / "models"
    base_step = torch.load(args.base_ckpt, map_location="cpu", weights_only=False)["step"]
    base_version = args.base_version or f"step{base_step}"
    base = export(args.base_ckpt, mdir / "base.onnx", "thunder-16k-base", base_version)
    models, budgets = {"base": base}, {}
    for d in domains:
        run = work / "runs" / d
        budgets[f"expert-{d}"] = finetune(args, run, d, args.ft_steps)
        models[f"expert-{d}"] = export(run / "last.pt", mdir / f"expert-{d}.onnx", f"thunder-16k-expert-{d}",
                                       f"{base_version}+ft{args.ft_steps}")
    if args.experts_only:
        experts_report(args, work, sets, domains, models, budgets, t_start)
        return
    if len(domains) > 1 and not args.no_multi:
        run = work / "runs" / "union"
        budgets["multi"] = finetune(args, run, "+".join(domains), args.ft_steps * len(domains))
        models["multi"] = export(run / "last.pt", mdir / "multi.onnx", "thunder-16k-multi",
                                 f"{base_version}+ft{args.ft_steps * len(domains)}")
    experts = [models[f"expert-{d}"] for d in domains]

    # Merges: tune the coefficient on validation (mean PESQ over the domains and --val-steps).
    tuning, recipes = {}, {}
    for m in methods:
        grid = tuple(float(v) for v in args.grid.split(",")) if args.grid else METHODS[m][3]
        for svc in (False, True):
            name = f"{m}{'+svc' if svc else ''}"
            scores = {}
            for v in grid:
                path, recipe = merge(args, work, base, experts, m, v, svc)
                scores[v] = val_score(args, work, f"{name}@{v}", path, sets, domains)
            best = max(scores, key=scores.get)
            tuning[name] = {"knob": METHODS[m][2], "grid": scores, "chosen": best}
            models[name], recipes[name] = merge(args, work, base, experts, m, best, svc)
            log(f"merge {name}: val PESQ {json.dumps({str(k): round(v, 3) for k, v in scores.items()})} -> {best}")
    # A merge's scores are cached under its file name (method and coefficient), the others' by name.
    def tag(name):
        return models[name].stem if name in tuning else name

    val_of = {n: val_score(args, work, tag(n), p, sets, domains) for n, p in models.items()}

    # Test evaluation through the Rust engine.
    cols = domains + (["dev"] if not args.no_dev else [])
    runs = evaluate_tests(args, work, sets, cols, models, tag,
                          steps_of=lambda n: args.merge_test_steps if n in tuning else (1, 0))
    results = {name: {k: r["mean"] for k, r in cells.items()} for name, cells in runs.items()}

    # Report.
    merges = [n for n in models if n in tuning]
    best_merge = max(merges, key=lambda n: val_of[n]) if merges else None
    avg = {n: float(np.mean([results[n][f"{d}__s1"]["pesq"] for d in domains])) for n in results}
    own = {d: results[f"expert-{d}"][f"{d}__s1"]["pesq"] for d in domains}
    summary = {
        "best_merge_by_val": best_merge,
        "val_steps": list(args.val_steps),
        "val_pesq": val_of,
        "test_avg_pesq_s1": avg,
        "gap_to_experts_on_own_domain": (
            {d: results[best_merge][f"{d}__s1"]["pesq"] - own[d] for d in domains} if best_merge else None),
        "merge_minus_multi_avg": (avg[best_merge] - avg["multi"]) if best_merge and "multi" in avg else None,
        "svc_effect_avg": {m: avg[f"{m}+svc"] - avg[m] for m in methods},
        # Per-file paired differences of the chosen merge (PESQ-WB, --steps 1), with standard errors.
        "best_merge_minus_base_paired": (
            {c: paired(runs["base"][f"{c}__s1"]["files"], runs[best_merge][f"{c}__s1"]["files"]) for c in cols}
            if best_merge else None),
        "best_merge_minus_own_expert_paired": (
            {d: paired(runs[f"expert-{d}"][f"{d}__s1"]["files"], runs[best_merge][f"{d}__s1"]["files"]) for d in domains}
            if best_merge else None),
    }
    report = {"domains": domains, "budgets": budgets, "tuning": tuning, "results": results, "summary": summary,
              "settings": {k: str(v) for k, v in vars(args).items()}, "wall_s": round(time.time() - t_start)}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [f"## Domain-expert study ({', '.join(domains)})", "",
          f"Base: `{args.base_ckpt}`; experts: {args.ft_steps} fine-tuning steps each (batch {args.batch} x "
          f"{args.seconds} s, lr {args.ft_lr}); "
          + ("no multi-domain fine-tune (--no-multi). " if "multi" not in models else
             f"multi-domain: {args.ft_steps * len(domains)} steps on the union. ")
          + f"Test sets: {args.n_test} x 4 s mixtures per domain (held-out speakers, noise files, rooms)"
          + ("" if args.no_dev else " and the 3 real dev recordings") + ". All scores from the Rust engine.", "",
          "Budgets (steps, wall seconds): " + ", ".join(f"{k} {v['steps']} / {v['wall_s']:.0f}" for k, v in budgets.items()),
          ""]
    for steps in (1, 0):
        note = "" if steps in args.merge_test_steps else " (merges not tested at this setting: --merge-test-steps)"
        for metric in METRICS:
            md += [f"### {metric} at --steps {steps}{note}", "", table(results, domains, cols, steps, metric), ""]
    val_at = " and ".join(f"--steps {v}" for v in args.val_steps)
    md += [f"### Coefficients tuned on validation (mean PESQ-WB at {val_at})", "",
           "| merge | knob | grid: val PESQ | chosen |", "|---|---|---|---|"]
    for n, t in tuning.items():
        md.append(f"| {n} | {t['knob']} | " + ", ".join(f"{k}: {v:.3f}" for k, v in t["grid"].items()) + f" | {t['chosen']} |")
    if best_merge:
        md += ["", f"### {best_merge} (chosen on validation), paired per test file, PESQ-WB at --steps 1",
               "", "± standard error (files where the merge wins):", ""]
        md += [paired_line(f"minus base, {c}", p) for c, p in summary["best_merge_minus_base_paired"].items()]
        md += [paired_line(f"minus the {d} expert, {d}", p) for d, p in summary["best_merge_minus_own_expert_paired"].items()]
    md += ["", "### Summary", "", "```", json.dumps(summary, indent=1), "```", ""]
    args.report.with_suffix(".md").write_text("\n".join(md))
    plot(results, domains, args.report.with_suffix(".png"))
    log(f"wrote {args.report.with_suffix('.md')}, .json, .png; best merge on validation: {best_merge}")

    if args.ship and best_merge:
        mroot = args.ship_to
        mroot.mkdir(parents=True, exist_ok=True)
        # The base the experts were fine-tuned from becomes the shipped base (the recipe needs it).
        shutil.copy(base, mroot / "thunder-16k-base.onnx")
        shutil.copy(base.with_suffix(".safetensors"), mroot / "thunder-16k-base.safetensors")
        edir = mroot / "experts"
        edir.mkdir(exist_ok=True)
        for d in domains:
            shutil.copy(models[f"expert-{d}"].with_suffix(".safetensors"), edir / f"expert-{d}.safetensors")
        text = recipes[best_merge].read_text()
        text = text.replace(str(base.with_suffix(".safetensors")), "thunder-16k-base.safetensors")
        text = text.replace(str(base), "thunder-16k-base.onnx")
        for d in domains:
            text = text.replace(str(models[f"expert-{d}"].with_suffix(".safetensors")), f"experts/expert-{d}.safetensors")
        out = models[best_merge]
        text = text.replace(f'outputs = ["{out}", "{out.with_suffix(".safetensors")}"]', 'outputs = ["thunder-16k.onnx"]')
        # The default carries its own name and version, not the base's.
        text += ("\n[metadata]\n\"thunder.model_name\" = \"thunder-16k\"\n"
                 f"\"thunder.model_version\" = \"{best_merge} of base {base_version}\"\n")
        recipe = mroot / "merge-recipe.toml"
        recipe.write_text(f"# {best_merge}: the default model (models/README.md)\n" + text)
        # The shipped default is made by the shipped recipe itself (so its provenance is the recipe's).
        subprocess.run([str(args.bin_dir / "thunder-merge"), "--recipe", str(recipe), "--quiet"], check=True)
        log(f"shipped {best_merge} as {mroot / 'thunder-16k.onnx'} (recipe {recipe})")


if __name__ == "__main__":
    main()
