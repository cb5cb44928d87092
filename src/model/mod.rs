//! The Thunder predictor as an ONNX Runtime session: loading, metadata validation, and
//! per-pass state handling (see the contract in `models/README.md`).

pub mod runtime;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::contract::{self as C, FRAME_LEN, N_BINS};
use crate::error::{Error, Result};
use crate::sampler::Denoiser;

/// File name of the bundled default model.
pub const DEFAULT_MODEL: &str = "models/thunder-16k.onnx";

/// Candidate locations of the default model: `models/thunder-16k.onnx` in every ancestor of the
/// executable's directory, then of the crate directory this was built from.
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut anchors = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        if let Some(d) = exe.parent() {
            anchors.extend(d.ancestors().map(Path::to_path_buf));
        }
    }
    anchors.extend(Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(Path::to_path_buf));
    let mut out: Vec<PathBuf> = Vec::new();
    for a in anchors {
        let p = a.join(DEFAULT_MODEL);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The default model, if one of [`default_model_candidates`] exists.
pub fn default_model() -> Result<PathBuf> {
    let c = default_model_candidates();
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::model(
            DEFAULT_MODEL,
            format!(
                "default model not found (looked in {} places, e.g. {}); pass --model PATH",
                c.len(),
                c.last().map(|p| p.display().to_string()).unwrap_or_default()
            ),
        )
    })
}

/// Where the network runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (cargo feature `cuda` + onnxruntime-gpu).
    Cuda,
}

/// How to create the session.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Intra-op threads (0 = ONNX Runtime's default). Inter-op is always 1.
    pub threads: usize,
    /// Execution provider.
    pub device: Device,
    /// Explicit `libonnxruntime.so` (otherwise discovered, see [`runtime`]).
    pub ort_lib: Option<PathBuf>,
}

/// What the model's `metadata_props` declare, validated against this engine's contract.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// `thunder.model_name`.
    pub name: String,
    /// `thunder.model_version`.
    pub version: String,
    /// Look-ahead L in frames (per pass).
    pub lookahead: usize,
    /// Compression exponent α.
    pub alpha: f32,
    /// Compression scale β.
    pub beta: f32,
    /// Smallest bridge time.
    pub t_min: f64,
    /// Largest bridge time.
    pub t_max: f64,
    /// Interpolation weight w.
    pub interp_weight: f64,
    /// Shape of each state `state_in_k` without the batch dimension, in order.
    pub state_shapes: Vec<Vec<usize>>,
    /// `thunder.training_data`.
    pub training_data: String,
    /// `thunder.macs_per_frame` if present (informational).
    pub macs_per_frame: Option<u64>,
}

fn get<'a>(m: &'a HashMap<String, String>, key: &str) -> std::result::Result<&'a str, String> {
    m.get(key)
        .map(|s| s.as_str())
        .ok_or_else(|| format!("missing metadata key `{key}`"))
}

fn num<T: std::str::FromStr>(m: &HashMap<String, String>, key: &str) -> std::result::Result<T, String> {
    let v = get(m, key)?;
    v.trim()
        .parse()
        .map_err(|_| format!("metadata `{key}` = {v:?} is not a number"))
}

fn expect_eq<T: PartialEq + std::fmt::Display>(key: &str, got: T, want: T) -> std::result::Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("metadata `{key}` is {got}, but this engine implements {want}"))
    }
}

