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

/// The body of a capture callback: converts samples into pool blocks and queues them.
/// Never blocks, locks or allocates (tested with a counting allocator).
pub(crate) struct Capture {
    ch: usize,
    min_frames: usize,
    pos: u64,
    cur: Option<Block>,
    free_rx: Receiver<Block>,
    free_tx: Sender<Block>,
    full_tx: Sender<Block>,
    counters: Arc<Counters>,
}

impl Capture {
    pub(crate) fn new(ch: usize, side: &InputSide) -> Self {
        Self {
            ch,
            // Tiny callbacks (some servers deliver a few frames at a time) are coalesced into
            // blocks of at least this many frames, so the pool is not used up one per callback.
            min_frames: (side.min_block_frames as usize).max(1),
            pos: side.counters.in_pos.load(Relaxed),
            cur: None,
            free_rx: side.free_rx.clone(),
            free_tx: side.free_tx.clone(),
            full_tx: side.full_tx.clone(),
            counters: side.counters.clone(),
        }
    }

    pub(crate) fn push<T: Copy>(&mut self, data: &[T])
    where
        f32: FromSample<T>,
    {
        let ch = self.ch;
        let c = &self.counters;
        let frames = data.len() / ch;
        c.in_callbacks.fetch_add(1, Relaxed);
        c.in_period.fetch_max(frames as u64, Relaxed);
        let mut rest = &data[..frames * ch];
        while !rest.is_empty() {
            if self.cur.is_none() {
                match self.free_rx.try_recv() {
                    Ok(mut b) => {
                        b.len = 0;
                        b.pos = self.pos;
                        self.cur = Some(b);
                    }
                    Err(_) => {
                        let f = (rest.len() / ch) as u64;
                        c.in_dropped_frames.fetch_add(f, Relaxed);
                        c.in_dropped_events.fetch_add(1, Relaxed);
                        self.pos += f;
                        break;
                    }
                }
            }
            let Some(b) = self.cur.as_mut() else { break };
            let n = (rest.len() / ch).min((b.data.len() - b.len) / ch);
            for (d, s) in b.data[b.len..b.len + n * ch].iter_mut().zip(&rest[..n * ch]) {
                *d = f32::from_sample_(*s);
            }
            b.len += n * ch;
            self.pos += n as u64;
            rest = &rest[n * ch..];
            if b.len / ch >= self.min_frames || b.len == b.data.len() {
                if let Some(b) = self.cur.take() {
                    let f = (b.len / ch) as i64;
                    c.in_queued.fetch_add(f, Relaxed);
                    if let Err(e) = self.full_tx.try_send(b) {
                        c.in_queued.fetch_sub(f, Relaxed);
                        c.in_dropped_frames.fetch_add(f as u64, Relaxed);
                        c.in_dropped_events.fetch_add(1, Relaxed);
                        let _ = self.free_tx.try_send(e.into_inner());
                    }
                }
            }
        }
        c.in_pos.store(self.pos, Relaxed);
    }
}

/// The body of a playback callback: copies queued blocks out, silence when the queue is dry
/// (counted after the start). Never blocks, locks or allocates (tested).
pub(crate) struct Playback {
    ch: usize,
    cur: Option<Block>,
    off: usize,
    full_rx: Receiver<Block>,
    free_tx: Sender<Block>,
    counters: Arc<Counters>,
}

impl Playback {
    pub(crate) fn new(ch: usize, side: &OutputSide) -> Self {
        Self {
            ch,
            cur: None,
            off: 0,
            full_rx: side.full_rx.clone(),
            free_tx: side.free_tx.clone(),
            counters: side.counters.clone(),
        }
    }

