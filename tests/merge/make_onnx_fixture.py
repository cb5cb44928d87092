#!/usr/bin/env python3
"""Writes the tiny ONNX fixtures of the round-trip test (tests/merge/fixtures/onnx_*.onnx).

y = Reshape(x @ W1 + b1, shape) @ W2 with W1: 4×6, b1: 6, W2: 6×3 (float32, raw_data),
W1 of expert B stored as float_data (the other ONNX encoding), and `shape` an int64
initializer (non-float: must be identical across inputs). The base carries a doc string and a
metadata entry that must survive the merge.

Run: python tests/merge/make_onnx_fixture.py   (needs the `onnx` package)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def model(w1, b1, w2, float_data=False):
    if float_data:
        t_w1 = helper.make_tensor("W1", TensorProto.FLOAT, w1.shape, w1.ravel().tolist(), raw=False)
    else:
        t_w1 = numpy_helper.from_array(w1, "W1")
    inits = [t_w1, numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(np.array([1, 6], dtype=np.int64), "shape")]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Reshape", ["h1", "shape"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["y"]),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="thunder-tests")
    m.ir_version = 8
    m.doc_string = "tiny merge fixture"
    helper.set_model_props(m, {"origin": "fixture"})
    onnx.checker.check_model(m)
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((4, 6)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((6, 3)).astype(np.float32)
    onnx.save_model(model(w1, b1, w2), os.path.join(OUT, "onnx_base.onnx"))
    for name, fd in [("a", False), ("b", True)]:
        d1 = (rng.standard_normal((4, 1)) @ rng.standard_normal((1, 6)) * 0.1).astype(np.float32)
        db = (rng.standard_normal(6) * 0.1).astype(np.float32)
        d2 = (rng.standard_normal((6, 1)) @ rng.standard_normal((1, 3)) * 0.1).astype(np.float32)
        onnx.save_model(model(w1 + d1, b1 + db, w2 + d2, float_data=fd), os.path.join(OUT, f"onnx_{name}.onnx"))
    print("ONNX fixtures written to", OUT)


if __name__ == "__main__":
    main()
