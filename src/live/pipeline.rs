//! Device-rate processing: any input rate and channel count in, any output rate and channel
//! count out, with a constant delay.
//!
//! Input frames are averaged to mono, resampled to 16 kHz (rubato, about one hop per call),
//! cut into 128-sample hops for the [`AdaptiveEnhancer`], resampled to the output rate and
//! copied to every output channel. The resamplers and the hop assembly release samples in
//! bursts; to give the output device a steady stream, the pipeline emits exactly
//! `floor(frames_in · out_rate / in_rate)` output frames after `frames_in` input frames, delayed
//! by a fixed number of frames ([`Pipeline::alignment_frames`]) that covers the worst burst
//! (computed once by simulating the chain). So output frame `k` always carries input frame
//! `k · in_rate / out_rate − delay`: the delay never drifts, and it is what
//! [`Pipeline::delay`] reports.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::adaptive::AdaptiveEnhancer;
use super::stats::Histogram;
use crate::audio::resample::StreamResampler;
use crate::contract::{HOP, SAMPLE_RATE};
use crate::error::{Error, Result};

/// Rates and channel counts of the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Capture rate (Hz).
    pub in_rate: u32,
    /// Capture channels (averaged to mono).
    pub in_channels: usize,
    /// Playback rate (Hz).
    pub out_rate: u32,
    /// Playback channels (the enhanced mono signal on each).
    pub out_channels: usize,
}

fn down_resampler(rate: u32) -> Result<Option<StreamResampler>> {
    if rate == SAMPLE_RATE {
        return Ok(None);
    }
    let chunk = (rate as usize * HOP).div_ceil(SAMPLE_RATE as usize);
    StreamResampler::with_chunk(rate, SAMPLE_RATE, 1, chunk).map(Some)
}

fn up_resampler(rate: u32) -> Result<Option<StreamResampler>> {
    if rate == SAMPLE_RATE {
        return Ok(None);
    }
    StreamResampler::with_chunk(SAMPLE_RATE, rate, 1, HOP).map(Some)
}

/// Worst lag (output frames) between the steady output count and what the resamplers and the hop
/// assembly have released, over two seconds of input arriving one frame at a time.
fn burst_lag(in_rate: u32, out_rate: u32) -> Result<usize> {
    let mut down = down_resampler(in_rate)?;
    let mut up = up_resampler(out_rate)?;
    let zeros = [0.0f32; HOP];
    let mut tmp = Vec::new();
    let (mut s16, mut hops, mut released, mut worst) = (0u64, 0u64, 0u64, 0i64);
    for n in 1..=(2 * in_rate as u64 + 4096) {
        match &mut down {
            Some(d) => {
                tmp.clear();
                d.push(&zeros[..1], &mut tmp)?;
                s16 += tmp.len() as u64;
            }
            None => s16 += 1,
        }
        while (hops + 1) * HOP as u64 <= s16 {
            hops += 1;
            match &mut up {
                Some(u) => {
                    tmp.clear();
                    u.push(&zeros, &mut tmp)?;
                    released += tmp.len() as u64;
                }
                None => released += HOP as u64,
            }
        }
        let target = (n as u128 * out_rate as u128 / in_rate as u128) as i64;
        worst = worst.max(target - released as i64);
    }
    // Two frames of slack for the asynchronous resampler's rounding.
    Ok(worst.max(0) as usize + 2)
}

/// The live processing chain at device rates (see the module docs).
pub struct Pipeline {
    cfg: PipelineConfig,
    enh: AdaptiveEnhancer,
    down: Option<StreamResampler>,
    up: Option<StreamResampler>,
    down_delay: usize,
    up_delay: usize,
    mono: Vec<f32>,
    s16: Vec<f32>,
    s16_used: usize,
    e_out: Vec<f32>,
    up_out: Vec<f32>,
    ready: VecDeque<f32>,
    align: usize,
    in_frames: u64,
    emitted: u64,
    hop_times: Histogram,
    busy: Duration,
    slips: u64,
}

impl Pipeline {
    /// A pipeline around an enhancer for the given device formats.
    pub fn new(enh: AdaptiveEnhancer, cfg: PipelineConfig) -> Result<Self> {
        if cfg.in_channels == 0 || cfg.out_channels == 0 || cfg.in_rate == 0 || cfg.out_rate == 0 {
            return Err(Error::Config(format!("unusable device format {cfg:?}")));
        }
        let down = down_resampler(cfg.in_rate)?;
        let up = up_resampler(cfg.out_rate)?;
        let align = burst_lag(cfg.in_rate, cfg.out_rate)?;
        Ok(Self {
            down_delay: down.as_ref().map_or(0, |r| r.filter_delay()),
            up_delay: up.as_ref().map_or(0, |r| r.filter_delay()),
            down,
            up,
            mono: Vec::new(),
            s16: Vec::new(),
            s16_used: 0,
            e_out: Vec::with_capacity(HOP),
            up_out: Vec::new(),
            ready: std::iter::repeat_n(0.0, align).collect(),
            align,
            in_frames: 0,
            emitted: 0,
            hop_times: Histogram::new(),
            busy: Duration::ZERO,
            slips: 0,
            enh,
            cfg,
        })
    }

