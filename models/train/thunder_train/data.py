"""On-the-fly noisy/clean mixing from the corpus manifests (see corpus.py and CORPUS.md).

Each example: random speech crop (speed/pitch-perturbed when real), optional reverberation
(target = direct path + 50 ms of early reflections), one or two noises (files, procedural, or
babble from other training speakers) at SNR U(-5, 20) dB, optional random EQ of speech and noise
(train.py --eq), a random level U(-40, -5) dBFS, and the source's true bandwidth so the loss can
ignore bins the source never had.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve, lfilter, resample_poly

from . import contract as C

SR = C.SAMPLE_RATE


def read_manifest(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_wav(path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SR:
        raise ValueError(f"{path}: {sr} Hz, the corpus must be {SR} Hz")
    return x.mean(axis=1)


class AudioCache:
    """Decoded files kept in memory (the corpus is a few GB at most as float32)."""

    def __init__(self, root, limit_bytes=6 << 30):
        self.root = Path(root)
        self.cache = {}
        self.bytes = 0
        self.limit = limit_bytes

    def get(self, rel):
        x = self.cache.get(rel)
        if x is None:
            x = load_wav(self.root / rel)
            if self.bytes + x.nbytes <= self.limit:
                self.cache[rel] = x
                self.bytes += x.nbytes
        return x


@dataclass
class MixConfig:
    seconds: float = 2.0
    snr_db: tuple = (-5.0, 20.0)
    level_dbfs: tuple = (-40.0, -5.0)
    p_reverb: float = 0.25
    p_clean: float = 0.05  # no noise at all: learn to leave clean speech alone
    p_second_noise: float = 0.3
    p_procedural: float = 0.2
    p_babble: float = 0.15
    speed: tuple = (0.9, 1.1)
    early_ms: float = 50.0
    # Share of examples per speech pool (renormalised over the pools present): real recordings,
    # neural TTS (Kokoro), and formant/diphone TTS (espeak-ng, flite, festival: variety only).
    pool_weights: tuple = (("real", 0.5), ("kokoro", 0.35), ("robotic", 0.15))
    # Domain restrictions (see domains.py); None = everything the split has.
    noise_categories: tuple | None = None  # noise-file categories drawn from
    procedural_kinds: tuple | None = None  # subset of procedural_noise kinds 0..4
    babble_talkers: tuple = (1, 7)  # inclusive range of talkers in a babble noise
    # Random microphone/room colouration (random_eq): speech (input and target alike, since the
    # engine cannot know the microphone) and noise, each independently. Off for the fixed
    # validation/test sets, so those stay identical across sessions; train.py --eq turns it on.
    p_eq_speech: float = 0.0
    p_eq_noise: float = 0.0
    # Share of noise segments that are tonal (tonal_noise: whines, beeps, alarms, motor lines).
    # Off for the fixed validation/test sets like the EQ; train.py --tonal turns it on.
    p_tonal: float = 0.0
    eq_gain_db: float = 8.0  # each filter's gain is U(-g, g)
    # Noise-file augmentation (train.py --noise-aug), off for the fixed validation/test sets: a
    # noise file replayed at another speed (its spectrum slides by the factor: one engine or fan
    # becomes a continuum of them) and a noise source placed in a room (real noise is recorded
    # through a room, not dry). Aimed at noise unlike any training file.
    p_noise_speed: float = 0.0
    noise_speed: tuple = (0.6, 1.6)
    p_noise_reverb: float = 0.0
    # Speech pauses (train.py --pause), off for the fixed validation/test sets: the corpus's speech
    # is trimmed and cut from continuous reading, so without this a 2 s example almost never holds
    # noise alone, and the network never learns to take noise out where nobody speaks (session 19:
    # on the dev files' noise alone it removed 5-25 dB, DeepFilterNet3 35-75 dB).
    p_pause: float = 0.0
    pause_s: tuple = (0.2, 1.0)  # length of each speech-free stretch
    p_speech_free: float = 0.1  # of the paused examples: noise alone for the whole example


def rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def crop(x, n, rng):
    if len(x) >= n:
        s = rng.integers(0, len(x) - n + 1)
        return x[s : s + n]
    out = np.zeros(n, np.float32)
    s = rng.integers(0, n - len(x) + 1)
    out[s : s + len(x)] = x
    return out


def loop_crop(x, n, rng):
    if len(x) < n:
        x = np.tile(x, int(math.ceil(n / max(len(x), 1))) + 1)
    return crop(x, n, rng)


def speed_perturb(x, factor):
    """Resample-based speed + pitch change (factor > 1 = faster, higher)."""
    up = 100
    down = int(round(up * factor))
    return resample_poly(x, up, down).astype(np.float32)


PROCEDURAL_KINDS = ("white", "pink", "brown", "hum", "fan")


def procedural_noise(n, rng, kinds=None):
    kind = rng.integers(0, 5) if kinds is None else int(kinds[rng.integers(0, len(kinds))])
    w = rng.standard_normal(n).astype(np.float32)
    if kind == 0:  # white
        return w
    if kind == 1:  # pink-ish (Voss-McCartney approximation by filtering)
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1, -2.494956002, 2.017265875, -0.522189400]
        return lfilter(b, a, w).astype(np.float32)
    if kind == 2:  # brown
        return lfilter([1.0], [1.0, -0.995], w).astype(np.float32)
    if kind == 3:  # mains hum with harmonics + a little hiss
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        t = np.arange(n) / SR
        h = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) for k in range(1, 12))
        return (h + 0.02 * w).astype(np.float32)
    # fan / engine: band-limited noise with slow amplitude modulation and a tonal line
    lo = lfilter([1.0], [1.0, -rng.uniform(0.8, 0.99)], w)
    t = np.arange(n) / SR
    mod = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 3.0) * t)
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 400) * t)
    return (lo * mod + tone * rms(lo)).astype(np.float32)


def tonal_noise(n, rng):
    """Stationary or gated tones at arbitrary pitch: 1-3 harmonic series (80 Hz-4 kHz fundamental,
    1-6 partials), slow vibrato and tremolo, half the time switched on and off like a beep or an
    alarm, over a faint hiss. The real recordings showed narrow lines (277 Hz, 935 Hz) that the
    model left in place: mains hum and the fan's single line were the only tones it had seen."""
    t = np.arange(n) / SR
    out = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        f0 = math.exp(rng.uniform(math.log(80.0), math.log(4000.0)))
        vib = 1.0 + rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * rng.uniform(0.1, 6.0) * t + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(f0 * vib) / SR
        tone = np.zeros(n)
        for k in range(1, rng.integers(1, 7) + 1):
            if f0 * k < SR / 2 - 200:
                tone += k ** -rng.uniform(0.5, 2.0) * np.sin(k * phase + rng.uniform(0, 6.3))
        tone *= 1.0 + rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.1, 8.0) * t)
        if rng.random() < 0.5:  # on/off pattern with 5 ms ramps
            on, off = rng.uniform(0.05, 1.0), rng.uniform(0.05, 1.5)
            gate = ((t + rng.uniform(0, on + off)) % (on + off)) < on
            ramp = max(1, int(0.005 * SR))
            tone *= np.convolve(gate.astype(float), np.ones(ramp) / ramp, mode="same")
        out += rng.uniform(0.3, 1.0) * tone / (rms(tone) + 1e-9)
    hiss = rng.standard_normal(n) * rng.uniform(0.003, 0.05)
    return (out + hiss).astype(np.float32)


