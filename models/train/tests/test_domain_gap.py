import numpy as np

from thunder_train import domain_gap as G


def test_remix_sets_the_snr_and_the_level_and_scales_the_reference_alike():
    r = np.random.default_rng(0)
    speech, noise = r.standard_normal(16000), 3.0 * r.standard_normal(5000)  # shorter noise: looped
    noisy, clean = G.remix(speech, noise, 2.0, 0.05)
    assert len(noisy) == len(clean) == len(speech)
    assert abs(G.rms(noisy) - 0.05) < 1e-6
    assert abs(20 * np.log10(G.rms(clean) / G.rms(noisy - clean)) - 2.0) < 1e-3
    assert np.allclose(clean / clean[0], speech / speech[0], atol=1e-4)  # the same speech, scaled


def test_mixtures_keep_the_dev_file_and_swap_each_half_at_its_snr():
    r = np.random.default_rng(1)
    dev = []
    for name, snr in (("a", 0.0), ("b", 3.0)):
        clean = r.standard_normal(8000) * 0.1
        noise = r.standard_normal(8000)
        noise *= G.rms(clean) / G.rms(noise) / 10 ** (snr / 20)
        dev.append((name, clean + noise, clean))
    tracks = [(r.standard_normal(8000), r.standard_normal(8000)) for _ in range(4)]
    mixes = G.mixtures(dev, tracks, draws=2)
    assert len(mixes) == 2 * (2 + 4 * 2)
    assert [m[0] for m in mixes[:5]] == [G.KINDS[0], G.KINDS[4], G.KINDS[1], G.KINDS[2], G.KINDS[3]]
    assert np.array_equal(mixes[0][2], dev[0][1].astype(np.float32))
    for kind, name, noisy, clean in mixes:
        if kind in G.KINDS[4:]:  # speech alone, at the level of the dev file's speech
            assert np.array_equal(noisy, clean)
            assert abs(G.rms(clean) - G.rms(dev[0 if name.startswith("a") else 1][2])) < 1e-5
            continue
        want = 0.0 if name.startswith("a") else 3.0
        assert abs(20 * np.log10(G.rms(clean) / G.rms(noisy - clean)) - want) < 1e-2, (kind, name)
        assert abs(G.rms(noisy) - G.rms(dev[0 if name.startswith("a") else 1][1])) < 1e-5
    dev_noise = dev[0][1] - dev[0][2]
    swapped = mixes[3]  # "a/0", test speech + dev noise: its noise is the dev noise, rescaled
    assert swapped[0] == G.KINDS[2]
    n = swapped[2] - swapped[3]
    assert abs(np.corrcoef(n, dev_noise)[0, 1]) > 0.999
