//! Thunder's two-stage sampler over a stream of model-domain frames.
//!
//! 1. Regression: x̂_reg = D(y, y, 1) (`steps = 0` returns it).
//! 2. y′ = w·x̂_reg + (1 − w)·y; x = y′.
//! 3. For t_i = linspace(t_max, t_min, N): corrector x̂0 = D(x, y′, t_i),
//!    x ← ½x + ½((1−t_i)x̂0 + t_i y′) + √(t_i(1−t_i))·z(seed, 2i, frame); predictor
//!    x̂0 = D(x, y′, t_i), last step returns x̂0, else x ← x − (Δt/t_i)(x − x̂0) + √Δt·z(seed, 2i+1, frame).
//!
//! Everything is frame-local except the network passes, so each pass is a [`FrameSampler`]
//! *stage* with its own model state and its own look-ahead delay; stages are chained, and a
//! frame's result leaves the last stage `passes × lookahead` frames after it entered.

pub mod noise;

use std::collections::VecDeque;

use crate::contract::{FRAME_LEN, T_REGRESSION};
use crate::error::Result;

/// A network D(x_t, y, t) → x̂0 that runs on `[batch, 2, N_BINS, frames]` tensors and carries
/// its temporal state explicitly (one state per pass).
pub trait Denoiser {
    /// Per-pass temporal state.
    type State;
    /// Look-ahead L in frames: output frame j of a call stream belongs to input frame j − L.
    fn lookahead(&self) -> usize;
    /// Zero state for a stream of `batch` parallel signals.
    fn new_state(&self, batch: usize) -> Self::State;
    /// Batch size a state was created for.
    fn state_batch(&self, state: &Self::State) -> usize;
    /// Run one call: `x_t`, `y` are `[batch, 2, N_BINS, frames]` with `batch = t.len()`; `t` is
    /// the bridge time per batch element. The batch is split among `states` in order (each
    /// covers [`Denoiser::state_batch`] elements), so one call can advance several passes.
    /// `out` is resized to the input shape and receives x̂0; the states are advanced.
    fn denoise(
        &mut self,
        x_t: &[f32],
        y: &[f32],
        t: &[f32],
        frames: usize,
        states: &mut [&mut Self::State],
        out: &mut Vec<f32>,
    ) -> Result<()>;
}

/// Sampler settings (`enhance --steps/--seed/--no-corrector`) plus the model's bridge constants.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Reverse steps N (0 = regression only).
    pub steps: usize,
    /// Run the corrector pass in each reverse step.
    pub corrector: bool,
    /// Seed of the counter-based noise.
    pub seed: u64,
    /// Interpolation weight w (from the model metadata).
    pub interp_weight: f64,
    /// Largest bridge time (from the model metadata).
    pub t_max: f64,
    /// Smallest bridge time (from the model metadata).
    pub t_min: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            steps: 1,
            corrector: true,
            seed: 0,
            interp_weight: crate::contract::INTERP_WEIGHT,
            t_max: crate::contract::T_MAX,
            t_min: crate::contract::T_MIN,
        }
    }
}

impl SamplerConfig {
    /// Network passes per frame: 1 + 2N (1 + N without the corrector).
    pub fn network_passes(&self) -> usize {
        network_passes(self.steps, self.corrector)
    }
}

/// Network passes per frame for `steps` reverse steps.
pub fn network_passes(steps: usize, corrector: bool) -> usize {
    1 + steps * if corrector { 2 } else { 1 }
}

/// `numpy.linspace(t_max, t_min, n)`, bit-for-bit.
pub fn timesteps(n: usize, t_max: f64, t_min: f64) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![t_max],
        _ => {
            let step = (t_min - t_max) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + t_max).collect();
            v[n - 1] = t_min;
            v
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Regression,
    Corrector { step: usize, t: f64 },
    Predictor { step: usize, t: f64, next_t: Option<f64> },
}

/// One frame travelling through the stages: bridge state x and conditioning c, `[batch][2][N_BINS]`.
struct Pair {
    x: Vec<f32>,
    c: Vec<f32>,
}

