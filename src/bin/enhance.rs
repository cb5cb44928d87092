//! `enhance`: Thunder speech enhancement for WAV files (thin CLI over `thunder::stream::file`)
//! and for live audio (`--live`, thin CLI over `thunder::live`).

use std::collections::{HashSet, VecDeque};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use thunder::audio::wav::SampleFormat;
use thunder::model::{Device, Model, ModelOptions};
use thunder::stream::file::{FileEnhancer, FileOptions, FileReport};
use thunder::{EnhancerConfig, Error};

const AFTER_HELP: &str = "\
Examples:
  enhance noisy.wav clean.wav                  one file, 1 reverse step (3 network passes)
  enhance noisy.wav clean.wav --steps 0        regression pass only (fastest)
  enhance noisy.wav clean.wav --steps 3 --seed 7
  enhance a.wav b.wav c.wav out/               several files into a directory
  enhance recordings/ out/ --jobs 2            every .wav in a directory, two at a time
  enhance stereo.wav mono.wav --mix-mono --format int --bits 16
  enhance --live                               microphone -> enhance -> speakers (Ctrl-C stops)
  enhance --live --input-device pulse --record-input in.wav --record-output out.wav --duration 30
  enhance --list-devices

Input: WAV, 8/16/24/32-bit PCM or 32-bit float, any channel count (each channel is enhanced
independently), 4 kHz to 384 kHz (resampled to 16 kHz and back; --keep-16k keeps 16 kHz).
Output keeps the input's format unless --format/--bits say otherwise, and is written
atomically: a temporary file in the output directory is renamed into place when complete.

ONNX Runtime is found via --ort-lib, ORT_DYLIB_PATH, .cache/ort/libonnxruntime.so (from
`bash scripts/setup.sh`), or Python site-packages (onnxruntime 1.31).

Exit codes:
  0  success
  1  internal or inference error
  2  usage or configuration error (bad options, --device cuda without CUDA support)
  3  input problem (missing, not a WAV, truncated, unsupported format or sample rate, empty)
  4  output problem (unwritable, output is the input)
  5  model problem (missing, unreadable, not a Thunder ONNX graph)
  6  ONNX Runtime missing or unusable
  7  audio device missing, unusable, or failed while running (--live; recordings are kept)
With several files, every file is attempted and the exit code is that of the first failure.";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Int,
    Float,
}