    pub(crate) fn fill<T: Sample + FromSample<f32>>(&mut self, data: &mut [T]) {
        let (ch, c) = (self.ch, &self.counters);
        c.out_callbacks.fetch_add(1, Relaxed);
        c.out_period.fetch_max((data.len() / ch) as u64, Relaxed);
        let mut i = 0;
        while i < data.len() {
            if self.cur.is_none() {
                match self.full_rx.try_recv() {
                    Ok(b) => {
                        self.cur = Some(b);
                        self.off = 0;
                    }
                    Err(_) => break,
                }
            }
            let Some(b) = self.cur.as_ref() else { break };
            let n = (b.len - self.off).min(data.len() - i);
            for (d, s) in data[i..i + n].iter_mut().zip(&b.data[self.off..self.off + n]) {
                *d = T::from_sample_(*s);
            }
            i += n;
            self.off += n;
            if self.off >= b.len {
                if let Some(b) = self.cur.take() {
                    let _ = self.free_tx.try_send(b);
                }
            }
        }
        c.out_queued.fetch_sub((i / ch) as i64, Relaxed);
        if i > 0 {
            c.out_started.store(true, Relaxed);
        }
        if i < data.len() {
            for d in &mut data[i..] {
                *d = T::EQUILIBRIUM;
            }
            if c.out_started.load(Relaxed) {
                c.out_underrun_frames.fetch_add(((data.len() - i) / ch) as u64, Relaxed);
                c.out_underruns.fetch_add(1, Relaxed);
            }
        }
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
    let mut capture = Capture::new(config.channels as usize, &side);
    let InputSide {
        counters, errors, wake, ..
    } = side;
    let on_error = error_callback(Direction::Input, counters.clone(), errors, wake.clone());
    let on_data = move |data: &[T], info: &cpal::InputCallbackInfo| {
        let ts = info.timestamp();
        if let Some(d) = ts.callback.checked_duration_since(ts.capture) {
            counters.in_delay_ns.store(d.as_nanos() as u64, Relaxed);
        }
        capture.push(data);
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
    let mut playback = Playback::new(config.channels as usize, &side);
    let OutputSide {
        counters, errors, wake, ..
    } = side;
    let on_error = error_callback(Direction::Output, counters.clone(), errors, wake);
    let on_data = move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
        let ts = info.timestamp();
        if let Some(d) = ts.playback.checked_duration_since(ts.callback) {
            counters.out_delay_ns.store(d.as_nanos() as u64, Relaxed);
        }
        playback.fill(data);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations made on threads that switched counting on.
    struct Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if ON.with(|o| o.get()) {
                COUNT.with(|c| c.set(c.get() + 1));
            }
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if ON.with(|o| o.get()) {
                COUNT.with(|c| c.set(c.get() + 1));
            }
            unsafe { System.dealloc(p, l) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    fn counting<R>(f: impl FnOnce() -> R) -> (R, u64) {
        COUNT.with(|c| c.set(0));
        ON.with(|o| o.set(true));
        let r = f();
        ON.with(|o| o.set(false));
        (r, COUNT.with(|c| c.get()))
    }

    /// The callback bodies (capture with coalescing, overflow and pool exhaustion; playback with
    /// partial blocks and underruns) neither allocate nor free, and count what they drop.
    #[test]
    fn callbacks_do_not_allocate_and_count_drops() {
        let counters = Arc::new(Counters::default());
        let (tx, _rx) = crossbeam_channel::bounded(4);
        let wake = std::thread::current();
        let (in_free_tx, in_free_rx) = pool(4, 64, 2);
        let (in_full_tx, in_full_rx) = crossbeam_channel::bounded::<Block>(4);
        let in_side = InputSide {
            min_block_frames: 16,
            free_rx: in_free_rx,
            free_tx: in_free_tx.clone(),
            full_tx: in_full_tx,
            counters: counters.clone(),
            errors: tx.clone(),
            wake: wake.clone(),
        };
        let (out_free_tx, out_free_rx) = pool(4, 32, 1);
        let (out_full_tx, out_full_rx) = crossbeam_channel::bounded::<Block>(4);
        let out_side = OutputSide {
            full_rx: out_full_rx,
            free_tx: out_free_tx.clone(),
            counters: counters.clone(),
            errors: tx,
            wake,
        };
        let mut cap = Capture::new(2, &in_side);
        let mut play = Playback::new(1, &out_side);
        let small: Vec<i16> = (0..2 * 5).map(|i| i as i16 * 100).collect();
        let big = vec![0.25f32; 2 * 1000];
        let mut out = vec![0i16; 48];
        let (_, n) = counting(|| {
            // 5-frame callbacks are coalesced: the first block goes out after 16 frames.
            for _ in 0..3 {
                cap.push(&small);
            }
            assert!(in_full_rx.is_empty());
            cap.push(&small);
            assert_eq!(in_full_rx.len(), 1);
            // A callback larger than the whole pool: the rest is dropped and counted.
            cap.push(&big);
            // Playback before anything is queued: silence, not an underrun (not started).
            play.fill(&mut out);
            // Processing side: move one captured block's mono to playback.
            let b = in_full_rx.try_recv().unwrap();
            let mut o = out_free_rx.try_recv().unwrap();
            for (d, f) in o.data.iter_mut().zip(b.data[..b.len].chunks_exact(2)) {
                *d = f[0];
            }
            o.len = (b.len / 2).min(o.data.len());
            let _ = in_free_tx.try_send(b);
            out_full_tx.try_send(o).unwrap();
            play.fill(&mut out); // 20 frames of data, then an underrun
        });
        assert_eq!(n, 0, "callbacks allocated or freed {n} times");
        assert_eq!(out[0], 0);
        assert_eq!(out[1], 200); // frame 1, left channel
        assert!(out[20..].iter().all(|v| *v == 0));
        assert!(counters.in_dropped_frames.load(Relaxed) > 0);
        assert!(counters.in_dropped_events.load(Relaxed) >= 1);
        assert_eq!(counters.out_underruns.load(Relaxed), 1);
        assert_eq!(counters.out_underrun_frames.load(Relaxed), 28);
        // Timeline: positions count dropped frames too.
        assert_eq!(counters.in_pos.load(Relaxed), 4 * 5 + 1000);
    }
}
