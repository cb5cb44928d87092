"""Train ThunderNet (resumable). On the GPU when PyTorch sees one (--device), else the CPU; bf16
autocast where the device computes bf16 natively.

    python -m thunder_train.train --corpus ../.cache/corpus --run runs/base --steps 200000

Re-running the same command resumes from <run>/last.pt. <run>/best.pt is the EMA checkpoint with
the best validation score (mean PESQ-WB over --steps 0 and 1); <run>/log.csv has the history.
SIGTERM to the main process (`kill PID`, not `pkill -f`, which also hits the DataLoader workers) or
Ctrl-C with --workers 0 stops after the current step and saves <run>/last.pt.
"""

import argparse
import csv
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import contract as C
from . import dsp, sampler
from .data import MixConfig, MixDataset, collate
from .domains import domain_set
from .metrics import pesq_wb, si_sdr
from .net import NetConfig, ThunderNet, macs_per_frame


def bf16_is_fast():
    """bf16 autocast pays only with native bf16 matrix units (AMX or AVX512-BF16): measured 1.06 vs
    1.31 s/step on an AMX Xeon, but 26 vs 3.2 s/step on an AVX2-only AMD EPYC (both beside the corpus's
    Kokoro stage), where it is emulated."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def sample_t(b, reg_frac, gen, tmax_frac=0.0):
    """Bridge times: a fraction at t = 1 (the regression pass), a fraction tmax_frac at exactly T_MAX
    (the time of `--steps 1`'s one reverse step), the rest U(T_MIN, T_MAX). Returns (t, at_tmax).

    One uniform draw decides all three, so tmax_frac = 0 draws exactly what it did before it existed.
    """
    t = C.T_MIN + (C.T_MAX - C.T_MIN) * torch.rand(b, generator=gen)
    u = torch.rand(b, generator=gen)
    at_tmax = (u >= reg_frac) & (u < reg_frac + tmax_frac)
    t = torch.where(at_tmax, torch.full_like(t, C.T_MAX), t)
    return torch.where(u < reg_frac, torch.ones_like(t), t), at_tmax


def band_weight(band_bin, n_bins=C.N_BINS):
    f = torch.arange(n_bins, device=band_bin.device).unsqueeze(0)
    return (f < band_bin.unsqueeze(1)).float()  # [B, F]


def band_mean(err, w):
    """Mean of a per-bin squared error [B, F, T] over the bins below each source's band edge
    (w [B, F]), per real channel (the 2 of re/im), so magnitude terms share the MSE's scale."""
    w = w.unsqueeze(-1).expand_as(err)
    return (err * w).sum() / (w.sum() * 2 + 1e-9)


def loss_fn(x0_hat, x0, w):
    """MSE in the compressed complex STFT domain, ignoring bins above the source bandwidth."""
    return band_mean((x0_hat - x0).pow(2).sum(1), w)


def under_estimate(x0_hat, x0, w):
    """Squared shortfall of the predicted compressed magnitude below the clean one (band-masked MSE
    normalisation). Added to the MSE it makes a too-quiet bin cost more than a too-loud one.

    Why: on the validation mixtures and the real dev recordings, raising the output's magnitudes
    toward y's (r^-0.25 with r = |x0_hat| / |y|) or mixing 10 % of y back raises PESQ-WB, and lowering
    them lowers it (runs/lines step 3279): the network over-suppresses where it is unsure.
    """
    short = (x0.pow(2).sum(1).sqrt() - x0_hat.pow(2).sum(1).add(1e-12).sqrt()).clamp_min(0)  # [B, F, T]
    return band_mean(short.pow(2), w)


def band_limited_waveforms(x0_hat, x0, w, length):
    """Prediction and target as waveforms [B, length], both with the bins above each source's band
    edge (w [B, F]) zeroed, so waveform-domain terms ignore them as the MSE does."""
    m = w[:, None, :, None]
    return dsp.synthesise(x0_hat * m, length), dsp.synthesise(x0 * m, length)


def neg_si_sdr(x0_hat, x0, w, length):
    """Mean negative SI-SDR (dB) of the waveforms, both band-limited to the source bandwidth.

    Why: the MSE is taken on compressed magnitudes (|c|^0.5), so where the network is unsure it
    predicts the mean of |c|^0.5, whose square underestimates |c|: the decoded speech comes out too
    quiet and smoothed. Measured on runs/lines step 3279: mixing 10 % of y back into the output raises
    validation PESQ-WB by 0.06 and SI-SDR by 0.3 dB. A waveform term is blind to the compression.
    """
    est, ref = band_limited_waveforms(x0_hat, x0, w, length)
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    a = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + 1e-8)
    t = a * ref
    ratio = (t.pow(2).sum(-1) + 1e-8) / ((est - t).pow(2).sum(-1) + 1e-8)
    return -(10 * torch.log10(ratio)).mean()


