import numpy as np

from thunder_train import noise_alone as N


def test_attenuation_ignores_the_settling_time_and_reads_in_db():
    r = np.random.default_rng(0)
    noise = r.standard_normal(32000).astype(np.float32)
    assert abs(N.attenuation_db(noise, noise)) < 1e-6
    assert abs(N.attenuation_db(noise, 0.01 * noise) + 40.0) < 1e-4
    late = noise.copy()
    late[: int(N.SETTLE_S * 16000)] *= 100.0  # a loud start is the settling time: not counted
    assert abs(N.attenuation_db(noise, late)) < 1e-6
    assert N.attenuation_db(noise, np.zeros_like(noise)) < -100  # silence is finite, not -inf


def test_tracks_put_every_noise_at_the_dev_noise_level_and_20_db_below():
    r = np.random.default_rng(1)
    dev = []
    for name, gain in (("a", 0.3), ("b", 0.02)):
        clean = 0.1 * r.standard_normal(8000)
        dev.append((name, clean + gain * r.standard_normal(8000), clean))
    test_noises = [r.standard_normal(5000) * s for s in (1.0, 7.0, 0.5, 2.0)]  # shorter: looped
    tracks = N.tracks(dev, test_noises, draws=2)
    assert len(tracks) == 2 * 2 * (1 + 2)
    assert {k for k, _, _ in tracks} == set(N.KINDS)
    for kind, name, noise in tracks:
        ref = dev[0 if name.startswith("a") else 1]
        want = N.rms(ref[1] - ref[2]) * (1.0 if "+0 dB" in kind else 0.1)
        assert len(noise) == 8000 and abs(N.rms(noise) / want - 1) < 1e-4, (kind, name)
    dev_a = [n for k, name, n in tracks if name == "a" and k.startswith("dev")]
    np.testing.assert_allclose(dev_a[0], (dev[0][1] - dev[0][2]).astype(np.float32), atol=1e-7)
