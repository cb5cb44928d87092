//! Hop-by-hop enhancement with graceful degradation under overload.
//!
//! [`AdaptiveEnhancer`] holds a ladder of [`Enhancer`]s — the requested number of reverse steps
//! first, then fewer, down to regression only (`steps = 0`) — and runs one of them per 128-sample
//! hop. Every level is delay-compensated to the slowest level's latency, so the output timeline
//! never moves when the level changes. [`OverloadPolicy`] watches the per-hop processing time and
//! the input backlog: it steps down quickly when processing falls behind real time, and steps
//! back up slowly (with exponential back-off after failed attempts) when the measured load leaves
//! room for the more expensive level.
//!
//! A switch warms the new level up on the last [`AdaptiveEnhancer::history_samples`] input
//! samples (so its recurrent state is not cold), runs old and new level on the switch hop, and
//! cross-fades between them (raised cosine over one hop): no click, no gap.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::contract::{HOP, SAMPLE_RATE};
use crate::error::{Error, Result};
use crate::model::{Model, ModelOptions};
use crate::stream::{Enhancer, EnhancerConfig};

/// Real time of one hop.
pub const HOP_DURATION: Duration = Duration::from_micros(HOP as u64 * 1_000_000 / SAMPLE_RATE as u64);

/// Settings of the overload policy (all times in hops of 8 ms).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Step down when the smoothed load (processing time / hop duration) exceeds this.
    pub degrade_load: f64,
    /// Step down when more than this many hops of input wait to be processed and the load is
    /// above half of `degrade_load`.
    pub max_backlog_hops: usize,
    /// Step up only if the level above is predicted to stay below this load.
    pub recover_load: f64,
    /// Minimum hops at a level before stepping down again (lets the load estimate settle).
    pub settle_hops: u64,
    /// Hops at a lower level before the first attempt to step up.
    pub recover_hops: u64,
    /// Longest wait before stepping up (the back-off doubles up to this).
    pub max_recover_hops: u64,
    /// A step up followed by a step down within this many hops counts as failed (back-off).
    pub probation_hops: u64,
    /// Smoothing factor of the load estimate per hop (exponential moving average).
    pub ema_alpha: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            degrade_load: 0.8,
            max_backlog_hops: 8,
            recover_load: 0.5,
            settle_hops: 25,         // 0.2 s
            recover_hops: 250,       // 2 s
            max_recover_hops: 7_500, // 60 s
            probation_hops: 625,     // 5 s
            ema_alpha: 0.05,
        }
    }
}

/// Why the level changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// Processing took too long per hop.
    Load,
    /// Input piled up (processing fell behind real time).
    Backlog,
    /// Load dropped enough for the level above.
    Recovered,
}

impl std::fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwitchReason::Load => "overload",
            SwitchReason::Backlog => "backlog",
            SwitchReason::Recovered => "recovered",
        })
    }
}

/// The decision logic, separate from any enhancer so it can be tested with synthetic timings.
/// Level 0 is the best (most expensive); higher levels are cheaper.
#[derive(Clone, Debug)]
pub struct OverloadPolicy {
    cfg: PolicyConfig,
    /// Network passes of each level (cost model for predicting the level above).
    passes: Vec<usize>,
    level: usize,
    ema: Option<f64>,
    hop: u64,
    changed_at: u64,
    last_up_at: Option<u64>,
    wait: u64,
    trigger: f64,
}

impl OverloadPolicy {
    /// A policy over levels with the given network passes per hop (best level first).
    pub fn new(cfg: PolicyConfig, passes: Vec<usize>) -> Self {
        assert!(!passes.is_empty());
        let wait = cfg.recover_hops;
        Self {
            cfg,
            passes,
            level: 0,
            ema: None,
            hop: 0,
            changed_at: 0,
            last_up_at: None,
            wait,
            trigger: 0.0,
        }
    }

    /// The current level.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Smoothed load (processing time / real time) at the current level.
    pub fn load(&self) -> f64 {
        self.ema.unwrap_or(0.0)
    }

    /// Smoothed load of the level that was left at the last change.
    pub fn trigger_load(&self) -> f64 {
        self.trigger
    }

    /// Current wait before a step up is tried (hops).
    pub fn recover_wait(&self) -> u64 {
        self.wait
    }