MR_FFT_SIZES = (256, 512, 1024)  # 16, 32 and 64 ms: around the model's own 32 ms frame
MR_EXPONENT = 0.3  # flatter than the model's 0.5: a quiet residual weighs more against speech


def multi_resolution(x0_hat, x0, w, length):
    """Spectral loss at three STFT resolutions on the band-limited waveforms: per resolution, the
    squared error of |S|^0.3 plus that of the compressed complex S/|S|*|S|^0.3, mean over the three.

    Why: the MSE only sees our own 32 ms frames at |c|^0.5. In the real dev files Thunder leaves the
    noise in speech pauses 7-20 dB louder than DeepFilterNet3 below 2 kHz, and keeps narrow steady
    lines (models/README.md Results item 5). A 64 ms resolution separates a line from its
    neighbours, and the flatter 0.3 compression makes a quiet residual cost more against speech.
    """
    est, ref = band_limited_waveforms(x0_hat, x0, w, length)
    total = 0.0
    for n_fft in MR_FFT_SIZES:
        win = torch.hann_window(n_fft, device=est.device)

        def compressed(wave):
            """(|S|^0.3, S scaled to that magnitude), for the estimate and the reference alike."""
            spec = torch.stft(wave, n_fft, n_fft // 4, window=win, return_complex=True)
            mag = (spec.real.pow(2) + spec.imag.pow(2) + 1e-10).pow(MR_EXPONENT / 2)
            return mag, spec * (mag / (spec.abs() + 1e-8))

        (me, ce), (mr, cr) = compressed(est), compressed(ref)
        d = ce - cr
        total = total + (me - mr).pow(2).mean() + (d.real.pow(2) + d.imag.pow(2)).mean()
    return total / len(MR_FFT_SIZES)


@torch.no_grad()
def second_stage_condition(net, y, pick, autocast):
    """Replace the conditioning of the examples in `pick` ([B] bool) by y' = w*D(y, y, 1) + (1-w)*y.

    At inference every reverse step bridges x0 and y' (not y); this trains the network on the
    input distribution it meets there (`--stage2-frac`, and every `--tmax-frac` example).
    """
    if not pick.any():
        return y
    was_training = net.training
    net.eval()  # BatchNorm: use running statistics, do not update them
    with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=autocast):
        ys = y[pick]
        x_reg = net.offline(ys, ys, torch.ones(ys.shape[0], device=y.device)).float()
    net.train(was_training)
    y = y.clone()
    y[pick] = C.INTERP_WEIGHT * x_reg + (1.0 - C.INTERP_WEIGHT) * ys
    return y


