import copy
import csv
import json
import os
import shutil
import signal
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from thunder_train import contract as C
from thunder_train import data, dsp, train
from thunder_train.data import (MixConfig, Mixer, biquad, collate, pause_envelope, random_eq, reverberate_noise, rms, speed_noise,
                                tonal_noise)
from thunder_train.export import export_onnx, export_safetensors, weights_for_merge
from thunder_train.net import NetConfig, ThunderNet


def test_mixer_examples(tiny_corpus):
    m = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=0)
    for _ in range(10):
        noisy, clean, band = m.example()
        assert noisy.shape == clean.shape == (16000,)
        assert np.isfinite(noisy).all() and np.abs(noisy).max() <= 1.0
        assert band == C.N_BINS


def gain_db(b, a, f):
    z = np.exp(-2j * np.pi * f / C.SAMPLE_RATE)
    return 20 * np.log10(abs(np.polyval(b[::-1], z) / np.polyval(a[::-1], z)))


def test_eq_filters_have_the_cookbook_responses():
    b, a = biquad("low_shelf", 200.0, 6.0, 0.707)
    assert abs(gain_db(b, a, 1.0) - 6.0) < 0.05 and abs(gain_db(b, a, 7000.0)) < 0.1
    b, a = biquad("high_shelf", 3000.0, -6.0, 0.707)
    assert abs(gain_db(b, a, 20.0)) < 0.05 and abs(gain_db(b, a, 7990.0) + 6.0) < 0.1
    b, a = biquad("peak", 1000.0, 8.0, 1.0)
    assert abs(gain_db(b, a, 1000.0) - 8.0) < 1e-6 and abs(gain_db(b, a, 50.0)) < 0.2


def test_tonal_noise_is_narrowband_and_only_on_when_asked(tiny_corpus):
    for seed in range(8):
        x = tonal_noise(32000, np.random.default_rng(seed))
        assert x.shape == (32000,) and x.dtype == np.float32 and np.isfinite(x).all()
        # Lines, not a broadband spectrum: the strongest 2 % of the bins hold most of the power.
        p = np.sort(np.abs(np.fft.rfft(x[:16384].astype(np.float64) * np.hanning(16384))) ** 2)[::-1]
        assert p[: len(p) // 50].sum() > 0.5 * p.sum(), f"seed {seed}: not tonal"
    base = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=7).example()
    again = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0, p_tonal=0.0), seed=7).example()
    np.testing.assert_array_equal(base[0], again[0])
    tonal = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0, p_tonal=1.0, p_clean=0.0), seed=7).example()
    assert not np.array_equal(base[0], tonal[0])


def test_random_eq_is_bounded_and_only_on_when_asked(tiny_corpus):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(16000).astype(np.float32)
    y = random_eq(x, np.random.default_rng(5), gain_db=8.0)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert 0.0 < abs(20 * np.log10(np.std(y) / np.std(x))) < 3 * 8.0
    np.testing.assert_array_equal(y, random_eq(x, np.random.default_rng(5), gain_db=8.0))
    # Off by default: the fixed validation/test sets do not change when the option exists.
    base = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=7).example()
    again = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0, p_eq_speech=0.0), seed=7).example()
    np.testing.assert_array_equal(base[0], again[0])
    eq = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0, p_eq_speech=1.0, p_eq_noise=1.0), seed=7).example()
    assert not np.array_equal(base[1], eq[1])


def test_pauses_leave_noise_alone_at_the_speech_snr_and_are_only_on_when_asked(tiny_corpus, monkeypatch):
    n, fade = 32000, int(0.02 * C.SAMPLE_RATE)
    for seed in range(20):
        env = pause_envelope(n, np.random.default_rng(seed), (0.2, 1.0), p_speech_free=0.0)
        assert env.shape == (n,) and env.min() >= 0.0 and env.max() <= 1.0
        # A speech-free stretch of at least 0.2 s minus the two edges, and edges without a click.
        zero = np.concatenate([[0], (env == 0).astype(np.int8), [0]])
        runs = np.flatnonzero(np.diff(zero) == -1) - np.flatnonzero(np.diff(zero) == 1)
        assert runs.max() >= int(0.2 * C.SAMPLE_RATE) - fade, seed
        assert np.abs(np.diff(env)).max() < 3.0 / fade, seed
        assert env.mean() > 0.2, seed  # at most two pauses of 1 s in 2 s: speech is left
    assert not pause_envelope(n, np.random.default_rng(0), p_speech_free=1.0).any()
    # Off by default: the fixed validation/test sets do not change when the option exists.
    dry = MixConfig(seconds=2.0, p_reverb=0.0, p_clean=0.0, snr_db=(10.0, 10.0))
    base = Mixer(tiny_corpus, "train", dry, seed=7).example()
    again = Mixer(tiny_corpus, "train", replace(dry, p_pause=0.0), seed=7).example()
    np.testing.assert_array_equal(base[0], again[0])
    envs = []
    monkeypatch.setattr(data, "pause_envelope", lambda *a, **k: envs.append(pause_envelope(*a, **k)) or envs[-1])
    for seed in range(6):
        noisy, target, _ = Mixer(tiny_corpus, "train", replace(dry, p_pause=1.0, p_speech_free=0.0), seed=seed).example()
        env, noise = envs[-1], (noisy - target).astype(np.float64)
        gap = env == 0
        assert gap.sum() >= 0.2 * C.SAMPLE_RATE - 2 * fade and not target[gap].any()  # speech-free ...
        assert rms(noise[gap]) > 0.1 * rms(noise)  # ... where the noise goes on
        # The SNR is the speech's while it speaks: its power over the envelope's share, against the noise.
        speaking = np.mean(env.astype(np.float64) ** 2)
        snr = 10 * np.log10(np.mean(target.astype(np.float64) ** 2) / speaking / np.mean(noise**2))
        assert abs(snr - 10.0) < 0.05, (seed, snr)
    assert len(envs) == 6
    alone = Mixer(tiny_corpus, "train", replace(dry, p_pause=1.0, p_speech_free=1.0), seed=3).example()
    assert not alone[1].any() and rms(alone[0]) > 1e-4  # noise alone, at a level of the mixture range


