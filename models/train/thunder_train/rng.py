"""Counter-based Gaussian noise shared bit-for-bit with the Rust engine.

z(seed, stream, frame) is a [2, 256] array (re, im) of a complex standard normal
(each part N(0, 1/2)). It depends only on its three keys, so a frame gets the same noise
whether it is processed offline or streamed in chunks of any size.
Stream ids: corrector of reverse step i -> 2*i, predictor of step i -> 2*i + 1.
"""

import numpy as np

from . import contract as C

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def mix(x):
    """splitmix64 step (increment, then finalise); works on np.uint64 scalars and arrays."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def frame_noise(seed: int, stream: int, frame: int) -> np.ndarray:
    """Noise for one frame: float32 [2, N_BINS]."""
    s = mix(np.uint64(seed & _MASK))
    s = mix(s ^ np.uint64(stream & _MASK))
    s = mix(s ^ np.uint64(frame & _MASK))
    j = np.arange(C.N_BINS, dtype=np.uint64)
    r1 = mix(s ^ (np.uint64(2) * j))
    r2 = mix(s ^ (np.uint64(2) * j + np.uint64(1)))
    u1 = ((r1 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    u2 = (r2 >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    rad = np.sqrt(-2.0 * np.log(u1)) * np.sqrt(0.5)
    ang = 2.0 * np.pi * u2
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)]).astype(np.float32)


def noise(seed: int, stream: int, first_frame: int, n: int) -> np.ndarray:
    """Noise for frames first_frame..first_frame+n: float32 [2, N_BINS, n]."""
    return np.stack([frame_noise(seed, stream, first_frame + k) for k in range(n)], axis=-1)