struct Stage<S> {
    op: Op,
    t_net: f32,
    state: S,
    queue: Vec<Pair>,
    waiting: VecDeque<Pair>,
    received: u64,
    next_frame: u64,
}

/// The sampler as a chain of per-pass stages over a frame stream (see the module docs).
pub struct FrameSampler<D: Denoiser> {
    net: D,
    cfg: SamplerConfig,
    batch: usize,
    frames_per_call: usize,
    pipelined: bool,
    stages: Vec<Stage<D::State>>,
    xbuf: Vec<f32>,
    cbuf: Vec<f32>,
    obuf: Vec<f32>,
    zbuf: Vec<f32>,
}

impl<D: Denoiser> FrameSampler<D> {
    /// A sampler for `batch` parallel signals that runs at most `frames_per_call` frames per
    /// network call (1 for lowest latency; larger for throughput, with identical results).
    pub fn new(net: D, cfg: SamplerConfig, batch: usize, frames_per_call: usize) -> Self {
        let ts = timesteps(cfg.steps, cfg.t_max, cfg.t_min);
        let mut ops = vec![Op::Regression];
        for (i, &t) in ts.iter().enumerate() {
            if cfg.corrector {
                ops.push(Op::Corrector { step: i, t });
            }
            ops.push(Op::Predictor {
                step: i,
                t,
                next_t: ts.get(i + 1).copied(),
            });
        }
        let stages = ops
            .into_iter()
            .map(|op| Stage {
                op,
                t_net: match op {
                    Op::Regression => T_REGRESSION,
                    Op::Corrector { t, .. } | Op::Predictor { t, .. } => t as f32,
                },
                state: net.new_state(batch),
                queue: Vec::new(),
                waiting: VecDeque::new(),
                received: 0,
                next_frame: 0,
            })
            .collect();
        Self {
            net,
            cfg,
            batch: batch.max(1),
            frames_per_call: frames_per_call.max(1),
            pipelined: false,
            stages,
            xbuf: Vec::new(),
            cbuf: Vec::new(),
            obuf: Vec::new(),
            zbuf: vec![0.0; FRAME_LEN],
        }
    }

    /// The sampler settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Parallel signals per frame.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The network.
    pub fn net(&self) -> &D {
        &self.net
    }

    /// Give the network back.
    pub fn into_net(self) -> D {
        self.net
    }

    /// Network passes per frame.
    pub fn network_passes(&self) -> usize {
        self.stages.len()
    }

    /// Delay from a frame entering to its result leaving, in frames: passes × look-ahead.
    pub fn delay_frames(&self) -> usize {
        let p = self.stages.len();
        p * self.net.lookahead() + if self.pipelined { p - 1 } else { 0 }
    }

    /// Pipelined schedule: instead of running the passes one after another for each new frame
    /// (one network call per pass), advance every pass by one frame in a single batched call.
    /// Results are the same; each pass after the first adds one frame (one hop) of latency, and
    /// live (hop-by-hop) throughput improves by up to the number of passes, because the per-call
    /// overhead of ONNX Runtime dominates single-frame calls. `frames_per_call` is ignored
    /// (each tick is one frame per pass) except at [`FrameSampler::flush`].
    pub fn set_pipelined(&mut self, on: bool) {
        self.pipelined = on;
    }

    /// Whether the pipelined schedule is on.
    pub fn pipelined(&self) -> bool {
        self.pipelined
    }

    /// Change the maximum frames per network call (results are unaffected).
    pub fn set_frames_per_call(&mut self, n: usize) {
        self.frames_per_call = n.max(1);
    }

    /// Drop all pending frames and states: the next frame is frame 0 of a new stream.
    pub fn reset(&mut self) {
        for s in &mut self.stages {
            s.state = self.net.new_state(self.batch);
            s.queue.clear();
            s.waiting.clear();
            s.received = 0;
            s.next_frame = 0;
        }
    }