def training_step(net, noisy, clean, band, reg_frac, gen, autocast, stage2_frac=0.0, sisdr_weight=0.0,
                  under_weight=0.0, tmax_frac=0.0, mr_weight=0.0):
    """One batch's loss: the compressed-domain MSE, plus sisdr_weight x (negative SI-SDR in dB),
    under_weight x the magnitude shortfall (under_estimate) and mr_weight x the multi-resolution
    spectral loss (multi_resolution) where those are > 0. A share stage2_frac
    of the batch, and every example drawn at T_MAX (tmax_frac), is conditioned on y'."""
    y = dsp.analyse(noisy)
    x0 = dsp.analyse(clean)
    b, dev = y.shape[0], y.device
    # Random draws come from the CPU generator `gen` on every device, so a run's draws do not
    # depend on where it trains. Draw order (stage-2 pick, then t) is the one runs were trained
    # with before tmax_frac existed.
    pick = torch.rand(b, generator=gen) < stage2_frac if stage2_frac > 0 else torch.zeros(b, dtype=torch.bool)
    t, at_tmax = sample_t(b, reg_frac, gen, tmax_frac)
    t = t.to(dev)
    y = second_stage_condition(net, y, (pick | at_tmax).to(dev), autocast)
    z = (torch.randn(x0.shape, generator=gen) * math.sqrt(0.5)).to(dev)
    x_t = sampler.bridge_sample(x0, y, t, z)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        x0_hat = net.offline(x_t, y, t)
    x0_hat = x0_hat.float()
    w = band_weight(band)
    loss = loss_fn(x0_hat, x0, w)
    if sisdr_weight > 0:
        loss = loss + sisdr_weight * neg_si_sdr(x0_hat, x0, w, noisy.shape[-1])
    if under_weight > 0:
        loss = loss + under_weight * under_estimate(x0_hat, x0, w)
    if mr_weight > 0:
        loss = loss + mr_weight * multi_resolution(x0_hat, x0, w, noisy.shape[-1])
    return loss


class Ema:
    def __init__(self, net, decay=0.999):
        self.decay = decay
        self.n = 0
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))  # warm-up: no bias toward the init
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


@torch.no_grad()
def validate(net, val, steps=(0, 1)):
    net.eval()
    scores = {}
    for n in steps:
        p, s = [], []
        for noisy, clean, _ in val:
            y = dsp.analyse(torch.from_numpy(noisy)[None])
            out = sampler.enhance(lambda xt, yy, t, pid: net.offline(xt, yy, t), y, n, seed=0)
            est = dsp.synthesise(out, len(noisy))[0].numpy()
            p.append(pesq_wb(est, clean))
            s.append(si_sdr(est, clean))
        scores[f"pesq_s{n}"] = float(np.nanmean(p))
        scores[f"sisdr_s{n}"] = float(np.mean(s))
    scores["score"] = float(np.mean([scores[f"pesq_s{n}"] for n in steps]))
    return scores


def ema_network(ck):
    """The network of a training checkpoint, with its EMA weights (what validation and export use)."""
    net = ThunderNet(NetConfig(**ck["net_config"]))
    net.load_state_dict(ck["ema"])
    return net


def load_val(path):
    """A run's validation mixtures (val.npz) as validate() takes them: [(noisy, clean, band)]."""
    v = np.load(path)
    return [(v["noisy"][i], v["clean"][i], 0) for i in range(len(v["noisy"]))]


def to_device(net, opt, ema, device):
    """Move the network, the optimiser's moments and the EMA weights to `device` (after loading,
    which happens on the CPU). Checkpoints load with map_location="cpu", so they move either way."""
    net.to(device)
    for state in opt.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":  # AdamW keeps "step" on the CPU
                state[k] = v.to(device)
    ema.shadow = {k: v.to(device) for k, v in ema.shadow.items()}


def lr_at(step, base, warmup, total):
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


GROWABLE = ("frame.", "bin.")  # blocks whose output starts at zero (net.FrameGru, net.BinGru)


def param_groups(net, lr_mult=None):
    """Parameter names per optimiser group: everything else first, then one group per prefix in
    `lr_mult` ({prefix: LR multiplier}, e.g. a block just grown that should learn faster)."""
    lr_mult = lr_mult or {}
    groups = {"": []} | {p: [] for p in lr_mult}
    for name, _ in net.named_parameters():
        groups[next((p for p in lr_mult if name.startswith(p)), "")].append(name)
    return groups


def make_optimizer(net, lr, lr_mult=None):
    params = dict(net.named_parameters())
    groups = [{"params": [params[n] for n in names], "lr_mult": (lr_mult or {}).get(p, 1.0)}
              for p, names in param_groups(net, lr_mult).items()]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)


LOOKAHEAD_KERNEL = "enc.0.conv.weight"  # its time taps grow with NetConfig.lookahead, its inputs with line_frames


