import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000


def harmonic_speech(n, f0, rng):
    """A crude voiced signal: harmonics of a gliding f0 with syllable-rate amplitude modulation."""
    t = np.arange(n) / SR
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.1 * x * env).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for split, spk in [("train", "a"), ("train", "b"), ("val", "c"), ("test", "d")]:
        for i in range(3):
            p = Path("speech") / split / "synth" / spk / f"{i}.wav"
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / p, harmonic_speech(SR * 3, rng.uniform(90, 250), rng), SR, subtype="PCM_16")
            rows.append(dict(path=str(p), split=split, source="synth", speaker=spk, language="xx",
                             bandwidth_hz=8000, duration_s=3.0, licence="generated"))
    with open(root / "speech.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    nrows = []
    for split in ["train", "val", "test"]:
        p = Path("noise") / split / "gen" / "n.wav"
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / p, (0.05 * rng.standard_normal(SR * 4)).astype(np.float32), SR, subtype="PCM_16")
        nrows.append(dict(path=str(p), split=split, source="gen", category="stationary", duration_s=4.0, licence="generated"))
    with open(root / "noise.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(nrows[0]))
        w.writeheader()
        w.writerows(nrows)
    return root