def biquad(kind, f0, gain_db, q):
    """RBJ audio-EQ-cookbook biquad (b, a) at SR: kind is 'low_shelf', 'high_shelf' or 'peak'."""
    a_lin = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / SR
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_lin, -2 * cw, 1 - alpha * a_lin]
        a = [1 + alpha / a_lin, -2 * cw, 1 - alpha / a_lin]
    else:
        sq = 2 * math.sqrt(a_lin) * alpha
        sign = 1 if kind == "low_shelf" else -1
        b = [a_lin * ((a_lin + 1) - sign * (a_lin - 1) * cw + sq),
             sign * 2 * a_lin * ((a_lin - 1) - sign * (a_lin + 1) * cw),
             a_lin * ((a_lin + 1) - sign * (a_lin - 1) * cw - sq)]
        a = [(a_lin + 1) + sign * (a_lin - 1) * cw + sq, -sign * 2 * ((a_lin - 1) + sign * (a_lin + 1) * cw),
             (a_lin + 1) + sign * (a_lin - 1) * cw - sq]
    return np.array(b) / a[0], np.array(a) / a[0]


def random_eq(x, rng, gain_db=8.0):
    """1-3 random shelving/peaking filters: the timbre of another microphone, mouth distance or wall."""
    y = x.astype(np.float64)
    for _ in range(rng.integers(1, 4)):
        kind = ("low_shelf", "high_shelf", "peak")[rng.integers(0, 3)]
        f0 = {"low_shelf": rng.uniform(60, 500), "high_shelf": rng.uniform(1500, 6000),
              "peak": math.exp(rng.uniform(math.log(150), math.log(6500)))}[kind]
        b, a = biquad(kind, f0, rng.uniform(-gain_db, gain_db), rng.uniform(0.5, 2.0))
        y = lfilter(b, a, y)
    return y.astype(np.float32)