/// Thunder: streaming speech enhancement (denoising) for WAV files.
#[derive(Parser, Debug)]
#[command(name = "enhance", version, after_help = AFTER_HELP)]
struct Args {
    /// Input WAV file(s) or directories, then the output file (one input) or directory.
    #[arg(required_unless_present_any = ["live", "list_devices"], num_args = 2.., value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Live mode: capture the input device, enhance, play to the output device, until Ctrl-C.
    #[arg(long, conflicts_with = "paths", help_heading = "Live")]
    live: bool,
    /// List audio devices (ids and default formats) and exit.
    #[arg(long, conflicts_with = "paths", help_heading = "Live")]
    list_devices: bool,
    /// Audio host: alsa, pulseaudio, … [default: pulseaudio when a server is reachable, else alsa].
    #[arg(long, value_name = "NAME", help_heading = "Live")]
    host: Option<String>,
    /// Capture device: `default`, an id from --list-devices, or a unique part of its name.
    #[arg(long, value_name = "NAME", help_heading = "Live")]
    input_device: Option<String>,
    /// Playback device: `default`, an id from --list-devices, or a unique part of its name.
    #[arg(long, value_name = "NAME", help_heading = "Live")]
    output_device: Option<String>,
    /// Record what was captured (device rate and channels, float WAV).
    #[arg(long, value_name = "FILE", help_heading = "Live")]
    record_input: Option<PathBuf>,
    /// Record the enhanced stream sent to the output device (lags --record-input by exactly the
    /// reported pipeline delay).
    #[arg(long, value_name = "FILE", help_heading = "Live")]
    record_output: Option<PathBuf>,
    /// Also write the exit report as JSON (latencies, per-hop times, xruns, level changes).
    #[arg(long, value_name = "FILE", help_heading = "Live")]
    report_json: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", help_heading = "Live")]
    duration: Option<f64>,
    /// Requested device period (callback size) in ms; 0 = the device's default.
    #[arg(long, default_value_t = 10.0, value_name = "MS", help_heading = "Live")]
    period_ms: f64,
    /// Output-queue safety margin in ms, on top of one input and one output period.
    #[arg(long, default_value_t = 6.0, value_name = "MS", help_heading = "Live")]
    margin_ms: f64,
    /// Never degrade under overload (default: fewer steps, then regression only, and back).
    #[arg(long, help_heading = "Live")]
    no_degrade: bool,
    /// Pipelined schedule: one batched network call per hop (cheaper at --steps >= 1, + (passes-1) hops latency).
    #[arg(long, help_heading = "Live")]
    pipelined: bool,
    /// Keep normal scheduling (default: real-time SCHED_FIFO for the processing thread when
    /// permitted, e.g. as root or with an rtprio limit).
    #[arg(long, help_heading = "Live")]
    no_realtime: bool,
    /// Test hook: extra busy time per network pass in microseconds (simulates a slow machine).
    #[arg(long, default_value_t = 0, hide = true)]
    simulate_pass_cost_us: u64,
    /// Reverse diffusion steps: 0 = regression only (1 network pass), N = 1 + 2N passes.
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// Seed of the stochastic steps (same seed, same output).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the corrector pass of each reverse step (1 + N passes).
    #[arg(long)]
    no_corrector: bool,
    /// Average all channels into one and write mono.
    #[arg(long)]
    mix_mono: bool,
    /// Write 16 kHz output instead of resampling back to the input rate.
    #[arg(long)]
    keep_16k: bool,
    /// Output sample format (default: as the input).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Output bits per sample: 8, 16, 24 or 32 (default: as the input).
    #[arg(long, value_parser = parse_bits)]
    bits: Option<u16>,
    /// Thunder ONNX model [default: models/thunder-16k.onnx next to the binary or crate].
    #[arg(long)]
    model: Option<PathBuf>,
    /// ONNX Runtime shared library (libonnxruntime.so).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per file.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Files processed in parallel [default: available cores / threads, at most the file count].
    #[arg(long)]
    jobs: Option<usize>,
    /// Execution provider (cuda needs a build with `--features cuda` and onnxruntime-gpu).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Frames per network call in file mode (throughput knob; output is identical).
    #[arg(long, default_value_t = thunder::stream::file::FILE_FRAMES_PER_CALL, hide = true)]
    frames_per_call: usize,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_bits(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(b @ (8 | 16 | 24 | 32)) => Ok(b),
        _ => Err(format!("{s:?} is not one of 8, 16, 24, 32")),
    }
}

struct Job {
    input: PathBuf,
    output: PathBuf,
}

fn is_wav(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn plan(paths: &[PathBuf]) -> Result<Vec<Job>, Error> {
    let (out, inputs) = paths.split_last().expect("clap guarantees two paths");
    let single = inputs.len() == 1
        && !inputs[0].is_dir()
        && !out.is_dir()
        && !out.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR);
    if single {
        return Ok(vec![Job {
            input: inputs[0].clone(),
            output: out.clone(),
        }]);
    }
    if out.exists() && !out.is_dir() {
        return Err(Error::output(
            out,
            "with several inputs or a directory input, the output must be a directory",
        ));
    }
    let mut files = Vec::new();
    for i in inputs {
        if i.is_dir() {
            let rd = std::fs::read_dir(i).map_err(|e| Error::input(i, format!("cannot list directory: {e}")))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_wav(p))
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(Error::input(i, "directory contains no .wav files"));
            }
            files.extend(v);
        } else {
            files.push(i.clone());
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::output(out, format!("cannot create directory: {e}")))?;
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    for f in files {
        let name = f.file_name().ok_or_else(|| Error::input(&f, "has no file name"))?;
        let o = out.join(name);
        if !seen.insert(o.clone()) {
            return Err(Error::Config(format!(
                "two inputs would both be written to {}",
                o.display()
            )));
        }
        jobs.push(Job { input: f, output: o });
    }
    Ok(jobs)
}

/// How a run failed: an error still to print, or errors already printed (exit code).
enum Fail {
    Error(Error),
    Printed(i32),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Error(e)
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Error(e)) => {
            eprintln!("enhance: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
        Err(Fail::Printed(code)) => ExitCode::from(code as u8),
    }
}