    /// Observe one processed hop: its processing time relative to the hop duration (`load`,
    /// 1.0 = exactly real time) and the hops still waiting. Returns the new level and why, if
    /// the level should change now.
    pub fn observe(&mut self, load: f64, backlog_hops: usize) -> Option<(usize, SwitchReason)> {
        self.hop += 1;
        let a = self.cfg.ema_alpha;
        let ema = match self.ema {
            None => load,
            Some(e) => e + a * (load - e),
        };
        self.ema = Some(ema);
        let at_level = self.hop - self.changed_at;
        let cheaper = self.level + 1 < self.passes.len();
        if cheaper && at_level >= self.cfg.settle_hops {
            // A backlog alone may be a burst from the device (e.g. after the source stalled);
            // it counts only when processing is also busy.
            let reason = if ema > self.cfg.degrade_load {
                Some(SwitchReason::Load)
            } else if backlog_hops > self.cfg.max_backlog_hops && ema > 0.5 * self.cfg.degrade_load {
                Some(SwitchReason::Backlog)
            } else {
                None
            };
            if let Some(r) = reason {
                if self.last_up_at.is_some_and(|t| self.hop - t <= self.cfg.probation_hops) {
                    self.wait = (self.wait * 2).min(self.cfg.max_recover_hops);
                }
                return Some((self.switch(self.level + 1, ema), r));
            }
        }
        if self.level > 0 && at_level >= self.wait {
            let up = self.level - 1;
            let predicted = ema * self.passes[up] as f64 / self.passes[self.level].max(1) as f64;
            if predicted < self.cfg.recover_load && backlog_hops <= 1 {
                self.last_up_at = Some(self.hop);
                return Some((self.switch(up, ema), SwitchReason::Recovered));
            }
        }
        if self.level == 0
            && self
                .last_up_at
                .is_some_and(|t| self.hop - t > self.cfg.max_recover_hops)
        {
            // Stable at the top for a long time: forget earlier failures.
            self.wait = self.cfg.recover_hops;
            self.last_up_at = None;
        }
        None
    }

    fn switch(&mut self, to: usize, ema: f64) -> usize {
        self.trigger = ema;
        // Rescale the load estimate to the new level's cost.
        let scale = self.passes[to] as f64 / self.passes[self.level].max(1) as f64;
        self.ema = Some(ema * scale);
        self.level = to;
        self.changed_at = self.hop;
        to
    }
}

/// Settings of an [`AdaptiveEnhancer`].
#[derive(Clone, Debug)]
pub struct AdaptiveConfig {
    /// Reverse steps at full quality.
    pub steps: usize,
    /// Corrector pass per reverse step.
    pub corrector: bool,
    /// Seed of the stochastic steps.
    pub seed: u64,
    /// Pipelined schedule (one batched network call per hop; more latency, less per-call cost).
    pub pipelined: bool,
    /// Degrade under overload. Off: a single level (the requested steps), never changes.
    pub adaptive: bool,
    /// Overload policy.
    pub policy: PolicyConfig,
    /// Test hook: extra busy time per network pass, to simulate a slow machine.
    pub simulate_pass_cost: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            steps: 1,
            corrector: true,
            seed: 0,
            pipelined: false,
            adaptive: true,
            policy: PolicyConfig::default(),
            simulate_pass_cost: Duration::ZERO,
        }
    }
}

/// A level change that happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    /// Hop index at which the new level took over.
    pub hop: u64,
    /// Reverse steps before.
    pub from_steps: usize,
    /// Reverse steps after.
    pub to_steps: usize,
    /// Why.
    pub reason: SwitchReason,
    /// Smoothed load (processing time / real time) of the level that was left.
    pub load: f64,
}

struct Level {
    steps: usize,
    enh: Enhancer,
    /// Enhanced samples not yet emitted; `fifo[0]` belongs to input sample `fifo_start`.
    fifo: VecDeque<f32>,
    fifo_start: u64,
    hops: u64,
}

/// Steps of each level for a requested step count (best first, down to 0).
pub fn ladder(steps: usize, adaptive: bool) -> Vec<usize> {
    if !adaptive {
        return vec![steps];
    }
    let mut v = vec![steps];
    if steps > 3 {
        v.push(steps / 2);
    }
    for s in [1usize, 0] {
        if s < *v.last().unwrap() {
            v.push(s);
        }
    }
    v
}