def speed_noise(x, n, factor, rng):
    """n samples of noise file x replayed `factor` times faster (looped as needed)."""
    y = speed_perturb(loop_crop(x, int(math.ceil(n * factor)) + 64, rng), factor)
    return loop_crop(y, n, rng)


def reverberate_noise(x, rir):
    """x heard through a room: the last len(x) - len(rir) + 1 samples are steady-state (no ramp-in),
    so callers pass a segment longer than they need by len(rir) - 1."""
    wet = fftconvolve(x, rir / (np.abs(rir).max() + 1e-9), mode="valid").astype(np.float32)
    return wet * (rms(x) / (rms(wet) + 1e-9))


def pause_envelope(n, rng, pause_s=(0.2, 1.0), p_speech_free=0.1, fade_s=0.02):
    """A gain envelope for n samples of speech: 1 where it speaks, 0 in 1-2 speech-free stretches of
    U(pause_s) seconds each (at the start, the end or inside), with raised-cosine edges of fade_s so
    no click enters the target; with p_speech_free all zeros (an example of noise alone)."""
    if rng.random() < p_speech_free:
        return np.zeros(n, np.float32)
    mask = np.ones(n, np.float64)
    for _ in range(rng.integers(1, 3)):
        length = min(n, int(rng.uniform(*pause_s) * SR))
        start = rng.integers(0, n - length + 1)
        mask[start : start + length] = 0.0
    fade = max(1, int(fade_s * SR))
    win = np.hanning(fade + 2)[1:-1]
    env = np.convolve(np.pad(mask, fade, mode="edge"), win / win.sum(), mode="same")[fade:-fade]
    env[env < 1e-6] = 0.0  # exact silence in the pauses (the convolution leaves rounding dust)
    return np.clip(env, 0.0, 1.0).astype(np.float32)


def early_target(clean, rir, early_ms):
    """Reverberant mixture input and the direct-path + early-reflections target, aligned to the dry signal."""
    peak = int(np.argmax(np.abs(rir)))
    rir = rir / (np.abs(rir[peak]) + 1e-9)
    early = rir.copy()
    cut = peak + int(early_ms * SR / 1000)
    early[cut:] = 0.0
    n = len(clean)
    wet = fftconvolve(clean, rir)[peak : peak + n].astype(np.float32)
    tgt = fftconvolve(clean, early)[peak : peak + n].astype(np.float32)
    return wet, tgt