def test_noise_augmentation_slides_the_spectrum_adds_a_room_and_is_only_on_when_asked(tiny_corpus, tmp_path):
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(8000) / C.SAMPLE_RATE).astype(np.float32)  # a short file: looped
    for factor in (0.6, 1.5):
        y = speed_noise(tone, 16000, factor, rng)
        assert y.shape == (16000,) and np.isfinite(y).all()
        spec = np.abs(np.fft.rfft(y[:8192] * np.hanning(8192)))
        assert abs(np.argmax(spec) * C.SAMPLE_RATE / 8192 - 1000.0 * factor) < 10.0, factor
    # In a room a click train gains a tail; the output keeps the level and the steady-state length.
    clicks = np.zeros(20000, np.float32)
    clicks[::1000] = 1.0
    rir = np.exp(-np.arange(2000) / 300.0).astype(np.float32) * rng.standard_normal(2000).astype(np.float32)
    wet = reverberate_noise(clicks, rir)
    assert wet.shape == (20000 - 2000 + 1,)
    assert abs(20 * np.log10(rms(wet) / rms(clicks))) < 0.5
    assert np.mean(np.abs(wet) > 1e-3) > 0.3 > np.mean(np.abs(clicks) > 1e-3)
    # A copy of the tiny corpus with one training room (speech stays dry: p_reverb 0).
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    sf.write(corpus / "rir.wav", rir, C.SAMPLE_RATE, subtype="FLOAT")
    (corpus / "rirs.csv").write_text("path,split,source,licence\nrir.wav,train,gen,generated\n")
    dry = MixConfig(seconds=1.0, p_clean=0.0, p_reverb=0.0)
    # Off by default: the fixed validation/test sets do not change when the option exists.
    base = Mixer(corpus, "train", dry, seed=7).example()
    again = Mixer(corpus, "train", replace(dry, p_noise_speed=0.0, p_noise_reverb=0.0), seed=7).example()
    np.testing.assert_array_equal(base[0], again[0])
    for on in ({"p_noise_speed": 1.0, "p_procedural": 0.0, "p_babble": 0.0}, {"p_noise_reverb": 1.0}):
        aug = Mixer(corpus, "train", replace(dry, **on), seed=7).example()
        # The same clean target (only the random level of the mixture differs).
        np.testing.assert_allclose(aug[1] / np.abs(aug[1]).max(), base[1] / np.abs(base[1]).max(), atol=1e-5)
        assert not np.array_equal(base[0], aug[0]), on


def test_a_few_training_steps_reduce_the_loss(tiny_corpus):
    torch.manual_seed(0)
    m = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=0)
    batch = collate([m.example() for _ in range(4)])
    net = ThunderNet(NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        gen.manual_seed(0)  # same t and z each step: the loss on this batch must fall
        loss = train.training_step(net, *batch, 0.3, gen, autocast=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_si_sdr_term_is_scale_invariant_and_band_limited():
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(2, 8000, generator=g) * 0.1
    x0 = dsp.analyse(clean)
    full = train.band_weight(torch.tensor([C.N_BINS, C.N_BINS]))
    perfect = train.neg_si_sdr(x0, x0, full, 8000)
    assert perfect < -60  # the loss is minus SI-SDR in dB
    # An estimate 6 dB too quiet in the waveform (x0 compressed by 0.5 ** 0.5) scores the same.
    assert train.neg_si_sdr(x0 * 0.5**C.ALPHA, x0, full, 8000) < -60
    noisy_est = x0 + 0.05 * torch.randn(x0.shape, generator=g)
    worse = train.neg_si_sdr(noisy_est, x0, full, 8000)
    assert worse > perfect + 20
    # Error confined to the bins above a source's band edge is not counted for that source.
    band = train.band_weight(torch.tensor([200, 200]))
    above = x0.clone()
    above[:, :, 200:] += 0.3
    assert train.neg_si_sdr(above, x0, band, 8000) < -60
    assert train.neg_si_sdr(above, x0, full, 8000) > -20


def test_under_estimate_costs_only_a_too_quiet_prediction():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(2, 2, C.N_BINS, 10, generator=g)
    full = train.band_weight(torch.tensor([C.N_BINS, C.N_BINS]))
    assert train.under_estimate(x0, x0, full) < 1e-9
    assert train.under_estimate(1.5 * x0, x0, full) < 1e-9  # louder: no cost
    quiet = train.under_estimate(0.5 * x0, x0, full)
    # Half the magnitude: the shortfall is the whole error, so it equals the plain MSE.
    assert torch.allclose(quiet, train.loss_fn(0.5 * x0, x0, full), rtol=1e-4)
    # Bins above the band edge do not count.
    low = x0.clone()
    low[:, :, 100:] *= 0.1
    assert train.under_estimate(low, x0, train.band_weight(torch.tensor([100, 100]))) < 1e-9


def test_multi_resolution_is_zero_only_for_the_clean_target_and_ignores_bins_above_the_band():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 2, C.N_BINS, 40, generator=g) * 0.1
    full = train.band_weight(torch.tensor([C.N_BINS, C.N_BINS]))
    length = (40 - 1) * C.HOP
    assert train.multi_resolution(x0, x0, full, length) < 1e-9
    residual = x0 + 0.01 * torch.randn(x0.shape, generator=g)
    quiet = train.multi_resolution(0.5 * x0, x0, full, length)
    assert train.multi_resolution(residual, x0, full, length) > 1e-4
    assert quiet > 1e-4
    # What lies above each source's band edge costs nothing, as in the MSE.
    above = x0.clone()
    above[:, :, 200:] += 0.3
    assert train.multi_resolution(above, x0, train.band_weight(torch.tensor([200, 200])), length) < 1e-9
    assert train.multi_resolution(above, x0, full, length) > 1e-3


def test_training_step_with_the_extra_loss_terms_has_finite_gradients(tiny_corpus):
    torch.manual_seed(0)
    m = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=0)
    batch = collate([m.example() for _ in range(2)])
    net = ThunderNet(NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1))
    gen = torch.Generator().manual_seed(0)
    plain = train.training_step(net, *batch, 0.3, gen, autocast=False)
    gen.manual_seed(0)
    both = train.training_step(net, *batch, 0.3, gen, autocast=False, sisdr_weight=1e-3, under_weight=1.0,
                               mr_weight=3e-3)
    assert both.item() != plain.item()
    both.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("cfg", [NetConfig(), NetConfig(frame_hidden=32, bin_hidden=8), NetConfig(line_frames=6),
                                 NetConfig(line_frames=6, df_past=3)],
                         ids=["default", "frame-bin-gru", "lines", "lines-deep-filter"])
