//! Live enhancement: capture from an audio device, enhance, play to an audio device.
//!
//! Threads: cpal runs one callback thread per stream; the thread that calls [`run`] does the
//! processing. The callbacks only move preallocated blocks over bounded crossbeam channels with
//! `try_send`/`try_recv` and count problems in atomics ([`device`]); they never block, lock or
//! allocate. The processing thread turns captured blocks into output blocks through a
//! [`Pipeline`] (mono, resampling, [`AdaptiveEnhancer`] with overload degradation), keeps the
//! output queue at a small fixed fill level, writes recordings through a separate writer thread,
//! and reports.
//!
//! Latency terms used in the reports:
//! * **algorithmic**: the enhancer's STFT framing plus look-ahead (383 samples = 23.9 ms for a
//!   causal model), i.e. [`AdaptiveEnhancer::latency_samples`];
//! * **pipeline delay**: algorithmic + the fixed alignment that absorbs resampler and hop bursts;
//!   exactly the lag between `--record-input` and `--record-output`;
//! * **buffering**: the output queue's measured mean fill (its target is device periods + safety
//!   margin; it runs above that after a playback stall the server did not report, until the drift
//!   correction trims it) and the device buffers as the driver reports them; end-to-end ≈
//!   pipeline delay + buffering.

pub mod adaptive;
mod device;
pub mod pipeline;
pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};

pub use adaptive::{AdaptiveConfig, AdaptiveEnhancer, OverloadPolicy, PolicyConfig, Switch, SwitchReason};
pub use pipeline::{Pipeline, PipelineConfig};

use crate::audio::wav::{SampleFormat, WavFormat, WavOutput};
use crate::error::{Error, Result};
use crate::model::ModelOptions;
use device::{Block, Counters, Direction};
use stats::ms;

/// Settings of a live run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Thunder ONNX model.
    pub model: PathBuf,
    /// Session options (threads, device, runtime library).
    pub model_options: ModelOptions,
    /// Steps, seed, overload policy.
    pub enhancer: AdaptiveConfig,
    /// Audio host (`alsa`, `pulseaudio`, …); `None` = PulseAudio when a server is reachable,
    /// else the platform default.
    pub host: Option<String>,
    /// Capture device (see `--list-devices`); `None` = the default.
    pub input_device: Option<String>,
    /// Playback device; `None` = the default.
    pub output_device: Option<String>,
    /// Write what was captured (device rate and channels, 32-bit float WAV).
    pub record_input: Option<PathBuf>,
    /// Write the enhanced stream handed to the playback device (device rate and channels),
    /// sample-aligned with `record_input`: it lags by exactly the pipeline delay.
    pub record_output: Option<PathBuf>,
    /// Stop after this long (None = until stopped).
    pub duration: Option<Duration>,
    /// Requested device period (callback size); zero = the device's default.
    pub period: Duration,
    /// Safety margin of the output queue on top of one input and one output period.
    pub margin: Duration,
    /// Run the processing thread with real-time scheduling (SCHED_FIFO) when permitted, so
    /// other load on the machine cannot delay it. Falls back to normal scheduling (reported).
    pub realtime: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            model: PathBuf::from(crate::model::DEFAULT_MODEL),
            model_options: ModelOptions {
                threads: 1,
                ..Default::default()
            },
            enhancer: AdaptiveConfig::default(),
            host: None,
            input_device: None,
            output_device: None,
            record_input: None,
            record_output: None,
            duration: None,
            period: Duration::from_millis(10),
            margin: Duration::from_millis(6),
            realtime: true,
        }
    }
}

/// What was set up, reported at the start.
#[derive(Clone, Debug)]
pub struct StartReport {
    /// Audio host.
    pub host: String,
    /// Capture device id.
    pub input_device: String,
    /// Playback device id.
    pub output_device: String,
    /// Capture format (rate, channels, sample format).
    pub input_format: String,
    /// Playback format.
    pub output_format: String,
    /// Model name and version.
    pub model: String,
    /// Steps of the ladder, best first.
    pub ladder: Vec<usize>,
    /// Network passes per frame at full quality.
    pub passes: usize,
    /// STFT framing + look-ahead.
    pub algorithmic: Duration,
    /// Resampler filter delay (part of the alignment).
    pub resampling: Duration,
    /// Algorithmic + alignment: the lag from `--record-input` to `--record-output`.
    pub pipeline_delay: Duration,
    /// Requested device period.
    pub period: Duration,
    /// Scheduling of the processing thread.
    pub scheduling: String,
}