class Mixer:
    """Draws training examples for one split."""

    def __init__(self, corpus_root, split="train", cfg: MixConfig = MixConfig(), seed=0):
        self.root = Path(corpus_root)
        self.cfg = cfg
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.cache = AudioCache(self.root)
        self.reload()

    def reload(self):
        sp = [r for r in read_manifest(self.root / "speech.csv") if r["split"] == self.split]
        self.pools = {}
        for r in sp:
            self.pools.setdefault(speech_pool(r), []).append(r)
        self.noise = [r for r in read_manifest(self.root / "noise.csv") if r["split"] == self.split]
        self.noise_by_cat = {}
        for r in self.noise:  # sample a category first: music alone is half of the noise minutes
            cat = r.get("category", "other")
            if self.cfg.noise_categories is None or cat in self.cfg.noise_categories:
                self.noise_by_cat.setdefault(cat, []).append(r)
        rp = self.root / "rirs.csv"
        self.rirs = [r for r in read_manifest(rp) if r["split"] == self.split] if rp.exists() else []
        if not self.pools:
            raise RuntimeError(f"no {self.split} speech in {self.root}/speech.csv: build the corpus first")

    def pick_speech(self):
        rng = self.rng
        names = [n for n, _ in self.cfg.pool_weights if self.pools.get(n)]
        w = np.array([dict(self.cfg.pool_weights)[n] for n in names])
        pool = self.pools[names[rng.choice(len(names), p=w / w.sum())]]
        return pool[rng.integers(0, len(pool))]

    def load(self, row, pool):
        """Decode a manifest row; a file that vanished or is unreadable leaves its pool (logged once)."""
        try:
            return self.cache.get(row["path"])
        except (OSError, RuntimeError, ValueError) as e:
            print(f"data: dropping {row['path']}: {e}", flush=True)
            if row in pool:
                pool.remove(row)
            return None

    def speech_segment(self, n):
        rng = self.rng
        x = None
        while x is None:
            row = self.pick_speech()
            x = self.load(row, self.pools[speech_pool(row)])
        if speech_pool(row) == "real" and rng.random() < 0.7:
            x = speed_perturb(crop(x, int(n * 1.15), rng), rng.uniform(*self.cfg.speed))
        return crop(x, n, rng), float(row["bandwidth_hz"])

    def noise_segment(self, n):
        rng = self.rng
        u = rng.random()
        cats = [c for c, rows in self.noise_by_cat.items() if rows]
        kinds = self.cfg.procedural_kinds
        if self.cfg.p_tonal > 0 and rng.random() < self.cfg.p_tonal:
            return tonal_noise(n, rng)
        if u < self.cfg.p_procedural:
            return procedural_noise(n, rng, kinds)
        if u < self.cfg.p_procedural + self.cfg.p_babble:
            lo, hi = self.cfg.babble_talkers
            k = rng.integers(lo, hi + 1)
            b = np.zeros(n, np.float32)
            for _ in range(k):
                s, _ = self.speech_segment(n)
                b += s / (rms(s) + 1e-6)
            return b
        if not cats:  # no noise files of the wanted kind in this split (tiny test corpora)
            return procedural_noise(n, rng, kinds)
        pool = self.noise_by_cat[cats[rng.integers(0, len(cats))]]
        row = pool[rng.integers(0, len(pool))]
        x = self.load(row, pool)
        if x is None:
            return procedural_noise(n, rng, kinds)
        if self.cfg.p_noise_speed > 0 and rng.random() < self.cfg.p_noise_speed:
            return speed_noise(x, n, rng.uniform(*self.cfg.noise_speed), rng)
        return loop_crop(x, n, rng)

    def room_noise(self, n):
        """A noise segment, placed in a random room of the split with p_noise_reverb."""
        rng = self.rng
        if self.rirs and self.cfg.p_noise_reverb > 0 and rng.random() < self.cfg.p_noise_reverb:
            rir = self.load(self.rirs[rng.integers(0, len(self.rirs))], self.rirs)
            if rir is not None:
                return reverberate_noise(self.noise_segment(n + len(rir) - 1), rir)
        return self.noise_segment(n)

    def example(self):
        cfg, rng = self.cfg, self.rng
        n = int(cfg.seconds * SR)
        clean, bw = self.speech_segment(n)
        while rms(clean) < 1e-4:  # mostly silence: draw again
            clean, bw = self.speech_segment(n)
        if cfg.p_eq_speech > 0 and rng.random() < cfg.p_eq_speech:
            clean = random_eq(clean, rng, cfg.eq_gain_db)
        speaking = 1.0  # share of the example's speech power left by the pauses
        if cfg.p_pause > 0 and rng.random() < cfg.p_pause:
            env = pause_envelope(n, rng, cfg.pause_s, cfg.p_speech_free)
            speaking = float(np.mean(env.astype(np.float64) ** 2))
            ungated = rms(clean)
            clean = clean * env  # before the room, so a pause keeps the reverberant tail
        target = clean
        if self.rirs and rng.random() < cfg.p_reverb:
            rir = self.load(self.rirs[rng.integers(0, len(self.rirs))], self.rirs)
            if rir is not None:
                clean, target = early_target(clean, rir, cfg.early_ms)
        # The SNR is the speech's while it speaks (so pauses do not make the noise quieter); an
        # example of noise alone takes its noise level from the speech it replaced.
        speech_level = rms(clean) / math.sqrt(speaking) if speaking >= 0.05 else ungated
        if rng.random() < cfg.p_clean:
            noisy = clean.copy()
        else:
            noise = self.room_noise(n)
            if cfg.p_eq_noise > 0 and rng.random() < cfg.p_eq_noise:
                noise = random_eq(noise, rng, cfg.eq_gain_db)
            if rng.random() < cfg.p_second_noise:
                extra = self.room_noise(n)
                noise = noise / (rms(noise) + 1e-9) + rng.uniform(0.2, 1.0) * extra / (rms(extra) + 1e-9)
            snr = rng.uniform(*cfg.snr_db)
            noise = noise * (speech_level / (rms(noise) + 1e-9)) * 10 ** (-snr / 20)
            noisy = clean + noise
        level = 10 ** (rng.uniform(*cfg.level_dbfs) / 20)
        g = level / (rms(noisy) + 1e-9)
        peak = max(np.abs(noisy).max(), np.abs(target).max()) * g
        if peak > 0.99:
            g *= 0.99 / peak
        band_bin = min(C.N_BINS, int(math.floor(bw / (SR / C.N_FFT))) + 1)
        return (noisy * g).astype(np.float32), (target * g).astype(np.float32), band_bin