def test_export_matches_pytorch_and_streams(tmp_path, cfg):
    torch.manual_seed(0)
    net = ThunderNet(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = export_onnx(net, tmp_path / "m.onnx")
    sess = _session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    for k in C.META_KEYS:
        assert k in meta
    shapes = json.loads(meta["thunder.state_shapes"])
    T = 40
    x = torch.randn(2, 2, C.N_BINS, T) * 0.3
    y = torch.randn(2, 2, C.N_BINS, T) * 0.3
    t = torch.tensor([1.0, 0.4])
    with torch.no_grad():
        ref = net.offline(x, y, t).numpy()
    feeds = {C.INPUT_XT: x.numpy(), C.INPUT_Y: y.numpy(), C.INPUT_T: t.numpy()}
    for k, s in shapes.items():
        feeds[k] = np.zeros([2, *s[1:]], np.float32)
    off = sess.run([C.OUTPUT_X0], feeds)[0]
    assert np.abs(off - ref).max() <= 1e-4
    # streaming: 1-frame chunks with carried state give the offline output
    outs = []
    names = [o.name for o in sess.get_outputs()]
    st = {k: v for k, v in feeds.items() if k.startswith("state_in_")}
    for f in range(T):
        r = sess.run(names, {C.INPUT_XT: feeds[C.INPUT_XT][..., f : f + 1], C.INPUT_Y: feeds[C.INPUT_Y][..., f : f + 1],
                             C.INPUT_T: feeds[C.INPUT_T], **st})
        outs.append(r[0])
        st = {n.replace("state_out_", "state_in_"): v for n, v in zip(names[1:], r[1:])}
    assert np.abs(np.concatenate(outs, axis=3) - off).max() <= 1e-4


def single_axis_move(perm):
    """A permutation that moves one axis and keeps the others in order: ONNX Runtime's fast path."""
    n = len(perm)
    return any(list(perm) == [a for a in range(n) if a != i][:j] + [i] + [a for a in range(n) if a != i][j:]
               for i in range(n) for j in range(n))


def test_every_transpose_left_after_onnx_runtimes_optimiser_moves_one_axis(tmp_path):
    """The general permute into the bottleneck ran ~10x slower than two single-axis moves (8 % of
    a pass), and ONNX Runtime's optimiser fuses adjacent transposes back into one, silently."""
    import onnx

    assert single_axis_move([0, 2, 3, 1]) and single_axis_move([1, 0, 2]) and not single_axis_move([2, 0, 3, 1])
    net = ThunderNet(NetConfig(frame_hidden=16, line_frames=4)).eval()
    path = export_onnx(net, tmp_path / "m.onnx")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    perms = [list(a.ints) for n in onnx.load(so.optimized_model_filepath).graph.node if n.op_type == "Transpose"
             for a in n.attribute if a.name == "perm"]
    assert perms and all(single_axis_move(p) for p in perms), perms


@pytest.mark.parametrize("cfg", [NetConfig(), NetConfig(frame_hidden=16, bin_hidden=8), NetConfig(line_frames=4),
                                 NetConfig(df_past=2)],
                         ids=["default", "frame-bin-gru", "lines", "deep-filter"])
def test_safetensors_names_are_onnx_initializers(tmp_path, cfg):
    import onnx
    from safetensors.numpy import load_file

    net = ThunderNet(cfg).eval()  # fresh init: many identical tensors (would be de-duplicated)
    export_onnx(net, tmp_path / "m.onnx")
    export_safetensors(net, tmp_path / "m.safetensors")
    inits = {i.name: i for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    st = load_file(str(tmp_path / "m.safetensors"))
    assert set(st) == set(weights_for_merge(net))
    for k, v in st.items():
        assert k in inits, k
        assert np.array_equal(onnx.numpy_helper.to_array(inits[k]), v)


def test_lookahead_streaming_equals_offline():
    torch.manual_seed(1)
    net = ThunderNet(NetConfig(lookahead=1)).eval()
    T = 12
    x, y, t = torch.randn(1, 2, C.N_BINS, T), torch.randn(1, 2, C.N_BINS, T), torch.tensor([0.5])
    with torch.no_grad():
        off = net.offline(x, y, t)
        st = net.zero_states(1)
        outs = []
        pad = torch.zeros(1, 2, C.N_BINS, 1)
        xs, ys = torch.cat([x, pad], 3), torch.cat([y, pad], 3)
        for f in range(T + 1):
            r = net(xs[..., f : f + 1], ys[..., f : f + 1], t, *st)
            outs.append(r[0])
            st = list(r[1:])
    assert torch.allclose(torch.cat(outs, 3)[..., 1:], off, atol=1e-5)


def test_second_stage_conditioning_mixes_the_regression_output():
    torch.manual_seed(0)
    net = ThunderNet(NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1))
    net.train()
    y = torch.randn(6, 2, C.N_BINS, 10) * 0.3
    out = train.second_stage_condition(net, y, torch.ones(y.shape[0], dtype=torch.bool), autocast=False)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        ref = C.INTERP_WEIGHT * net.offline(y, y, torch.ones(6)) + (1 - C.INTERP_WEIGHT) * y
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(train.second_stage_condition(net, y, torch.zeros(y.shape[0], dtype=torch.bool), autocast=False), y)


def test_sample_t_puts_the_tmax_share_at_t_max_and_leaves_the_rest_as_before():
    old = train.sample_t(4000, 0.3, torch.Generator().manual_seed(3))
    new = train.sample_t(4000, 0.3, torch.Generator().manual_seed(3), tmax_frac=0.25)
    assert not old[1].any()  # tmax_frac = 0: no example at T_MAX
    at_one, at_tmax = new[0] == 1.0, new[1]
    assert torch.equal(at_one, old[0] == 1.0)  # the regression share is drawn exactly as before
    assert torch.all(new[0][at_tmax] == C.T_MAX) and not (at_one & at_tmax).any()
    assert abs(at_tmax.float().mean().item() - 0.25) < 0.03
    rest = ~(at_one | at_tmax)
    assert torch.equal(new[0][rest], old[0][rest])  # the uniform draws are unchanged
    assert torch.all((new[0][rest] >= C.T_MIN) & (new[0][rest] < C.T_MAX))


def trained_tiny(frames, **cfg_changes):
    """A tiny network after two AdamW steps on random frames: (cfg, net, opt, x, y, its checkpoint)."""
    torch.manual_seed(0)
    cfg = NetConfig(**{**NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1).to_dict(), **cfg_changes})
    net = ThunderNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.randn(2, 2, C.N_BINS, frames), torch.randn(2, 2, C.N_BINS, frames)
    for _ in range(2):
        opt.zero_grad()
        net.offline(x, y, torch.tensor([0.5, 1.0])).pow(2).mean().backward()
        opt.step()
    return cfg, net, opt, x, y, {"model": net.state_dict(), "opt": opt.state_dict(), "net_config": cfg.to_dict()}


