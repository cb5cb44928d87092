"""Speed of one network pass in ONNX Runtime on one thread (the model card's latency numbers).

    python -m thunder_train.bench --model ../thunder-16k-base.onnx
    python -m thunder_train.bench --model old.onnx --model new.onnx   # a same-run A/B

Offline: T = 1250 frames (10 s) per call, RTF per pass = median over the rounds (and the fastest
round). Chunked: the same 10 s in calls of --chunk frames with the states carried, as the
engine's file mode runs it (its frames per call: 128-frame calls measured 0.0139, one 1250-frame
call 0.0143-0.0152, 64-frame calls 0.0152; longer calls push the activations out of cache).
Streaming: 1 frame per call with the states carried from call to call, p50/p99 over all calls.
With several models the rounds interleave them, so that a machine whose speed drifts (a shared
VM, turbo, another job) shifts every model alike: compare models within one run only.
The engine's own benchmarks (benches/) measure the full pipeline in Rust.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort

from . import contract as C

OFFLINE_FRAMES = 1250
ENGINE_FRAMES_PER_CALL = 128  # the engine's file mode: FILE_FRAMES_PER_CALL in src/stream/file.rs


class Subject:
    """One model under test: its session, inputs, and the times measured so far."""

    def __init__(self, path, threads, rng, chunk=ENGINE_FRAMES_PER_CALL):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.meta = self.session.get_modelmeta().custom_metadata_map
        self.shapes = json.loads(self.meta["thunder.state_shapes"])
        self.offline = self.feeds(OFFLINE_FRAMES, rng)
        self.stream = self.feeds(1, rng)
        self.out_names = [o.name for o in self.session.get_outputs()]
        self.chunk = chunk
        self.rtf, self.chunked_rtf, self.call_ms = [], [], []

    def carry(self, feeds, out):
        """Feed the states a call returned to the next call (state_out_k -> state_in_k)."""
        for name, value in zip(self.out_names[1:], out[1:]):
            feeds[name.replace("state_out_", "state_in_")] = value

    def feeds(self, frames, rng):
        f = {C.INPUT_XT: rng.standard_normal((1, 2, C.N_BINS, frames)).astype(np.float32) * 0.3,
             C.INPUT_Y: rng.standard_normal((1, 2, C.N_BINS, frames)).astype(np.float32) * 0.3,
             C.INPUT_T: np.ones(1, np.float32)}
        for k, v in self.shapes.items():
            f[k] = np.zeros([1, *v[1:]], np.float32)
        return f

    def chunked(self):
        """The offline input in calls of `chunk` frames with the states carried; x0 of each call."""
        f, x0 = dict(self.offline), []  # zero states, as at the start of a file
        for a in range(0, OFFLINE_FRAMES, self.chunk):
            for name in (C.INPUT_XT, C.INPUT_Y):
                f[name] = self.offline[name][..., a : a + self.chunk]
            out = self.session.run(None, f)
            x0.append(out[0])
            self.carry(f, out)
        return x0

    def round(self, calls):
        t0 = time.perf_counter()
        self.session.run(None, self.offline)
        seconds = OFFLINE_FRAMES * C.HOP / C.SAMPLE_RATE
        self.rtf.append((time.perf_counter() - t0) / seconds)
        t0 = time.perf_counter()
        self.chunked()
        self.chunked_rtf.append((time.perf_counter() - t0) / seconds)
        f = self.stream
        for _ in range(calls):
            t0 = time.perf_counter()
            out = self.session.run(None, f)
            self.call_ms.append((time.perf_counter() - t0) * 1e3)
            self.carry(f, out)

    def result(self, threads):
        ts = np.array(self.call_ms)
        return {"model": self.path, "threads": threads, "macs_per_frame": int(self.meta.get("thunder.macs_per_frame", 0)),
                "offline_rtf_per_pass": round(float(np.median(self.rtf)), 4),
                "offline_rtf_fastest_round": round(float(np.min(self.rtf)), 4),
                "chunk_frames": self.chunk, "chunked_rtf_per_pass": round(float(np.median(self.chunked_rtf)), 4),
                "chunked_rtf_fastest_round": round(float(np.min(self.chunked_rtf)), 4),
                "stream_ms_p50": round(float(np.median(ts)), 3), "stream_ms_p99": round(float(np.percentile(ts, 99)), 3),
                "stream_ms_max": round(float(ts.max()), 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, action="append", help="an ONNX model; repeat for an interleaved A/B")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=2000, help="1-frame streaming calls per model")
    ap.add_argument("--rounds", type=int, default=10, help="offline calls per model (interleaved with the streaming ones)")
    ap.add_argument("--chunk", type=int, default=ENGINE_FRAMES_PER_CALL,
                    help="frames per call of the chunked measurement (default: the engine's file mode)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.chunk < 1:
        ap.error("--chunk must be at least 1")
    subjects = [Subject(p, args.threads, rng, args.chunk) for p in args.model]
    for s in subjects:  # warm-up: first-call allocations and the states' start
        s.round(100)
        s.rtf, s.chunked_rtf, s.call_ms = [], [], []
    for _ in range(args.rounds):
        for s in subjects:
            s.round(max(1, args.calls // args.rounds))
    for s in subjects:
        print(json.dumps(s.result(args.threads)))


if __name__ == "__main__":
    main()