/// Streaming enhancer for live use: 128-sample hops in, 128 samples out per hop, a constant
/// delay of [`AdaptiveEnhancer::latency_samples`], and overload degradation (see the module docs).
pub struct AdaptiveEnhancer {
    levels: Vec<Level>,
    active: usize,
    delay: usize,
    hops: u64,
    history: VecDeque<f32>,
    history_len: usize,
    policy: OverloadPolicy,
    adaptive: bool,
    simulate_pass_cost: Duration,
    switches: Vec<Switch>,
    hops_at_level: Vec<u64>,
    tmp: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    slips: u64,
    pending: Option<usize>,
}

impl AdaptiveEnhancer {
    /// Load the model once per level and build the ladder.
    pub fn from_path(model: &Path, opts: &ModelOptions, cfg: AdaptiveConfig) -> Result<Self> {
        let steps = ladder(cfg.steps, cfg.adaptive);
        let models = steps
            .iter()
            .map(|_| Model::load(model, opts))
            .collect::<Result<Vec<_>>>()?;
        Self::new(models, cfg)
    }

    /// Build from one loaded model per level (`ladder(cfg.steps, cfg.adaptive).len()` models).
    pub fn new(models: Vec<Model>, cfg: AdaptiveConfig) -> Result<Self> {
        let steps = ladder(cfg.steps, cfg.adaptive);
        if models.len() != steps.len() {
            return Err(Error::Config(format!(
                "{} models for {} levels",
                models.len(),
                steps.len()
            )));
        }
        let mut levels = Vec::new();
        for (m, s) in models.into_iter().zip(&steps) {
            let enh = Enhancer::new(
                m,
                EnhancerConfig {
                    steps: *s,
                    corrector: cfg.corrector,
                    seed: cfg.seed,
                    channels: 1,
                    frames_per_call: 1,
                    pipelined: cfg.pipelined && *s > 0,
                },
            )?;
            levels.push(Level {
                steps: *s,
                enh,
                fifo: VecDeque::new(),
                fifo_start: 0,
                hops: 0,
            });
        }
        let delay = levels.iter().map(|l| l.enh.latency_samples()).max().unwrap_or(0);
        let history_len = (delay + 16 * HOP).div_ceil(HOP) * HOP;
        let passes = levels.iter().map(|l| l.enh.network_passes()).collect();
        let n = levels.len();
        // Run every level once at both call sizes (a switch's warm-up batch and the per-hop
        // call) before any audio flows: ONNX Runtime plans and allocates for a new input shape
        // on its first run, which took up to ~0.7 s on a busy machine when it happened at the
        // first switch, i.e. exactly when the machine was already overloaded.
        let zeros = vec![0.0f32; history_len];
        let mut tmp = Vec::new();
        for level in &mut levels {
            process_batch(&mut level.enh, &zeros, &mut tmp)?;
            tmp.clear();
            level.enh.process(&zeros[..4 * HOP], &mut tmp)?;
            tmp.clear();
            level.enh.reset();
        }
        Ok(Self {
            levels,
            active: 0,
            delay,
            hops: 0,
            history: VecDeque::with_capacity(history_len + HOP),
            history_len,
            policy: OverloadPolicy::new(cfg.policy.clone(), passes),
            adaptive: cfg.adaptive,
            simulate_pass_cost: cfg.simulate_pass_cost,
            switches: Vec::new(),
            hops_at_level: vec![0; n],
            tmp: Vec::new(),
            a: Vec::with_capacity(HOP),
            b: Vec::with_capacity(HOP),
            slips: 0,
            pending: None,
        })
    }

    /// Constant delay of the output behind the input, in 16 kHz samples: the largest
    /// [`Enhancer::latency_samples`] of the ladder (the full-quality level's).
    pub fn latency_samples(&self) -> usize {
        self.delay
    }

    /// Input samples a level is warmed up on before it takes over.
    pub fn history_samples(&self) -> usize {
        self.history_len
    }

    /// Reverse steps of each level, best first.
    pub fn ladder(&self) -> Vec<usize> {
        self.levels.iter().map(|l| l.steps).collect()
    }

    /// Reverse steps of the level running now.
    pub fn steps(&self) -> usize {
        self.levels[self.active].steps
    }

    /// Network passes per frame of the level running now.
    pub fn network_passes(&self) -> usize {
        self.levels[self.active].enh.network_passes()
    }