@pytest.mark.parametrize("block", ["frame_hidden", "bin_hidden"])
def test_grow_keeps_the_function_and_the_optimiser_state(block):
    cfg, net, opt, x, y, ck = trained_tiny(8)
    grown, gopt, lr_mult = train.grow(ck, NetConfig(**{**cfg.to_dict(), block: 24}), 1e-3, new_lr_mult=4.0)
    prefix = {"frame_hidden": "frame.", "bin_hidden": "bin."}[block]
    assert lr_mult == {prefix: 4.0}
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in net.parameters())
    net.eval(), grown.eval()
    with torch.no_grad():
        t = torch.tensor([0.3, 1.0])
        assert torch.equal(grown.offline(x, y, t), net.offline(x, y, t))
    old = dict(net.named_parameters())
    by_param = {p: name for name, p in grown.named_parameters()}
    for g in gopt.param_groups:
        for p in g["params"]:
            name = by_param[p]
            # the new block is its own group with the multiplier; the rest keep theirs and their moments
            assert g["lr_mult"] == (4.0 if name.startswith(prefix) else 1.0)
            if name in old:
                assert torch.equal(gopt.state[p]["exp_avg_sq"], opt.state[old[name]]["exp_avg_sq"])
            else:
                assert p not in gopt.state
    # growing a grown network again keeps both groups' moments in the right places
    gopt.zero_grad()
    grown.train()
    grown.offline(x, y, torch.tensor([0.5, 1.0])).pow(2).mean().backward()
    gopt.step()
    ck2 = {"model": grown.state_dict(), "opt": gopt.state_dict(), "net_config": grown.cfg.to_dict(), "lr_mult": lr_mult}
    other = "bin_hidden" if block == "frame_hidden" else "frame_hidden"
    again, aopt, mult2 = train.grow(ck2, NetConfig(**{**grown.cfg.to_dict(), other: 8}), 1e-3)
    assert mult2 == lr_mult
    prev = dict(grown.named_parameters())
    for name, p in again.named_parameters():
        if name in prev:
            assert torch.equal(aopt.state[p]["exp_avg"], gopt.state[prev[name]]["exp_avg"])


