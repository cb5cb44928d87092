//! Live enhancement through the library: default input device -> enhance -> default output
//! device, until Ctrl-C (or for N seconds), then the report. `enhance --live` is the full CLI.
//!
//!     cargo run --release --example live -- MODEL.onnx [seconds]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thunder::live::{AdaptiveConfig, LiveOptions};

fn main() -> thunder::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "models/thunder-16k.onnx".into());
    let seconds: Option<f64> = args.next().and_then(|s| s.parse().ok());
    let opts = LiveOptions {
        model: model.into(),
        enhancer: AdaptiveConfig {
            steps: 1,
            ..Default::default()
        },
        duration: seconds.map(Duration::from_secs_f64),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).expect("Ctrl-C handler");
    let report = thunder::live::run(&opts, &stop, &mut |line| eprintln!("{line}"))?;
    eprintln!("{report}");
    Ok(())
}
