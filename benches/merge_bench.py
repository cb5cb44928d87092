#!/usr/bin/env python3
"""Benchmark of thunder-merge against a PyTorch implementation of the same algorithms.

Synthetic checkpoint: T tensors of D×D float32 (default 24 × 2048×2048 ≈ 100 M parameters,
400 MB), a base and K = 4 experts whose deltas are rank-R (default 32) plus noise. For each
method (TA, TIES, TSV-M, DRM-V) both implementations run in their own process; wall time and
peak RSS (ru_maxrss of the child) are reported, and the outputs are compared.

    nice python benches/merge_bench.py [--tensors 24] [--dim 2048] [--threads 2] [--keep]

Needs: numpy, torch, safetensors (Python), GNU time (/usr/bin/time), and a release build of thunder-merge
(`cargo build --release --bin thunder-merge`; the script builds it if missing).
The PyTorch side loads the checkpoints with safetensors.torch.load_file (the usual way), merges
tensor by tensor with torch.linalg.svd, and saves with safetensors.torch.save_file.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "thunder-merge")
METHODS = {
    "ta": ["--method", "ta"],
    "ties": ["--method", "ties"],
    "tsv-m": ["--method", "tsv-m"],
    "drm": ["--method", "drm"],
}


# ------------------------------------------------------------------ data
def make_data(d, tensors, dim, k, rank, seed=0):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    base = {f"layers.{i}.weight": (rng.standard_normal((dim, dim), dtype=np.float32) * 0.02) for i in range(tensors)}
    save_file(base, os.path.join(d, "base.safetensors"))
    for e in range(k):
        out = {}
        for name, w in base.items():
            a = rng.standard_normal((dim, rank), dtype=np.float32)
            b = rng.standard_normal((rank, dim), dtype=np.float32)
            delta = (a @ b) * (0.01 / rank) + rng.standard_normal((dim, dim), dtype=np.float32) * 1e-4
            out[name] = w + delta
        save_file(out, os.path.join(d, f"expert{e}.safetensors"))
        del out


# ------------------------------------------------------------------ PyTorch implementation
def torch_merge(method, d, k, out_path, threads):
    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(threads)
    base = load_file(os.path.join(d, "base.safetensors"))
    experts = [load_file(os.path.join(d, f"expert{e}.safetensors")) for e in range(k)]
    merged = {}
    with torch.no_grad():
        for name, b in base.items():
            taus = torch.stack([ex[name] - b for ex in experts])
            if method == "ta":
                delta = 0.3 * taus.sum(0)
            elif method == "ties":
                flat = taus.reshape(k, -1)
                n = flat.shape[1]
                kk = n - int(n * 0.2)
                thr = flat.abs().kthvalue(kk, dim=1, keepdim=True).values
                flat = flat * (flat.abs() >= thr)
                sign = torch.sign(flat.sum(0))
                sign[sign == 0] = torch.sign(sign.sum())
                keep = torch.where(sign > 0, flat > 0, flat < 0)
                sel = flat * keep
                delta = (sel.sum(0) / keep.sum(0).clamp(min=1)).reshape(b.shape)
            elif method == "tsv-m":
                r = min(b.shape)
                per = max(1, r // k)
                us, ss, vs = [], [], []
                for t in taus:
                    u, s, vh = torch.linalg.svd(t, full_matrices=False)
                    us.append(u[:, :per]); ss.append(s[:per]); vs.append(vh[:per])
                U, S, V = torch.cat(us, 1), torch.cat(ss), torch.cat(vs, 0)
                uu, _, uvh = torch.linalg.svd(U, full_matrices=False)
                vu, _, vvh = torch.linalg.svd(V, full_matrices=False)
                delta = (uu @ uvh) @ torch.diag(S) @ (vu @ vvh)
            elif method == "drm":  # vertical, drop 0.8, as decom-renorm-merge
                n_, m_ = b.shape
                U, S, Vh = torch.linalg.svd(taus.reshape(-1, m_), full_matrices=False)
                r = int((S > S.max() * 1e-2).sum())
                U, S, Vh = U[:, :r], S[:r], Vh[:r]
                Us = U.reshape(k, n_, r)
                norms = Us.norm(dim=1, keepdim=True)
                Us = Us / norms.clamp(min=1e-12)
                Ss = S[None, None, :] * norms
                flat = Us.reshape(-1)
                kk = flat.numel() - round(flat.numel() * 0.2)
                thr = flat.abs().kthvalue(kk).values
                Us = Us.masked_fill(Us.abs() < thr, 0.0)
                US = Us * Ss
                sign = torch.sign(US.sum(0))
                sign[sign == 0] = torch.sign(sign.sum())
                US = US.masked_fill(US.sign() != sign, 0.0)
                US = US.sum(0) / torch.count_nonzero(US, dim=0).clamp(min=1)
                delta = US @ Vh
            merged[name] = (b + delta).contiguous()
    save_file(merged, out_path)


# ------------------------------------------------------------------ harness
def run_child(cmd):
    """Wall time (s) and peak RSS (MiB) of a command, measured by GNU time: the rusage of a
    child forked from this (large) Python process would include the parent's pre-exec RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{p.stderr.decode()}")
        kib = int(tf.read().strip().splitlines()[-1])
    return wall, kib / 1024.0