fn run(args: Args) -> Result<(), Fail> {
    if args.threads == 0 {
        return Err(Error::Config("--threads must be at least 1".into()).into());
    }
    if args.steps > 1000 {
        return Err(Error::Config(format!("--steps {} is unreasonable (use 0 to a few)", args.steps)).into());
    }
    if args.frames_per_call == 0 {
        return Err(Error::Config("--frames-per-call must be at least 1".into()).into());
    }
    if args.list_devices {
        print!("{}", thunder::live::list_devices(args.host.as_deref())?);
        return Ok(());
    }
    if args.live {
        return run_live(&args);
    }
    let live_only = [
        (args.input_device.is_some(), "--input-device"),
        (args.output_device.is_some(), "--output-device"),
        (args.record_input.is_some(), "--record-input"),
        (args.record_output.is_some(), "--record-output"),
        (args.report_json.is_some(), "--report-json"),
        (args.duration.is_some(), "--duration"),
        (args.host.is_some(), "--host"),
    ];
    if let Some((_, name)) = live_only.iter().find(|(set, _)| *set) {
        return Err(Error::Config(format!("{name} needs --live")).into());
    }
    let jobs = plan(&args.paths)?;
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => thunder::model::default_model()?,
    };
    let mopts = ModelOptions {
        threads: args.threads,
        device: match args.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
        },
        ort_lib: args.ort_lib.clone(),
    };
    let fopts = FileOptions {
        enhancer: EnhancerConfig {
            steps: args.steps,
            corrector: !args.no_corrector,
            seed: args.seed,
            channels: 1,
            frames_per_call: args.frames_per_call,
            pipelined: false,
        },
        mix_mono: args.mix_mono,
        keep_16k: args.keep_16k,
        format: args.format.map(|f| match f {
            FormatArg::Int => SampleFormat::Int,
            FormatArg::Float => SampleFormat::Float,
        }),
        bits: args.bits,
        chunk_frames: 16384,
    };
    if fopts.format == Some(SampleFormat::Float) && args.bits.is_some_and(|b| b != 32) {
        return Err(Error::Config("--format float is 32-bit only".into()).into());
    }
    let load_start = Instant::now();
    // Load once up front so a bad model or runtime fails before any work.
    let first = Model::load(&model_path, &mopts)?;
    let load = load_start.elapsed();
    let start = Instant::now();
    let info = first.info().clone();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let n_jobs = args.jobs.unwrap_or((cores / args.threads).max(1)).clamp(1, jobs.len());

    let show = !args.quiet && std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<Job>>());
    let results: Mutex<Vec<(PathBuf, Result<FileReport, Error>)>> = Mutex::new(Vec::new());
    let first = Mutex::new(Some(first));
    std::thread::scope(|s| {
        for _ in 0..n_jobs {
            s.spawn(|| {
                let model = match first.lock().unwrap().take() {
                    Some(m) => Ok(m),
                    None => Model::load(&model_path, &mopts),
                };
                let mut fe = match model {
                    Ok(m) => FileEnhancer::new(m, fopts.clone()),
                    Err(e) => {
                        // Fail the remaining files with this error.
                        let e = e.to_string();
                        while let Some(job) = queue.lock().unwrap().pop_front() {
                            results
                                .lock()
                                .unwrap()
                                .push((job.input, Err(Error::Runtime(e.clone()))));
                        }
                        return;
                    }
                };
                loop {
                    let Some(job) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let mut bar: Option<ProgressBar> = None;
                    let name = job.input.display().to_string();
                    let mut progress = |done: u64, total: u64| {
                        if bar.is_none() && total > 0 {
                            // Only files longer than a few seconds get a bar (frames at >= 4 kHz).
                            let b = multi.add(ProgressBar::new(total));
                            b.set_style(
                                ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% eta {eta}")
                                    .unwrap()
                                    .progress_chars("=> "),
                            );
                            b.set_message(name.clone());
                            bar = Some(b);
                        }
                        if let Some(b) = &bar {
                            b.set_position(done);
                        }
                    };
                    let long = thunder::audio::wav::WavInput::open(&job.input)
                        .map(|r| r.frames() as f64 / r.format().sample_rate as f64 > 5.0)
                        .unwrap_or(false);
                    let mut noop = |_: u64, _: u64| {};
                    let res = if long && show {
                        fe.enhance(&job.input, &job.output, &mut progress)
                    } else {
                        fe.enhance(&job.input, &job.output, &mut noop)
                    };
                    if let Some(b) = bar {
                        b.finish_and_clear();
                    }
                    results.lock().unwrap().push((job.input, res));
                }
            });
        }
    });
    let wall = start.elapsed();
    let results = results.into_inner().unwrap();
    report(&args, &info.name, &info.version, results, wall, load)
}

