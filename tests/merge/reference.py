#!/usr/bin/env python3
"""Independent numpy reference of the merge methods, written from the published formulas.

Generates tests/merge/fixtures/*.safetensors: random low-rank(+small noise) task vectors, a base, and
the expected merged update of every method. The Rust integration tests (tests/merge_reference.rs)
load the same inputs and must match to 1e-4 relative (Frobenius norm of the difference over the
norm of the expected result).

Run:  python tests/merge/reference.py   (numpy + the `safetensors` package to write the files; ~1 s)

Formulas (τ_i = θ_i − θ_base, weights w_i multiply τ_i except for DRM where they are the
post-election coefficients):
  TA      Δ = λ Σ w_i τ_i
  TIES    keep floor(d·density) largest |τ_i| (threshold ties kept), elect sign(Σ) (zeros →
          majority sign of the tensor), disjoint mean of agreeing non-zeros, × λ
  DARE    keep entry j of expert i iff uniform_j ≥ p (SplitMix64 counter stream, see rng.rs),
          rescale by 1/(1−p); then TA
  TSV-M   top floor(r/K) triplets per task, concat U, S, V; U⊥ = polar(U), V⊥ = polar(V);
          Δ = α U⊥ diag(S) V⊥ᵀ
  Boosted same, kept σ past j* (first index where cumsum σ²/Σσ² ≥ β) raised to σ_{j*}
  Iso-C   M = Σ w_i τ_i = U diag(σ) Vᵀ;  Δ = α mean(σ) U Vᵀ
  DRM-V/H joint SVD of stacked task vectors, keep σ > 1e-2 σ_max, renormalise per-task blocks
          (norm → task singular values), global magnitude prune (drop rate), elect, coeffs,
          disjoint mean, reconstruct
  SVC     s_ri = <u_rᵀΔ, u_rᵀτ_i> / max(‖u_rᵀτ_i‖², ε); η_r = mean_i max(s_ri, α); σ_r /= η_r
"""
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
M64 = (1 << 64) - 1


# ---------------------------------------------------------------- random stream (DARE)
def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001B3) & M64
    return h


def mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_key(seed, name, expert):
    k = int(mix(np.uint64(seed ^ fnv1a64(name.encode()))))
    return int(mix(np.uint64((k + expert) & M64)))


def uniforms(key, n):
    j = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = mix(np.uint64(key) + j * np.uint64(0x9E3779B97F4A7C15))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))


# ---------------------------------------------------------------- building blocks
def elect(stack):
    s = np.sign(stack.sum(0))
    maj = np.sign(s.sum())
    s[s == 0] = maj
    return s


def disjoint_mean(stack, signs, coeffs):
    keep = (stack != 0) & (np.sign(stack) == signs[None])
    vals = np.where(keep, stack * coeffs.reshape(-1, *[1] * (stack.ndim - 1)), 0.0)
    cnt = (vals != 0).sum(0)
    return vals.sum(0) / np.maximum(cnt, 1)


def polar(a):
    p, _, qt = np.linalg.svd(a, full_matrices=False)
    return p @ qt


# ---------------------------------------------------------------- methods (float64)
def ta(taus, w, lam):
    return lam * sum(wi * t for wi, t in zip(w, taus))


def ties(taus, w, density, lam):
    trimmed = []
    for t in taus:
        x = t.copy().ravel()
        d = x.size
        keep = int(np.floor(d * density))
        kth = d - keep
        if kth > 0:
            thr = np.sort(np.abs(x))[kth - 1]
            x[np.abs(x) < thr] = 0.0
        trimmed.append(x.reshape(t.shape))
    stack = np.stack([wi * t for wi, t in zip(w, trimmed)])
    return lam * disjoint_mean(stack, elect(stack), np.ones(len(taus)))


def dare(taus, name, seed, p):
    out = []
    for i, t in enumerate(taus):
        u = uniforms(stream_key(seed, name, i), t.size).reshape(t.shape)
        out.append(np.where(u < p, 0.0, t / (1 - p)))
    return out


def boost(full, kept, beta):
    e = np.cumsum(full.astype(np.float64) ** 2)
    if e[-1] <= 0:
        return kept
    idx = np.nonzero(e / e[-1] >= beta)[0]
    j = idx[0] if len(idx) else len(full) - 1
    kept = kept.copy()
    if j + 1 < len(kept):
        kept[j + 1:] = np.maximum(kept[j + 1:], full[j])
    return kept