impl std::fmt::Display for StartReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "live: host {} | input {} ({}) -> output {} ({})",
            self.host, self.input_device, self.input_format, self.output_device, self.output_format
        )?;
        writeln!(
            f,
            "live: model {} | steps {} ({} network passes/frame){} ",
            self.model,
            self.ladder[0],
            self.passes,
            if self.ladder.len() > 1 {
                format!(
                    " | overload ladder {}",
                    self.ladder
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                )
            } else {
                " | no overload degradation".into()
            }
        )?;
        write!(
            f,
            "live: latency: algorithmic {:.1} ms (STFT window + look-ahead) | pipeline delay {:.1} ms \
             (+ resampling {:.1} ms and hop alignment) | buffering: device period {:.1} ms requested, \
             output queue set on the first input | processing thread: {} | Ctrl-C stops",
            ms(self.algorithmic),
            ms(self.pipeline_delay),
            ms(self.resampling),
            ms(self.period),
            self.scheduling,
        )
    }
}

/// Everything measured, reported at the end.
#[derive(Clone, Debug)]
pub struct LiveReport {
    /// The setup.
    pub start: StartReport,
    /// Why the run ended: "stopped", "duration reached", or the stream error.
    pub ended: String,
    /// A device/stream error ended the run.
    pub device_error: Option<String>,
    /// Wall time from the start of the streams.
    pub wall: Duration,
    /// Audio processed (input frames / input rate).
    pub audio: Duration,
    /// Hops processed.
    pub hops: u64,
    /// Per-hop processing time of the enhancer.
    pub hop_p50: Duration,
    /// 99th percentile.
    pub hop_p99: Duration,
    /// Maximum.
    pub hop_max: Duration,
    /// Processing time / audio time (whole pipeline incl. resampling).
    pub rtf: f64,
    /// Capture overruns reported by the driver.
    pub input_xruns: u64,
    /// Playback underruns reported by the driver.
    pub output_xruns: u64,
    /// Capture frames dropped (no room in the queue: processing too slow).
    pub dropped_input_frames: u64,
    /// Callbacks that dropped frames.
    pub dropped_input_events: u64,
    /// Playback callbacks that found the queue empty after the start.
    pub output_underruns: u64,
    /// Frames of silence those played.
    pub output_underrun_frames: u64,
    /// Enhanced frames that found no room in the output queue.
    pub dropped_output_frames: u64,
    /// Frames dropped (+) or inserted (−) to keep the output queue level against clock drift.
    pub drift_corrections: u64,
    /// Output frames without a processed sample (should be 0).
    pub slips: u64,
    /// Level changes of the overload policy.
    pub switches: Vec<Switch>,
    /// Hops per level (ladder order).
    pub hops_at_level: Vec<u64>,
    /// Output queue target (frames of the output device) and its duration.
    pub queue_target: Duration,
    /// Mean fill of the output queue, measured after each processed batch. Above the target
    /// when the playback side stalled (e.g. an audio server's unreported underrun inserted
    /// silence) until the drift correction takes the excess out.
    pub queue_mean: Duration,
    /// Largest measured fill of the output queue.
    pub queue_max: Duration,
    /// The output queue's mean fill (output frames) per stretch of captured audio: how the
    /// buffering part of the latency moved during the run (e.g. up after a stall, back down when
    /// the drift correction trimmed it).
    pub queue_timeline: stats::Timeline,
    /// Capture rate (frames per second), the time base of [`LiveReport::queue_timeline`].
    pub input_rate: u32,
    /// Playback rate, the unit of the timeline's values.
    pub output_rate: u32,
    /// Mean capture delay the driver reported.
    pub input_device_delay: Duration,
    /// Mean playback delay the driver reported.
    pub output_device_delay: Duration,
    /// Stream errors that were not fatal (other than xruns).
    pub stream_errors: u64,
    /// Streams reopened after repeated errors.
    pub stream_restarts: u64,
    /// Largest capture period seen.
    pub input_period: Duration,
    /// Largest playback period seen.
    pub output_period: Duration,
}

impl LiveReport {
    /// Every xrun and dropped buffer together (0 for a clean run).
    pub fn xruns(&self) -> u64 {
        self.input_xruns
            + self.output_xruns
            + self.dropped_input_events
            + self.output_underruns
            + u64::from(self.dropped_output_frames > 0)
    }

