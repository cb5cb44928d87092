"""Speed of one network pass in ONNX Runtime on one thread (the model card's latency numbers).

    python -m thunder_train.bench --model ../thunder-16k-base.onnx

Offline: T = 1250 frames (10 s) per call; streaming: 1 frame per call with carried state.
The engine's own criterion benchmarks (benches/) measure the full pipeline in Rust.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort

from . import contract as C


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    meta = s.get_modelmeta().custom_metadata_map
    shapes = json.loads(meta["thunder.state_shapes"])
    rng = np.random.default_rng(0)

    def feeds(T):
        f = {C.INPUT_XT: rng.standard_normal((1, 2, C.N_BINS, T)).astype(np.float32) * 0.3,
             C.INPUT_Y: rng.standard_normal((1, 2, C.N_BINS, T)).astype(np.float32) * 0.3,
             C.INPUT_T: np.ones(1, np.float32)}
        for k, v in shapes.items():
            f[k] = np.zeros([1, *v[1:]], np.float32)
        return f

    T = 1250
    f = feeds(T)
    s.run(None, f)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        s.run(None, f)
    rtf = (time.perf_counter() - t0) / reps / (T * C.HOP / C.SAMPLE_RATE)
    f = feeds(1)
    for _ in range(100):
        s.run(None, f)
    ts = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        s.run(None, f)
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1e3
    res = {"model": args.model, "threads": args.threads, "macs_per_frame": int(meta.get("thunder.macs_per_frame", 0)),
           "offline_rtf_per_pass": round(rtf, 4), "stream_ms_p50": round(float(np.median(ts)), 3),
           "stream_ms_p99": round(float(np.percentile(ts, 99)), 3), "stream_ms_max": round(float(ts.max()), 3)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
