"""Run an exported Thunder ONNX graph with ONNX Runtime (Python), offline, through the sampler."""

import json

import numpy as np
import onnxruntime as ort
import torch

from . import contract as C
from . import dsp, sampler


class OnnxThunder:
    def __init__(self, path, threads=1):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        meta = self.sess.get_modelmeta().custom_metadata_map
        self.meta = meta
        self.shapes = json.loads(meta["thunder.state_shapes"])
        self.lookahead = int(meta["thunder.lookahead_frames"])

    def denoise(self, x_t, y, t, pass_id=0):
        """One network pass over whole sequences (zero states; look-ahead padded and dropped)."""
        b = x_t.shape[0]
        la = self.lookahead
        pad = np.zeros((*x_t.shape[:3], la), np.float32)
        feeds = {
            C.INPUT_XT: np.concatenate([x_t.numpy().astype(np.float32), pad], 3),
            C.INPUT_Y: np.concatenate([y.numpy().astype(np.float32), pad], 3),
            C.INPUT_T: t.numpy().astype(np.float32),
        }
        for k, s in self.shapes.items():
            feeds[k] = np.zeros([b, *s[1:]], np.float32)
        out = self.sess.run([C.OUTPUT_X0], feeds)[0]
        return torch.from_numpy(out[..., la:])

    def enhance(self, wave: np.ndarray, steps: int, seed: int = 0, corrector: bool = True) -> np.ndarray:
        y = dsp.analyse(torch.from_numpy(np.asarray(wave, np.float32))[None])
        out = sampler.enhance(self.denoise, y, steps, seed=seed, corrector=corrector)
        return dsp.synthesise(out, len(wave))[0].numpy()