    /// The report as JSON (durations in milliseconds), for scripts and tests.
    pub fn to_json(&self) -> serde_json::Value {
        let st = &self.start;
        let mut m = serde_json::Map::new();
        m.insert("host".into(), serde_json::json!(st.host));
        m.insert("input_device".into(), serde_json::json!(st.input_device));
        m.insert("output_device".into(), serde_json::json!(st.output_device));
        m.insert("input_format".into(), serde_json::json!(st.input_format));
        m.insert("output_format".into(), serde_json::json!(st.output_format));
        m.insert("model".into(), serde_json::json!(st.model));
        m.insert("scheduling".into(), serde_json::json!(st.scheduling));
        m.insert("ladder".into(), serde_json::json!(st.ladder));
        m.insert("network_passes".into(), serde_json::json!(st.passes));
        m.insert("algorithmic_latency_ms".into(), serde_json::json!(ms(st.algorithmic)));
        m.insert("resampling_delay_ms".into(), serde_json::json!(ms(st.resampling)));
        m.insert("pipeline_delay_ms".into(), serde_json::json!(ms(st.pipeline_delay)));
        m.insert("queue_target_ms".into(), serde_json::json!(ms(self.queue_target)));
        m.insert("queue_mean_ms".into(), serde_json::json!(ms(self.queue_mean)));
        m.insert("queue_max_ms".into(), serde_json::json!(ms(self.queue_max)));
        let out_ms = 1000.0 / self.output_rate.max(1) as f64;
        m.insert(
            "queue_timeline".into(),
            serde_json::json!({
                "step_s": self.queue_timeline.bucket_frames() as f64 / self.input_rate.max(1) as f64,
                "mean_ms": self
                    .queue_timeline
                    .means()
                    .iter()
                    .map(|v| v.map(|f| f * out_ms))
                    .collect::<Vec<_>>(),
            }),
        );
        m.insert(
            "input_device_delay_ms".into(),
            serde_json::json!(ms(self.input_device_delay)),
        );
        m.insert(
            "output_device_delay_ms".into(),
            serde_json::json!(ms(self.output_device_delay)),
        );
        m.insert("total_latency_ms".into(), serde_json::json!(ms(self.total_latency())));
        m.insert("input_period_ms".into(), serde_json::json!(ms(self.input_period)));
        m.insert("output_period_ms".into(), serde_json::json!(ms(self.output_period)));
        m.insert("ended".into(), serde_json::json!(self.ended));
        m.insert("device_error".into(), serde_json::json!(self.device_error));
        m.insert("wall_s".into(), serde_json::json!(self.wall.as_secs_f64()));
        m.insert("audio_s".into(), serde_json::json!(self.audio.as_secs_f64()));
        m.insert("hops".into(), serde_json::json!(self.hops));
        m.insert("hop_p50_ms".into(), serde_json::json!(ms(self.hop_p50)));
        m.insert("hop_p99_ms".into(), serde_json::json!(ms(self.hop_p99)));
        m.insert("hop_max_ms".into(), serde_json::json!(ms(self.hop_max)));
        m.insert("rtf".into(), serde_json::json!(self.rtf));
        m.insert("xruns".into(), serde_json::json!(self.xruns()));
        m.insert("input_xruns".into(), serde_json::json!(self.input_xruns));
        m.insert("output_xruns".into(), serde_json::json!(self.output_xruns));
        m.insert(
            "dropped_input_frames".into(),
            serde_json::json!(self.dropped_input_frames),
        );
        m.insert(
            "dropped_input_events".into(),
            serde_json::json!(self.dropped_input_events),
        );
        m.insert("output_underruns".into(), serde_json::json!(self.output_underruns));
        m.insert(
            "output_underrun_frames".into(),
            serde_json::json!(self.output_underrun_frames),
        );
        m.insert(
            "dropped_output_frames".into(),
            serde_json::json!(self.dropped_output_frames),
        );
        m.insert("stream_errors".into(), serde_json::json!(self.stream_errors));
        m.insert("stream_restarts".into(), serde_json::json!(self.stream_restarts));
        m.insert("drift_corrections".into(), serde_json::json!(self.drift_corrections));
        m.insert("slips".into(), serde_json::json!(self.slips));
        m.insert("hops_at_level".into(), serde_json::json!(self.hops_at_level));
        let switches: Vec<serde_json::Value> = self
            .switches
            .iter()
            .map(|s| {
                serde_json::json!({
                    "at_s": s.hop as f64 * 0.008,
                    "from_steps": s.from_steps,
                    "to_steps": s.to_steps,
                    "reason": s.reason.to_string(),
                    "load": s.load,
                })
            })
            .collect();
        m.insert("switches".into(), serde_json::Value::Array(switches));
        serde_json::Value::Object(m)
    }

    /// Estimated end-to-end latency: pipeline delay + measured mean output queue + device delays.
    pub fn total_latency(&self) -> Duration {
        self.start.pipeline_delay + self.queue_mean + self.input_device_delay + self.output_device_delay
    }
}