def zero_pad_to(w, shape):
    """w with zeros appended at the end of every dimension that `shape` makes longer.

    This is how every grown tensor keeps the old function: the look-ahead kernel's new taps are its
    newest frames (the old taps stay on the oldest, so the network is the old one delayed, which the
    look-ahead delay line re-aligns), the first conv's new input channels are the features appended
    last, and the output layer's new channels are the last ones (the LineCanceller gain); all start at
    zero, and so do their Adam moments."""
    if tuple(w.shape) == tuple(shape):
        return w
    if len(shape) != w.dim() or any(a > b for a, b in zip(w.shape, shape)):
        raise SystemExit(f"--grow can only widen a tensor: {tuple(w.shape)} -> {tuple(shape)}")
    out = torch.zeros(shape, dtype=w.dtype)
    out[tuple(slice(0, n) for n in w.shape)] = w
    return out


def recurrent_widths(old_cfg, cfg):
    """The GRUs whose hidden size grows from `old_cfg` to `cfg`: [(gru prefix, old H, new H, feeders,
    readers)], where feeders are the linears that produce the GRU's input (their output grows with H)
    and readers the linears that read its output (their input grows with H)."""
    blocks = []
    if 0 < old_cfg.frame_hidden < cfg.frame_hidden:
        blocks.append(("frame.gru.", old_cfg.frame_hidden, cfg.frame_hidden,
                       ("frame.proj_in.", "frame.t_in."), ("frame.proj_out.",)))
    if old_cfg.time_hidden < cfg.time_hidden:
        blocks += [(f"dp.{i}.gru_t.", old_cfg.time_hidden, cfg.time_hidden, (), (f"dp.{i}.proj_t.",))
                   for i in range(min(old_cfg.dp_blocks, cfg.dp_blocks))]
    if 0 < old_cfg.bin_hidden < cfg.bin_hidden:  # its recurrent weights are zero buffers and stay zero
        blocks.append(("bin.gru.", old_cfg.bin_hidden, cfg.bin_hidden, (), ("bin.proj_out.",)))
    return blocks


def carry_over(name, w, fresh, widths):
    """Tensor `w` of the old network placed in `fresh` (the grown network's tensor of that name: its
    random init for weights, zeros for Adam moments), keeping the old function.

    Where a GRU's hidden size grows (`widths`, see recurrent_widths), a plain zero pad would shift
    the stacked gates (r, z, n) into each other's rows, so each gate's block moves on its own. The
    new units keep their fresh input and recurrent weights, so they start to move at once; what
    they feed to the old units (recurrent columns, reader columns) is zero, so the old output is
    unchanged until training moves it. Every other tensor is zero-padded (zero_pad_to)."""
    for gru, h, h_new, feeders, readers in widths:
        if name.startswith(gru):
            out = fresh.clone()
            for g in range(3):  # PyTorch and ONNX stack the gates as [r, z, n] along the rows
                rows = slice(g * h_new, g * h_new + h)
                if w.dim() == 2:
                    out[rows, : w.shape[1]] = w[g * h : (g + 1) * h]
                    out[rows, w.shape[1] :] = 0
                else:
                    out[rows] = w[g * h : (g + 1) * h]
            return out
        if name.startswith(feeders):  # new output rows = inputs of the new units
            out = fresh.clone()
            out[:h] = w
            return out
        if name.startswith(readers) and name.endswith("weight"):  # new input columns start at zero
            return zero_pad_to(w, fresh.shape)
    return zero_pad_to(w, fresh.shape)


def widen(tensors, net, old_cfg):
    """Tensors (weights or EMA, by name) of a network built from `old_cfg`, carried over to `net`'s
    shapes (see carry_over; the grown parts take `net`'s current values)."""
    fresh = net.state_dict()
    widths = recurrent_widths(old_cfg, net.cfg)
    return {k: carry_over(k, v, fresh[k], widths) if k in fresh else v for k, v in tensors.items()}


