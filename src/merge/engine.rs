//! Planning, validation and out-of-core parallel execution of a merge.
//!
//! * **Validation before any work**: every input's directory is read (headers only) and
//!   compared with the base — same names, dtypes and shapes; the error names the first
//!   offending tensor (in base order) and file.
//! * **Out of core**: tensors are processed one at a time per worker; a worker holds the base
//!   tensor and the K task vectors of its tensor plus the method's workspace. Input pages are
//!   released after decoding, outputs are written with positional writes, so the peak memory is
//!   about `threads × (K + 3) × largest tensor` plus SVD workspaces, independent of model size.
//! * **Parallel and deterministic**: workers pull tensors largest-first from a shared queue;
//!   each tensor's result depends only on its inputs, the recipe and the seed.
//! * **Atomic outputs**: everything is written to temporary files that are renamed into place
//!   only after every tensor succeeded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::merge::dtype::{encode_f32, DType};
use crate::merge::error::{MergeError, Result};
use crate::merge::io::{onnx, safetensors, AtomicOutput, Checkpoint, Format, Layout};
use crate::merge::method::TensorInput;
use crate::merge::recipe::{glob_match, Recipe};

/// How a tensor is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the matrix path as a `rows × cols` matrix (`reshaped`: an N-D kernel viewed as
    /// `(out, in·k…)` — our extension, the references only handle 2-D weights).
    Matrix {
        /// Rows of the 2-D view.
        rows: usize,
        /// Columns of the 2-D view.
        cols: usize,
        /// Whether the tensor was reshaped from more than 2 dimensions.
        reshaped: bool,
    },
    /// Element-wise / averaged (1-D tensors, scalars, excluded by a pattern).
    Vector {
        /// Excluded by an `exclude` pattern.
        excluded: bool,
    },
    /// Matched an `average` pattern: the experts' weighted mean (statistics such as BatchNorm
    /// running variances, which must stay a convex combination of valid values).
    Average,
    /// Non-float tensor: must be identical in every input; copied from the base.
    Copy,
}

/// Execution options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Show a progress bar with ETA on stderr.
    pub progress: bool,
}