def tsv(taus, w, alpha, beta=None):
    k = len(taus)
    m, n = taus[0].shape
    r = min(m, n)
    per = max(1, r // k)
    us, ss, vs = [], [], []
    for wi, t in zip(w, taus):
        u, s, vt = np.linalg.svd(wi * t, full_matrices=False)
        kept = s[:per]
        if beta is not None:
            kept = boost(s, kept, beta)
        us.append(u[:, :per])
        ss.append(kept)
        vs.append(vt[:per].T)
    U, S, V = np.concatenate(us, 1), np.concatenate(ss), np.concatenate(vs, 1)
    return alpha * polar(U) @ np.diag(S) @ polar(V).T


def iso_c(taus, w, alpha):
    msum = sum(wi * t for wi, t in zip(w, taus))
    u, s, vt = np.linalg.svd(msum, full_matrices=False)
    return alpha * s.mean() * (u @ vt)


def prune_global(x, keep):
    flat = np.abs(x.ravel())
    ln = flat.size
    k = ln - int(round(ln * keep))  # numpy/python round: half to even, like Rust round_ties_even
    if keep >= 1.0 or k == 0:
        return x
    thr = np.sort(flat)[k - 1]
    return np.where(np.abs(x) < thr, 0.0, x)


def drm(taus, coeffs, drop_rate, vertical, rank_tol=1e-2, eps=1e-12):
    k = len(taus)
    n, m = taus[0].shape
    a = np.concatenate(taus, 0) if vertical else np.concatenate(taus, 1)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    r = int((s > s[0] * rank_tol).sum())
    u, s, v = u[:, :r], s[:r], vt[:r].T
    fac, blk = (u, n) if vertical else (v, m)
    blocks, sig = [], []
    for i in range(k):
        b = fac[i * blk:(i + 1) * blk].copy()
        nrm = np.linalg.norm(b, axis=0)
        b = b / np.maximum(nrm, eps)
        blocks.append(b)
        sig.append(s * nrm)
    stack = prune_global(np.stack(blocks), 1.0 - drop_rate)
    stack = stack * np.stack(sig)[:, None, :]
    merged = disjoint_mean(stack, elect(stack), np.asarray(coeffs, dtype=np.float64))
    return merged @ v.T if vertical else u @ merged.T


def svc(delta, taus, alpha, eps=1e-12):
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    am = u.T @ delta
    ratios = []
    for t in taus:
        ai = u.T @ t
        ratios.append((am * ai).sum(1) / np.maximum((ai * ai).sum(1), eps))
    ratios = np.stack(ratios, 1)  # r × K
    eta = np.maximum(ratios, alpha).mean(1)
    return u @ np.diag(s / eta) @ vt


# ---------------------------------------------------------------- fixtures
def low_rank(rng, m, n, rank, noise):
    return (rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))) / np.sqrt(rank) * 0.1 + noise * rng.standard_normal((m, n))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases = {"tall": (24, 16, 3), "wide": (12, 20, 3)}
    for cname, (m, n, k) in cases.items():
        base = rng.standard_normal((m, n)).astype(np.float32)
        taus32 = [low_rank(rng, m, n, 4, 1e-3).astype(np.float32) for _ in range(k)]
        taus = [t.astype(np.float64) for t in taus32]
        w = np.array([1.0, 0.7, 1.3][:k])
        ones = np.ones(k)
        name = f"layer.{cname}.weight"
        exp = {
            "ta": ta(taus, w, 0.3),
            "ties": ties(taus, w, 0.2, 1.0),
            "dare_ta": ta(dare(taus, name, 7, 0.5), ones, 0.3),
            "tsv": tsv(taus, ones, 1.0),
            "tsv_w": tsv(taus, w, 0.8),
            "boosted": tsv(taus, ones, 1.0, beta=0.3),
            "iso_c": iso_c(taus, w, 1.0),
            "drm_v": drm(taus, ones, 0.8, True),
            "drm_h": drm(taus, ones, 0.8, False),
            "drm_v_w": drm(taus, w, 0.5, True),
            "ta_svc": svc(ta(taus, ones, 0.3), taus, 1.0 / k),
            "tsv_svc": svc(tsv(taus, ones, 1.0), taus, 1.0),
        }
        save_file(
            {
                "base": base,
                "taus": np.stack(taus32),
                "weights": w.astype(np.float32),
                **{f"exp_{k_}": np.ascontiguousarray(v.astype(np.float32)) for k_, v in exp.items()},
            },
            os.path.join(OUT, f"{cname}.safetensors"),
            metadata={"name": name},
        )
    # a 1-D tensor (bias) and a conv kernel, for the tensor rules
    k = 3
    bias = [rng.standard_normal(10).astype(np.float32) * 0.01 for _ in range(k)]
    conv = [low_rank(rng, 6, 4 * 3, 2, 1e-3).reshape(6, 4, 3).astype(np.float32) for _ in range(k)]
    conv64 = [c.reshape(6, 12).astype(np.float64) for c in conv]
    b64 = [b.astype(np.float64) for b in bias]
    ones = np.ones(k)
    save_file(
        {
            "bias_taus": np.stack(bias),
            "conv_taus": np.stack(conv),
            "exp_bias_tsv": (sum(b64) / k).astype(np.float32),
            "exp_bias_drm": disjoint_mean(np.stack(b64), elect(np.stack(b64)), ones).astype(np.float32),
            "exp_conv_tsv": tsv(conv64, ones, 1.0).reshape(6, 4, 3).astype(np.float32),
            "exp_conv_iso": iso_c(conv64, ones, 1.0).reshape(6, 4, 3).astype(np.float32),
            # random-stream check values (seed 7, tensor "layer.tall.weight", expert 1)
            "rng": uniforms(stream_key(7, "layer.tall.weight", 1), 8),
        },
        os.path.join(OUT, "rules.safetensors"),
    )
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