def grow(ck, cfg, lr, new_lr_mult=1.0):
    """A larger network that computes exactly what the checkpoint's did (new blocks start at zero
    output, added look-ahead taps, input features and output channels at zero), with the optimiser
    state of every carried-over parameter kept. Returns (net, optimiser, lr_mult); the new blocks
    learn at `new_lr_mult` times the schedule's LR."""
    old_mult = ck.get("lr_mult") or {}
    old_cfg = NetConfig(**ck["net_config"])
    if cfg.lookahead < old_cfg.lookahead:
        raise SystemExit(f"--grow can only add look-ahead: {old_cfg.lookahead} -> {cfg.lookahead} frames")
    if any(getattr(cfg, k) < getattr(old_cfg, k) for k in ("frame_hidden", "time_hidden", "bin_hidden")):
        raise SystemExit(f"--grow can only widen the recurrent blocks: {old_cfg} -> {cfg}")
    old = ThunderNet(old_cfg)
    net = ThunderNet(cfg)
    widths = recurrent_widths(old_cfg, cfg)
    missing, unexpected = net.load_state_dict(widen(ck["model"], net, old_cfg), strict=False)
    if unexpected or any(not k.startswith(GROWABLE) for k in missing):
        raise SystemExit(f"--grow can only add blocks: missing {missing}, unexpected {unexpected}")
    lr_mult = dict(old_mult)
    if new_lr_mult != 1.0:
        lr_mult |= {p: new_lr_mult for p in GROWABLE if any(k.startswith(p) for k in missing)}
    opt = make_optimizer(net, lr, lr_mult)
    old_order = [n for names in param_groups(old, old_mult).values() for n in names]
    new_order = [n for names in param_groups(net, lr_mult).values() for n in names]
    old_index = {name: i for i, name in enumerate(old_order)}
    params = dict(net.named_parameters())
    sd = opt.state_dict()
    sd["state"] = {}
    for j, name in enumerate(new_order):
        st = ck["opt"]["state"].get(old_index.get(name))
        if st is not None:  # moments take the parameter's new shape (zero where it grew)
            zeros = torch.zeros_like(params[name], device="cpu")
            sd["state"][j] = {**st, "exp_avg": carry_over(name, st["exp_avg"], zeros, widths),
                              "exp_avg_sq": carry_over(name, st["exp_avg_sq"], zeros, widths)}
    opt.load_state_dict(sd)
    return net, opt, lr_mult