fn run_live(args: &Args) -> Result<(), Fail> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use thunder::live::{AdaptiveConfig, LiveOptions};

    if !(0.0..=1000.0).contains(&args.period_ms) || !(0.0..=1000.0).contains(&args.margin_ms) {
        return Err(Error::Config("--period-ms and --margin-ms must be between 0 and 1000".into()).into());
    }
    if args.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
        return Err(Error::Config("--duration must be a positive number of seconds".into()).into());
    }
    let model = match &args.model {
        Some(p) => p.clone(),
        None => thunder::model::default_model()?,
    };
    let opts = LiveOptions {
        model,
        model_options: ModelOptions {
            threads: args.threads,
            device: match args.device {
                DeviceArg::Cpu => Device::Cpu,
                DeviceArg::Cuda => Device::Cuda,
            },
            ort_lib: args.ort_lib.clone(),
        },
        enhancer: AdaptiveConfig {
            steps: args.steps,
            corrector: !args.no_corrector,
            seed: args.seed,
            pipelined: args.pipelined,
            adaptive: !args.no_degrade,
            simulate_pass_cost: Duration::from_micros(args.simulate_pass_cost_us),
            ..Default::default()
        },
        host: args.host.clone(),
        input_device: args.input_device.clone(),
        output_device: args.output_device.clone(),
        record_input: args.record_input.clone(),
        record_output: args.record_output.clone(),
        duration: args.duration.map(Duration::from_secs_f64),
        period: Duration::from_secs_f64(args.period_ms / 1000.0),
        margin: Duration::from_secs_f64(args.margin_ms / 1000.0),
        realtime: !args.no_realtime,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: the clean stop is taking too long.
            std::process::exit(130);
        }
    });
    let quiet = args.quiet;
    let report = thunder::live::run(&opts, &stop, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    // The exit report is printed even with --quiet when the run failed.
    if !quiet || report.device_error.is_some() {
        eprintln!("{report}");
    }
    if let Some(p) = &args.report_json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("report serialises");
        std::fs::write(p, text + "\n").map_err(|e| Error::output(p, format!("cannot write the report: {e}")))?;
    }
    match report.device_error {
        Some(e) => Err(Fail::Printed(Error::Audio(e).exit_code())),
        None => Ok(()),
    }
}

fn report(
    args: &Args,
    name: &str,
    version: &str,
    results: Vec<(PathBuf, Result<FileReport, Error>)>,
    wall: Duration,
    load: Duration,
) -> Result<(), Fail> {
    let mut first_err: Option<Error> = None;
    let mut audio = 0.0;
    let mut ok = 0usize;
    let mut passes = thunder::sampler::network_passes(args.steps, !args.no_corrector);
    let mut latency = 0usize;
    let n = results.len();
    for (input, r) in results {
        match r {
            Ok(rep) => {
                ok += 1;
                audio += rep.audio_seconds;
                passes = rep.network_passes;
                latency = rep.latency_samples;
                if !args.quiet {
                    for w in &rep.warnings {
                        eprintln!("enhance: warning: {}: {w}", input.display());
                    }
                }
            }
            Err(e) => {
                if n > 1 {
                    eprintln!("enhance: error: {e}");
                }
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if !args.quiet && ok > 0 {
        let w = wall.as_secs_f64();
        let lat_ms = if latency > 0 {
            latency as f64 * 1000.0 / thunder::contract::SAMPLE_RATE as f64
        } else {
            0.0
        };
        eprintln!(
            "enhance: {ok}/{n} file{} | audio {audio:.2} s | wall {w:.2} s (+{:.2} s model load) | RTF {:.4} | steps {}{} | {passes} network passes/frame | algorithmic latency {lat_ms:.1} ms | model {name} {version}",
            if n == 1 { "" } else { "s" },
            load.as_secs_f64(),
            if audio > 0.0 { w / audio } else { 0.0 },
            args.steps,
            if args.no_corrector { " (no corrector)" } else { "" },
        );
    }
    match first_err {
        None => Ok(()),
        Some(e) if n > 1 => {
            eprintln!("enhance: {} of {n} files failed", n - ok);
            Err(Fail::Printed(e.exit_code()))
        }
        Some(e) => Err(Fail::Error(e)),
    }
}
