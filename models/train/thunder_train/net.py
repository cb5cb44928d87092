"""ThunderNet: a compact, causal clean-speech predictor D([x_t, y], t) -> x0.

Layout inside the network is [B, C, T, F]. The model's interface is the ONNX contract:
x_t, y: [B, 2, 256, T]; t: [B]; states: batch-first tensors. Every temporal dependency is an
explicit state (conv histories, GRU hidden states, the look-ahead delay line), so the same graph
runs offline (T frames, zero states) and streaming (a few frames per call, states carried).

Structure: causal frequency-strided conv encoder (256 -> 16 bands) with FiLM on log-t features,
dual-path bottleneck (per-frame BiGRU across bands, per-band causal GRU across time), sub-pixel
conv decoder with additive skips, and two complex masks: x0 = Ma * x_t + Mb * y.
"""

from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn

from . import contract as C


@dataclass
class NetConfig:
    enc_channels: list = field(default_factory=lambda: [16, 24, 32, 48])
    enc_kernels_f: list = field(default_factory=lambda: [5, 5, 3, 3])
    time_kernel: int = 2  # causal conv history = time_kernel - 1 frames
    dp_blocks: int = 2
    time_hidden: int = 64
    t_embed: int = 64
    lookahead: int = 0  # frames of look-ahead (output for frame f - L emitted at frame f)
    band_mixer: str = "conv"  # "conv" or "gru" (see DualPath)
    frame_hidden: int = 0  # > 0: a causal GRU over the whole bottleneck frame (see FrameGru)
    bin_hidden: int = 0  # > 0: a causal GRU per bin at the decoder's finest stage (see BinGru)
    line_frames: int = 0  # > 0: per-bin phase coherence over this many frames (see LineCanceller)
    df_past: int = 0  # > 0: deep filter, the output also weighs the last df_past frames of y per bin

    def to_dict(self):
        return asdict(self)


IN_FEATURES = 6  # x_t re/im, y re/im, |x_t|, |y|
LINE_FEATURES = 2  # with LineCanceller: coherence, |y - p|
MASK_CHANNELS = 4  # Ma, Mb (complex); LineCanceller adds its complex gain G, the deep filter its taps


class _OnnxReshape(torch.autograd.Function):
    """Exports reshape() as one ONNX Reshape with a constant target shape."""

    @staticmethod
    def forward(ctx, x, shape):
        return x.reshape(_resolve(x, shape))

    @staticmethod
    def symbolic(g, x, shape):
        return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor(shape, dtype=torch.int64)))


def _resolve(x, shape):
    return [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]


def reshape(x, *shape):
    """x.reshape(shape), where 0 keeps x's size at that index (ONNX Reshape's own meaning of 0).

    Why: torch.reshape with a size read from x.shape exports as Shape, Gather, Unsqueeze and Concat
    nodes that recompute the target shape on every call. With the batch kept by 0 and the frame count
    left to -1, the target shape is a constant; in 1-frame streaming, where a call is a few hundred
    tiny nodes, every node counts.
    """
    if torch.onnx.is_in_onnx_export():
        return _OnnxReshape.apply(x, shape)
    return x.reshape(_resolve(x, shape))