    /// Device formats.
    pub fn config(&self) -> PipelineConfig {
        self.cfg
    }

    /// The enhancer.
    pub fn enhancer(&self) -> &AdaptiveEnhancer {
        &self.enh
    }

    /// Mutable enhancer (e.g. to force a level).
    pub fn enhancer_mut(&mut self) -> &mut AdaptiveEnhancer {
        &mut self.enh
    }

    /// Algorithmic latency of the enhancer: STFT framing plus look-ahead
    /// ([`AdaptiveEnhancer::latency_samples`] at 16 kHz).
    pub fn algorithmic_latency(&self) -> Duration {
        Duration::from_secs_f64(self.enh.latency_samples() as f64 / SAMPLE_RATE as f64)
    }

    /// Filter delay of the two resamplers (zero at 16 kHz devices).
    pub fn resampler_delay(&self) -> Duration {
        Duration::from_secs_f64(
            self.down_delay as f64 / SAMPLE_RATE as f64 + self.up_delay as f64 / self.cfg.out_rate as f64,
        )
    }

    /// Output frames of fixed delay that absorb the bursts of the resamplers and of the hop
    /// assembly (includes the resamplers' filter delay).
    pub fn alignment_frames(&self) -> usize {
        self.align
    }

    /// Total constant delay from an input frame to the output frame that carries it:
    /// algorithmic latency + alignment. This is the lag between `--record-input` and
    /// `--record-output`.
    pub fn delay(&self) -> Duration {
        self.algorithmic_latency() + Duration::from_secs_f64(self.align as f64 / self.cfg.out_rate as f64)
    }

    /// Per-hop processing time of the enhancer.
    pub fn hop_times(&self) -> &Histogram {
        &self.hop_times
    }

    /// Time spent in [`Pipeline::push`] (for the real-time factor).
    pub fn busy(&self) -> Duration {
        self.busy
    }

    /// Input frames consumed.
    pub fn frames_in(&self) -> u64 {
        self.in_frames
    }

    /// Output frames emitted.
    pub fn frames_out(&self) -> u64 {
        self.emitted
    }

    /// Output frames that had no processed sample (should stay 0).
    pub fn slips(&self) -> u64 {
        self.slips + self.enh.slips()
    }

    /// Push interleaved input frames; append the interleaved output frames now due to `out`.
    /// `backlog_frames` is how many more input frames wait behind these (for the overload
    /// policy).
    pub fn push(&mut self, input: &[f32], backlog_frames: usize, out: &mut Vec<f32>) -> Result<()> {
        let start = Instant::now();
        let ic = self.cfg.in_channels;
        if !input.len().is_multiple_of(ic) {
            return Err(Error::Config("input is not a whole number of frames".into()));
        }
        let frames = input.len() / ic;
        self.mono.clear();
        if ic == 1 {
            self.mono.extend_from_slice(input);
        } else {
            let inv = 1.0 / ic as f32;
            self.mono
                .extend(input.chunks_exact(ic).map(|f| f.iter().sum::<f32>() * inv));
        }
        for s in &mut self.mono {
            if !s.is_finite() {
                *s = 0.0;
            }
        }
        match &mut self.down {
            Some(d) => d.push(&self.mono, &mut self.s16)?,
            None => self.s16.extend_from_slice(&self.mono),
        }
        let backlog16 = backlog_frames as u64 * SAMPLE_RATE as u64 / self.cfg.in_rate as u64;
        while self.s16.len() - self.s16_used >= HOP {
            let at = self.s16_used;
            self.s16_used += HOP;
            let waiting = (self.s16.len() - self.s16_used) as u64 + backlog16;
            self.e_out.clear();
            let cost = self.enh.push_hop(
                &self.s16[at..at + HOP],
                (waiting / HOP as u64) as usize,
                &mut self.e_out,
            )?;
            self.hop_times.record(cost);
            match &mut self.up {
                Some(u) => {
                    self.up_out.clear();
                    u.push(&self.e_out, &mut self.up_out)?;
                    self.ready.extend(self.up_out.iter().copied());
                }
                None => self.ready.extend(self.e_out.iter().copied()),
            }
        }
        self.s16.drain(..self.s16_used);
        self.s16_used = 0;
        self.in_frames += frames as u64;
        let target = (self.in_frames as u128 * self.cfg.out_rate as u128 / self.cfg.in_rate as u128) as u64;
        let oc = self.cfg.out_channels;
        out.reserve((target - self.emitted) as usize * oc);
        while self.emitted < target {
            let v = match self.ready.pop_front() {
                Some(v) => v,
                None => {
                    self.slips += 1;
                    0.0
                }
            };
            for _ in 0..oc {
                out.push(v);
            }
            self.emitted += 1;
        }
        self.busy += start.elapsed();
        Ok(())
    }
}
