//! Audio devices through cpal. The callbacks run on cpal's audio threads and never block, lock
//! or allocate: they exchange preallocated fixed-size [`Block`]s with the processing thread over
//! bounded crossbeam channels using `try_send`/`try_recv` only (a block pool circulates between
//! a "free" and a "full" channel), and count everything that goes wrong in atomics.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};

/// A fixed-capacity buffer of interleaved samples travelling between a callback and the
/// processing thread. Its allocation is made once, before the streams start.
pub(crate) struct Block {
    pub data: Box<[f32]>,
    pub len: usize,
    /// Frame index (of the stream) of the first frame.
    pub pos: u64,
}

/// A pool of `count` blocks of `frames × channels` samples: (free sender, free receiver).
pub(crate) fn pool(count: usize, frames: usize, channels: usize) -> (Sender<Block>, Receiver<Block>) {
    let (tx, rx) = crossbeam_channel::bounded(count);
    for _ in 0..count {
        tx.try_send(Block {
            data: vec![0.0; frames * channels].into_boxed_slice(),
            len: 0,
            pos: 0,
        })
        .expect("pool channel has room for every block");
    }
    (tx, rx)
}

/// Counters shared by the callbacks and the processing thread.
#[derive(Default)]
pub(crate) struct Counters {
    /// Overruns reported by the capture driver.
    pub in_xruns: AtomicU64,
    /// Underruns reported by the playback driver.
    pub out_xruns: AtomicU64,
    /// Captured frames dropped because no free block or no room in the queue was available.
    pub in_dropped_frames: AtomicU64,
    /// Callbacks that dropped frames.
    pub in_dropped_events: AtomicU64,
    /// Playback frames filled with silence because the queue ran dry (after the start).
    pub out_underrun_frames: AtomicU64,
    /// Playback callbacks that ran dry (after the start).
    pub out_underruns: AtomicU64,
    /// Frames queued for playback and not yet played.
    pub out_queued: AtomicI64,
    /// Largest capture callback (frames).
    pub in_period: AtomicU64,
    /// Largest playback callback (frames).
    pub out_period: AtomicU64,
    /// Capture delay reported by the driver (callback − capture instant), latest, ns.
    pub in_delay_ns: AtomicU64,
    /// Playback delay reported by the driver (playback − callback instant), latest, ns.
    pub out_delay_ns: AtomicU64,
    /// Captured frames queued for the processing thread.
    pub in_queued: AtomicI64,
    /// Stream position (frames) after the latest capture callback (a restarted capture stream
    /// continues from here).
    pub in_pos: AtomicU64,
    /// Playback has delivered real samples (underruns before that are the start, not xruns).
    pub out_started: AtomicBool,
    /// Callbacks seen.
    pub in_callbacks: AtomicU64,
    /// Callbacks seen.
    pub out_callbacks: AtomicU64,
}

/// Which stream an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Input,
    Output,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Stream errors other than xruns, for the processing thread.
pub(crate) type ErrorTx = Sender<(Direction, cpal::Error)>;

/// The audio host: `name` (case-insensitive, e.g. `alsa`, `pulseaudio`), or automatically
/// PulseAudio when a server is reachable (native protocol: also PipeWire's pulse server), else
/// the platform default (ALSA on Linux).
pub(crate) fn pick_host(name: Option<&str>) -> Result<cpal::Host> {
    let hosts = cpal::available_hosts();
    let names = || {
        hosts
            .iter()
            .map(|h| h.name().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => {
            let id = hosts
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(n))
                .ok_or_else(|| Error::Audio(format!("no audio host {n:?} here (available: {})", names())))?;
            cpal::host_from_id(*id).map_err(|e| Error::Audio(format!("audio host {n}: {e}")))
        }
        None => {
            for id in &hosts {
                if id.name().eq_ignore_ascii_case("pulseaudio") {
                    if let Ok(h) = cpal::host_from_id(*id) {
                        if h.default_output_device().is_some() {
                            return Ok(h);
                        }
                    }
                }
            }
            Ok(cpal::default_host())
        }
    }
}