def compare(a, b):
    from safetensors.numpy import load_file

    x, y = load_file(a), load_file(b)
    num = sum(float(((x[n] - y[n]).astype(np.float64) ** 2).sum()) for n in x)
    den = sum(float((y[n].astype(np.float64) ** 2).sum()) for n in y)
    return (num / den) ** 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=24)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="ta,ties,tsv-m,drm")
    ap.add_argument("--dir", default=None, help="reuse/keep data here")
    ap.add_argument("--torch-child", nargs=2, metavar=("METHOD", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        torch_merge(a.torch_child[0], a.dir, a.experts, a.torch_child[1], a.threads)
        return
    if not os.path.exists(BIN):
        subprocess.check_call(["cargo", "build", "--release", "--bin", "thunder-merge"], cwd=ROOT)
    d = a.dir or tempfile.mkdtemp(prefix="merge-bench-")
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, f"expert{a.experts - 1}.safetensors")):
        print(f"generating {a.tensors} x {a.dim}x{a.dim} f32 checkpoints (base + {a.experts} experts) in {d}", flush=True)
        make_data(d, a.tensors, a.dim, a.experts, a.rank)
    ckpt_mib = os.path.getsize(os.path.join(d, "base.safetensors")) / 2**20
    params = a.tensors * a.dim * a.dim
    rows = []
    for m in a.methods.split(","):
        rust_out = os.path.join(d, f"rust-{m}.safetensors")
        torch_out = os.path.join(d, f"torch-{m}.safetensors")
        cmd = [BIN, "--base", os.path.join(d, "base.safetensors"), "--quiet", "--threads", str(a.threads), "-o", rust_out]
        for e in range(a.experts):
            cmd += ["--expert", os.path.join(d, f"expert{e}.safetensors")]
        rw, rm = run_child(cmd + METHODS[m])
        tw, tm = run_child([sys.executable, __file__, "--dir", d, "--experts", str(a.experts), "--threads", str(a.threads),
                            "--torch-child", m, torch_out])
        err = compare(rust_out, torch_out)
        rows.append(dict(method=m, rust_s=rw, torch_s=tw, speedup=tw / rw, rust_rss_mib=rm, torch_rss_mib=tm,
                         rust_rss_over_ckpt=rm / ckpt_mib, rel_diff=err))
        print(json.dumps(rows[-1]), flush=True)
        os.remove(rust_out)
        os.remove(torch_out)
    print()
    print(f"checkpoint: {a.tensors} x {a.dim}x{a.dim} f32 = {params / 1e6:.0f} M parameters, {ckpt_mib:.0f} MiB; "
          f"K = {a.experts}; threads = {a.threads}")
    print("| method | thunder-merge (s) | PyTorch (s) | speed-up | thunder-merge peak RSS (MiB) | PyTorch peak RSS (MiB) | RSS / checkpoint | rel. diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['rust_s']:.1f} | {r['torch_s']:.1f} | {r['speedup']:.2f}x | {r['rust_rss_mib']:.0f} | "
              f"{r['torch_rss_mib']:.0f} | {r['rust_rss_over_ckpt']:.2f} | {r['rel_diff']:.1e} |")
    if not a.dir:
        import shutil
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