    /// Push `y` (whole frames, `[n][batch][2][N_BINS]`) and append every finished frame of x̂
    /// (same layout) to `out`.
    pub fn push(&mut self, y: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let fl = self.batch * FRAME_LEN;
        debug_assert_eq!(y.len() % fl, 0);
        for f in y.chunks_exact(fl) {
            self.stages[0].queue.push(Pair {
                x: f.to_vec(),
                c: f.to_vec(),
            });
        }
        if self.pipelined {
            for _ in 0..y.len() / fl {
                self.tick(out)?;
            }
        } else {
            for s in 0..self.stages.len() {
                self.run_stage(s, false, out)?;
            }
        }
        Ok(())
    }

    /// End the stream: feed each pass its look-ahead of zero frames (x_t = y = 0, as the offline
    /// reference pads), append the remaining frames to `out`, and reset.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let res = (0..self.stages.len()).try_for_each(|s| self.run_stage(s, true, out));
        self.reset();
        res
    }

    fn run_stage(&mut self, s: usize, flushing: bool, out: &mut Vec<f32>) -> Result<()> {
        let fl = self.batch * FRAME_LEN;
        let la = self.net.lookahead();
        let queue = std::mem::take(&mut self.stages[s].queue);
        let mut zeros_left = if flushing { la } else { 0 };
        let mut queue = queue.into_iter().peekable();
        loop {
            // Assemble one call: real frames first, then (flushing) zero frames.
            let mut chunk: Vec<Pair> = Vec::new();
            while chunk.len() < self.frames_per_call {
                match queue.next() {
                    Some(p) => chunk.push(p),
                    None => break,
                }
            }
            let n_zero = if queue.peek().is_none() {
                zeros_left.min(self.frames_per_call - chunk.len())
            } else {
                0
            };
            zeros_left -= n_zero;
            let frames = chunk.len() + n_zero;
            if frames == 0 {
                break;
            }
            self.xbuf.clear();
            self.xbuf.resize(fl * frames, 0.0);
            self.cbuf.clear();
            self.cbuf.resize(fl * frames, 0.0);
            for (t, p) in chunk.iter().enumerate() {
                for i in 0..fl {
                    self.xbuf[i * frames + t] = p.x[i];
                    self.cbuf[i * frames + t] = p.c[i];
                }
            }
            let stage = &mut self.stages[s];
            let ts = vec![stage.t_net; self.batch];
            self.net.denoise(
                &self.xbuf,
                &self.cbuf,
                &ts,
                frames,
                &mut [&mut stage.state],
                &mut self.obuf,
            )?;
            stage.waiting.extend(chunk);
            let obuf = std::mem::take(&mut self.obuf);
            let mut x0 = vec![0.0; fl];
            for t in 0..frames {
                for (i, v) in x0.iter_mut().enumerate() {
                    *v = obuf[i * frames + t];
                }
                self.route(s, &x0, out);
            }
            self.obuf = obuf;
        }
        Ok(())
    }

    /// One pipelined tick: every stage with a queued frame advances by one frame, all in a
    /// single network call (the batch holds every active pass); results reach the next stage's
    /// queue for the next tick.
    fn tick(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let fl = self.batch * FRAME_LEN;
        let active: Vec<usize> = (0..self.stages.len())
            .filter(|&s| !self.stages[s].queue.is_empty())
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        self.xbuf.clear();
        self.cbuf.clear();
        let mut ts = Vec::with_capacity(active.len() * self.batch);
        for &s in &active {
            let st = &mut self.stages[s];
            let p = st.queue.remove(0);
            self.xbuf.extend_from_slice(&p.x);
            self.cbuf.extend_from_slice(&p.c);
            ts.extend(std::iter::repeat_n(st.t_net, self.batch));
            st.waiting.push_back(p);
        }
        let mut states: Vec<&mut D::State> = self
            .stages
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .map(|(_, st)| &mut st.state)
            .collect();
        self.net
            .denoise(&self.xbuf, &self.cbuf, &ts, 1, &mut states, &mut self.obuf)?;
        drop(states);
        let obuf = std::mem::take(&mut self.obuf);
        for (k, &s) in active.iter().enumerate() {
            self.route(s, &obuf[k * fl..(k + 1) * fl], out);
        }
        self.obuf = obuf;
        Ok(())
    }

    /// Handle one network output of stage `s` (`x0`: `[batch][2][N_BINS]`).
    fn route(&mut self, s: usize, x0: &[f32], out: &mut Vec<f32>) {
        let la = self.net.lookahead() as u64;
        let stage = &mut self.stages[s];
        stage.received += 1;
        if stage.received <= la {
            return; // belongs to a frame before the stream start
        }
        let Some(mut p) = stage.waiting.pop_front() else {
            return; // output of padding beyond the stream end
        };
        let frame = stage.next_frame;
        stage.next_frame += 1;
        match stage.op {
            Op::Regression => {
                if self.cfg.steps == 0 {
                    out.extend_from_slice(x0);
                } else {
                    let w = self.cfg.interp_weight as f32;
                    let v = (1.0 - self.cfg.interp_weight) as f32;
                    for (c, &x) in p.c.iter_mut().zip(x0) {
                        *c = w * x + v * *c;
                    }
                    p.x.copy_from_slice(&p.c);
                    self.stages[s + 1].queue.push(p);
                }
            }
            Op::Corrector { step, t } => {
                noise::frame_noise(self.cfg.seed, 2 * step as u64, frame, &mut self.zbuf);
                let a = (1.0 - t) as f32;
                let b = t as f32;
                let sd = (t * (1.0 - t)).sqrt() as f32;
                for (i, ((x, &x0), &c)) in p.x.iter_mut().zip(x0).zip(&p.c).enumerate() {
                    let z = self.zbuf[i % FRAME_LEN];
                    *x = 0.5 * *x + 0.5 * (a * x0 + b * c) + sd * z;
                }
                self.stages[s + 1].queue.push(p);
            }
            Op::Predictor { step, t, next_t } => match next_t {
                None => out.extend_from_slice(x0),
                Some(nt) => {
                    let dt = t - nt;
                    noise::frame_noise(self.cfg.seed, 2 * step as u64 + 1, frame, &mut self.zbuf);
                    let k = (dt / t) as f32;
                    let sd = dt.sqrt() as f32;
                    for (i, (x, &x0)) in p.x.iter_mut().zip(x0).enumerate() {
                        let z = self.zbuf[i % FRAME_LEN];
                        *x = *x - k * (*x - x0) + sd * z;
                    }
                    self.stages[s + 1].queue.push(p);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame-local "network" with a pure delay line of L frames: x̂0 = 0.5·x_t + 0.25·y.
    struct Delay {
        la: usize,
    }

    impl Denoiser for Delay {
        /// Per batch element: delay line of `[2][N_BINS]` (x, y) frames.
        type State = Vec<VecDeque<(Vec<f32>, Vec<f32>)>>;
        fn lookahead(&self) -> usize {
            self.la
        }
        fn new_state(&self, batch: usize) -> Self::State {
            (0..batch)
                .map(|_| {
                    (0..self.la)
                        .map(|_| (vec![0.0; FRAME_LEN], vec![0.0; FRAME_LEN]))
                        .collect()
                })
                .collect()
        }
        fn state_batch(&self, state: &Self::State) -> usize {
            state.len()
        }
        fn denoise(
            &mut self,
            x_t: &[f32],
            y: &[f32],
            t: &[f32],
            frames: usize,
            states: &mut [&mut Self::State],
            out: &mut Vec<f32>,
        ) -> Result<()> {
            let batch = t.len();
            out.resize(batch * FRAME_LEN * frames, 0.0);
            let lines: Vec<&mut VecDeque<(Vec<f32>, Vec<f32>)>> =
                states.iter_mut().flat_map(|s| s.iter_mut()).collect();
            assert_eq!(lines.len(), batch);
            for (b, line) in lines.into_iter().enumerate() {
                let base = b * FRAME_LEN * frames;
                for t in 0..frames {
                    let at = |v: &[f32], i: usize| v[base + i * frames + t];
                    line.push_back((
                        (0..FRAME_LEN).map(|i| at(x_t, i)).collect(),
                        (0..FRAME_LEN).map(|i| at(y, i)).collect(),
                    ));
                    let (x, c) = line.pop_front().unwrap();
                    for i in 0..FRAME_LEN {
                        out[base + i * frames + t] = 0.5 * x[i] + 0.25 * c[i];
                    }
                }
            }
            Ok(())
        }
    }

    fn frames(n: usize) -> Vec<f32> {
        (0..n * FRAME_LEN).map(|i| ((i as f32) * 0.013).sin()).collect()
    }

    fn run(la: usize, steps: usize, fpc: usize, chunk: usize) -> Vec<f32> {
        run_with(la, steps, fpc, chunk, false)
    }

    fn run_with(la: usize, steps: usize, fpc: usize, chunk: usize, pipelined: bool) -> Vec<f32> {
        let cfg = SamplerConfig {
            steps,
            ..Default::default()
        };
        let mut s = FrameSampler::new(Delay { la }, cfg, 1, fpc);
        s.set_pipelined(pipelined);
        let y = frames(9);
        let mut out = Vec::new();
        for c in y.chunks(chunk * FRAME_LEN) {
            s.push(c, &mut out).unwrap();
        }
        s.flush(&mut out).unwrap();
        out
    }

    #[test]
    fn pipelined_schedule_gives_the_same_frames_later() {
        for steps in [0, 1, 2] {
            for la in [0, 1, 2] {
                let reference = run(la, steps, 1, 1);
                for chunk in [1, 2, 9] {
                    let got = run_with(la, steps, 1, chunk, true);
                    assert_eq!(got, reference, "steps {steps} la {la} chunk {chunk}");
                }
                // Latency: with one frame pushed at a time, frame j leaves after frame j + delay.
                let cfg = SamplerConfig {
                    steps,
                    ..Default::default()
                };
                let mut s = FrameSampler::new(Delay { la }, cfg, 1, 1);
                s.set_pipelined(true);
                let delay = s.delay_frames();
                assert_eq!(delay, s.network_passes() * (la + 1) - 1);
                let mut out = Vec::new();
                for (j, f) in frames(12).chunks(FRAME_LEN).enumerate() {
                    s.push(f, &mut out).unwrap();
                    assert_eq!(out.len() / FRAME_LEN, (j + 1).saturating_sub(delay), "frame {j}");
                }
            }
        }
    }

    #[test]
    fn timesteps_match_numpy() {
        assert_eq!(timesteps(1, 0.999, 0.03), vec![0.999]);
        assert_eq!(timesteps(3, 0.999, 0.03), vec![0.999, 0.5145, 0.03]);
    }

    #[test]
    fn regression_only_is_the_network_output() {
        let y = frames(9);
        let out = run(2, 0, 1, 1);
        assert_eq!(out.len(), y.len());
        for (o, v) in out.iter().zip(&y) {
            assert!((o - 0.75 * v).abs() < 1e-6);
        }
    }

    #[test]
    fn lookahead_and_batching_do_not_change_results() {
        for steps in [0, 1, 2, 3] {
            let reference = run(0, steps, 1, 1);
            assert_eq!(reference.len(), 9 * FRAME_LEN);
            for (la, fpc, chunk) in [(1, 1, 1), (2, 4, 3), (3, 16, 9), (1, 2, 5)] {
                let got = run(la, steps, fpc, chunk);
                assert_eq!(got.len(), reference.len(), "steps {steps} la {la}");
                let err = got
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-6, "steps {steps} la {la} fpc {fpc}: {err}");
            }
        }
    }

    #[test]
    fn pass_count() {
        assert_eq!(network_passes(0, true), 1);
        assert_eq!(network_passes(1, true), 3);
        assert_eq!(network_passes(3, false), 4);
    }
}