def snr_range(text):
    """argparse type for --snr: "LO,HI" in dB with LO <= HI."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give two numbers in dB as LO,HI (e.g. -5,10), not {text!r}") from None
    if lo > hi:
        raise argparse.ArgumentTypeError(f"LO must not exceed HI: {text!r}")
    return (lo, hi)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--run", required=True, help="run directory (checkpoints, logs)")
    ap.add_argument("--steps", type=int, default=200_000, help="total optimiser steps (for the LR schedule)")
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this many steps in this invocation")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--reg-frac", type=float, default=0.3, help="share of examples at t = 1 (regression)")
    ap.add_argument("--tmax-frac", type=float, default=0.0,
                    help="share of examples at exactly t = T_MAX with y' conditioning: the pass `--steps 1` "
                         "runs after the regression pass (off by default; an ablation, models/README.md)")
    ap.add_argument("--stage2-frac", type=float, default=0.0,
                    help="share of examples conditioned on y' = 0.8*D(y,y,1) + 0.2*y (see second_stage_condition)")
    ap.add_argument("--sisdr-weight", type=float, default=0.0,
                    help="add this x negative waveform SI-SDR (dB, band-limited) to the MSE (off by default; "
                         "an ablation, models/README.md)")
    ap.add_argument("--under-weight", type=float, default=0.5,
                    help="add this x the squared compressed-magnitude shortfall (a too-quiet bin costs 1 + this "
                         "times a too-loud one; 0 = the paper's plain MSE; default %(default)s from session 13's "
                         "ablation, models/README.md Results item 8)")
    ap.add_argument("--mr-weight", type=float, default=0.0,
                    help="add this x the multi-resolution spectral loss (256/512/1024-point STFTs, |S|^0.3; off "
                         "by default; an ablation, models/README.md)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where to train: auto = the GPU if PyTorch sees one, else the CPU")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bf16 autocast: auto = on where the CPU has AMX or AVX512-BF16 (see bf16_is_fast)")
    ap.add_argument("--no-bf16", action="store_true", help="same as --bf16 off")
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--val-n", type=int, default=16)
    ap.add_argument("--net", default="{}", help="NetConfig overrides as JSON")
    ap.add_argument("--grow", help="on resume, or with --init on a new run: NetConfig changes that add "
                    "zero-initialised blocks (e.g. '{\"frame_hidden\": 256}' on a network without one), widen "
                    "its GRUs ('{\"frame_hidden\": 384, \"time_hidden\": 128}'), add look-ahead frames "
                    "('{\"lookahead\": 2}') or the line canceller ('{\"line_frames\": 32}'); the network's "
                    "function, its trained weights and its optimiser state carry over")
    ap.add_argument("--grow-lr-mult", type=float, default=1.0,
                    help="with --grow: the new blocks learn at this multiple of the LR schedule, for the rest of "
                         "the run (a block grown late in a cosine schedule otherwise starts at a small LR)")
    ap.add_argument("--init", help="initialise weights from this checkpoint (fine-tuning)")
    ap.add_argument("--init-opt", action="store_true",
                    help="with --init: continue the checkpoint's AdamW moments instead of fresh ones "
                    "(fresh moments make the first fine-tuning steps full-size in every direction)")
    ap.add_argument("--domain", default="general",
                    help="training mixture from domains.py (general, babble, music, reverb, machines, union)")
    ap.add_argument("--eq", type=float, default=0.0,
                    help="probability of a random EQ on the speech and, independently, on the noise of a "
                         "general-domain example (microphone/room colouration; data.random_eq)")
    ap.add_argument("--snr", type=snr_range, default=MixConfig.snr_db, metavar="LO,HI",
                    help="mixing SNR range in dB, drawn uniformly (general mixture; default %(default)s); "
                         "write --snr=-5,10 (a leading minus otherwise reads as an option)")
    ap.add_argument("--tonal", type=float, default=0.0,
                    help="probability that a noise segment is tonal (whines, beeps, alarms; data.tonal_noise), "
                         "general domain only")
    ap.add_argument("--noise-aug", type=float, default=0.0,
                    help="probability of replaying a noise file at another speed (x0.6-1.6) and, independently, "
                         "of placing a noise in a random room (data.speed_noise, data.reverberate_noise); "
                         "general domain only")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="probability that an example's speech gets 1-2 speech-free stretches of 0.2-1 s "
                         "(a tenth of those: noise alone throughout; data.pause_envelope), so the network "
                         "learns to take noise out where nobody speaks; general domain only")
    ap.add_argument("--val-domain", help="validation mixture (default: --domain)")
    ap.add_argument("--val-set", type=Path,
                    help="take the validation mixtures from this val.npz (e.g. runs/base/val.npz) instead of "
                         "drawing them from the corpus: a branch run's scores then compare with that run's, "
                         "which a corpus that has grown since would not give")
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no GPU (check nvidia-smi and that torch is a CUDA build)")
    fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else bf16_is_fast()
    bf16 = not args.no_bf16 and (args.bf16 == "on" or (args.bf16 == "auto" and fast))
    print(f"device {device}; bf16 autocast {'on' if bf16 else 'off'} (--bf16 {'off' if args.no_bf16 else args.bf16})")
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    gen = torch.Generator().manual_seed(args.seed)

    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        cfg = NetConfig(**ck["net_config"])
    elif args.init:  # fine-tuning: the network of the checkpoint it starts from
        ck = None
        init = torch.load(args.init, map_location="cpu", weights_only=False)
        cfg = NetConfig(**init["net_config"])
    else:
        ck = None
        cfg = NetConfig(**json.loads(args.net))
    net = ThunderNet(cfg)
    source = ck or (init if args.init else None)  # checkpoints before "lr_mult" existed have one group
    lr_mult = (source.get("lr_mult") if source else None) or {}
    opt = make_optimizer(net, args.lr, lr_mult)
    ema = Ema(net, args.ema_decay)
    step, best = 0, -1e9
    if args.init_opt and not args.init:
        raise SystemExit("--init-opt continues the optimiser of the --init checkpoint: give --init too")
    for flag, given in (("--eq", args.eq != 0), ("--tonal", args.tonal != 0), ("--snr", args.snr != MixConfig.snr_db),
                        ("--noise-aug", args.noise_aug != 0), ("--pause", args.pause != 0)):
        if given and args.domain != "general":
            raise SystemExit(f"{flag} applies to the general mixture only; domain {args.domain!r} has its own recipe "
                             f"(domains.py): drop {flag} or train --domain general")
    for flag, p in (("--eq", args.eq), ("--tonal", args.tonal), ("--noise-aug", args.noise_aug), ("--pause", args.pause),
                    ("--reg-frac", args.reg_frac), ("--tmax-frac", args.tmax_frac)):
        if not 0.0 <= p <= 1.0:
            raise SystemExit(f"{flag} is a probability: got {p}, give a value in [0, 1]")
    if args.reg_frac + args.tmax_frac > 1.0:
        raise SystemExit(f"--reg-frac {args.reg_frac} and --tmax-frac {args.tmax_frac} are shares of one batch: "
                         "their sum must not exceed 1")
    if args.grow and not ck and not args.init:
        raise SystemExit(f"--grow adds blocks to a run being resumed or to its --init checkpoint, but {last} "
                         "does not exist and no --init was given")
    grown = NetConfig(**{**cfg.to_dict(), **json.loads(args.grow)}) if args.grow else cfg
    if grown != cfg and not ck:  # a fine-tuning run that starts from a grown copy of its --init
        cfg = grown
        start = {"model": init["ema"], "opt": init["opt"] if args.init_opt else {"state": {}},
                 "net_config": init["net_config"], "lr_mult": init.get("lr_mult")}
        net, opt, lr_mult = grow(start, cfg, args.lr, args.grow_lr_mult)
        ema = Ema(net, args.ema_decay)  # the grown copy of the init's EMA (see the --init branch below)
        ema.n = 10**6
        print(f"initialised from {args.init}, grown: {args.grow} (LR multipliers {lr_mult}"
              f"{', optimiser moments continued' if args.init_opt else ''})")
    elif grown != cfg:  # a resumed run grows (a --grow it already has is a plain resume, below)
        cfg = grown
        net, opt, lr_mult = grow(ck, cfg, args.lr, args.grow_lr_mult)
        ema = Ema(net, args.ema_decay)
        ema.shadow.update(widen(ck["ema"], net, NetConfig(**ck["net_config"])))
        ema.n = ck["ema_n"]
        step, best = ck["step"], ck["best"]
        gen.set_state(ck["gen"])
        print(f"grew {last} at step {step}: {args.grow} (LR multipliers {lr_mult})")
    elif ck:
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        ema.shadow = ck["ema"]
        ema.n = ck["ema_n"]
        step, best = ck["step"], ck["best"]
        gen.set_state(ck["gen"])
        print(f"resumed {last} at step {step} (best score {best:.3f})")
    elif args.init:
        net.load_state_dict(init["ema"])
        # Fine-tuning continues the base's EMA (no warm-up from the raw weights): a short run
        # otherwise exports nearly raw, unsmoothed weights, which measured worse than the base.
        ema = Ema(net, args.ema_decay)
        ema.n = 10**6
        if args.init_opt:
            opt.load_state_dict(init["opt"])  # the LR is set every step, so only the moments carry
        print(f"initialised from {args.init} (EMA decay {args.ema_decay}"
              f"{', optimiser moments continued' if args.init_opt else ''})")
    print(f"params {sum(p.numel() for p in net.parameters())}, MACs/frame {macs_per_frame(net)}")
    to_device(net, opt, ema, device)

    val_path = run / "val.npz"
    if args.val_set:
        if not args.val_set.is_file():
            sys.exit(f"--val-set {args.val_set}: no such file (a run's val.npz)")
        if not val_path.exists():
            shutil.copyfile(args.val_set, val_path)
        elif val_path.read_bytes() != args.val_set.read_bytes():
            sys.exit(f"--val-set {args.val_set}: {val_path} already holds other mixtures (scores would not compare)")
    if val_path.exists():
        val = load_val(val_path)
    else:
        val = domain_set(args.corpus, "val", args.val_domain or args.domain, args.val_n)  # "general" = fixed_set
        np.savez(val_path, noisy=np.stack([a for a, _, _ in val]), clean=np.stack([b for _, b, _ in val]))

    mix = MixConfig(seconds=args.seconds, p_eq_speech=args.eq, p_eq_noise=args.eq, p_tonal=args.tonal,
                    snr_db=args.snr, p_noise_speed=args.noise_aug, p_noise_reverb=args.noise_aug,
                    p_pause=args.pause)
    ds = MixDataset(args.corpus, "train", mix, seed=args.seed + step,
                    domain=None if args.domain == "general" else args.domain)
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch, collate_fn=collate, num_workers=args.workers,
                                     persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    log_path = run / "log.csv"
    new_log = not log_path.exists()
    logf = open(log_path, "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(["step", "time", "loss", "lr", "pesq_s0", "pesq_s1", "sisdr_s0", "sisdr_s1", "score"])

    # What the exported model says it was trained on: the whole lineage, not only this run's steps.
    if ck:  # a resumed run keeps its record; runs from before "parent_data" existed read their start's
        parent_data = ck.get("parent_data") or (
            torch.load(args.init, map_location="cpu", weights_only=False).get("training_data", "") if args.init else "")
    else:
        parent_data = init.get("training_data", "") if args.init else ""

    def training_data():
        own = f"Thunder corpus ({args.corpus}), {step} steps x batch {args.batch} x {args.seconds}s"
        return f"{parent_data}; then {own}" if parent_data else own

    def save(path, extra=None):
        tmp = path.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow, "ema_n": ema.n,
                    "step": step, "best": best, "gen": gen.get_state(), "net_config": cfg.to_dict(), "lr_mult": lr_mult,
                    "training_data": training_data(), "parent_data": parent_data,
                    **(extra or {})}, tmp)
        tmp.replace(path)

    budget_path = run / "budget.json"
    budget = json.loads(budget_path.read_text()) if budget_path.exists() else {"wall_s": 0.0}
    budget.update({"domain": args.domain, "batch": args.batch, "seconds": args.seconds, "tmax_frac": args.tmax_frac,
                   "init": args.init, "lr": args.lr, "total_steps": args.steps, "snr_db": list(args.snr),
                   "noise_aug": args.noise_aug, "pause": args.pause, "under_weight": args.under_weight, "mr_weight": args.mr_weight})

    def save_budget():
        budget["steps"] = step
        budget["examples"] = step * args.batch
        budget["wall_s"] = round(budget_wall + time.time() - t0, 1)
        budget_path.write_text(json.dumps(budget, indent=1))

    stop = []  # set by SIGTERM/SIGINT: finish the step, save last.pt, exit

    def request_stop(signum, _frame):
        if not stop:
            print(f"signal {signum}: stopping after this step (saving {last})", flush=True)
        stop.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    net.train()
    t0, losses, started = time.time(), [], step
    t_print = t0
    budget_wall = budget["wall_s"]
    for noisy, clean, band in dl:
        lr = lr_at(step, args.lr, args.warmup, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        noisy, clean, band = noisy.to(device), clean.to(device), band.to(device)
        loss = training_step(net, noisy, clean, band, args.reg_frac, gen, bf16, args.stage2_frac, args.sisdr_weight,
                             args.under_weight, args.tmax_frac, args.mr_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        ema.update(net)
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:  # speed over the last 50 steps (validation excluded), not since the start
            now = time.time()
            dt = (now - t_print) / min(50, len(losses))
            t_print = now
            print(f"step {step} loss {np.mean(losses[-50:]):.5f} lr {lr:.2e} {dt:.2f}s/step", flush=True)
        if step % args.val_every == 0:
            evnet = ThunderNet(cfg)
            evnet.load_state_dict(ema.shadow)
            sc = validate(evnet, val)
            log.writerow([step, round(time.time()), np.mean(losses[-args.val_every:]), lr,
                          sc["pesq_s0"], sc["pesq_s1"], sc["sisdr_s0"], sc["sisdr_s1"], sc["score"]])
            logf.flush()
            print(f"val step {step}: {json.dumps(sc)}", flush=True)
            if sc["score"] > best:
                best = sc["score"]
                save(run / "best.pt", {"val": sc})
            save(last)
            save_budget()
            net.train()
            t_print = time.time()
        if stop or (args.stop_after and step - started >= args.stop_after):
            break
        if step >= args.steps:
            break
    save(last)
    save_budget()
    logf.close()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if stop:
        print(f"stopped at step {step}; re-run the same command to resume", flush=True)


if __name__ == "__main__":
    main()