impl std::fmt::Display for LiveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "live: ended: {} | wall {:.2} s | audio {:.2} s | {} hops",
            self.ended,
            self.wall.as_secs_f64(),
            self.audio.as_secs_f64(),
            self.hops
        )?;
        writeln!(
            f,
            "live: per-hop processing p50 {:.3} ms | p99 {:.3} ms | max {:.3} ms (hop = 8 ms) | RTF {:.3}",
            ms(self.hop_p50),
            ms(self.hop_p99),
            ms(self.hop_max),
            self.rtf
        )?;
        writeln!(
            f,
            "live: xruns {} (driver: input {}, output {}; dropped input {} frames in {} callbacks; output \
             underruns {} ({} frames); dropped output {} frames) | stream errors {} (reopened {}) | drift corrections {} frames | slips {}",
            self.xruns(),
            self.input_xruns,
            self.output_xruns,
            self.dropped_input_frames,
            self.dropped_input_events,
            self.output_underruns,
            self.output_underrun_frames,
            self.dropped_output_frames,
            self.stream_errors,
            self.stream_restarts,
            self.drift_corrections,
            self.slips
        )?;
        writeln!(
            f,
            "live: latency: algorithmic {:.1} ms | pipeline delay {:.1} ms | buffering: output queue {:.1} ms \
             (target {:.1}, max {:.1}), device input {:.1} ms, output {:.1} ms (driver-reported means; periods in {:.1} ms, out {:.1} ms) | \
             total ≈ {:.1} ms",
            ms(self.start.algorithmic),
            ms(self.start.pipeline_delay),
            ms(self.queue_mean),
            ms(self.queue_target),
            ms(self.queue_max),
            ms(self.input_device_delay),
            ms(self.output_device_delay),
            ms(self.input_period),
            ms(self.output_period),
            ms(self.total_latency())
        )?;
        let levels: Vec<String> = self
            .start
            .ladder
            .iter()
            .zip(&self.hops_at_level)
            .map(|(s, h)| format!("steps {s}: {:.1} s", *h as f64 * 0.008))
            .collect();
        write!(
            f,
            "live: overload: {} level change{} | {}",
            self.switches.len(),
            if self.switches.len() == 1 { "" } else { "s" },
            levels.join(", ")
        )?;
        for s in &self.switches {
            write!(
                f,
                "\nlive:   at {:.2} s: steps {} -> {} ({}, load {:.0}%)",
                s.hop as f64 * 0.008,
                s.from_steps,
                s.to_steps,
                s.reason,
                s.load * 100.0
            )?;
        }
        if let Some(e) = &self.device_error {
            write!(f, "\nlive: device error: {e}")?;
        }
        Ok(())
    }
}

/// Every audio device of the host (see [`LiveOptions::host`]), with its default formats.
pub fn list_devices(host: Option<&str>) -> Result<String> {
    device::describe_devices(host)
}

enum Rec {
    In(Vec<f32>),
    Out(Vec<f32>),
}

/// Writes the recordings on its own thread so disk I/O never delays processing.
struct Recorder {
    tx: Option<crossbeam_channel::Sender<Rec>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Recorder {
    fn new(input: Option<(PathBuf, WavFormat)>, output: Option<(PathBuf, WavFormat)>) -> Result<Self> {
        if input.is_none() && output.is_none() {
            return Ok(Self { tx: None, thread: None });
        }
        let mut wi = input.map(|(p, f)| WavOutput::create(&p, f)).transpose()?;
        let mut wo = output.map(|(p, f)| WavOutput::create(&p, f)).transpose()?;
        let (tx, rx) = crossbeam_channel::unbounded::<Rec>();
        let thread = std::thread::Builder::new()
            .name("thunder-record".into())
            .spawn(move || {
                let mut res = Ok(());
                for r in rx {
                    let w = match r {
                        Rec::In(v) => wi.as_mut().map(|w| w.write(&v)),
                        Rec::Out(v) => wo.as_mut().map(|w| w.write(&v)),
                    };
                    if let Some(Err(e)) = w {
                        res = Err(e);
                        break;
                    }
                }
                res?;
                if let Some(w) = wi {
                    w.commit()?;
                }
                if let Some(w) = wo {
                    w.commit()?;
                }
                Ok(())
            })
            .map_err(|e| Error::Output {
                path: PathBuf::new(),
                msg: format!("cannot start the recording thread: {e}"),
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn input(&self, v: &[f32]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Rec::In(v.to_vec()));
        }
    }

    fn output(&self, v: &[f32]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Rec::Out(v.to_vec()));
        }
    }

    /// Finish and commit the files.
    fn finish(mut self) -> Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::Output {
                    path: PathBuf::new(),
                    msg: "the recording thread panicked".into(),
                })
            }),
            None => Ok(()),
        }
    }
}

