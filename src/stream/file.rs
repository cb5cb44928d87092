//! File mode: WAV in → (mix, resample to 16 kHz) → [`Enhancer`] → (resample back) → WAV out,
//! chunk by chunk, so memory stays bounded however long the file is. Output is written to a
//! temporary file beside the destination and renamed into place only when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::audio::resample::StreamResampler;
use crate::audio::wav::{SampleFormat, WavFormat, WavInput, WavOutput};
use crate::audio::{count_clipped, mix_mono, sanitize};
use crate::contract::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::stream::{Enhancer, EnhancerConfig};

/// Frames per network call in file mode. Output is the same at any value; 128 is the fastest
/// measured on one thread (10 s of the shipped model in 128-frame calls: RTF per pass 0.0139
/// against 0.0152 at 64 and 0.0143-0.0152 in one call; `python -m thunder_train.bench --chunk N`,
/// models/README.md, Speed): shorter calls pay ONNX Runtime's per-call cost, longer ones push the
/// activations out of cache.
pub const FILE_FRAMES_PER_CALL: usize = 128;

/// What to do with each file.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// Sampler settings (`channels` is set per file).
    pub enhancer: EnhancerConfig,
    /// Average all channels into one before enhancing (output is mono).
    pub mix_mono: bool,
    /// Write the 16 kHz signal instead of resampling back to the input rate.
    pub keep_16k: bool,
    /// Output sample format (default: the input's).
    pub format: Option<SampleFormat>,
    /// Output bits per sample (default: the input's).
    pub bits: Option<u16>,
    /// Input frames read per chunk.
    pub chunk_frames: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            enhancer: EnhancerConfig {
                frames_per_call: FILE_FRAMES_PER_CALL,
                ..Default::default()
            },
            mix_mono: false,
            keep_16k: false,
            format: None,
            bits: None,
            chunk_frames: 16384,
        }
    }
}

/// What happened to one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// Input path.
    pub input: PathBuf,
    /// Output path.
    pub output: PathBuf,
    /// Input format.
    pub input_format: WavFormat,
    /// Output format.
    pub output_format: WavFormat,
    /// Input frames.
    pub frames: u64,
    /// Seconds of audio.
    pub audio_seconds: f64,
    /// Wall-clock seconds spent.
    pub wall_seconds: f64,
    /// Network passes per frame.
    pub network_passes: usize,
    /// Algorithmic latency of the streaming engine, in 16 kHz samples.
    pub latency_samples: usize,
    /// Things the user should know (sanitised samples, clipping).
    pub warnings: Vec<String>,
}

/// Resolve the output format from the input's and the requested overrides.
pub fn output_format(input: WavFormat, opts: &FileOptions) -> Result<WavFormat> {
    let format = opts.format.unwrap_or(match opts.bits {
        Some(b) if b != 32 => SampleFormat::Int,
        _ => input.format,
    });
    let bits = opts.bits.unwrap_or(match (format, input.format) {
        (SampleFormat::Float, _) => 32,
        (SampleFormat::Int, SampleFormat::Int) => input.bits,
        (SampleFormat::Int, SampleFormat::Float) => 16,
    });
    let f = WavFormat {
        channels: if opts.mix_mono { 1 } else { input.channels },
        sample_rate: if opts.keep_16k { SAMPLE_RATE } else { input.sample_rate },
        bits,
        format,
    };
    match (format, bits) {
        (SampleFormat::Int, 8 | 16 | 24 | 32) | (SampleFormat::Float, 32) => Ok(f),
        _ => Err(Error::Config(format!(
            "output format {format:?} with {bits} bits is not supported"
        ))),
    }
}

/// Refuse to write over the input.
fn check_distinct(input: &Path, output: &Path) -> Result<()> {
    let a = input.canonicalize().unwrap_or_else(|_| input.to_path_buf());
    let b = if output.exists() {
        output.canonicalize().unwrap_or_else(|_| output.to_path_buf())
    } else {
        let parent = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf())
            .join(output.file_name().unwrap_or_default())
    };
    if a == b {
        return Err(Error::output(
            output,
            "is the input file; refusing to overwrite the input",
        ));
    }
    if output.is_dir() {
        return Err(Error::output(output, "is a directory"));
    }
    Ok(())
}

/// Enhances files one after another with one model.
pub struct FileEnhancer {
    model: Option<Model>,
    opts: FileOptions,
}

impl FileEnhancer {
    /// A file enhancer around a loaded model.
    pub fn new(model: Model, opts: FileOptions) -> Self {
        Self {
            model: Some(model),
            opts,
        }
    }

    /// The options.
    pub fn options(&self) -> &FileOptions {
        &self.opts
    }