def speech_pool(row):
    src = row.get("source", "")
    if src.startswith("kokoro"):
        return "kokoro"
    if src.startswith(("espeak", "flite", "festival")):
        return "robotic"
    return "real"


class MixDataset(torch.utils.data.IterableDataset):
    def __init__(self, corpus_root, split="train", cfg: MixConfig = MixConfig(), seed=0, reload_every=2000,
                 domain=None):
        self.args = (corpus_root, split, cfg)
        self.seed = seed
        self.reload_every = reload_every
        self.domain = domain  # a domains.py recipe instead of cfg (cfg.seconds still applies)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        # A function of (seed, worker) only, so two runs with one --seed train on the same mixtures
        # (until session 17 the process id entered too, and paired arms saw different data).
        seed = self.seed * 1000 + wid
        if self.domain is None:
            m = Mixer(*self.args, seed=seed)
        else:
            from .domains import make_mixer

            root, split, cfg = self.args
            m = make_mixer(root, split, self.domain, cfg.seconds, seed)
        k = 0
        while True:
            yield m.example()
            k += 1
            if k % self.reload_every == 0:  # pick up TTS files the corpus builder added
                m.reload()


def collate(batch):
    noisy = torch.from_numpy(np.stack([b[0] for b in batch]))
    clean = torch.from_numpy(np.stack([b[1] for b in batch]))
    band = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return noisy, clean, band


def fixed_set(corpus_root, split, n, seconds=4.0, seed=1234, cfg: MixConfig | None = None):
    """A deterministic list of (noisy, clean, band_bin) for validation/test."""
    cfg = cfg or MixConfig(seconds=seconds)
    m = Mixer(corpus_root, split, cfg, seed=seed)
    return [m.example() for _ in range(n)]
