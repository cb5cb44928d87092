//! Streaming WAV reading and writing (hound): 8/16/24/32-bit PCM and 32-bit float, any number
//! of channels. Samples are exchanged as interleaved `f32` in [-1, 1] (integer PCM is scaled by
//! 2^(bits−1)). Memory stays bounded: files are read and written chunk by chunk.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Lowest input sample rate accepted (Hz).
pub const MIN_RATE: u32 = 4_000;
/// Highest input sample rate accepted (Hz).
pub const MAX_RATE: u32 = 384_000;
/// Most channels accepted.
pub const MAX_CHANNELS: u16 = 64;

/// Sample encoding of a WAV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// Integer PCM (8, 16, 24 or 32 bits).
    Int,
    /// IEEE float (32 bits).
    Float,
}

/// Layout of a WAV stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    /// Channels (interleaved).
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits: u16,
    /// Integer or float.
    pub format: SampleFormat,
}

impl WavFormat {
    /// Check that the format is one this crate reads and writes.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            return Err(format!(
                "{} channels is not supported (1 to {MAX_CHANNELS})",
                self.channels
            ));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&self.sample_rate) {
            return Err(format!(
                "sample rate {} Hz is outside the supported range {} Hz to {} Hz",
                self.sample_rate, MIN_RATE, MAX_RATE
            ));
        }
        match (self.format, self.bits) {
            (SampleFormat::Int, 8 | 16 | 24 | 32) | (SampleFormat::Float, 32) => Ok(()),
            (SampleFormat::Float, b) => Err(format!("{b}-bit float WAV is not supported (32-bit float is)")),
            (SampleFormat::Int, b) => Err(format!("{b}-bit PCM WAV is not supported (8, 16, 24, 32 are)")),
        }
    }

    fn to_hound(self) -> hound::WavSpec {
        hound::WavSpec {
            channels: self.channels,
            sample_rate: self.sample_rate,
            bits_per_sample: self.bits,
            sample_format: match self.format {
                SampleFormat::Int => hound::SampleFormat::Int,
                SampleFormat::Float => hound::SampleFormat::Float,
            },
        }
    }
}

/// A WAV decoder over any `Read + Seek` source, yielding interleaved `f32` chunks.
pub struct WavDecoder<R: Read> {
    reader: hound::WavReader<R>,
    format: WavFormat,
    frames: u64,
    read: u64,
    scale: f32,
}

/// hound reports short reads either as `UnexpectedEof` or as "Failed to read enough bytes".
fn is_eof(e: &hound::Error) -> bool {
    match e {
        hound::Error::IoError(io) => {
            io.kind() == std::io::ErrorKind::UnexpectedEof || io.to_string().contains("enough bytes")
        }
        _ => false,
    }
}

fn describe(e: hound::Error) -> String {
    match e {
        e if is_eof(&e) => "not a WAV file, or its header is truncated".into(),
        hound::Error::IoError(io) => io.to_string(),
        hound::Error::FormatError(m) => format!("not a valid WAV file ({m})"),
        hound::Error::Unsupported => "unsupported WAV encoding (only PCM and IEEE float are)".into(),
        other => other.to_string(),
    }
}

impl<R: Read> WavDecoder<R> {
    /// Parse the header. Errors are plain-language strings.
    pub fn new(source: R) -> std::result::Result<Self, String> {
        let reader = hound::WavReader::new(source).map_err(describe)?;
        let s = reader.spec();
        let format = WavFormat {
            channels: s.channels,
            sample_rate: s.sample_rate,
            bits: s.bits_per_sample,
            format: match s.sample_format {
                hound::SampleFormat::Int => SampleFormat::Int,
                hound::SampleFormat::Float => SampleFormat::Float,
            },
        };
        format.validate()?;
        let frames = reader.len() as u64 / s.channels as u64;
        let scale = match format.format {
            SampleFormat::Int => 1.0 / (1u64 << (format.bits - 1)) as f32,
            SampleFormat::Float => 1.0,
        };
        Ok(Self {
            reader,
            format,
            frames,
            read: 0,
            scale,
        })
    }

    /// The stream's format.
    pub fn format(&self) -> WavFormat {
        self.format
    }

    /// Frames the header declares.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames decoded so far.
    pub fn frames_read(&self) -> u64 {
        self.read
    }

    /// Decode up to `max_frames` frames, appending interleaved samples to `out`; returns the
    /// frames read (0 at the end). A file shorter than its header declares is an error.
    pub fn read(&mut self, max_frames: usize, out: &mut Vec<f32>) -> std::result::Result<usize, String> {
        let want = (self.frames - self.read).min(max_frames as u64) as usize;
        let n = want * self.format.channels as usize;
        out.reserve(n);
        let before = out.len();
        let trunc = |e: hound::Error, read: u64, frames: u64| match e {
            e if is_eof(&e) => {
                format!("truncated: the header declares {frames} frames but the data ends after about {read}")
            }
            e => describe(e),
        };
        let start = self.read;
        let total = self.frames;
        match self.format.format {
            SampleFormat::Int => {
                for (i, s) in self.reader.samples::<i32>().take(n).enumerate() {
                    let v = s.map_err(|e| trunc(e, start + i as u64 / self.format.channels as u64, total))?;
                    out.push(v as f32 * self.scale);
                }
            }
            SampleFormat::Float => {
                for (i, s) in self.reader.samples::<f32>().take(n).enumerate() {
                    out.push(s.map_err(|e| trunc(e, start + i as u64 / self.format.channels as u64, total))?);
                }
            }
        }
        let got = out.len() - before;
        if got < n {
            return Err(format!(
                "truncated: the header declares {total} frames but the data ends after {}",
                start + (got / self.format.channels as usize) as u64
            ));
        }
        self.read += want as u64;
        Ok(want)
    }
}