impl ModelInfo {
    /// Validate a metadata map. Errors say what is wrong in words.
    pub fn from_metadata(m: &HashMap<String, String>) -> std::result::Result<Self, String> {
        if !m.keys().any(|k| k.starts_with("thunder.")) {
            return Err(
                "not a Thunder model: it has no `thunder.*` metadata (expected an ONNX graph exported by \
                        thunder_train.export)"
                    .into(),
            );
        }
        for k in C::META_KEYS {
            get(m, k)?;
        }
        let version = get(m, "thunder.contract_version")?;
        if version != C::CONTRACT_VERSION {
            return Err(format!(
                "contract version {version:?} is not supported (this engine implements version {})",
                C::CONTRACT_VERSION
            ));
        }
        expect_eq(
            "thunder.sample_rate",
            num::<u32>(m, "thunder.sample_rate")?,
            C::SAMPLE_RATE,
        )?;
        expect_eq("thunder.n_fft", num::<usize>(m, "thunder.n_fft")?, C::N_FFT)?;
        expect_eq("thunder.hop", num::<usize>(m, "thunder.hop")?, C::HOP)?;
        expect_eq(
            "thunder.center_pad",
            num::<usize>(m, "thunder.center_pad")?,
            C::CENTER_PAD,
        )?;
        expect_eq("thunder.window", get(m, "thunder.window")?, C::WINDOW)?;
        expect_eq("thunder.noise_rng", get(m, "thunder.noise_rng")?, C::NOISE_RNG)?;
        let snr: f64 = num(m, "thunder.corrector_snr")?;
        if (snr - C::CORRECTOR_SNR).abs() > 1e-9 {
            return Err(format!(
                "metadata `thunder.corrector_snr` is {snr}; this engine's corrector implements 0.5"
            ));
        }
        let alpha: f32 = num(m, "thunder.alpha")?;
        let beta: f32 = num(m, "thunder.beta")?;
        if !(alpha > 0.0 && alpha <= 1.0 && beta > 0.0 && beta.is_finite()) {
            return Err(format!(
                "compression α={alpha}, β={beta} out of range (0 < α ≤ 1, β > 0)"
            ));
        }
        let t_min: f64 = num(m, "thunder.t_min")?;
        let t_max: f64 = num(m, "thunder.t_max")?;
        if !(0.0 < t_min && t_min < t_max && t_max < 1.0) {
            return Err(format!(
                "bridge times t_min={t_min}, t_max={t_max} must satisfy 0 < t_min < t_max < 1"
            ));
        }
        let interp_weight: f64 = num(m, "thunder.interp_weight")?;
        if !(0.0..=1.0).contains(&interp_weight) {
            return Err(format!("interp_weight {interp_weight} outside [0, 1]"));
        }
        let lookahead: usize = num(m, "thunder.lookahead_frames")?;
        if lookahead > 64 {
            return Err(format!("look-ahead of {lookahead} frames is implausible (max 64)"));
        }
        let state_shapes = parse_state_shapes(get(m, "thunder.state_shapes")?)?;
        Ok(Self {
            name: get(m, "thunder.model_name")?.to_string(),
            version: get(m, "thunder.model_version")?.to_string(),
            lookahead,
            alpha,
            beta,
            t_min,
            t_max,
            interp_weight,
            state_shapes,
            training_data: get(m, "thunder.training_data")?.to_string(),
            macs_per_frame: m.get("thunder.macs_per_frame").and_then(|v| v.parse().ok()),
        })
    }
}

/// Parse `{"state_in_0": ["B", 6, 1, 256], …}` into shapes without the batch dimension.
fn parse_state_shapes(json: &str) -> std::result::Result<Vec<Vec<usize>>, String> {
    let bad = |why: &str| format!("metadata `thunder.state_shapes` is invalid: {why}");
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut shapes = Vec::with_capacity(obj.len());
    for k in 0..obj.len() {
        let name = C::state_in(k);
        let dims = obj
            .get(&name)
            .and_then(|d| d.as_array())
            .ok_or_else(|| bad(&format!("no list for `{name}`")))?;
        if dims.first().and_then(|d| d.as_str()) != Some("B") {
            return Err(bad(&format!("`{name}` must start with the batch dimension \"B\"")));
        }
        let rest: Option<Vec<usize>> = dims[1..].iter().map(|d| d.as_u64().map(|x| x as usize)).collect();
        let rest = rest.ok_or_else(|| bad(&format!("`{name}` has a non-integer dimension")))?;
        if rest.iter().any(|&d| d == 0 || d > 1 << 20) || rest.iter().product::<usize>() > 1 << 24 {
            return Err(bad(&format!("`{name}` has an implausible shape {rest:?}")));
        }
        shapes.push(rest);
    }
    Ok(shapes)
}

/// A loaded Thunder model: one ONNX Runtime session plus its validated metadata.
pub struct Model {
    session: Session,
    state_in: Vec<String>,
    state_out: Vec<String>,
    info: ModelInfo,
    path: PathBuf,
    runtime: runtime::Found,
}

/// The temporal state of one network pass: one tensor per `state_in_k`, batch-first.
pub struct PassState {
    tensors: Vec<Vec<f32>>,
    batch: usize,
}

