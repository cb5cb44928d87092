"""Speech-quality metrics used by validation and evaluation."""

import numpy as np

from . import contract as C


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    est = est.astype(np.float64) - est.mean()
    ref = ref.astype(np.float64) - ref.mean()
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    t = a * ref
    return float(10 * np.log10((np.dot(t, t) + 1e-12) / (np.dot(est - t, est - t) + 1e-12)))


def pesq_wb(est: np.ndarray, ref: np.ndarray) -> float:
    from pesq import pesq

    try:
        return float(pesq(C.SAMPLE_RATE, ref.astype(np.float64), est.astype(np.float64), "wb"))
    except Exception:  # silent or too-short reference
        return float("nan")


def estoi(est: np.ndarray, ref: np.ndarray) -> float:
    from pystoi import stoi

    return float(stoi(ref, est, C.SAMPLE_RATE, extended=True))


_DNSMOS = None


def dnsmos(est: np.ndarray) -> dict:
    """DNSMOS P.835 (SIG, BAK, OVRL) via the speechmos package."""
    global _DNSMOS
    if _DNSMOS is None:
        from speechmos import dnsmos as d

        _DNSMOS = d
    x = est.astype(np.float32)
    peak = np.abs(x).max()
    if peak > 1.0:
        x = x / peak
    r = _DNSMOS.run(x, sr=C.SAMPLE_RATE)
    return {"sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]), "ovrl": float(r["ovrl_mos"])}