class CausalConv(nn.Module):
    """Conv over (time, freq); time is causal via an explicit history state."""

    def __init__(self, cin, cout, kt, kf, sf):
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv2d(cin, cout, (kt, kf), stride=(1, sf), padding=(0, kf // 2))

    def forward(self, x, state):
        x = torch.cat([state, x], dim=2)
        new_state = x[:, :, 1 - self.kt :, :]  # constant slice: no shape arithmetic in the graph
        return self.conv(x), new_state


class Film(nn.Module):
    def __init__(self, emb, ch):
        super().__init__()
        self.lin = nn.Linear(emb, 2 * ch)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x, e, channels_last=False):
        """x: [B, C, T, F], or [T, B, F, C] (the bottleneck's layout) with channels_last."""
        c = self.lin.out_features // 2
        shape, dim = ((1, -1, 1, 2 * c), -1) if channels_last else ((-1, 2 * c, 1, 1), 1)
        g, b = reshape(self.lin(e), *shape).split([c, c], dim=dim)
        return x * (1.0 + g) + b


class DualPath(nn.Module):
    """Across bands within a frame, then across time per band (causal GRU).

    band_mixer "gru": bidirectional GRU across bands; "conv": conv along bands plus a learned
    all-band mixing matrix (parallel, ~3x cheaper to train on CPU).

    Works in the bottleneck's time-major layout [T, B, F, C] (see ThunderNet.forward): the time GRU
    reads it as [T, B*F, C] without a copy, and everything else acts on the last axis or along F.
    """

    def __init__(self, ch, bands, time_hidden, emb, band_mixer="conv"):
        super().__init__()
        self.bands = bands
        self.ch = ch
        self.time_hidden = time_hidden
        self.band_mixer = band_mixer
        self.norm_f = nn.LayerNorm(ch)
        if band_mixer == "gru":
            self.gru_f = nn.GRU(ch, ch // 2, batch_first=True, bidirectional=True)
            self.proj_f = nn.Linear(ch, ch)
        else:
            # kept as convolutions (their parameter shapes are the checkpoints' and the merge's);
            # applied as matrix products on the last axis, see band_conv
            self.conv_f = nn.Conv2d(ch, ch, (1, 3), padding=(0, 1))
            self.act_f = nn.LeakyReLU(0.1)
            self.mix_f = nn.Linear(bands, bands)
            self.proj_f = nn.Conv2d(ch, ch, 1)
        self.norm_t = nn.LayerNorm(ch)
        self.gru_t = nn.GRU(ch, time_hidden)  # time-major: ONNX GRU's own layout, no transposes
        self.proj_t = nn.Linear(time_hidden, ch)
        self.film = Film(emb, ch)

    def band_conv(self, u):
        """conv_f (kernel 3 along bands, zero padding) on [..., F, C]: the three shifted copies side by
        side on the channel axis, times the kernel laid out as [C_out, 3 * C_in]."""
        f, c = self.bands, self.ch
        up = nn.functional.pad(u, (0, 0, 1, 1))
        taps = torch.cat([up[..., 0:f, :], up[..., 1 : f + 1, :], up[..., 2 : f + 2, :]], dim=-1)
        w = self.conv_f.weight[:, :, 0, :].permute(0, 2, 1).reshape(c, 3 * c)
        return nn.functional.linear(taps, w, self.conv_f.bias)

    def forward(self, x, h, e):
        """x: [T, B, F, C]; h: [B, F, H]; e: [B, emb]."""
        f, c, hdim = self.bands, self.ch, self.time_hidden  # constants: see reshape()
        u = self.norm_f(x)
        if self.band_mixer == "gru":  # [T*B, F, C]
            u = self.proj_f(self.gru_f(u.reshape(-1, f, c))[0])
            x = x + u.reshape(x.shape)
        else:
            u = self.act_f(self.band_conv(u))
            u = u + torch.matmul(self.mix_f.weight, u) + self.mix_f.bias.unsqueeze(-1)  # mixes F
            x = x + nn.functional.linear(u, self.proj_f.weight[:, :, 0, 0], self.proj_f.bias)
        x = self.film(x, e, channels_last=True)
        # Across time per band: [T, B*F, C]; h: [B, F, H] -> [1, B*F, H]
        v, hn = self.gru_t(reshape(self.norm_t(x), 0, -1, c), reshape(h, 1, -1, hdim))
        x = x + reshape(self.proj_t(v), 0, -1, f, c)
        return x, reshape(hn, -1, f, hdim)


class FrameGru(nn.Module):
    """A causal GRU over the whole bottleneck frame (all bands and channels at once).

    The dual-path blocks only see one band's history; this gives every band the full spectral
    context of the past. The output projection starts at zero, so adding the block to a trained
    network leaves its function unchanged (`train.py --grow`).

    Its parameters index the frame's 768 features channel-major (c * F + f, the [B, C, T, F]
    layout it was trained in); the bottleneck's [T, B, F, C] layout flattens band-major
    (f * C + c), so forward reorders the weights, not the activations (in ONNX the reorders act on
    the named initializers, which the merge module maps by name; ONNX Runtime folds them at load).
    """

    def __init__(self, ch, bands, hidden, emb):
        super().__init__()
        self.ch, self.bands, self.hidden = ch, bands, hidden
        feats = ch * bands
        self.norm = nn.LayerNorm(feats)
        self.proj_in = nn.Linear(feats, hidden)
        self.t_in = nn.Linear(emb, hidden)
        self.gru = nn.GRU(hidden, hidden)  # time-major
        self.proj_out = nn.Linear(hidden, feats)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def band_major(self, w):
        """Reorder a feature axis (dim 0 of w) from c * F + f to f * C + c."""
        return w.reshape(self.ch, self.bands, *w.shape[1:]).transpose(0, 1).reshape(w.shape)

    def forward(self, x, h, e):
        """x: [T, B, F, C]; h: [B, H]; e: [B, emb]."""
        c, f = self.ch, self.bands
        u = reshape(x, 0, -1, f * c)
        u = nn.functional.layer_norm(u, (f * c,), self.band_major(self.norm.weight),
                                     self.band_major(self.norm.bias), self.norm.eps)
        u = nn.functional.linear(u, self.band_major(self.proj_in.weight.t()).t(), self.proj_in.bias)
        u, hn = self.gru(u + self.t_in(e).unsqueeze(0), h.unsqueeze(0))
        u = nn.functional.linear(u, self.band_major(self.proj_out.weight), self.band_major(self.proj_out.bias))
        return x + reshape(u, 0, -1, f, c), hn.squeeze(0)


class BinGru(nn.Module):
    """A gated leaky integrator per frequency bin (weights shared by all bins) before the last
    decoder layer.

    Everything else that remembers the past works on 16 bands of 500 Hz (dual-path, frame GRU);
    the full-resolution paths see 2 frames. A steady narrow line (a whine, a hum harmonic) is told
    from a voice harmonic by its history at its own frequency, which only this block keeps
    (62.5 Hz bins). It is a GRU whose recurrent weights are fixed at zero: the gates depend on the
    input only (h ← z·h + (1 − z)·n), which is enough for running levels at learned rates, trains
    as a cheap elementwise scan (a full GRU over B × 128 sequences doubled the step time), and
    exports as a standard ONNX GRU. Its output projection starts at zero, so `train.py --grow`
    adds it to a trained network without changing the function.
    """

    def __init__(self, ch, bins, hidden, emb):
        super().__init__()
        self.ch, self.bins, self.hidden = ch, bins, hidden
        self.norm = nn.LayerNorm(ch)
        self.t_in = nn.Linear(emb, ch)
        self.gru = nn.GRU(ch, hidden, batch_first=True)
        for name in ("weight_hh_l0", "bias_hh_l0"):  # input-only gates: zero buffers, not parameters
            zero = torch.zeros_like(self.gru._parameters.pop(name))
            self.gru.register_buffer(name, zero)
        self.gru._init_flat_weights()
        self.proj_out = nn.Linear(hidden, ch)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def scan(self, u, h0):
        """The GRU with zero recurrent weights, as an elementwise scan over time (u: [N, T, C])."""
        H = self.hidden
        w, b = self.gru.weight_ih_l0, self.gru.bias_ih_l0
        g = nn.functional.linear(u, w[H:], b[H:]).float()  # z and n rows (r only gates W_hn h = 0)
        g = g.transpose(0, 1).contiguous()  # [T, N, 2H]: unbind (one backward node), not T slices
        z, n = torch.sigmoid(g[..., :H]).unbind(0), torch.tanh(g[..., H:]).unbind(0)
        h, out = h0, []
        for zi, ni in zip(z, n):
            h = ni + zi * (h - ni)
            out.append(h)
        return torch.stack(out, 1).to(u.dtype), h

    def forward(self, x, h, e):
        c, f, hdim, t = self.ch, self.bins, self.hidden, x.shape[2]
        u = self.norm(x.permute(0, 3, 2, 1)) + self.t_in(e).unsqueeze(1).unsqueeze(1)  # [B, F, T, C]
        u = u.reshape(-1, t, c)
        if torch.onnx.is_in_onnx_export():  # one GRU op (same function: its recurrent weights are zero)
            v, hn = self.gru(u, h.reshape(1, -1, hdim))
        else:
            v, hn = self.scan(u, h.reshape(-1, hdim))
        v = self.proj_out(v).reshape(-1, f, t, c).permute(0, 3, 2, 1)
        return x + v, hn.reshape(-1, f, hdim)


class LineCanceller(nn.Module):
    """Per-bin stationarity of the conditioning y over the last W frames: fixed DSP, no parameters.

    A steady line (a whine, a drone, an organ partial) turns its phase by the same angle every D
    hops in every bin it covers, in the compressed domain too (compression keeps the phase and a
    steady magnitude). So c = y[t]·conj(y[t-D]) averaged over W frames keeps its angle, and the
    coherence |mean c| / mean |c| is near 1 for a line and low for noise and for speech, whose
    harmonics glide. D = 4 hops is the window length: frames that overlap would make even white
    noise look coherent (0.7 at D = 1). The frame D hops back turned by that angle,
    p = e^{j∠mean c}·y[t-D], predicts the line's current value.
    Everything else that remembers the past sees 500 Hz bands, which cannot tell a line from a
    voice harmonic (measured: the real recordings' lines survive); this gives the first conv the
    coherence and |y - p| per 62.5 Hz bin, and the output a term G·p that can subtract a line under
    speech, where a mask would cut both. The state is the last W + D - 1 frames of y.
    """

    LAG = -(-C.N_FFT // C.HOP)  # D: the first frame that shares no sample with frame t

    def __init__(self, frames):
        super().__init__()
        self.frames = frames

    def history(self):
        return self.frames + self.LAG - 1

    def forward(self, y, state):
        w, d = self.frames, self.LAG
        hist = torch.cat([state, y], dim=3)  # [B, 2, F, W + D - 1 + T]
        cur, prev = hist[..., d:], hist[..., :-d]
        cr = cur[:, 0:1] * prev[:, 0:1] + cur[:, 1:2] * prev[:, 1:2]
        ci = cur[:, 1:2] * prev[:, 0:1] - cur[:, 0:1] * prev[:, 1:2]
        mag = torch.sqrt(cr * cr + ci * ci + 1e-12)
        avg = nn.functional.avg_pool2d(torch.cat([cr, ci, mag], dim=1), (1, w), stride=1)  # [B, 3, F, T]
        ar, ai, am = avg[:, 0:1], avg[:, 1:2], avg[:, 2:3]
        norm = torch.sqrt(ar * ar + ai * ai + 1e-12)
        coherence = norm / (am + 1e-6)
        ur, ui = ar / norm, ai / norm
        back = hist[..., w - 1 : -d]  # y[t - D] for every output frame
        pr = ur * back[:, 0:1] - ui * back[:, 1:2]
        pi = ur * back[:, 1:2] + ui * back[:, 0:1]
        p = torch.cat([pr, pi], dim=1)
        err = y - p  # (err * err).sum: two nodes where squaring each part took seven (1-frame streaming)
        resid = torch.sqrt((err * err).sum(1, keepdim=True) + 1e-8)
        return torch.cat([coherence, resid], dim=1), p, hist[..., -self.history():]


class SubPixelUp(nn.Module):
    """Doubles the frequency axis: conv to 2*cout channels, then interleave."""

    def __init__(self, cin, cout, bins, kf=3):
        super().__init__()
        self.cout = cout
        self.bins = bins  # input bins (constant)
        self.conv = nn.Conv2d(cin, 2 * cout, (1, kf), padding=(0, kf // 2))

    def forward(self, x):
        y = reshape(self.conv(x), 0, self.cout, 2, -1, self.bins)
        return reshape(y.permute(0, 1, 3, 4, 2), 0, self.cout, -1, 2 * self.bins)


class ThunderNet(nn.Module):
    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        if cfg.line_frames > 0 and cfg.lookahead > 0:
            raise ValueError("line_frames and lookahead cannot be combined (the line prediction is not delayed)")
        if cfg.df_past > 0 and cfg.lookahead > 0:
            raise ValueError("df_past and lookahead cannot be combined (the filtered frames are not delayed)")
        self.lines = LineCanceller(cfg.line_frames) if cfg.line_frames > 0 else None
        chans = [self.in_features()] + list(cfg.enc_channels)
        self.enc = nn.ModuleList()
        self.enc_norm = nn.ModuleList()
        self.enc_act = nn.ModuleList()
        self.enc_film = nn.ModuleList()
        bins = C.N_BINS
        self.enc_bins = []
        for i in range(len(cfg.enc_channels)):
            kt = cfg.time_kernel + (cfg.lookahead if i == 0 else 0)
            self.enc.append(CausalConv(chans[i], chans[i + 1], kt, cfg.enc_kernels_f[i], 2))
            self.enc_norm.append(nn.BatchNorm2d(chans[i + 1]))
            self.enc_act.append(nn.LeakyReLU(0.1))
            self.enc_film.append(Film(cfg.t_embed, chans[i + 1]))
            self.enc_bins.append(bins)
            bins //= 2
        self.bands = bins
        cb = chans[-1]
        self.dp = nn.ModuleList(
            [DualPath(cb, bins, cfg.time_hidden, cfg.t_embed, cfg.band_mixer) for _ in range(cfg.dp_blocks)]
        )
        self.frame = FrameGru(cb, bins, cfg.frame_hidden, cfg.t_embed) if cfg.frame_hidden > 0 else None
        ch0, bins0 = cfg.enc_channels[0], self.enc_bins[0] // 2  # the first encoder layer's output (skips[0])
        self.bin = BinGru(ch0, bins0, cfg.bin_hidden, cfg.t_embed) if cfg.bin_hidden > 0 else None
        self.dec = nn.ModuleList()
        self.dec_norm = nn.ModuleList()
        self.dec_act = nn.ModuleList()
        # Output channels: the masks, the line gain, then the deep-filter taps (appended last, so
        # --grow adds them at zero to a trained network).
        self.df_channel = MASK_CHANNELS + (2 if self.lines is not None else 0)
        outs = list(reversed(chans[1:-1])) + [self.df_channel + 2 * cfg.df_past]
        cin = cb
        for i, co in enumerate(outs):
            self.dec.append(SubPixelUp(cin, co, bins << i))
            last = i == len(outs) - 1
            self.dec_norm.append(nn.Identity() if last else nn.BatchNorm2d(co))
            self.dec_act.append(nn.Identity() if last else nn.LeakyReLU(0.1))
            cin = co
        n_freq = 6
        self.register_buffer("t_freqs", 2.0 ** torch.arange(n_freq, dtype=torch.float32), persistent=False)
        self.t_mlp = nn.Sequential(nn.Linear(1 + 2 * n_freq, cfg.t_embed), nn.SiLU(), nn.Linear(cfg.t_embed, cfg.t_embed), nn.SiLU())

    def in_features(self):
        return IN_FEATURES + (LINE_FEATURES if self.cfg.line_frames > 0 else 0)

    # ---- states -------------------------------------------------------------------------
    def state_shapes(self):
        """Per-state shape without the batch dimension, in contract order."""
        shapes = []
        chans = [self.in_features()] + list(self.cfg.enc_channels)
        for i, conv in enumerate(self.enc):
            shapes.append([chans[i], conv.kt - 1, self.enc_bins[i]])
        for _ in self.dp:
            shapes.append([self.bands, self.cfg.time_hidden])
        if self.frame is not None:
            shapes.append([self.cfg.frame_hidden])
        if self.bin is not None:
            shapes.append([self.bin.bins, self.cfg.bin_hidden])
        if self.cfg.lookahead > 0:
            shapes.append([4, C.N_BINS, self.cfg.lookahead])  # delayed x_t and y for the masks
        if self.lines is not None:
            shapes.append([2, C.N_BINS, self.lines.history()])  # the last W + D - 1 frames of y
        if self.cfg.df_past > 0:
            shapes.append([2, C.N_BINS, self.cfg.df_past])  # the last df_past frames of y
        return shapes

    def zero_states(self, batch: int, dtype=torch.float32, device=None):
        return [torch.zeros(batch, *s, dtype=dtype, device=device) for s in self.state_shapes()]

    # ---- forward ------------------------------------------------------------------------
    def t_embedding(self, t):
        lt = torch.log(t.clamp_min(1e-4)).unsqueeze(-1)
        feats = torch.cat([lt, torch.sin(lt * self.t_freqs), torch.cos(lt * self.t_freqs)], dim=-1)
        return self.t_mlp(feats)

    def forward(self, x_t, y, t, *states):
        """x_t, y: [B, 2, 256, T]; t: [B]; states as state_shapes(). Returns (x0, *new_states)."""
        e = self.t_embedding(t)
        xy = torch.cat([x_t, y], dim=1)
        mags = torch.sqrt(reshape(xy * xy, 0, 2, 2, C.N_BINS, -1).sum(2) + 1e-8)  # |x_t|, |y|
        feats = [xy, mags]
        if self.lines is not None:
            line_history = states[-2] if self.cfg.df_past > 0 else states[-1]  # the deep filter's state is last
            line_feats, line_pred, line_state = self.lines(y, line_history)
            feats.append(line_feats)
        h = torch.cat(feats, dim=1).transpose(2, 3)  # [B, in_features, T, F]
        new_states = []
        skips = []
        k = 0
        for conv, norm, act, film in zip(self.enc, self.enc_norm, self.enc_act, self.enc_film):
            h, s = conv(h, states[k])
            new_states.append(s)
            k += 1
            h = film(act(norm(h)), e)
            skips.append(h)
        # The bottleneck runs time-major, channels last: [T, B, F, C]. Two permutes that each move
        # one axis, because ONNX Runtime runs those ~10x faster than the general permute (0.33 vs
        # 3.9 ms for 10 s of frames); the reshapes between them keep its optimiser from fusing the
        # two back into one (test_every_transpose_left_after_onnx_runtimes_optimiser_moves_one_axis).
        f, c = self.bands, self.cfg.enc_channels[-1]
        h = reshape(reshape(h.permute(0, 2, 3, 1), 0, -1, f * c).transpose(0, 1), -1, 0, f, c)
        for dp in self.dp:
            h, s = dp(h, states[k], e)
            new_states.append(s)
            k += 1
        if self.frame is not None:
            h, s = self.frame(h, states[k], e)
            new_states.append(s)
            k += 1
        h = reshape(reshape(h, 0, 0, f * c).transpose(0, 1), 0, -1, f, c).permute(0, 3, 1, 2)  # back to [B, C, T, F]
        for i, (up, norm, act) in enumerate(zip(self.dec, self.dec_norm, self.dec_act)):
            h = h + skips[-1 - i]
            if self.bin is not None and i == len(self.dec) - 1:
                h, s = self.bin(h, states[k], e)
                new_states.append(s)
                k += 1
            h = act(norm(up(h)))
        m = h.transpose(2, 3)  # [B, 4, F, T]
        if self.cfg.lookahead > 0:
            L = self.cfg.lookahead
            line = torch.cat([states[k], xy], dim=3)
            new_states.append(line[:, :, :, -L:])
            xy = line[:, :, :, :-L]
            x_t, y = xy[:, 0:2], xy[:, 2:4]  # delayed to the output frame
        ar, ai = m[:, 0:1], m[:, 1:2]
        br, bi = m[:, 2:3] + 1.0, m[:, 3:4]
        xr, xi = x_t[:, 0:1], x_t[:, 1:2]
        yr, yi = y[:, 0:1], y[:, 1:2]
        out = torch.cat([ar * xr - ai * xi + br * yr - bi * yi, ar * xi + ai * xr + br * yi + bi * yr], dim=1)
        if self.lines is not None:  # x0 += G * p (G starts at zero when grown)
            gr, gi = m[:, 4:5], m[:, 5:6]
            pr, pi = line_pred[:, 0:1], line_pred[:, 1:2]
            out = out + torch.cat([gr * pr - gi * pi, gr * pi + gi * pr], dim=1)
            new_states.append(line_state)
        if self.cfg.df_past > 0:
            out, df_state = self.deep_filter(out, m, y, states[-1])
            new_states.append(df_state)
        return (out, *new_states)

    def deep_filter(self, out, m, y, history):
        """out + sum over j = 1..P of H_j * y[t - j], a complex tap per bin and past frame (P =
        df_past; the masks are tap 0). A harmonic turns its phase steadily from frame to frame and
        noise does not, so weighing the last frames of a bin can pull a voice out of noise that a
        one-frame mask can only scale (DeepFilterNet's deep filter, causal here). Returns (out, the
        last P frames of y)."""
        P = self.cfg.df_past
        hist = torch.cat([history, y], dim=3)  # [B, 2, F, P + T]
        for j in range(1, P + 1):
            yj = hist[:, :, :, P - j : -j]
            c = self.df_channel + 2 * (j - 1)
            hr, hi = m[:, c : c + 1], m[:, c + 1 : c + 2]
            yr, yi = yj[:, 0:1], yj[:, 1:2]
            out = out + torch.cat([hr * yr - hi * yi, hr * yi + hi * yr], dim=1)
        return out, hist[:, :, :, -P:]

    def offline(self, x_t, y, t):
        """Whole sequences with zero states; handles look-ahead by padding and dropping L frames."""
        L = self.cfg.lookahead
        if L:
            pad = torch.zeros(*x_t.shape[:3], L, dtype=x_t.dtype, device=x_t.device)
            x_t, y = torch.cat([x_t, pad], 3), torch.cat([y, pad], 3)
        out = self(x_t, y, t, *self.zero_states(x_t.shape[0], x_t.dtype, x_t.device))[0]
        return out[..., L:] if L else out


def macs_per_frame(net: ThunderNet) -> int:
    """Multiply-accumulates per frame (per network pass), counted analytically."""
    cfg = net.cfg
    total = 0
    chans = [net.in_features()] + list(cfg.enc_channels)
    for i, conv in enumerate(net.enc):
        fo = net.enc_bins[i] // 2
        w = conv.conv.weight
        total += w.numel() * fo  # cout*cin*kt*kf per output bin
    cb = chans[-1]
    for _ in net.dp:
        if cfg.band_mixer == "gru":
            hf = cb // 2
            total += net.bands * 2 * 3 * (cb * hf + hf * hf)  # BiGRU across bands
            total += net.bands * cb * cb  # proj_f
        else:
            total += net.bands * cb * cb * 3 + cb * net.bands**2 + net.bands * cb * cb  # conv, mix, proj
        total += net.bands * 3 * (cb * cfg.time_hidden + cfg.time_hidden**2)  # GRU across time
        total += net.bands * cfg.time_hidden * cb  # proj_t
    if net.frame is not None:
        fh, feats = cfg.frame_hidden, cb * net.bands
        total += feats * fh + 3 * 2 * fh * fh + fh * feats  # proj_in, GRU, proj_out
    if net.bin is not None:
        bh, ch = cfg.bin_hidden, net.bin.ch
        total += net.bin.bins * (3 * (ch * bh + bh * bh) + bh * ch)  # GRU per bin, proj_out
    f = net.bands
    for up in net.dec:
        total += up.conv.weight.numel() * f
        f *= 2
    total += C.N_BINS * 2 * 8  # complex mask application
    if net.lines is not None:  # c, its magnitude, the W-frame average, p, |y - p|, G * p
        total += C.N_BINS * (4 + 1 + 3 * cfg.line_frames + 4 + 2 + 8)  # (the average as a W-tap sum)
    total += C.N_BINS * cfg.df_past * 8  # deep-filter taps (complex multiply-add)
    return total