/// A WAV file opened for streaming decode.
pub struct WavInput {
    dec: WavDecoder<BufReader<File>>,
    path: PathBuf,
}

impl WavInput {
    /// Open and validate `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
        if meta.is_dir() {
            return Err(Error::input(path, "is a directory"));
        }
        let f = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
        let dec = WavDecoder::new(BufReader::with_capacity(1 << 16, f)).map_err(|m| Error::input(path, m))?;
        Ok(Self {
            dec,
            path: path.to_path_buf(),
        })
    }

    /// The file's format.
    pub fn format(&self) -> WavFormat {
        self.dec.format()
    }

    /// Frames the header declares.
    pub fn frames(&self) -> u64 {
        self.dec.frames()
    }

    /// Decode up to `max_frames` frames (interleaved `f32` appended to `out`); 0 at the end.
    pub fn read(&mut self, max_frames: usize, out: &mut Vec<f32>) -> Result<usize> {
        self.dec.read(max_frames, out).map_err(|m| Error::input(&self.path, m))
    }
}

/// Writes a WAV file atomically: samples go to a temporary file in the destination directory,
/// which is renamed over the destination only by [`WavOutput::commit`]. Dropping the writer
/// (e.g. on an error) deletes the temporary file, so no partial output is ever left behind.
pub struct WavOutput {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    temp: tempfile::TempPath,
    path: PathBuf,
    format: WavFormat,
    clipped: u64,
}

impl WavOutput {
    /// Start writing `path` in `format`.
    pub fn create(path: &Path, format: WavFormat) -> Result<Self> {
        format.validate().map_err(|m| Error::output(path, m))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::output(path, format!("cannot create a file in {}: {e}", dir.display())))?;
        let (file, temp) = tmp.into_parts();
        let writer = hound::WavWriter::new(BufWriter::with_capacity(1 << 16, file), format.to_hound())
            .map_err(|e| Error::output(path, e.to_string()))?;
        Ok(Self {
            writer: Some(writer),
            temp,
            path: path.to_path_buf(),
            format,
            clipped: 0,
        })
    }

    /// Samples that had to be clipped to the integer range so far.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// Append interleaved samples.
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        let w = self.writer.as_mut().expect("writer is present until commit");
        let err = |e: hound::Error| Error::output(&self.path, format!("write failed: {e}"));
        match self.format.format {
            SampleFormat::Float => {
                for &s in samples {
                    w.write_sample(s).map_err(err)?;
                }
            }
            SampleFormat::Int => {
                let full = (1i64 << (self.format.bits - 1)) as f32;
                let (lo, hi) = (-full, full - 1.0);
                for &s in samples {
                    let v = (s * full).round();
                    let c = v.clamp(lo, hi);
                    if c != v {
                        self.clipped += 1;
                    }
                    w.write_sample(c as i32).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    /// Finish the file and atomically move it to its destination.
    pub fn commit(mut self) -> Result<()> {
        let w = self.writer.take().expect("writer is present until commit");
        w.finalize()
            .map_err(|e| Error::output(&self.path, format!("write failed: {e}")))?;
        let WavOutput { temp, path, .. } = self;
        temp.persist(&path).map_err(|e| {
            Error::output(
                &path,
                format!("cannot rename the finished file into place: {}", e.error),
            )
        })?;
        Ok(())
    }
}

/// Read a whole (small) WAV file: format and interleaved samples. For tests and tools.
pub fn read_all(path: &Path) -> Result<(WavFormat, Vec<f32>)> {
    let mut r = WavInput::open(path)?;
    let mut v = Vec::new();
    while r.read(1 << 16, &mut v)? > 0 {}
    Ok((r.format(), v))
}

/// Write a whole WAV file atomically. For tests and tools.
pub fn write_all(path: &Path, format: WavFormat, samples: &[f32]) -> Result<()> {
    let mut w = WavOutput::create(path, format)?;
    w.write(samples)?;
    w.commit()
}

/// Decode an in-memory WAV completely (the fuzz target's entry point). Never panics on any
/// input; returns the format and frame count, or why the bytes are not a usable WAV.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<(WavFormat, usize), String> {
    let mut dec = WavDecoder::new(std::io::Cursor::new(bytes))?;
    let mut buf = Vec::new();
    let mut frames = 0;
    loop {
        buf.clear();
        let n = dec.read(4096, &mut buf)?;
        if n == 0 {
            break;
        }
        frames += n;
    }
    Ok((dec.format(), frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_formats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<f32> = (0..3000).map(|i| ((i as f32) * 0.01).sin() * 0.9).collect();
        for (format, bits, tol) in [
            (SampleFormat::Int, 8u16, 1.0 / 100.0),
            (SampleFormat::Int, 16, 1.0 / 30000.0),
            (SampleFormat::Int, 24, 1e-6),
            (SampleFormat::Int, 32, 1e-7),
            (SampleFormat::Float, 32, 0.0),
        ] {
            for channels in [1u16, 2, 3] {
                let f = WavFormat {
                    channels,
                    sample_rate: 22050,
                    bits,
                    format,
                };
                let p = dir.path().join(format!("t{bits}{channels}.wav"));
                write_all(&p, f, &x).unwrap();
                let (g, y) = read_all(&p).unwrap();
                assert_eq!(g, f);
                assert_eq!(y.len(), x.len());
                let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(err <= tol, "{format:?} {bits}: {err}");
            }
        }
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.wav");
        let f = WavFormat {
            channels: 1,
            sample_rate: 16000,
            bits: 16,
            format: SampleFormat::Int,
        };
        {
            let mut w = WavOutput::create(&p, f).unwrap();
            w.write(&[0.1, 0.2]).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