@pytest.mark.parametrize("field", ["frame_hidden", "time_hidden", "bin_hidden"])
def test_widening_a_gru_keeps_the_function_and_lets_the_new_units_learn(field):
    # a network that already has every GRU, trained so that every tensor (proj_out too) is non-zero
    cfg, net, opt, x, y, ck = trained_tiny(8, frame_hidden=12, bin_hidden=4)
    assert net.frame.proj_out.weight.abs().sum() > 0 and net.bin.proj_out.weight.abs().sum() > 0
    old_h = getattr(net.cfg, field)
    grown, gopt, _ = train.grow(ck, NetConfig(**{**net.cfg.to_dict(), field: 2 * old_h}), 1e-3)
    gru = {"frame_hidden": "frame.gru.", "time_hidden": "dp.0.gru_t.", "bin_hidden": "bin.gru."}[field]
    # the bin integrator's recurrent weights are zero buffers: its input weights carry the gates
    w_name = gru + ("weight_ih_l0" if field == "bin_hidden" else "weight_hh_l0")
    w_old, w_new = net.state_dict()[w_name], grown.state_dict()[w_name]
    cols = w_old.shape[1]
    for g in range(3):  # each gate's block sits at its own offset in the wider stack
        assert torch.equal(w_new[g * 2 * old_h : g * 2 * old_h + old_h, :cols], w_old[g * old_h : (g + 1) * old_h])
        assert not w_new[g * 2 * old_h : g * 2 * old_h + old_h, cols:].any()  # old units ignore new ones
        assert w_new[g * 2 * old_h + old_h : (g + 1) * 2 * old_h].abs().sum() > 0  # new units have weights
    if field == "bin_hidden":
        assert not grown.state_dict()[gru + "weight_hh_l0"].any()
    net.eval(), grown.eval()
    with torch.no_grad():
        t = torch.tensor([0.3, 1.0])
        assert torch.allclose(grown.offline(x, y, t), net.offline(x, y, t), atol=1e-6)
    old = dict(net.named_parameters())
    by_param = {p: name for name, p in grown.named_parameters()}
    for g in gopt.param_groups:
        for p in g["params"]:
            name = by_param[p]
            m_old, m_new = opt.state[old[name]]["exp_avg_sq"], gopt.state[p]["exp_avg_sq"]
            assert m_new.shape == p.shape
            assert torch.equal(train.carry_over(name, m_old, torch.zeros_like(p), train.recurrent_widths(
                net.cfg, grown.cfg)), m_new)
    # one step moves the readers' new columns: the new units are not stuck at zero output
    grown.train()
    gopt.zero_grad()
    grown.offline(x, y, torch.tensor([0.5, 1.0])).pow(2).mean().backward()
    reader = {"frame_hidden": "frame.proj_out.weight", "time_hidden": "dp.0.proj_t.weight",
              "bin_hidden": "bin.proj_out.weight"}[field]
    assert dict(grown.named_parameters())[reader].grad[:, old_h:].abs().sum() > 0


def test_grow_lookahead_delays_the_same_function_and_keeps_the_moments():
    cfg, net, opt, x, y, ck = trained_tiny(9)
    L = 2
    grown, gopt, _ = train.grow(ck, NetConfig(**{**cfg.to_dict(), "lookahead": L}), 1e-3)
    net.eval(), grown.eval()
    with torch.no_grad():
        t = torch.tensor([0.3, 1.0])
        z = torch.zeros(2, 2, C.N_BINS, L)
        # the grown network sees L frames further ahead through taps that start at zero: its output
        # for frame f is the old network's for frame f (run on the same frames, L zero frames earlier)
        before = net.offline(torch.cat([z, x], 3), torch.cat([z, y], 3), t)[..., L:]
        # (not bit-equal: the magnitude features of the L zero frames are sqrt(1e-8), the states' 0)
        assert (grown.offline(x, y, t) - before).abs().max() < 2e-4
        assert (grown.offline(x, y, t) - net.offline(x, y, t)).abs().max() > 1e-2  # the delay is real
    w_old = dict(net.named_parameters())[train.LOOKAHEAD_KERNEL]
    w_new = dict(grown.named_parameters())[train.LOOKAHEAD_KERNEL]
    assert w_new.shape[2] == w_old.shape[2] + L
    st_old, st_new = opt.state[w_old], gopt.state[w_new]
    for k in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(st_new[k][:, :, : w_old.shape[2]], st_old[k])
        assert not st_new[k][:, :, w_old.shape[2] :].any()
    with pytest.raises(SystemExit, match="only add look-ahead"):
        train.grow({**ck, "model": grown.state_dict(), "opt": gopt.state_dict(), "net_config": grown.cfg.to_dict()},
                   cfg, 1e-3)


def compressed_stft(wave):
    return dsp.analyse(torch.from_numpy(wave.astype(np.float32))[None])


def test_line_canceller_finds_a_steady_line_and_predicts_it():
    from thunder_train.net import LineCanceller

    w = 32
    hist = w + LineCanceller.LAG - 1
    n = C.SAMPLE_RATE * 2
    k = np.arange(n) / C.SAMPLE_RATE
    rng = np.random.default_rng(0)
    tone = compressed_stft(0.1 * np.sin(2 * np.pi * 1013.0 * k))  # off a bin centre
    noise = compressed_stft(0.1 * rng.standard_normal(n))
    lines = LineCanceller(w)
    line_bin = int(round(1013.0 / (C.SAMPLE_RATE / C.N_FFT)))
    for y, steady in ((tone, True), (noise, False)):
        feats, pred, state = lines(y, torch.zeros(1, 2, C.N_BINS, hist))
        coherence = feats[0, 0, line_bin, 2 * w : -2]  # after the window has filled; away from the edge
        err = (pred - y)[0, :, line_bin, 2 * w : -2].norm(dim=0) / y[0, :, line_bin, 2 * w : -2].norm(dim=0)
        if steady:  # the line turns by the same angle every hop: coherent and predicted
            assert coherence.min() > 0.99 and err.max() < 0.05
            assert (feats[0, 1, line_bin, 2 * w : -2] < 0.05 * y[0, :, line_bin, 2 * w : -2].norm(dim=0)).all()
        else:  # noise's angle is random from window to window: incoherent, not predicted
            assert coherence.mean() < 0.3 and err.mean() > 1.0
        assert torch.equal(state, y[..., -hist:])