/// Summary of a finished merge.
#[derive(Debug, Clone)]
pub struct Report {
    /// Tensors merged through the matrix path.
    pub matrix: usize,
    /// Tensors merged element-wise / averaged.
    pub vector: usize,
    /// Non-float tensors copied.
    pub copied: usize,
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// A validated merge, ready to run.
#[derive(Debug)]
pub struct Plan {
    /// The recipe.
    pub recipe: Recipe,
    /// The opened base checkpoint.
    pub base: Checkpoint,
    /// The opened experts, in recipe order.
    pub experts: Vec<Checkpoint>,
    /// Route of every base tensor.
    pub routes: Vec<Route>,
    /// ONNX template, when an `.onnx` output is requested and it is not the base.
    pub graph: Option<Checkpoint>,
}

fn route_of(recipe: &Recipe, name: &str, dtype: DType, shape: &[usize]) -> Route {
    if !dtype.is_float() {
        return Route::Copy;
    }
    if recipe.average.iter().any(|p| glob_match(p, name)) {
        return Route::Average;
    }
    if recipe.exclude.iter().any(|p| glob_match(p, name)) {
        return Route::Vector { excluded: true };
    }
    if shape.contains(&0) {
        // empty tensor: nothing to decompose
        return Route::Vector { excluded: false };
    }
    match shape.len() {
        2 => Route::Matrix {
            rows: shape[0],
            cols: shape[1],
            reshaped: false,
        },
        n if n > 2 && shape[0] > 0 => Route::Matrix {
            rows: shape[0],
            cols: shape[1..].iter().product(),
            reshaped: true,
        },
        _ => Route::Vector { excluded: false },
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Plan {
    /// Open every input and validate it against the base. No tensor data is read.
    pub fn new(recipe: Recipe) -> Result<Plan> {
        if recipe.experts.is_empty() {
            return Err(MergeError::Recipe("no experts (K = 0): nothing to merge".into()));
        }
        for out in &recipe.outputs {
            if Format::from_path(out).is_none() {
                return Err(MergeError::Recipe(format!(
                    "output {} must end in .onnx or .safetensors",
                    out.display()
                )));
            }
            for inp in std::iter::once(&recipe.base).chain(recipe.experts.iter().map(|e| &e.path)) {
                if same_file(out, inp) {
                    return Err(MergeError::Recipe(format!(
                        "output {} would overwrite an input",
                        out.display()
                    )));
                }
            }
        }
        let base = Checkpoint::open(&recipe.base)?;
        let experts = recipe
            .experts
            .iter()
            .map(|e| Checkpoint::open(&e.path))
            .collect::<Result<Vec<_>>>()?;
        for t in &base.tensors {
            for ex in &experts {
                let Some(j) = ex.find(&t.name) else {
                    return Err(MergeError::Mismatch {
                        tensor: t.name.clone(),
                        path: ex.path.clone(),
                        msg: format!("missing (present in the base {})", base.path.display()),
                    });
                };
                let e = &ex.tensors[j];
                if e.dtype != t.dtype {
                    return Err(MergeError::Mismatch {
                        tensor: t.name.clone(),
                        path: ex.path.clone(),
                        msg: format!("dtype {} but the base has {}", e.dtype, t.dtype),
                    });
                }
                if e.shape != t.shape {
                    return Err(MergeError::Mismatch {
                        tensor: t.name.clone(),
                        path: ex.path.clone(),
                        msg: format!("shape {:?} but the base has {:?}", e.shape, t.shape),
                    });
                }
            }
        }
        for ex in &experts {
            if let Some(e) = ex.tensors.iter().find(|e| base.find(&e.name).is_none()) {
                return Err(MergeError::Mismatch {
                    tensor: e.name.clone(),
                    path: ex.path.clone(),
                    msg: format!("not present in the base {}", base.path.display()),
                });
            }
        }
        let wants_onnx = recipe
            .outputs
            .iter()
            .any(|o| Format::from_path(o) == Some(Format::Onnx));
        let mut graph = None;
        if let Some(g) = &recipe.graph {
            if !same_file(g, &recipe.base) {
                graph = Some(Checkpoint::open(g)?);
            }
        }
        if wants_onnx && graph.is_none() && base.format != Format::Onnx {
            return Err(MergeError::Recipe(
                "an .onnx output needs an ONNX graph: the base is safetensors, so pass --graph model.onnx (or `graph` in the recipe)".into(),
            ));
        }
        if let Some(g) = &graph {
            if g.format != Format::Onnx {
                return Err(MergeError::input(&g.path, "--graph must be an .onnx model"));
            }
            for t in &g.tensors {
                let ok = base
                    .find(&t.name)
                    .map(|i| &base.tensors[i])
                    .is_some_and(|b| b.dtype == t.dtype && b.shape == t.shape);
                if !ok {
                    return Err(MergeError::Mismatch {
                        tensor: t.name.clone(),
                        path: g.path.clone(),
                        msg: "graph initializer has no tensor of the same name, dtype and shape in the base".into(),
                    });
                }
            }
        }
        let routes = base
            .tensors
            .iter()
            .map(|t| route_of(&recipe, &t.name, t.dtype, &t.shape))
            .collect();
        Ok(Plan {
            recipe,
            base,
            experts,
            routes,
            graph,
        })
    }

    fn threads(&self) -> usize {
        if self.recipe.threads > 0 {
            self.recipe.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Human-readable plan (`--dry-run`).
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let r = &self.recipe;
        let mut s = String::new();
        let params: usize = self.base.tensors.iter().map(|t| t.numel()).sum();
        let _ = writeln!(s, "thunder-merge plan");
        let _ = writeln!(
            s,
            "  base     {} ({:?}, {} tensors, {} parameters)",
            r.base.display(),
            self.base.format,
            self.base.tensors.len(),
            params
        );
        let _ = writeln!(s, "  experts  K = {}", r.experts.len());
        for (i, e) in r.experts.iter().enumerate() {
            let _ = writeln!(s, "    [{}] {} (weight {})", i + 1, e.path.display(), e.weight);
        }
        let _ = writeln!(s, "  method   {}", r.method.describe());
        let _ = writeln!(
            s,
            "  pre      {}",
            r.dare.as_ref().map_or("none".into(), |d| d.describe())
        );
        let _ = writeln!(
            s,
            "  post     {}",
            r.svc.as_ref().map_or("none".into(), |d| d.describe())
        );
        let _ = writeln!(s, "  seed     {}    threads {}", r.seed, self.threads());
        let (mut m, mut rs, mut v, mut ex, mut av, mut c) = (0, 0, 0, 0, 0, 0);
        let mut largest = 0usize;
        for (t, route) in self.base.tensors.iter().zip(&self.routes) {
            match route {
                Route::Matrix { reshaped, .. } => {
                    m += 1;
                    rs += *reshaped as usize
                }
                Route::Vector { excluded } => {
                    v += 1;
                    ex += *excluded as usize
                }
                Route::Average => av += 1,
                Route::Copy => c += 1,
            }
            if *route != Route::Copy {
                largest = largest.max(t.numel());
            }
        }
        let _ = writeln!(
            s,
            "  tensors  {m} matrix ({rs} reshaped N-D kernels), {v} element-wise/averaged ({ex} excluded by pattern), {av} experts' mean (average patterns), {c} non-float (copied; must be identical)"
        );
        let k = r.experts.len();
        let est = self.threads() * (k + 4) * largest * 4;
        let _ = writeln!(
            s,
            "  memory   ~{:.1} MiB working set (threads × (K+4) × largest tensor × 4 B, plus SVD workspace)",
            est as f64 / (1 << 20) as f64
        );
        if r.outputs.is_empty() {
            let _ = writeln!(s, "  outputs  (none given)");
        }
        for o in &r.outputs {
            let _ = writeln!(s, "  output   {}", o.display());
        }
        let _ = writeln!(s, "  per tensor:");
        for (t, route) in self.base.tensors.iter().zip(&self.routes) {
            let how = match route {
                Route::Matrix {
                    rows,
                    cols,
                    reshaped: false,
                } => format!("matrix {rows}x{cols}"),
                Route::Matrix {
                    rows,
                    cols,
                    reshaped: true,
                } => format!("matrix {rows}x{cols} (reshaped)"),
                Route::Vector { excluded: true } => "averaged (excluded)".into(),
                Route::Vector { excluded: false } => "element-wise".into(),
                Route::Average => "experts' weighted mean (average)".into(),
                Route::Copy => "copy (non-float)".into(),
            };
            let _ = writeln!(
                s,
                "    {:<48} {:>5} {:?} -> {how}",
                t.name,
                t.dtype.to_string(),
                t.shape
            );
        }
        s
    }

    fn metadata(&self) -> Vec<(String, String)> {
        let r = &self.recipe;
        let mut recipe = r.toml.clone();
        recipe.push_str(&format!("\n# method: {}\n", r.method.describe()));
        if let Some(d) = &r.dare {
            recipe.push_str(&format!("# pre: {}\n", d.describe()));
        }
        if let Some(d) = &r.svc {
            recipe.push_str(&format!("# post: {}\n", d.describe()));
        }
        let src = |role: &str, p: &Path, w: Option<f32>| {
            let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let mut o = serde_json::json!({"role": role, "path": p.display().to_string(), "bytes": bytes});
            if let Some(w) = w {
                o["weight"] = serde_json::json!(w);
            }
            o
        };
        let mut sources = vec![src("base", &r.base, None)];
        for e in &r.experts {
            sources.push(src("expert", &e.path, Some(e.weight)));
        }
        let mut meta = r.metadata.clone();
        meta.extend([
            ("thunder.merge.recipe".into(), recipe),
            (
                "thunder.merge.sources".into(),
                serde_json::Value::Array(sources).to_string(),
            ),
            ("thunder.merge.version".into(), env!("CARGO_PKG_VERSION").into()),
        ]);
        meta
    }

    fn open_outputs(&self) -> Result<Vec<(AtomicOutput, Format)>> {
        let meta = self.metadata();
        let mut outs = Vec::new();
        for path in &self.recipe.outputs {
            match Format::from_path(path) {
                Some(Format::Safetensors) => {
                    let list: Vec<(String, DType, Vec<usize>)> = self
                        .base
                        .tensors
                        .iter()
                        .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
                        .collect();
                    let mut all_meta: Vec<(String, String)> = self
                        .base
                        .metadata
                        .iter()
                        .filter(|(k, _)| !meta.iter().any(|(m, _)| m == k))
                        .cloned()
                        .collect();
                    all_meta.extend(meta.iter().cloned());
                    let (header, offs) = safetensors::build_header(&list, &all_meta).map_err(MergeError::Recipe)?;
                    let mut layout = Layout::default();
                    layout.push_bytes(header);
                    for (id, t) in self.base.tensors.iter().enumerate() {
                        let len = (t.numel() * t.dtype.size().unwrap_or(0)) as u64;
                        debug_assert_eq!(layout.len, offs[id]);
                        layout.push_payload(id, len);
                    }
                    outs.push((AtomicOutput::create(path, &layout, None)?, Format::Safetensors));
                }
                Some(Format::Onnx) => {
                    let template = self.graph.as_ref().unwrap_or(&self.base);
                    let mut replace = HashMap::new();
                    for t in &template.tensors {
                        if t.dtype.is_float() {
                            let id = self.base.find(&t.name).expect("validated");
                            replace.insert(t.name.clone(), (id, (t.numel() * t.dtype.size().unwrap()) as u64));
                        }
                    }
                    let layout = onnx::template_layout(template.bytes(), &replace, &meta)
                        .map_err(|m| MergeError::input(&template.path, m))?;
                    outs.push((
                        AtomicOutput::create(path, &layout, Some(template.bytes()))?,
                        Format::Onnx,
                    ));
                }
                None => unreachable!("validated"),
            }
        }
        Ok(outs)
    }

    /// Merge one tensor; returns the output payload bytes (base dtype, little-endian).
    fn merge_tensor(&self, id: usize) -> Result<Vec<u8>> {
        let t = &self.base.tensors[id];
        let route = self.routes[id];
        if route == Route::Copy {
            let b = self.base.canonical_bytes(id)?;
            for ex in &self.experts {
                let e = ex.canonical_bytes(ex.find(&t.name).unwrap())?;
                if e != b {
                    return Err(MergeError::Mismatch {
                        tensor: t.name.clone(),
                        path: ex.path.clone(),
                        msg: format!("non-float ({}) tensor differs from the base; non-float tensors are not merged and must be identical in every input", t.dtype),
                    });
                }
            }
            return Ok(b);
        }
        let nonfinite = |ck: &Checkpoint, v: &[f32]| -> Result<()> {
            if let Some(p) = v.iter().position(|x| !x.is_finite()) {
                return Err(MergeError::Numeric {
                    tensor: t.name.clone(),
                    path: Some(ck.path.clone()),
                    msg: format!("value #{p} is {} — fix or re-export this checkpoint", v[p]),
                });
            }
            Ok(())
        };
        let base = self.base.read_f32(id)?;
        nonfinite(&self.base, &base)?;
        let mut taus = Vec::with_capacity(self.experts.len());
        for ex in &self.experts {
            let mut v = ex.read_f32(ex.find(&t.name).unwrap())?;
            nonfinite(ex, &v)?;
            v.iter_mut().zip(&base).for_each(|(x, b)| *x -= b);
            taus.push(v);
        }
        let r = &self.recipe;
        let weights: Vec<f32> = r.experts.iter().map(|e| e.weight).collect();
        if route == Route::Average {
            let wsum: f32 = weights.iter().sum();
            let mut merged = base;
            for (tau, w) in taus.iter().zip(&weights) {
                merged.iter_mut().zip(tau).for_each(|(m, x)| *m += w / wsum * x);
            }
            return Ok(encode_f32(t.dtype, &merged));
        }
        if let Some(d) = &r.dare {
            d.apply(&t.name, r.seed, &mut taus);
        }
        let input = TensorInput {
            name: &t.name,
            shape: &t.shape,
            taus,
            weights: &weights,
            seed: r.seed,
        };
        let numeric = |m: String| MergeError::numeric(&t.name, m);
        let delta = match route {
            Route::Matrix { rows, cols, .. } => {
                let d = r.method.merge_matrix(&input, rows, cols).map_err(numeric)?;
                match &r.svc {
                    Some(svc) => svc.calibrate(&d, &input.taus, rows, cols).map_err(numeric)?,
                    None => d,
                }
            }
            _ => r.method.merge_vector(&input).map_err(numeric)?,
        };
        drop(input);
        if let Some(p) = delta.iter().position(|x| !x.is_finite()) {
            return Err(numeric(format!("the merge produced a non-finite value at #{p}")));
        }
        let merged: Vec<f32> = base.iter().zip(&delta).map(|(b, d)| b + d).collect();
        Ok(encode_f32(t.dtype, &merged))
    }

    /// Run the merge and write every output atomically.
    pub fn execute(&self, opts: RunOptions) -> Result<Report> {
        let start = Instant::now();
        if self.recipe.outputs.is_empty() {
            return Err(MergeError::Recipe(
                "no output given: pass -o merged.onnx and/or -o merged.safetensors (or use --dry-run)".into(),
            ));
        }
        faer::set_global_parallelism(faer::Par::Seq);
        limit_heap_retention(self.recipe.method.is_spectral() || self.recipe.svc.is_some());
        let outs = self.open_outputs()?;
        let n = self.base.tensors.len();
        let mut order: Vec<usize> = (0..n).collect();
        // largest (most expensive) first; ties by index, so the schedule is reproducible
        order.sort_by_key(|&i| (std::cmp::Reverse(self.base.tensors[i].numel()), i));
        let total: u64 = self.base.tensors.iter().map(|t| t.numel().max(1) as u64).sum();
        let pb = if opts.progress {
            let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template(
                    "merging {bar:40.cyan/blue} {percent:>3}% [{elapsed_precise} < {eta_precise}] {msg}",
                )
                .unwrap(),
            );
            pb
        } else {
            ProgressBar::hidden()
        };
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let first_err: Mutex<Option<MergeError>> = Mutex::new(None);
        let threads = self.threads().min(n.max(1));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    if abort.load(Ordering::Relaxed) {
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n {
                        break;
                    }
                    let id = order[k];
                    let res = self.merge_tensor(id).and_then(|bytes| {
                        for (o, _) in &outs {
                            if o.has_payload(id) {
                                o.write_payload(id, &bytes)?;
                            }
                        }
                        Ok(())
                    });
                    match res {
                        Ok(()) => {
                            let c = done.fetch_add(1, Ordering::Relaxed) + 1;
                            pb.inc(self.base.tensors[id].numel().max(1) as u64);
                            pb.set_message(format!("{c}/{n} tensors"));
                        }
                        Err(e) => {
                            abort.store(true, Ordering::Relaxed);
                            let mut g = first_err.lock().unwrap();
                            if g.is_none() {
                                *g = Some(e);
                            }
                            break;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_err.into_inner().unwrap() {
            pb.abandon_with_message("failed");
            return Err(e); // `outs` dropped: temporary files removed
        }
        let mut written = Vec::new();
        for (o, _) in outs {
            written.push(o.path().to_path_buf());
            o.commit()?;
        }
        pb.finish_with_message(format!("{n}/{n} tensors"));
        let count = |f: fn(&Route) -> bool| self.routes.iter().filter(|r| f(r)).count();
        Ok(Report {
            matrix: count(|r| matches!(r, Route::Matrix { .. })),
            vector: count(|r| matches!(r, Route::Vector { .. } | Route::Average)),
            copied: count(|r| matches!(r, Route::Copy)),
            outputs: written,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Tune glibc's allocator for tensor-sized buffers.
///
/// SVD-based methods allocate and free many differently sized workspaces; glibc would raise
/// its mmap threshold after the first large free (up to 32 MiB) and keep those buffers in
/// per-thread arenas, inflating the resident set far beyond the working set. For them every
/// allocation of 1 MiB or more gets its own `mmap` and goes back to the OS when freed.
/// Element-wise methods reuse same-sized buffers, so a fixed 32 MiB threshold (heap reuse,
/// fewer page faults) is faster at the same peak. `THUNDER_MERGE_MMAP_THRESHOLD` (bytes, 0 =
/// leave glibc alone) overrides the choice.
fn limit_heap_retention(spectral: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        let default = if spectral { 1 << 20 } else { 32 << 20 };
        let t: i32 = std::env::var("THUNDER_MERGE_MMAP_THRESHOLD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default);
        if t > 0 {
            libc::mallopt(libc::M_MMAP_THRESHOLD, t);
            libc::mallopt(libc::M_TRIM_THRESHOLD, t);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = spectral;
}

/// Validate and run a recipe in one call.
pub fn run(recipe: Recipe, opts: RunOptions) -> Result<Report> {
    Plan::new(recipe)?.execute(opts)
}
