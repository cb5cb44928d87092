#!/usr/bin/env python3
"""Loads a merged ONNX model with onnx.checker and onnxruntime and prints y for x = [1, 2, 3, 4]
as space-separated floats, plus the metadata keys. Used by the Rust round-trip test."""
import sys

import numpy as np
import onnx
import onnxruntime as ort

m = onnx.load(sys.argv[1])
onnx.checker.check_model(m)
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
y = sess.run(None, {"x": np.array([[1, 2, 3, 4]], dtype=np.float32)})[0]
print("y", " ".join(repr(float(v)) for v in y.ravel()))
print("meta", " ".join(sorted(p.key for p in m.metadata_props)))
print("doc", m.doc_string)