/// The devices as named on the command line: `default`, a cpal id (`alsa:pulse`), a host device
/// id (`pulse`, `hw:CARD=0,DEV=0`), or a unique case-insensitive part of a device's name or
/// description.
pub(crate) fn find_device(host: &cpal::Host, name: Option<&str>, dir: Direction) -> Result<cpal::Device> {
    let default = || match dir {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    };
    let Some(name) = name.filter(|n| *n != "default") else {
        return default().ok_or_else(|| Error::Audio(format!("no default {dir} device (see --list-devices)")));
    };
    let devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|e| Error::Audio(format!("cannot list audio devices: {e}")))?
        .collect();
    let ids: Vec<String> = devices
        .iter()
        .map(|d| d.id().map(|i| i.to_string()).unwrap_or_default())
        .collect();
    for (d, id) in devices.iter().zip(&ids) {
        if id == name || id.split_once(':').is_some_and(|(_, rest)| rest == name) {
            return Ok(d.clone());
        }
    }
    let needle = name.to_lowercase();
    let hits: Vec<usize> = devices
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            let desc = d.description().map(|x| x.to_string()).unwrap_or_default();
            d.to_string().to_lowercase().contains(&needle) || desc.to_lowercase().contains(&needle)
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => Ok(devices[*i].clone()),
        [] => Err(Error::Audio(format!(
            "no {dir} device matches {name:?} (see --list-devices)"
        ))),
        many => Err(Error::Audio(format!(
            "{name:?} matches several devices ({}); use a full id from --list-devices",
            many.iter().map(|&i| ids[i].as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Every device the default host offers, with its default input/output configurations.
pub(crate) fn describe_devices(host: Option<&str>) -> Result<String> {
    use std::fmt::Write;
    let host = pick_host(host)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "host: {} (available: {})",
        host.id().name(),
        cpal::available_hosts()
            .iter()
            .map(|h| h.name().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (dir, dev) in [
        ("input", host.default_input_device()),
        ("output", host.default_output_device()),
    ] {
        let _ = writeln!(
            s,
            "default {dir}: {}",
            dev.and_then(|d| d.id().ok())
                .map(|i| i.to_string())
                .unwrap_or_else(|| "none".into())
        );
    }
    let devices = host
        .devices()
        .map_err(|e| Error::Audio(format!("cannot list audio devices: {e}")))?;
    for d in devices {
        let id = d.id().map(|i| i.to_string()).unwrap_or_else(|_| d.to_string());
        let desc = d
            .description()
            .map(|x| x.to_string().replace('\n', " — "))
            .unwrap_or_default();
        let _ = writeln!(s, "{id}  {desc}");
        if let Ok(c) = d.default_input_config() {
            let _ = writeln!(
                s,
                "    input:  {} Hz, {} ch, {}",
                c.sample_rate(),
                c.channels(),
                c.sample_format()
            );
        }
        if let Ok(c) = d.default_output_config() {
            let _ = writeln!(
                s,
                "    output: {} Hz, {} ch, {}",
                c.sample_rate(),
                c.channels(),
                c.sample_format()
            );
        }
    }
    Ok(s)
}

/// Everything an input callback needs (moved into it).
#[derive(Clone)]
pub(crate) struct InputSide {
    /// Send a block once it holds at least this many frames.
    pub min_block_frames: u32,
    pub free_rx: Receiver<Block>,
    pub free_tx: Sender<Block>,
    pub full_tx: Sender<Block>,
    pub counters: Arc<Counters>,
    pub errors: ErrorTx,
    pub wake: Thread,
}

/// Everything an output callback needs (moved into it).
#[derive(Clone)]
pub(crate) struct OutputSide {
    pub full_rx: Receiver<Block>,
    pub free_tx: Sender<Block>,
    pub counters: Arc<Counters>,
    pub errors: ErrorTx,
    pub wake: Thread,
}

fn error_callback(
    dir: Direction,
    counters: Arc<Counters>,
    errors: ErrorTx,
    wake: Thread,
) -> impl FnMut(cpal::Error) + Send + 'static {
    move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun {
            match dir {
                Direction::Input => counters.in_xruns.fetch_add(1, Relaxed),
                Direction::Output => counters.out_xruns.fetch_add(1, Relaxed),
            };
        } else {
            let _ = errors.try_send((dir, e));
        }
        wake.unpark();
    }
}

fn build_input_typed<T>(
    device: &cpal::Device,
    config: StreamConfig,
    side: InputSide,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let ch = config.channels as usize;
    let InputSide {
        free_rx,
        free_tx,
        full_tx,
        counters,
        errors,
        wake,
        min_block_frames,
    } = side;
    let on_error = error_callback(Direction::Input, counters.clone(), errors, wake.clone());
    let mut pos = counters.in_pos.load(Relaxed);
    // Tiny callbacks (some servers deliver a few frames at a time) are coalesced into blocks
    // of at least `min_frames` (about 2.7 ms), so the pool is not used up one callback per block.
    let min_frames = (min_block_frames as usize).max(1);
    let mut cur: Option<Block> = None;
    let on_data = move |data: &[T], info: &cpal::InputCallbackInfo| {
        let frames = data.len() / ch;
        counters.in_callbacks.fetch_add(1, Relaxed);
        counters.in_period.fetch_max(frames as u64, Relaxed);
        let ts = info.timestamp();
        if let Some(d) = ts.callback.checked_duration_since(ts.capture) {
            counters.in_delay_ns.store(d.as_nanos() as u64, Relaxed);
        }
        let mut rest = &data[..frames * ch];
        while !rest.is_empty() {
            if cur.is_none() {
                match free_rx.try_recv() {
                    Ok(mut b) => {
                        b.len = 0;
                        b.pos = pos;
                        cur = Some(b);
                    }
                    Err(_) => {
                        let f = (rest.len() / ch) as u64;
                        counters.in_dropped_frames.fetch_add(f, Relaxed);
                        counters.in_dropped_events.fetch_add(1, Relaxed);
                        pos += f;
                        break;
                    }
                }
            }
            let Some(b) = cur.as_mut() else { break };
            let n = (rest.len() / ch).min((b.data.len() - b.len) / ch);
            for (d, s) in b.data[b.len..b.len + n * ch].iter_mut().zip(&rest[..n * ch]) {
                *d = f32::from_sample(*s);
            }
            b.len += n * ch;
            pos += n as u64;
            rest = &rest[n * ch..];
            if b.len / ch >= min_frames || b.len == b.data.len() {
                if let Some(b) = cur.take() {
                    let f = (b.len / ch) as i64;
                    counters.in_queued.fetch_add(f, Relaxed);
                    if let Err(e) = full_tx.try_send(b) {
                        counters.in_queued.fetch_sub(f, Relaxed);
                        counters.in_dropped_frames.fetch_add(f as u64, Relaxed);
                        counters.in_dropped_events.fetch_add(1, Relaxed);
                        let _ = free_tx.try_send(e.into_inner());
                    }
                }
            }
        }
        counters.in_pos.store(pos, Relaxed);
        wake.unpark();
    };
    device.build_input_stream::<T, _, _>(config, on_data, on_error, Some(Duration::from_secs(5)))
}

fn build_output_typed<T>(
    device: &cpal::Device,
    config: StreamConfig,
    side: OutputSide,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let ch = config.channels as usize;
    let OutputSide {
        full_rx,
        free_tx,
        counters,
        errors,
        wake,
    } = side;
    let on_error = error_callback(Direction::Output, counters.clone(), errors, wake);
    let mut cur: Option<Block> = None;
    let mut off = 0usize;
    let on_data = move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
        counters.out_callbacks.fetch_add(1, Relaxed);
        counters.out_period.fetch_max((data.len() / ch) as u64, Relaxed);
        let ts = info.timestamp();
        if let Some(d) = ts.playback.checked_duration_since(ts.callback) {
            counters.out_delay_ns.store(d.as_nanos() as u64, Relaxed);
        }
        let mut i = 0;
        while i < data.len() {
            if cur.is_none() {
                match full_rx.try_recv() {
                    Ok(b) => {
                        cur = Some(b);
                        off = 0;
                    }
                    Err(_) => break,
                }
            }
            let Some(b) = cur.as_ref() else { break };
            let n = (b.len - off).min(data.len() - i);
            for (d, s) in data[i..i + n].iter_mut().zip(&b.data[off..off + n]) {
                *d = T::from_sample(*s);
            }
            i += n;
            off += n;
            if off >= b.len {
                if let Some(b) = cur.take() {
                    let _ = free_tx.try_send(b);
                }
            }
        }
        counters.out_queued.fetch_sub((i / ch) as i64, Relaxed);
        if i > 0 {
            counters.out_started.store(true, Relaxed);
        }
        if i < data.len() {
            for d in &mut data[i..] {
                *d = T::EQUILIBRIUM;
            }
            if counters.out_started.load(Relaxed) {
                counters
                    .out_underrun_frames
                    .fetch_add(((data.len() - i) / ch) as u64, Relaxed);
                counters.out_underruns.fetch_add(1, Relaxed);
            }
        }
    };
    device.build_output_stream::<T, _, _>(config, on_data, on_error, Some(Duration::from_secs(5)))
}

macro_rules! by_format {
    ($fmt:expr, $f:ident, $($arg:expr),*) => {
        match $fmt {
            SampleFormat::F32 => $f::<f32>($($arg),*),
            SampleFormat::F64 => $f::<f64>($($arg),*),
            SampleFormat::I8 => $f::<i8>($($arg),*),
            SampleFormat::I16 => $f::<i16>($($arg),*),
            SampleFormat::I32 => $f::<i32>($($arg),*),
            SampleFormat::I64 => $f::<i64>($($arg),*),
            SampleFormat::U8 => $f::<u8>($($arg),*),
            SampleFormat::U16 => $f::<u16>($($arg),*),
            SampleFormat::U32 => $f::<u32>($($arg),*),
            SampleFormat::U64 => $f::<u64>($($arg),*),
            other => return Err(Error::Audio(format!("sample format {other} is not supported"))),
        }
    };
}

/// Build a capture stream for the device's sample format.
pub(crate) fn build_input(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    side: InputSide,
) -> Result<cpal::Stream> {
    let r = by_format!(format, build_input_typed, device, config, side);
    r.map_err(|e| Error::Audio(format!("cannot open the input stream ({}): {e}", device_name(device))))
}

/// Build a playback stream for the device's sample format.
pub(crate) fn build_output(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    side: OutputSide,
) -> Result<cpal::Stream> {
    let r = by_format!(format, build_output_typed, device, config, side);
    r.map_err(|e| Error::Audio(format!("cannot open the output stream ({}): {e}", device_name(device))))
}

/// A device's id (or name) for messages.
pub(crate) fn device_name(d: &cpal::Device) -> String {
    d.id().map(|i| i.to_string()).unwrap_or_else(|_| d.to_string())
}
