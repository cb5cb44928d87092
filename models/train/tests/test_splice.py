import numpy as np

from thunder_train import splice as S


def test_activity_marks_the_speech_widened_and_leaves_the_pauses():
    sr = 16000
    x = np.zeros(2 * sr, np.float32)
    x[8000:16000] = 0.3 * np.sin(2 * np.pi * 200 * np.arange(8000) / sr)  # 0.5-1.0 s speaks
    x[24000:25000] = 1e-5  # 50 dB below: a pause, not speech
    w = S.speech_activity(x)
    assert w.shape == x.shape and w.min() >= 0.0 and w.max() <= 1.0
    assert (w[8000:16000] > 0.999).all()
    widen = S.WIDEN_FRAMES * S.HOP
    assert (w[8000 - widen + S.FADE : 8000] > 0.999).all()  # widened before the onset
    assert (w[: 8000 - widen - S.FADE] == 0).all() and (w[16000 + widen + S.FADE :] == 0).all()


def test_splice_takes_each_part_where_its_weight_is_one():
    r = np.random.default_rng(0)
    a, b = r.standard_normal(1000), r.standard_normal(1000)
    w = np.r_[np.ones(400), np.linspace(1, 0, 200), np.zeros(400)]
    out = S.splice(a, b, w)
    np.testing.assert_allclose(out[:400], a[:400], atol=1e-6)
    np.testing.assert_allclose(out[600:], b[600:], atol=1e-6)