def test_grow_line_canceller_keeps_the_function_and_pads_the_moments():
    cfg, net, opt, x, y, ck = trained_tiny(10)
    grown, gopt, _ = train.grow(ck, NetConfig(**{**cfg.to_dict(), "line_frames": 4}), 1e-3)
    net.eval(), grown.eval()
    with torch.no_grad():
        t = torch.tensor([0.3, 1.0])
        assert (grown.offline(x, y, t) - net.offline(x, y, t)).abs().max() < 1e-6
    old, new = dict(net.named_parameters()), dict(grown.named_parameters())
    for name, shape_dim in ((train.LOOKAHEAD_KERNEL, 1), ("dec.3.conv.weight", 0), ("dec.3.conv.bias", 0)):
        assert new[name].shape[shape_dim] > old[name].shape[shape_dim]
        cut = tuple(slice(0, s) for s in old[name].shape)
        for k in ("exp_avg", "exp_avg_sq"):
            moment = gopt.state[new[name]][k]
            assert torch.equal(moment[cut], opt.state[old[name]][k])
            rest = moment.clone()
            rest[cut] = 0
            assert not rest.any()  # zero where it grew
    # the new inputs and the gain learn: a training step moves them off zero
    grown.train()
    gopt.zero_grad()
    grown.offline(x, y, torch.tensor([0.5, 1.0])).pow(2).mean().backward()
    gopt.step()
    assert new[train.LOOKAHEAD_KERNEL][:, net.in_features():].abs().sum() > 0
    with pytest.raises(SystemExit, match="only widen"):
        train.grow({**ck, "model": grown.state_dict(), "opt": gopt.state_dict(), "net_config": grown.cfg.to_dict()},
                   NetConfig(**{**cfg.to_dict(), "line_frames": 4, "enc_channels": [4, 8, 12, 16]}), 1e-3)


def test_deep_filter_weighs_the_past_frames_of_y_and_keeps_them_as_state():
    net = ThunderNet(NetConfig(df_past=2))
    y, history = torch.randn(1, 2, C.N_BINS, 5), torch.randn(1, 2, C.N_BINS, 2)
    m = torch.zeros(1, net.df_channel + 4, C.N_BINS, 5)
    m[:, net.df_channel + 1] = 2.0  # H_1 = 2j
    m[:, net.df_channel + 2] = 0.5  # H_2 = 0.5
    out, state = net.deep_filter(torch.zeros(1, 2, C.N_BINS, 5), m, y, history)
    frames = torch.cat([history, y], dim=3)
    y1, y2 = frames[..., 1:-1], frames[..., :-2]  # y[t - 1], y[t - 2]
    want = torch.cat([-2.0 * y1[:, 1:2], 2.0 * y1[:, 0:1]], dim=1) + 0.5 * y2
    assert torch.allclose(out, want, atol=1e-6)
    assert torch.equal(state, frames[..., -2:])


def test_grow_deep_filter_keeps_the_function_and_its_taps_learn():
    cfg, net, opt, x, y, ck = trained_tiny(10)
    grown, gopt, _ = train.grow(ck, NetConfig(**{**cfg.to_dict(), "df_past": 3}), 1e-3)
    net.eval(), grown.eval()
    with torch.no_grad():
        t = torch.tensor([0.3, 1.0])
        assert (grown.offline(x, y, t) - net.offline(x, y, t)).abs().max() < 1e-6
    w = dict(grown.named_parameters())["dec.3.conv.weight"]
    assert w.shape[0] == 2 * (net.df_channel + 6) and not w[2 * net.df_channel :].any()
    grown.train()
    gopt.zero_grad()
    grown.offline(x, y, torch.tensor([0.5, 1.0])).pow(2).mean().backward()
    gopt.step()
    assert w[2 * net.df_channel :].abs().sum() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the error path does not apply")
def test_asking_for_a_gpu_without_one_is_a_clear_error(tiny_corpus, tmp_path):
    with pytest.raises(SystemExit, match="PyTorch sees no GPU"):
        train.main(["--corpus", str(tiny_corpus), "--run", str(tmp_path / "gpu"), "--steps", "1", "--batch", "2",
                    "--seconds", "0.5", "--workers", "0", "--device", "cuda"])
    assert not (tmp_path / "gpu" / "last.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (train.py --device cuda)")
def test_a_training_step_on_the_gpu_matches_the_cpu(tiny_corpus):
    m = Mixer(tiny_corpus, "train", MixConfig(seconds=1.0), seed=0)
    noisy, clean, band = collate([m.example() for _ in range(2)])
    torch.manual_seed(0)
    cpu_net = ThunderNet(NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1, frame_hidden=16))
    gpu_net = copy.deepcopy(cpu_net).cuda()
    losses, grads = [], []
    for net, dev in ((cpu_net, "cpu"), (gpu_net, "cuda")):
        gen = torch.Generator().manual_seed(0)  # the draws come from the CPU generator on both devices
        loss = train.training_step(net, noisy.to(dev), clean.to(dev), band.to(dev), 0.3, gen, autocast=False,
                                   stage2_frac=0.3, under_weight=0.5, mr_weight=3e-3)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten().cpu() for p in net.parameters() if p.grad is not None]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert torch.allclose(grads[1], grads[0], rtol=1e-2, atol=1e-6)