    /// Enhance `input` into `output`. `progress(done, total)` is called with input frames.
    /// On any error nothing is left at `output` (an existing file there is untouched).
    pub fn enhance(&mut self, input: &Path, output: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<FileReport> {
        let start = Instant::now();
        check_distinct(input, output)?;
        let mut reader = WavInput::open(input)?;
        let in_fmt = reader.format();
        let frames = reader.frames();
        if frames == 0 {
            return Err(Error::input(input, "contains no audio samples"));
        }
        let out_fmt = output_format(in_fmt, &self.opts)?;
        let mut writer = WavOutput::create(output, out_fmt)?;
        let ch_in = in_fmt.channels as usize;
        let ch = out_fmt.channels as usize;
        let cfg = EnhancerConfig {
            channels: ch,
            ..self.opts.enhancer.clone()
        };
        let model = self
            .model
            .take()
            .ok_or_else(|| Error::Config("model lost after an earlier panic".into()))?;
        let mut enh = Enhancer::new(model, cfg)?;
        let result = run(
            &mut enh,
            &mut reader,
            &mut writer,
            &self.opts,
            in_fmt,
            out_fmt,
            frames,
            progress,
        );
        let passes = enh.network_passes();
        let latency = enh.latency_samples();
        self.model = Some(enh.into_model());
        let (nonfinite, clipped_in) = result?;
        let mut warnings = Vec::new();
        if nonfinite > 0 {
            warnings.push(format!("{nonfinite} NaN/Inf input samples were replaced by silence"));
        }
        let total = frames * ch_in as u64;
        if clipped_in > 0 && clipped_in * 1000 >= total.max(1) {
            warnings.push(format!(
                "input looks clipped ({clipped_in} samples at full scale, {:.2}%); clipped peaks cannot be restored",
                100.0 * clipped_in as f64 / total as f64
            ));
        }
        if writer.clipped() > 0 {
            warnings.push(format!(
                "{} output samples exceeded full scale and were clipped",
                writer.clipped()
            ));
        }
        writer.commit()?;
        Ok(FileReport {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            input_format: in_fmt,
            output_format: out_fmt,
            frames,
            audio_seconds: frames as f64 / in_fmt.sample_rate as f64,
            wall_seconds: start.elapsed().as_secs_f64(),
            network_passes: passes,
            latency_samples: latency,
            warnings,
        })
    }

    /// Give the model back.
    pub fn into_model(self) -> Option<Model> {
        self.model
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    enh: &mut Enhancer,
    reader: &mut WavInput,
    writer: &mut WavOutput,
    opts: &FileOptions,
    in_fmt: WavFormat,
    out_fmt: WavFormat,
    frames: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, u64)> {
    let ch_in = in_fmt.channels as usize;
    let ch = out_fmt.channels as usize;
    let rate = in_fmt.sample_rate;
    let mut down = if rate != SAMPLE_RATE {
        Some(StreamResampler::new(rate, SAMPLE_RATE, ch)?)
    } else {
        None
    };
    let mut up = if rate != SAMPLE_RATE && !opts.keep_16k {
        Some(StreamResampler::new(SAMPLE_RATE, rate, ch)?)
    } else {
        None
    };
    let expected = if out_fmt.sample_rate == rate {
        frames
    } else {
        (frames as u128 * SAMPLE_RATE as u128).div_ceil(rate as u128) as u64
    };
    let mut written = 0u64;
    let (mut nonfinite, mut clipped) = (0u64, 0u64);
    let (mut raw, mut mixed, mut at16, mut enhanced, mut back) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let emit = |samples: &[f32], writer: &mut WavOutput, written: &mut u64| -> Result<()> {
        let n = ((samples.len() / ch) as u64).min(expected - *written) as usize;
        writer.write(&samples[..n * ch])?;
        *written += n as u64;
        Ok(())
    };
    let mut done = 0u64;
    loop {
        raw.clear();
        let n = reader.read(opts.chunk_frames.max(1), &mut raw)?;
        if n == 0 {
            break;
        }
        nonfinite += sanitize(&mut raw);
        clipped += count_clipped(&raw);
        let input: &[f32] = if opts.mix_mono && ch_in > 1 {
            mixed.clear();
            mix_mono(&raw, ch_in, &mut mixed);
            &mixed
        } else {
            &raw
        };
        let x16: &[f32] = match down.as_mut() {
            Some(d) => {
                at16.clear();
                d.push(input, &mut at16)?;
                &at16
            }
            None => input,
        };
        enhanced.clear();
        enh.process(x16, &mut enhanced)?;
        match up.as_mut() {
            Some(u) => {
                back.clear();
                u.push(&enhanced, &mut back)?;
                emit(&back, writer, &mut written)?;
            }
            None => emit(&enhanced, writer, &mut written)?,
        }
        done += n as u64;
        progress(done, frames);
    }
    if done != frames {
        return Err(Error::Input {
            path: PathBuf::new(),
            msg: format!("truncated: the header declares {frames} frames but only {done} could be read"),
        });
    }
    enhanced.clear();
    if let Some(d) = down.as_mut() {
        at16.clear();
        d.finish(&mut at16)?;
        enh.process(&at16, &mut enhanced)?;
    }
    enh.flush(&mut enhanced)?;
    match up.as_mut() {
        Some(u) => {
            back.clear();
            u.push(&enhanced, &mut back)?;
            u.finish(&mut back)?;
            emit(&back, writer, &mut written)?;
        }
        None => emit(&enhanced, writer, &mut written)?,
    }
    if written != expected {
        return Err(Error::Inference(format!(
            "internal length mismatch: wrote {written} frames, expected {expected}"
        )));
    }
    Ok((nonfinite, clipped))
}