    /// Index of the level running now (0 = full quality).
    pub fn level(&self) -> usize {
        self.active
    }

    /// The model of the full-quality level.
    pub fn model(&self) -> &Model {
        self.levels[0].enh.model()
    }

    /// Level changes so far.
    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }

    /// Hops processed at each level (same order as [`AdaptiveEnhancer::ladder`]).
    pub fn hops_at_level(&self) -> &[u64] {
        &self.hops_at_level
    }

    /// Hops processed.
    pub fn hops(&self) -> u64 {
        self.hops
    }

    /// Output samples that had no enhanced sample to come from (should stay 0).
    pub fn slips(&self) -> u64 {
        self.slips
    }

    /// Smoothed load (processing time / real time) of the running level.
    pub fn load(&self) -> f64 {
        self.policy.load()
    }

    /// Forget the stream: every level, the history and the level choice start over.
    pub fn reset(&mut self) {
        for l in &mut self.levels {
            l.enh.reset();
            l.fifo.clear();
            l.fifo_start = 0;
            l.hops = 0;
        }
        self.history.clear();
        self.hops = 0;
        self.active = 0;
        self.pending = None;
    }

    /// Switch to `level` now (the change takes effect with the next hop, cross-faded).
    pub fn force_level(&mut self, level: usize) -> Result<()> {
        if level >= self.levels.len() {
            return Err(Error::Config(format!("no level {level}")));
        }
        if level != self.active {
            self.pending = Some(level);
        }
        Ok(())
    }

    /// Process one hop of [`HOP`] samples and append exactly [`HOP`] output samples to `out`.
    /// `backlog_hops` is how many more hops already wait to be processed (for the overload
    /// policy). Returns the processing time of this hop.
    pub fn push_hop(&mut self, hop: &[f32], backlog_hops: usize, out: &mut Vec<f32>) -> Result<Duration> {
        assert_eq!(hop.len(), HOP, "push_hop takes exactly one hop");
        let start = Instant::now();
        let n0 = self.hops * HOP as u64;
        let switching = self.pending.take();
        self.a.clear();
        Self::run_level(
            &mut self.levels[self.active],
            hop,
            n0,
            self.delay,
            self.simulate_pass_cost,
            &mut self.tmp,
            &mut self.a,
            &mut self.slips,
        )?;
        if let Some(to) = switching {
            self.warm_up(to, n0)?;
            self.b.clear();
            Self::run_level(
                &mut self.levels[to],
                hop,
                n0,
                self.delay,
                self.simulate_pass_cost,
                &mut self.tmp,
                &mut self.b,
                &mut self.slips,
            )?;
            for (i, (x, y)) in self.a.iter_mut().zip(&self.b).enumerate() {
                let w = 0.5 - 0.5 * (std::f32::consts::PI * (i as f32 + 0.5) / HOP as f32).cos();
                *x = (1.0 - w) * *x + w * y;
            }
            self.active = to;
        }
        out.extend_from_slice(&self.a);
        self.history.extend(hop.iter().copied());
        while self.history.len() > self.history_len {
            self.history.pop_front();
        }
        self.hops += 1;
        self.hops_at_level[self.active] += 1;
        let cost = start.elapsed();
        if self.adaptive && switching.is_none() {
            let load = cost.as_secs_f64() / HOP_DURATION.as_secs_f64();
            if let Some((to, reason)) = self.policy.observe(load, backlog_hops) {
                self.switches.push(Switch {
                    hop: self.hops,
                    from_steps: self.levels[self.active].steps,
                    to_steps: self.levels[to].steps,
                    reason,
                    load: self.policy.trigger_load(),
                });
                self.pending = Some(to);
            }
        }
        Ok(cost)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_level(
        level: &mut Level,
        hop: &[f32],
        n0: u64,
        delay: usize,
        extra: Duration,
        tmp: &mut Vec<f32>,
        out: &mut Vec<f32>,
        slips: &mut u64,
    ) -> Result<()> {
        tmp.clear();
        level.enh.process(hop, tmp)?;
        if !extra.is_zero() {
            let until = Instant::now() + extra * level.enh.network_passes() as u32;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        level.fifo.extend(tmp.iter().copied());
        level.hops += 1;
        // Output sample n0 + i carries input sample n0 + i - delay.
        for i in 0..HOP as u64 {
            let want = (n0 + i) as i64 - delay as i64;
            if want < 0 {
                out.push(0.0);
                continue;
            }
            let want = want as u64;
            while level.fifo_start < want && !level.fifo.is_empty() {
                level.fifo.pop_front();
                level.fifo_start += 1;
            }
            match level.fifo.front() {
                Some(&v) if level.fifo_start == want => {
                    out.push(v);
                    level.fifo.pop_front();
                    level.fifo_start += 1;
                }
                _ => {
                    out.push(0.0);
                    *slips += 1;
                }
            }
        }
        Ok(())
    }

    /// Restart level `to` on the recent input so that it can take over at input sample `n0`.
    fn warm_up(&mut self, to: usize, n0: u64) -> Result<()> {
        let hist: Vec<f32> = self.history.iter().copied().collect();
        let level = &mut self.levels[to];
        level.enh.reset();
        level.fifo.clear();
        level.fifo_start = n0 - hist.len() as u64;
        self.tmp.clear();
        process_batch(&mut level.enh, &hist, &mut self.tmp)?;
        level.fifo.extend(self.tmp.iter().copied());
        Ok(())
    }
}

/// Run `input` through `enh` in 64-frame calls (a warm-up batch), back to one frame per call
/// (the per-hop setting) afterwards, also on error.
fn process_batch(enh: &mut Enhancer, input: &[f32], output: &mut Vec<f32>) -> Result<()> {
    enh.set_frames_per_call(64);
    let r = enh.process(input, output);
    enh.set_frames_per_call(1);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OverloadPolicy {
        OverloadPolicy::new(PolicyConfig::default(), vec![3, 1])
    }

    #[test]
    fn ladders() {
        assert_eq!(ladder(1, true), vec![1, 0]);
        assert_eq!(ladder(0, true), vec![0]);
        assert_eq!(ladder(3, true), vec![3, 1, 0]);
        assert_eq!(ladder(8, true), vec![8, 4, 1, 0]);
        assert_eq!(ladder(2, false), vec![2]);
    }

    #[test]
    fn light_load_never_degrades() {
        let mut p = policy();
        for _ in 0..10_000 {
            assert_eq!(p.observe(0.3, 0), None);
        }
        assert_eq!(p.level(), 0);
    }

    #[test]
    fn overload_degrades_then_recovers_with_backoff() {
        let mut p = policy();
        // Sustained overload at the top level: steps down after the settle time.
        let mut at = None;
        for h in 0..200 {
            if let Some((l, r)) = p.observe(1.2, 0) {
                at = Some((h, l, r));
                break;
            }
        }
        let (h, l, r) = at.expect("degrades");
        assert!((24..60).contains(&h), "after {h} hops");
        assert_eq!((l, r), (1, SwitchReason::Load));
        // At the cheap level the load is a third: 0.4 → predicted 1.2 at the top: stays down.
        for _ in 0..1000 {
            assert_eq!(p.observe(0.4, 0), None);
        }
        // The machine gets faster: 0.1 at the cheap level predicts 0.3 at the top → steps up
        // (after the EMA settles and the 2 s wait).
        let mut up = None;
        for h in 0..2000 {
            if let Some(x) = p.observe(0.1, 0) {
                up = Some((h, x));
                break;
            }
        }
        assert_eq!(up.map(|u| u.1), Some((0, SwitchReason::Recovered)));
        // Overloaded again right away: a failed attempt doubles the wait.
        let w = p.recover_wait();
        let mut down = false;
        for _ in 0..200 {
            if p.observe(1.5, 0).is_some() {
                down = true;
                break;
            }
        }
        assert!(down);
        assert_eq!(p.recover_wait(), 2 * w);
    }

    #[test]
    fn backlog_degrades_even_at_moderate_load() {
        let mut p = policy();
        for _ in 0..30 {
            p.observe(0.5, 0);
        }
        assert_eq!(p.observe(0.5, 20), Some((1, SwitchReason::Backlog)));
        // A burst from the device while processing is light is not an overload.
        let mut q = policy();
        for _ in 0..100 {
            assert_eq!(q.observe(0.1, 50), None);
        }
        // Already at the cheapest level: nothing more to do.
        for _ in 0..100 {
            assert!(p.observe(2.0, 50).is_none());
        }
    }
}