impl Model {
    /// Load and validate `path`. Errors: [`Error::Runtime`] if ONNX Runtime is missing,
    /// [`Error::Model`] if the file is missing, unreadable, or not a Thunder graph.
    pub fn load(path: &Path, opts: &ModelOptions) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::model(
                path,
                "no such file (pass --model, or see models/README.md for how to get one)",
            ));
        }
        std::fs::File::open(path).map_err(|e| Error::model(path, format!("cannot read: {e}")))?;
        let (env, found) = runtime::environment(opts.ort_lib.as_deref())?;
        let mut builder = Session::builder(&env).map_err(|e| Error::Runtime(format!("session builder: {e}")))?;
        let rt = |e: ort::Error<ort::session::builder::SessionBuilder>| Error::Runtime(e.to_string());
        builder = builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(rt)?;
        builder = builder.with_inter_threads(1).map_err(rt)?;
        if opts.threads > 0 {
            builder = builder
                .with_intra_threads(opts.threads)
                .map_err(|e| Error::Runtime(e.to_string()))?;
        }
        builder = with_device(builder, opts.device)?;
        let session = builder.commit_from_file(path).map_err(|e| {
            Error::model(
                path,
                format!("ONNX Runtime cannot load it (not a valid ONNX model?): {e}"),
            )
        })?;
        let meta = session.metadata().map_err(|e| Error::model(path, e.to_string()))?;
        let keys = meta.custom_keys().unwrap_or_default();
        let map: HashMap<String, String> = keys
            .into_iter()
            .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
            .collect();
        drop(meta);
        let info = ModelInfo::from_metadata(&map).map_err(|e| Error::model(path, e))?;
        check_io(&session, &info).map_err(|e| Error::model(path, e))?;
        let n = info.state_shapes.len();
        Ok(Self {
            session,
            state_in: (0..n).map(C::state_in).collect(),
            state_out: (0..n).map(C::state_out).collect(),
            info,
            path: path.to_path_buf(),
            runtime: found,
        })
    }

    /// The validated metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ONNX Runtime library in use.
    pub fn runtime(&self) -> &runtime::Found {
        &self.runtime
    }
}

#[cfg(feature = "cuda")]
fn with_device(
    b: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder> {
    match device {
        Device::Cpu => Ok(b),
        Device::Cuda => b
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| {
                Error::Runtime(format!(
                    "CUDA execution provider unavailable ({e}); it needs onnxruntime-gpu 1.31's libonnxruntime.so \
                     (point ORT_DYLIB_PATH or --ort-lib at it) and a working CUDA 12 + cuDNN 9 install"
                ))
            }),
    }
}