fn format_of(c: &cpal::SupportedStreamConfig) -> String {
    format!("{} Hz, {} ch, {}", c.sample_rate(), c.channels(), c.sample_format())
}

/// Ask for SCHED_FIFO (priority 10) for the calling thread; says what was granted.
fn realtime_scheduling() -> String {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall on the calling thread with a valid parameter struct.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if r == 0 {
            "real-time (SCHED_FIFO 10)".into()
        } else {
            format!(
                "normal scheduling (real-time refused: {})",
                std::io::Error::last_os_error()
            )
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        "normal scheduling".into()
    }
}

/// Back to normal scheduling for the calling thread (after [`realtime_scheduling`]).
fn normal_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread with a valid parameter struct.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    }
}

fn c_in_delay(c: &Counters) -> u64 {
    c.in_delay_ns.load(Relaxed)
}

fn dur(frames: u64, rate: u32) -> Duration {
    Duration::from_secs_f64(frames as f64 / rate as f64)
}

/// Run live enhancement until `stop` is set, `opts.duration` passes, or a stream fails.
/// `log` receives the start report and events (level changes, notices) as they happen.
pub fn run(opts: &LiveOptions, stop: &AtomicBool, log: &mut dyn FnMut(&str)) -> Result<LiveReport> {
    let host = device::pick_host(opts.host.as_deref())?;
    let in_dev = device::find_device(&host, opts.input_device.as_deref(), Direction::Input)?;
    let out_dev = device::find_device(&host, opts.output_device.as_deref(), Direction::Output)?;
    let in_sup = in_dev
        .default_input_config()
        .map_err(|e| Error::Audio(format!("{} cannot capture: {e}", device::device_name(&in_dev))))?;
    let out_sup = out_dev
        .default_output_config()
        .map_err(|e| Error::Audio(format!("{} cannot play: {e}", device::device_name(&out_dev))))?;
    let (in_rate, in_ch) = (in_sup.sample_rate(), in_sup.channels() as usize);
    let (out_rate, out_ch) = (out_sup.sample_rate(), out_sup.channels() as usize);

    let enh = AdaptiveEnhancer::from_path(&opts.model, &opts.model_options, opts.enhancer.clone())?;
    let info = enh.model().info().clone();
    let mut pipe = Pipeline::new(
        enh,
        PipelineConfig {
            in_rate,
            in_channels: in_ch,
            out_rate,
            out_channels: out_ch,
        },
    )?;
    let start_report = StartReport {
        host: host.id().name().to_lowercase(),
        input_device: device::device_name(&in_dev),
        output_device: device::device_name(&out_dev),
        input_format: format_of(&in_sup),
        output_format: format_of(&out_sup),
        model: format!("{} {}", info.name, info.version),
        ladder: pipe.enhancer().ladder(),
        passes: crate::sampler::network_passes(opts.enhancer.steps, opts.enhancer.corrector),
        algorithmic: pipe.algorithmic_latency(),
        resampling: pipe.resampler_delay(),
        pipeline_delay: pipe.delay(),
        period: opts.period,
        scheduling: if opts.realtime {
            "real-time requested (SCHED_FIFO 10)".into()
        } else {
            "normal scheduling".into()
        },
    };

    let wav = |rate: u32, ch: usize| WavFormat {
        channels: ch as u16,
        sample_rate: rate,
        bits: 32,
        format: SampleFormat::Float,
    };
    let recorder = Recorder::new(
        opts.record_input.clone().map(|p| (p, wav(in_rate, in_ch))),
        opts.record_output.clone().map(|p| (p, wav(out_rate, out_ch))),
    )?;

    // Block pools (allocated here, before the streams start): input blocks of up to ~21 ms,
    // sent from ~2.7 ms on; output blocks of ~4 ms (a fine-grained queue level). Several
    // seconds' worth each, so a stall of the processing thread is absorbed, not dropped.
    let in_block = (in_rate as usize / 48).max(64);
    let out_block = (out_rate as usize / 250).max(32);
    let in_count = 512;
    let out_count = 2048;
    let counters = Arc::new(Counters::default());
    let (err_tx, err_rx) = crossbeam_channel::bounded(16);
    let me = std::thread::current();
    let (in_free_tx, in_free_rx) = device::pool(in_count, in_block, in_ch);
    let (in_full_tx, in_full_rx) = crossbeam_channel::bounded::<Block>(in_count);
    let (out_free_tx, out_free_rx) = device::pool(out_count, out_block, out_ch);
    let (out_full_tx, out_full_rx) = crossbeam_channel::bounded::<Block>(out_count);

    let period_frames = |rate: u32| (opts.period.as_secs_f64() * rate as f64).round() as u32;
    let stream_config = |rate: u32, ch: usize, fixed: bool| cpal::StreamConfig {
        channels: ch as u16,
        sample_rate: rate,
        buffer_size: if fixed && !opts.period.is_zero() {
            cpal::BufferSize::Fixed(period_frames(rate))
        } else {
            cpal::BufferSize::Default
        },
    };
    let out_side = device::OutputSide {
        full_rx: out_full_rx,
        free_tx: out_free_tx.clone(),
        counters: counters.clone(),
        errors: err_tx.clone(),
        wake: me.clone(),
    };
    let in_side = device::InputSide {
        min_block_frames: (in_rate / 375).max(1),
        free_rx: in_free_rx,
        free_tx: in_free_tx.clone(),
        full_tx: in_full_tx,
        counters: counters.clone(),
        errors: err_tx.clone(),
        wake: me.clone(),
    };
    let open_output = |log: &mut dyn FnMut(&str)| -> Result<cpal::Stream> {
        let fmt = out_sup.sample_format();
        let st = device::build_output(&out_dev, stream_config(out_rate, out_ch, true), fmt, out_side.clone()).or_else(
            |e| {
                if opts.period.is_zero() {
                    return Err(e);
                }
                log(&format!(
                    "live: note: fixed output period refused ({e}); using the device default"
                ));
                device::build_output(&out_dev, stream_config(out_rate, out_ch, false), fmt, out_side.clone())
            },
        )?;
        st.play()
            .map_err(|e| Error::Audio(format!("cannot start playback: {e}")))?;
        Ok(st)
    };
    let open_input = |log: &mut dyn FnMut(&str)| -> Result<cpal::Stream> {
        let fmt = in_sup.sample_format();
        let st =
            device::build_input(&in_dev, stream_config(in_rate, in_ch, true), fmt, in_side.clone()).or_else(|e| {
                if opts.period.is_zero() {
                    return Err(e);
                }
                log(&format!(
                    "live: note: fixed input period refused ({e}); using the device default"
                ));
                device::build_input(&in_dev, stream_config(in_rate, in_ch, false), fmt, in_side.clone())
            })?;
        st.play()
            .map_err(|e| Error::Audio(format!("cannot start capture: {e}")))?;
        Ok(st)
    };
    log(&start_report.to_string());
    let mut out_stream = Some(open_output(log)?);
    let mut in_stream = Some(open_input(log)?);
    // Real-time priority only from here on: the streams exist and their threads run, so the
    // processing thread cannot starve their setup.
    let mut start_report = start_report;
    if opts.realtime {
        start_report.scheduling = realtime_scheduling();
    }
    log(&format!("live: processing thread: {}", start_report.scheduling));
    let started = Instant::now();

    // Processing loop.
    let mut out_buf: Vec<f32> = Vec::new();
    let mut zeros: Vec<f32> = Vec::new();
    let mut expected = 0u64;
    let mut target: Option<u64> = None;
    let mut seen_underruns = 0u64;
    let mut dropped_out = 0u64;
    let mut drift = 0u64;
    let mut skip = 0u64;
    let mut high_windows = 0u32;
    let mut window_min = i64::MAX;
    let mut window_start = Instant::now();
    let mut switches_seen = 0usize;
    let mut device_error: Option<String> = None;
    let mut windows = [(Instant::now(), 0u32); 2];
    let mut restarts = 0u32;
    let mut stream_errors = 0u64;
    let (mut in_delay_sum, mut out_delay_sum, mut delay_n) = (0u128, 0u128, 0u64);
    let (mut queue_sum, mut queue_n, mut queue_max) = (0u128, 0u64, 0u64);
    let mut queue_timeline = stats::Timeline::new(in_rate as u64 / 2);
    let mut failure: Option<Error> = None;
    let ended: String;

    // Queue `frames` interleaved samples from `data` for playback (silence if `data` is None).
    let send = |data: Option<&[f32]>, frames: usize, dropped: &mut u64| {
        let mut done = 0usize;
        while done < frames {
            let Ok(mut b) = out_free_rx.try_recv() else {
                *dropped += (frames - done) as u64;
                break;
            };
            let n = (frames - done).min(b.data.len() / out_ch);
            match data {
                Some(d) => b.data[..n * out_ch].copy_from_slice(&d[done * out_ch..(done + n) * out_ch]),
                None => b.data[..n * out_ch].fill(0.0),
            }
            b.len = n * out_ch;
            counters.out_queued.fetch_add(n as i64, Relaxed);
            if let Err(e) = out_full_tx.try_send(b) {
                counters.out_queued.fetch_sub(n as i64, Relaxed);
                *dropped += n as u64;
                let _ = out_free_tx.try_send(e.into_inner());
                break;
            }
            done += n;
        }
    };

    loop {
        if stop.load(Relaxed) {
            ended = "stopped".into();
            break;
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            ended = "duration reached".into();
            break;
        }
        let mut fatal = None;
        while let Ok((dir, e)) = err_rx.try_recv() {
            use cpal::ErrorKind as K;
            match e.kind() {
                K::DeviceNotAvailable | K::StreamInvalidated | K::HostUnavailable | K::PermissionDenied => {
                    fatal = Some(format!("{dir} stream failed: {e}"));
                    break;
                }
                _ => {
                    // Other errors may be transient. A stream that keeps failing (e.g. the
                    // ALSA pulse plugin after an xrun) is reopened; one that cannot be
                    // reopened, or fails again and again, ends the run.
                    stream_errors += 1;
                    log(&format!("live: warning: {dir} stream: {e}"));
                    let w = &mut windows[dir as usize];
                    if w.0.elapsed() > Duration::from_secs(1) {
                        *w = (Instant::now(), 0);
                    }
                    w.1 += 1;
                    if w.1 >= 3 {
                        *w = (Instant::now(), 0);
                        restarts += 1;
                        if restarts > 5 {
                            fatal = Some(format!("{dir} stream keeps failing: {e}"));
                            break;
                        }
                        log(&format!("live: reopening the {dir} stream"));
                        let reopened = match dir {
                            Direction::Input => {
                                in_stream = None;
                                open_input(log).map(|s| in_stream = Some(s))
                            }
                            Direction::Output => {
                                out_stream = None;
                                open_output(log).map(|s| out_stream = Some(s))
                            }
                        };
                        if let Err(e) = reopened {
                            fatal = Some(format!("{dir} stream failed and could not be reopened: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        if let Some(e) = fatal {
            ended = format!("device error ({e})");
            device_error = Some(e);
            break;
        }
        let mut got = false;
        // At most what is queued now, so stop, duration and errors are checked between
        // batches even if a device delivers faster than real time.
        let mut budget = in_full_rx.len().max(1);
        let batch_start = Instant::now();
        while budget > 0 && batch_start.elapsed() < Duration::from_millis(100) {
            budget -= 1;
            let Ok(b) = in_full_rx.try_recv() else { break };
            got = true;
            let frames = b.len / in_ch;
            let backlog = (counters.in_queued.fetch_sub(frames as i64, Relaxed) - frames as i64).max(0) as usize;
            let step = |input: &[f32], pipe: &mut Pipeline, out_buf: &mut Vec<f32>| -> Result<()> {
                recorder.input(input);
                out_buf.clear();
                pipe.push(input, backlog, out_buf)?;
                recorder.output(out_buf);
                Ok(())
            };
            if b.pos > expected {
                // Frames the callback had to drop: keep the timeline with silence (up to
                // 200 ms per gap; a longer gap, e.g. after a stall, is only counted).
                let gap = ((b.pos - expected) as usize).min(in_rate as usize / 5);
                zeros.clear();
                zeros.resize(gap * in_ch, 0.0);
                if let Err(e) = step(&zeros, &mut pipe, &mut out_buf) {
                    failure = Some(e);
                }
                let n = out_buf.len() / out_ch;
                send(Some(&out_buf), n, &mut dropped_out);
            }
            if failure.is_none() {
                if let Err(e) = step(&b.data[..b.len], &mut pipe, &mut out_buf) {
                    failure = Some(e);
                }
            }
            expected = b.pos + frames as u64;
            let _ = in_free_tx.try_send(b);
            if failure.is_some() {
                break;
            }
            if target.is_none() {
                // Prime the output queue: one input period (as output frames) + one output
                // period + the margin, so the first callbacks find data however they interleave.
                let in_p = counters.in_period.load(Relaxed) * out_rate as u64 / in_rate as u64;
                let out_p = match counters.out_period.load(Relaxed) {
                    0 => period_frames(out_rate) as u64,
                    p => p,
                };
                let t = in_p + out_p + (opts.margin.as_secs_f64() * out_rate as f64) as u64;
                send(None, t as usize, &mut dropped_out);
                target = Some(t);
            }
            let n = out_buf.len() / out_ch;
            let k = (skip as usize).min(n);
            skip -= k as u64;
            send(Some(&out_buf[k * out_ch..]), n - k, &mut dropped_out);
            for s in &pipe.enhancer().switches()[switches_seen..] {
                log(&format!(
                    "live: overload policy: steps {} -> {} ({}, load {:.0}%) at {:.2} s",
                    s.from_steps,
                    s.to_steps,
                    s.reason,
                    s.load * 100.0,
                    s.hop as f64 * 0.008
                ));
            }
            switches_seen = pipe.enhancer().switches().len();
        }
        if let Some(e) = failure.take() {
            normal_scheduling();
            drop(in_stream.take());
            drop(out_stream.take());
            let _ = recorder.finish();
            return Err(e);
        }
        if let Some(t) = target {
            // After an underrun the queue is empty: restore the cushion.
            let u = counters.out_underruns.load(Relaxed);
            if u != seen_underruns {
                seen_underruns = u;
                let level = counters.out_queued.load(Relaxed).max(0) as u64;
                if level < t {
                    send(None, (t - level) as usize, &mut dropped_out);
                }
            }
            // Excess buffering (clock drift, or a playback stall the server did not report):
            // over 1 s windows, the least-filled moment should be near the target.
            let level = counters.out_queued.load(Relaxed);
            window_min = window_min.min(level);
            if window_start.elapsed() >= Duration::from_secs(1) {
                // Only an excess that persists for two whole windows, beyond one output period +
                // 20 ms, is taken out (transient excess after an underrun's re-prime is not):
                // latency comes back within 2-3 s of a stall, at the cost of one skip.
                let slack = counters.out_period.load(Relaxed) as i64 + (out_rate / 50) as i64;
                if window_min != i64::MAX && window_min > t as i64 + slack {
                    high_windows += 1;
                } else {
                    high_windows = 0;
                }
                if high_windows >= 2 {
                    // Output is slower than input: skip the excess in what we send next.
                    let excess = (window_min - t as i64) as u64;
                    drift += excess;
                    skip += excess;
                    high_windows = 0;
                }
                window_min = i64::MAX;
                window_start = Instant::now();
            }
        }
        if got {
            if target.is_some() {
                let level = counters.out_queued.load(Relaxed).max(0) as u64;
                queue_sum += level as u128;
                queue_n += 1;
                queue_max = queue_max.max(level);
                queue_timeline.record(pipe.frames_in(), level as f64);
            }
            in_delay_sum += c_in_delay(&counters) as u128;
            out_delay_sum += counters.out_delay_ns.load(Relaxed) as u128;
            delay_n += 1;
        } else {
            std::thread::park_timeout(Duration::from_millis(4));
        }
    }
    // Snapshot before the streams stop (stopping causes underruns that are not the run's).
    let c = &counters;
    let report_counts = (
        c.in_xruns.load(Relaxed),
        c.out_xruns.load(Relaxed),
        c.in_dropped_frames.load(Relaxed),
        c.in_dropped_events.load(Relaxed),
        c.out_underruns.load(Relaxed),
        c.out_underrun_frames.load(Relaxed),
    );
    let wall = started.elapsed();
    normal_scheduling();
    drop(in_stream.take());
    drop(out_stream.take());
    let rec = recorder.finish();
    let enh = pipe.enhancer();
    let audio = dur(pipe.frames_in(), in_rate);
    let report = LiveReport {
        start: start_report,
        ended,
        device_error,
        wall,
        audio,
        hops: enh.hops(),
        hop_p50: pipe.hop_times().quantile(0.5),
        hop_p99: pipe.hop_times().quantile(0.99),
        hop_max: pipe.hop_times().max(),
        rtf: if audio.is_zero() {
            0.0
        } else {
            pipe.busy().as_secs_f64() / audio.as_secs_f64()
        },
        input_xruns: report_counts.0,
        output_xruns: report_counts.1,
        dropped_input_frames: report_counts.2,
        dropped_input_events: report_counts.3,
        output_underruns: report_counts.4,
        output_underrun_frames: report_counts.5,
        dropped_output_frames: dropped_out,
        drift_corrections: drift,
        slips: pipe.slips(),
        switches: enh.switches().to_vec(),
        hops_at_level: enh.hops_at_level().to_vec(),
        queue_target: dur(target.unwrap_or(0), out_rate),
        queue_mean: dur((queue_sum / queue_n.max(1) as u128) as u64, out_rate),
        queue_max: dur(queue_max, out_rate),
        queue_timeline,
        input_rate: in_rate,
        output_rate: out_rate,
        input_device_delay: Duration::from_nanos((in_delay_sum / delay_n.max(1) as u128) as u64),
        output_device_delay: Duration::from_nanos((out_delay_sum / delay_n.max(1) as u128) as u64),
        stream_errors,
        stream_restarts: restarts as u64,
        input_period: dur(c.in_period.load(Relaxed), in_rate),
        output_period: dur(c.out_period.load(Relaxed), out_rate),
    };
    rec?;
    Ok(report)
}
