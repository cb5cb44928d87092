import numpy as np

from thunder_train.bands import EDGES_HZ, band_levels


def test_band_levels_read_speech_loss_and_residual_noise():
    t = np.arange(32000) / 16000
    # "Speech": a 300 Hz + 2.5 kHz signal for 1 s, then a pause.
    clean = np.where(t < 1.0, np.sin(2 * np.pi * 300 * t) + 0.5 * np.sin(2 * np.pi * 2500 * t), 0.0)
    sp, pa = band_levels(clean, clean)
    assert sp.shape == pa.shape == (len(EDGES_HZ) - 1,)
    np.testing.assert_allclose(sp[[1, 4]], 0.0, atol=1e-6)  # 250-500 and 2-3 kHz bands: nothing lost
    hum = 0.1 * np.sin(2 * np.pi * 277 * t)  # a residual line, in the pause too
    sp_h, pa_h = band_levels(clean * 0.5 + hum, clean)
    assert -7.0 < sp_h[4] < -5.0  # speech at half amplitude: -6 dB
    assert pa_h[1] > -30.0 and pa_h[1] > pa_h[4] + 20  # the line shows in its band's pause row
    assert np.isfinite(pa_h).all()