#[cfg(not(feature = "cuda"))]
fn with_device(
    b: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder> {
    match device {
        Device::Cpu => Ok(b),
        Device::Cuda => Err(Error::Config(
            "--device cuda: this build has no CUDA support; rebuild with `cargo build --release --features cuda` \
             and use onnxruntime-gpu's libonnxruntime.so (ORT_DYLIB_PATH)"
                .into(),
        )),
    }
}

fn check_io(session: &Session, info: &ModelInfo) -> std::result::Result<(), String> {
    let ins: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let outs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let mut want_in = vec![C::INPUT_XT.to_string(), C::INPUT_Y.to_string(), C::INPUT_T.to_string()];
    let mut want_out = vec![C::OUTPUT_X0.to_string()];
    for k in 0..info.state_shapes.len() {
        want_in.push(C::state_in(k));
        want_out.push(C::state_out(k));
    }
    for w in &want_in {
        if !ins.contains(&w.as_str()) {
            return Err(format!("graph has no input `{w}` (inputs: {ins:?})"));
        }
    }
    for w in &want_out {
        if !outs.contains(&w.as_str()) {
            return Err(format!("graph has no output `{w}` (outputs: {outs:?})"));
        }
    }
    if ins.len() != want_in.len() {
        return Err(format!(
            "graph has unexpected inputs {ins:?}; the contract expects {want_in:?}"
        ));
    }
    Ok(())
}

impl Denoiser for Model {
    type State = PassState;

    fn lookahead(&self) -> usize {
        self.info.lookahead
    }

    fn new_state(&self, batch: usize) -> PassState {
        let per: Vec<usize> = self.info.state_shapes.iter().map(|s| s.iter().product()).collect();
        PassState {
            tensors: per.iter().map(|n| vec![0.0; batch * n]).collect(),
            batch,
        }
    }

    fn state_batch(&self, state: &PassState) -> usize {
        state.batch
    }

    fn denoise(
        &mut self,
        x_t: &[f32],
        y: &[f32],
        t: &[f32],
        frames: usize,
        states: &mut [&mut PassState],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let batch = t.len();
        let shape = [batch, 2, N_BINS, frames];
        let n = batch * FRAME_LEN * frames;
        if states.iter().map(|s| s.batch).sum::<usize>() != batch || x_t.len() < n || y.len() < n {
            return Err(Error::Inference("batch/state mismatch".into()));
        }
        let ie = |e: ort::Error| Error::Inference(e.to_string());
        // One state set: feed it directly; several (pipelined passes): concatenate along batch.
        let joined: Vec<Vec<f32>> = if states.len() == 1 {
            Vec::new()
        } else {
            (0..self.info.state_shapes.len())
                .map(|k| states.iter().flat_map(|s| s.tensors[k].iter().copied()).collect())
                .collect()
        };
        {
            let mut inputs: Vec<(&str, ort::session::SessionInputValue<'_>)> =
                Vec::with_capacity(3 + self.info.state_shapes.len());
            inputs.push((
                C::INPUT_XT,
                TensorRef::from_array_view((shape, &x_t[..n])).map_err(ie)?.into(),
            ));
            inputs.push((
                C::INPUT_Y,
                TensorRef::from_array_view((shape, &y[..n])).map_err(ie)?.into(),
            ));
            inputs.push((C::INPUT_T, TensorRef::from_array_view(([batch], t)).map_err(ie)?.into()));
            for (k, s) in self.info.state_shapes.iter().enumerate() {
                let dims: Vec<usize> = std::iter::once(batch).chain(s.iter().copied()).collect();
                let data: &[f32] = if states.len() == 1 {
                    &states[0].tensors[k]
                } else {
                    &joined[k]
                };
                inputs.push((
                    &self.state_in[k],
                    TensorRef::from_array_view((dims, data)).map_err(ie)?.into(),
                ));
            }
            let outputs = self.session.run(inputs).map_err(ie)?;
            let (oshape, x0) = outputs[C::OUTPUT_X0].try_extract_tensor::<f32>().map_err(ie)?;
            if x0.len() != n {
                return Err(Error::Inference(format!("x0 has shape {oshape:?}, expected {shape:?}")));
            }
            out.clear();
            out.extend_from_slice(x0);
            for k in 0..self.info.state_shapes.len() {
                let (sshape, v) = outputs[self.state_out[k].as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(ie)?;
                let mut at = 0;
                for s in states.iter_mut() {
                    let dst = &mut s.tensors[k];
                    let len = dst.len();
                    if v.len() < at + len {
                        return Err(Error::Inference(format!(
                            "state_out_{k} has unexpected shape {sshape:?}"
                        )));
                    }
                    dst.copy_from_slice(&v[at..at + len]);
                    at += len;
                }
                if at != v.len() {
                    return Err(Error::Inference(format!(
                        "state_out_{k} has unexpected shape {sshape:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn good_meta() -> HashMap<String, String> {
        let mut m = HashMap::new();
        for (k, v) in [
            ("thunder.contract_version", "1"),
            ("thunder.model_name", "t"),
            ("thunder.model_version", "0"),
            ("thunder.sample_rate", "16000"),
            ("thunder.n_fft", "510"),
            ("thunder.hop", "128"),
            ("thunder.window", "hann-periodic"),
            ("thunder.center_pad", "255"),
            ("thunder.alpha", "0.5"),
            ("thunder.beta", "0.15"),
            ("thunder.lookahead_frames", "1"),
            ("thunder.t_min", "0.03"),
            ("thunder.t_max", "0.999"),
            ("thunder.interp_weight", "0.8"),
            ("thunder.corrector_snr", "0.5"),
            (
                "thunder.state_shapes",
                r#"{"state_in_0": ["B", 6, 2, 256], "state_in_1": ["B", 16, 48]}"#,
            ),
            ("thunder.noise_rng", "splitmix64-boxmuller-v1"),
            ("thunder.training_data", "x"),
        ] {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    #[test]
    fn valid_metadata_parses() {
        let info = ModelInfo::from_metadata(&good_meta()).unwrap();
        assert_eq!(info.lookahead, 1);
        assert_eq!(info.state_shapes, vec![vec![6, 2, 256], vec![16, 48]]);
    }

    #[test]
    fn invalid_metadata_is_explained() {
        let cases: [(&str, Option<&str>, &str); 9] = [
            ("thunder.contract_version", Some("2"), "contract version"),
            ("thunder.n_fft", Some("512"), "thunder.n_fft"),
            ("thunder.hop", Some("abc"), "not a number"),
            ("thunder.window", Some("hann-symmetric"), "thunder.window"),
            ("thunder.noise_rng", Some("pcg"), "thunder.noise_rng"),
            (
                "thunder.state_shapes",
                Some("{\"state_in_1\": [\"B\", 2]}"),
                "state_shapes",
            ),
            ("thunder.state_shapes", Some("[1,2]"), "state_shapes"),
            ("thunder.t_min", Some("0.9999"), "t_min"),
            ("thunder.beta", None, "missing metadata key `thunder.beta`"),
        ];
        for (k, v, want) in cases {
            let mut m = good_meta();
            match v {
                Some(v) => m.insert(k.into(), v.into()),
                None => m.remove(k),
            };
            let err = ModelInfo::from_metadata(&m).unwrap_err();
            assert!(err.contains(want), "{k}: {err}");
        }
        let err = ModelInfo::from_metadata(&HashMap::new()).unwrap_err();
        assert!(err.contains("not a Thunder model"), "{err}");
    }
}