def test_fine_tuning_can_continue_the_optimiser_moments(tiny_corpus, tmp_path):
    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1})
    common = ["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0",
              "--threads", "1", "--val-every", "1000", "--no-bf16"]
    train.main([*common, "--run", str(tmp_path / "base"), "--steps", "2", "--net", net])

    def adam_steps(run):
        return sorted({float(s["step"]) for s in torch.load(run / "last.pt", weights_only=False)["opt"]["state"].values()})

    for flag, expected in (([], [1.0]), (["--init-opt"], [3.0])):
        run = tmp_path / f"ft{len(flag)}"
        train.main([*common, "--run", str(run), "--steps", "1", "--init", str(tmp_path / "base" / "last.pt"), *flag])
        assert adam_steps(run) == expected, flag  # fresh moments start at 0; continued ones at the base's 2
    assert adam_steps(tmp_path / "base") == [2.0]
    # the fine-tune's training-data record names its start's steps as well as its own, and keeps both on resume
    record = f"Thunder corpus ({tiny_corpus}), 2 steps x batch 2 x 0.5s; then Thunder corpus ({tiny_corpus}), %d steps x batch 2 x 0.5s"
    assert torch.load(tmp_path / "ft0" / "last.pt", weights_only=False)["training_data"] == record % 1
    train.main([*common, "--run", str(tmp_path / "ft0"), "--steps", "2", "--init", str(tmp_path / "base" / "last.pt")])
    assert torch.load(tmp_path / "ft0" / "last.pt", weights_only=False)["training_data"] == record % 2
    # --val-set: a branch validates on its parent's mixtures (the corpus may have grown since);
    # a run that already holds other mixtures refuses rather than mixing scores.
    val = tmp_path / "val.npz"
    np.savez(val, noisy=np.zeros((1, 8000), np.float32), clean=np.zeros((1, 8000), np.float32))
    train.main([*common, "--run", str(tmp_path / "branch"), "--steps", "1", "--init", str(tmp_path / "base" / "last.pt"),
                "--val-set", str(val)])
    assert (tmp_path / "branch" / "val.npz").read_bytes() == val.read_bytes()
    with pytest.raises(SystemExit, match="already holds other mixtures"):
        train.main([*common, "--run", str(tmp_path / "base"), "--steps", "3", "--val-set", str(val)])
    with pytest.raises(SystemExit, match="--init-opt"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--init-opt"])
    with pytest.raises(SystemExit, match="must not exceed 1"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--reg-frac", "0.5", "--tmax-frac", "0.6"])
    # --eq colours the general mixture only: a domain run or a non-probability is refused, not ignored.
    with pytest.raises(SystemExit, match="--eq applies to the general mixture only"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--eq", "0.5", "--domain", "reverb"])
    with pytest.raises(SystemExit, match="--eq is a probability"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--eq", "1.5"])
    with pytest.raises(SystemExit, match="--noise-aug applies to the general mixture only"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--noise-aug", "0.5", "--domain", "music"])
    with pytest.raises(SystemExit, match="--noise-aug is a probability"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--noise-aug", "-0.1"])
    with pytest.raises(SystemExit, match="--snr applies to the general mixture only"):
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--snr=-5,10", "--domain", "reverb"])
    with pytest.raises(SystemExit):  # argparse: a reversed or malformed range is a usage error
        train.main([*common, "--run", str(tmp_path / "bad"), "--steps", "1", "--snr", "10,-5"])
    assert train.snr_range("-5,10") == (-5.0, 10.0)


def test_sigterm_stops_after_the_step_and_saves(tiny_corpus, tmp_path, monkeypatch):
    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1})
    real_step, calls = train.training_step, []

    def step_then_terminate(*a, **k):
        calls.append(1)
        if len(calls) == 2:  # a `kill` arriving in the middle of the second step
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*a, **k)

    monkeypatch.setattr(train, "training_step", step_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    train.main(["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0", "--threads", "1",
                "--val-every", "1000", "--no-bf16", "--run", str(tmp_path / "run"), "--steps", "100", "--net", net])
    assert len(calls) == 2  # the second step finished, no third began
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_grow_on_the_command_line_keeps_its_lr_multiplier_and_exports_ema_or_raw(tiny_corpus, tmp_path):
    from safetensors.numpy import load_file

    from thunder_train import export

    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1})
    run = tmp_path / "run"
    common = ["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0", "--threads", "1",
              "--val-every", "1000", "--no-bf16", "--run", str(run), "--steps", "10"]
    train.main([*common, "--stop-after", "2", "--net", net])
    train.main([*common, "--stop-after", "2", "--grow", '{"bin_hidden": 4}', "--grow-lr-mult", "3"])
    train.main([*common, "--stop-after", "1"])  # a plain resume keeps the groups and their multipliers
    ck = torch.load(run / "last.pt", weights_only=False)
    assert ck["step"] == 5 and ck["lr_mult"] == {"bin.": 3.0}
    groups = ck["opt"]["param_groups"]
    assert [g["lr_mult"] for g in groups] == [1.0, 3.0]
    assert groups[1]["lr"] == pytest.approx(3 * groups[0]["lr"])
    assert ck["model"]["bin.proj_out.weight"].abs().max() > 0  # the grown block trains...
    assert torch.count_nonzero(ck["model"]["bin.gru.weight_hh_l0"]) == 0  # ...its recurrent weights stay zero
    assert not torch.equal(ck["ema"]["bin.proj_out.weight"], ck["model"]["bin.proj_out.weight"])
    for flag, key in (([], "ema"), (["--raw"], "model")):
        out = tmp_path / f"m{len(flag)}.onnx"
        export.main(["--ckpt", str(run / "last.pt"), "--out", str(out), *flag])
        st = load_file(str(out.with_suffix(".safetensors")))
        assert np.array_equal(st["bin.proj_out.weight"], ck[key]["bin.proj_out.weight"].numpy()), flag


def test_a_fine_tuning_run_can_start_from_a_widened_copy_of_its_init(tiny_corpus, tmp_path):
    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1, "frame_hidden": 8})
    common = ["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0", "--threads", "1",
              "--val-every", "1000", "--no-bf16", "--steps", "10"]
    train.main([*common, "--run", str(tmp_path / "base"), "--stop-after", "2", "--net", net])
    init = ["--init", str(tmp_path / "base" / "last.pt"), "--init-opt", "--stop-after", "1"]
    train.main([*common, "--run", str(tmp_path / "plain"), *init])
    train.main([*common, "--run", str(tmp_path / "wide"), *init, "--grow", '{"time_hidden": 32, "frame_hidden": 16}'])
    plain = torch.load(tmp_path / "plain" / "last.pt", weights_only=False)
    wide = torch.load(tmp_path / "wide" / "last.pt", weights_only=False)
    assert wide["step"] == 1 and wide["net_config"]["time_hidden"] == 32 and wide["net_config"]["frame_hidden"] == 16
    # Same draws, same function, and the new units feed nothing yet: the old weights take the same step
    # as in the plain fine-tune (the gradient clip sees the new units' gradients too, so not bit-equal)
    for name in ("enc.0.conv.weight", "dp.0.proj_t.weight", "frame.proj_out.weight"):
        old = plain["model"][name]
        assert torch.allclose(wide["model"][name][tuple(slice(0, n) for n in old.shape)], old, atol=1e-6), name
    assert wide["model"]["dp.0.proj_t.weight"][:, 16:].abs().sum() > 0  # the new units' readers learn


def test_score_val_scores_a_checkpoint_as_training_logs_it(tiny_corpus, tmp_path, capsys):
    from thunder_train import score_val

    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1})
    run = tmp_path / "run"
    train.main(["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0", "--threads", "1",
                "--no-bf16", "--run", str(run), "--steps", "2", "--val-every", "2", "--val-n", "2", "--net", net])
    logged = list(csv.DictReader(open(run / "log.csv")))[-1]
    capsys.readouterr()
    score_val.main(["--val-set", str(run / "val.npz"), "--threads", "1", str(run / "last.pt")])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["step"] == 2
    for k in ("pesq_s0", "pesq_s1", "score"):
        assert abs(row[k] - float(logged[k])) < 1e-3, (k, row[k], logged[k])


def test_snr_sweep_scores_every_system_on_the_same_mixtures(tiny_corpus, tmp_path):
    from thunder_train import snr_sweep

    torch.manual_seed(0)
    export_onnx(ThunderNet(NetConfig(enc_channels=[8, 8, 12, 16], time_hidden=16, dp_blocks=1)).eval(),
                tmp_path / "tiny.onnx")
    out = tmp_path / "sweep"
    snr_sweep.main(["--model", str(tmp_path / "tiny.onnx"), "--snrs", "0,30", "--n", "2", "--steps", "0,1",
                    "--peers", "none", "--corpus", str(tiny_corpus), "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    assert list(res) == ["0.0", "30.0"]
    for rows in res.values():
        assert sorted(rows) == ["noisy", "tiny steps=0", "tiny steps=1"]
        assert all(len(v) == 2 for v in rows.values())
    # same speech and noise, 30 dB less of it: the input scores higher
    assert np.nanmean(res["30.0"]["noisy"]) > np.nanmean(res["0.0"]["noisy"]) + 0.5
    assert "| tiny steps=1 |" in out.with_suffix(".md").read_text()


def test_training_mixtures_depend_on_the_seed_only_not_on_the_process(tiny_corpus, monkeypatch):
    from thunder_train.data import MixDataset

    def first(seed):
        return next(iter(MixDataset(str(tiny_corpus), "train", MixConfig(seconds=0.5), seed=seed)))

    a = first(3)
    monkeypatch.setattr(os, "getpid", lambda: 12345)  # as if another run (another process) drew them
    b, other = first(3), first(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], other[0])


def test_fit_loss_pairs_checkpoints_on_the_same_batches_and_draws(tiny_corpus, tmp_path, capsys):
    from thunder_train import fit_loss

    net = json.dumps({"enc_channels": [8, 8, 12, 16], "time_hidden": 16, "dp_blocks": 1})
    common = ["--corpus", str(tiny_corpus), "--batch", "2", "--seconds", "0.5", "--workers", "0", "--threads", "1",
              "--val-every", "1000", "--no-bf16", "--steps", "10", "--run", str(tmp_path / "run"), "--net", net]
    train.main([*common, "--stop-after", "1"])
    shutil.copyfile(tmp_path / "run" / "last.pt", tmp_path / "one.pt")
    train.main([*common, "--stop-after", "3"])
    capsys.readouterr()
    one, four = str(tmp_path / "one.pt"), str(tmp_path / "run" / "last.pt")
    fit_loss.main(["--corpus", str(tiny_corpus), "--splits", "train,val", "--batches", "3", "--batch", "2",
                   "--seconds", "0.5", one, one, four])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(r["split"], r["step"]) for r in rows] == [("train", 1), ("train", 1), ("train", 4)] + [
        ("val", 1), ("val", 1), ("val", 4)]
    assert "minus_first" not in rows[0] and rows[1]["minus_first"] == 0.0  # same batches, same draws
    assert rows[2]["minus_first"] != 0.0 and rows[2]["loss"] == pytest.approx(rows[0]["loss"] + rows[2]["minus_first"], rel=1e-4)
