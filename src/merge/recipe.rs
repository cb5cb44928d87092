//! Merge recipes: a TOML file in the spirit of mergekit's YAML configs, overridable from the
//! command line.
//!
//! ```toml
//! base = "base.onnx"                      # paths are relative to the recipe file
//! outputs = ["merged.onnx", "merged.safetensors"]
//! seed = 0                                # DARE masks depend only on seed + tensor name
//! threads = 0                             # 0 = all cores
//! exclude = ["*.norm.*", "head.*"]        # glob patterns: these tensors are averaged
//! average = ["*.running_mean", "*.running_var"]  # statistics: the experts' weighted mean
//!
//! [method]                                # ta | ties | tsv-m | boosted-tsv-m | drm | iso-c
//! name = "tsv-m"
//! alpha = 1.0
//!
//! [dare]                                  # optional pre-step (drop and rescale)
//! p = 0.8
//!
//! [svc]                                   # optional post-step (singular value calibration)
//! alpha = 1.0
//!
//! [metadata]                              # optional: stamped on the outputs (overrides the base's)
//! "thunder.model_name" = "thunder-16k"
//!
//! [[experts]]
//! path = "car.onnx"
//! weight = 1.0
//!
//! [[experts]]
//! path = "babble.onnx"
//! weight = 0.5
//! ```
//!
//! Method parameters (defaults from the reference implementations):
//! `ta`: `lambda` (0.3) · `ties`: `density` (0.2), `lambda` (1.0) · `tsv-m`: `alpha` (1.0) ·
//! `boosted-tsv-m`: `alpha` (1.0), `beta` (0.3), `orthogonalizer` ("svd" | "newton-schulz"),
//! `ns_iters` (30), `ns_tol` (1e-5) · `drm`: `direction` ("vertical" | "horizontal"),
//! `drop_rate` (0.8), `rank_tol` (0.01), `eps` (1e-12), `disjoint_mean` (true) · `iso-c`:
//! `alpha` (1.0). `dare`: `p` (0.8), `rescale` (true). `svc`: `alpha` (1.0), `eps` (1e-12),
//! `mode` ("mean-of-max" | "reference").

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::merge::error::{MergeError, Result};
use crate::merge::method::MergeMethod;
use crate::merge::methods::*;

/// One expert checkpoint and its weight.
#[derive(Debug, Clone)]
pub struct Expert {
    /// Checkpoint path.
    pub path: PathBuf,
    /// Weight `w_i` (default 1.0).
    pub weight: f32,
}

/// A fully resolved merge recipe.
#[derive(Debug)]
pub struct Recipe {
    /// Base checkpoint.
    pub base: PathBuf,
    /// Expert checkpoints.
    pub experts: Vec<Expert>,
    /// The merge method.
    pub method: Box<dyn MergeMethod>,
    /// Optional DARE pre-step.
    pub dare: Option<Dare>,
    /// Optional SVC post-step.
    pub svc: Option<Svc>,
    /// Glob patterns of tensors that skip the matrix path.
    pub exclude: Vec<String>,
    /// Glob patterns of tensors set to the experts' weighted mean `Σ w_i θ_i / Σ w_i`, bypassing
    /// DARE, the method and SVC: statistics such as BatchNorm running means/variances, which
    /// task arithmetic could push out of their domain (a variance below zero).
    pub average: Vec<String>,
    /// Seed of the random streams.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Output files (`.onnx` and/or `.safetensors`).
    pub outputs: Vec<PathBuf>,
    /// ONNX template graph for `.onnx` outputs (default: the base, when it is ONNX).
    pub graph: Option<PathBuf>,
    /// Metadata entries stamped on the outputs, replacing the base's entries of the same key
    /// (e.g. the merged model's own `thunder.model_name` / `thunder.model_version`).
    pub metadata: Vec<(String, String)>,
    /// The effective recipe as TOML (stored in the output metadata).
    pub toml: String,
}

/// Reads typed parameters out of a table and reports unknown keys.
struct Params<'a> {
    ctx: &'a str,
    table: &'a Table,
    used: Vec<&'static str>,
}

impl<'a> Params<'a> {
    fn new(ctx: &'a str, table: &'a Table) -> Self {
        Params {
            ctx,
            table,
            used: vec![],
        }
    }
    fn f64(&mut self, key: &'static str, default: f64) -> Result<f64> {
        self.used.push(key);
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Float(f)) => Ok(*f),
            Some(Value::Integer(i)) => Ok(*i as f64),
            Some(v) => Err(MergeError::Recipe(format!(
                "[{}] {key} must be a number, got {v}",
                self.ctx
            ))),
        }
    }
    fn str(&mut self, key: &'static str, default: &str) -> Result<String> {
        self.used.push(key);
        match self.table.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(MergeError::Recipe(format!(
                "[{}] {key} must be a string, got {v}",
                self.ctx
            ))),
        }
    }
    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool> {
        self.used.push(key);
        match self.table.get(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(MergeError::Recipe(format!(
                "[{}] {key} must be true or false, got {v}",
                self.ctx
            ))),
        }
    }
    fn finish(self) -> Result<()> {
        for k in self.table.keys() {
            if !self.used.contains(&k.as_str()) {
                return Err(MergeError::Recipe(format!(
                    "unknown parameter `{k}` for {} (known: {})",
                    self.ctx,
                    self.used.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn check_range(what: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v >= lo && v <= hi) {
        return Err(MergeError::Recipe(format!("{what} = {v} is out of range [{lo}, {hi}]")));
    }
    Ok(())
}

/// Build a method from its `[method]` table (`name` selects the method).
pub fn method_from_table(t: &Table) -> Result<Box<dyn MergeMethod>> {
    let name = match t.get("name") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        _ => {
            return Err(MergeError::Recipe(
                "[method] needs `name` (ta, ties, tsv-m, boosted-tsv-m, drm, iso-c)".into(),
            ))
        }
    };
    let mut rest = t.clone();
    rest.remove("name");
    let ctx = format!("method `{name}`");
    let mut p = Params::new(&ctx, &rest);
    let m: Box<dyn MergeMethod> = match name.as_str() {
        "ta" | "task-arithmetic" | "task_arithmetic" => Box::new(TaskArithmetic {
            lambda: p.f64("lambda", 0.3)? as f32,
        }),
        "ties" => {
            let density = p.f64("density", 0.2)?;
            check_range("ties density", density, 0.0, 1.0)?;
            Box::new(Ties {
                density,
                lambda: p.f64("lambda", 1.0)? as f32,
            })
        }
        "tsv-m" | "tsv" | "tsvm" => Box::new(TsvMerge {
            alpha: p.f64("alpha", 1.0)? as f32,
        }),
        "boosted-tsv-m" | "boosted-tsv" | "boostedtsv-m" => {
            let alpha = p.f64("alpha", 1.0)? as f32;
            let beta = p.f64("beta", 0.3)?;
            check_range("boosted-tsv-m beta", beta, 0.0, 1.0)?;
            let orth = p.str("orthogonalizer", "svd")?;
            let iters = p.f64("ns_iters", 30.0)? as usize;
            let tol = p.f64("ns_tol", 1e-5)? as f32;
            let orthogonalizer = match orth.as_str() {
                "svd" => Orthogonalizer::Svd,
                "newton-schulz" | "ns" => Orthogonalizer::NewtonSchulz { iters, tol },
                o => return Err(MergeError::Recipe(format!("orthogonalizer must be `svd` or `newton-schulz`, got `{o}`"))),
            };
            Box::new(BoostedTsvMerge {
                alpha,
                beta,
                orthogonalizer,
            })
        }
        "drm" | "drm-v" | "drm-h" => {
            let default_dir = if name == "drm-h" { "horizontal" } else { "vertical" };
            let direction = match p.str("direction", default_dir)?.as_str() {
                "vertical" | "v" => DrmDirection::Vertical,
                "horizontal" | "h" => DrmDirection::Horizontal,
                d => return Err(MergeError::Recipe(format!("drm direction must be `vertical` or `horizontal`, got `{d}`"))),
            };
            let drop_rate = p.f64("drop_rate", 0.8)?;
            check_range("drm drop_rate", drop_rate, 0.0, 1.0)?;
            Box::new(Drm {
                direction,
                drop_rate,
                rank_tol: p.f64("rank_tol", 1e-2)? as f32,
                eps: p.f64("eps", 1e-12)? as f32,
                disjoint_mean: p.bool("disjoint_mean", true)?,
            })
        }
        "iso-c" | "isoc" | "iso_c" => Box::new(IsoC {
            alpha: p.f64("alpha", 1.0)? as f32,
        }),
        other => {
            return Err(MergeError::Recipe(format!(
                "unknown method `{other}` (choose ta, ties, tsv-m, boosted-tsv-m, drm, iso-c; dare and svc are the [dare] / [svc] steps)"
            )))
        }
    };
    p.finish()?;
    Ok(m)
}

fn dare_from_table(t: &Table) -> Result<Dare> {
    let mut p = Params::new("[dare]", t);
    let d = Dare {
        p: p.f64("p", 0.8)?,
        rescale: p.bool("rescale", true)?,
    };
    p.finish()?;
    if !(0.0..1.0).contains(&d.p) {
        return Err(MergeError::Recipe(format!("dare p = {} must be in [0, 1)", d.p)));
    }
    Ok(d)
}

fn svc_from_table(t: &Table) -> Result<Svc> {
    let mut p = Params::new("[svc]", t);
    let alpha = p.f64("alpha", 1.0)? as f32;
    let eps = p.f64("eps", 1e-12)? as f32;
    let mode = match p.str("mode", "mean-of-max")?.as_str() {
        "mean-of-max" => SvcMode::MeanOfMax,
        "reference" => SvcMode::Reference,
        m => {
            return Err(MergeError::Recipe(format!(
                "svc mode must be `mean-of-max` or `reference`, got `{m}`"
            )))
        }
    };
    p.finish()?;
    if alpha <= 0.0 {
        return Err(MergeError::Recipe("svc alpha must be > 0".into()));
    }
    Ok(Svc { alpha, eps, mode })
}

fn path_of(v: &Value, what: &str, dir: &Path) -> Result<PathBuf> {
    match v {
        Value::String(s) => {
            let p = PathBuf::from(s);
            Ok(if p.is_absolute() { p } else { dir.join(p) })
        }
        _ => Err(MergeError::Recipe(format!("{what} must be a path string"))),
    }
}

impl Recipe {
    /// Parse a recipe file's text; relative paths resolve against `dir`.
    pub fn from_toml_str(text: &str, dir: &Path) -> Result<Recipe> {
        let table: Table = text
            .parse()
            .map_err(|e| MergeError::Recipe(format!("recipe is not valid TOML: {e}")))?;
        Recipe::from_table(table, dir)
    }

    /// Build a recipe from a TOML table (the CLI merges its flags into this table first).
    pub fn from_table(table: Table, dir: &Path) -> Result<Recipe> {
        const KNOWN: [&str; 13] = [
            "base", "experts", "method", "dare", "svc", "exclude", "average", "seed", "threads", "outputs", "output",
            "graph", "metadata",
        ];
        for k in table.keys() {
            if !KNOWN.contains(&k.as_str()) {
                return Err(MergeError::Recipe(format!(
                    "unknown recipe key `{k}` (known: {})",
                    KNOWN.join(", ")
                )));
            }
        }
        let base = path_of(
            table.get("base").ok_or_else(|| {
                MergeError::Recipe("no base checkpoint: set `base` in the recipe or pass --base".into())
            })?,
            "base",
            dir,
        )?;
        let mut experts = Vec::new();
        if let Some(v) = table.get("experts") {
            let arr = v
                .as_array()
                .ok_or_else(|| MergeError::Recipe("`experts` must be an array".into()))?;
            for (i, e) in arr.iter().enumerate() {
                match e {
                    Value::String(_) => experts.push(Expert {
                        path: path_of(e, "expert path", dir)?,
                        weight: 1.0,
                    }),
                    Value::Table(t) => {
                        let path = path_of(
                            t.get("path")
                                .ok_or_else(|| MergeError::Recipe(format!("experts[{i}] has no `path`")))?,
                            "expert path",
                            dir,
                        )?;
                        let mut p = Params::new("[[experts]]", t);
                        p.used.push("path");
                        let weight = p.f64("weight", 1.0)? as f32;
                        p.finish()?;
                        experts.push(Expert { path, weight });
                    }
                    _ => return Err(MergeError::Recipe(format!("experts[{i}] must be a path or a table"))),
                }
            }
        }
        if experts.is_empty() {
            return Err(MergeError::Recipe(
                "no experts (K = 0): list at least one fine-tuned checkpoint with --expert or [[experts]]".into(),
            ));
        }
        let method = match table.get("method") {
            Some(Value::Table(t)) => method_from_table(t)?,
            Some(Value::String(s)) => {
                let mut t = Table::new();
                t.insert("name".into(), Value::String(s.clone()));
                method_from_table(&t)?
            }
            Some(_) => return Err(MergeError::Recipe("`method` must be a name or a table".into())),
            None => {
                return Err(MergeError::Recipe(
                    "no merge method: set [method] name = … or pass --method".into(),
                ))
            }
        };
        let dare = match table.get("dare") {
            Some(Value::Table(t)) => Some(dare_from_table(t)?),
            Some(Value::Boolean(false)) | None => None,
            Some(_) => return Err(MergeError::Recipe("[dare] must be a table".into())),
        };
        let svc = match table.get("svc") {
            Some(Value::Table(t)) => Some(svc_from_table(t)?),
            Some(Value::Boolean(false)) | None => None,
            Some(_) => return Err(MergeError::Recipe("[svc] must be a table".into())),
        };
        let globs = |key: &str| -> Result<Vec<String>> {
            match table.get(key) {
                None => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| MergeError::Recipe(format!("`{key}` patterns must be strings")))
                    })
                    .collect(),
                Some(_) => Err(MergeError::Recipe(format!("`{key}` must be an array of glob patterns"))),
            }
        };
        let exclude = globs("exclude")?;
        let average = globs("average")?;
        let int = |k: &str| -> Result<u64> {
            match table.get(k) {
                None => Ok(0),
                Some(Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
                Some(v) => Err(MergeError::Recipe(format!(
                    "`{k}` must be a non-negative integer, got {v}"
                ))),
            }
        };
        let seed = int("seed")?;
        let threads = int("threads")? as usize;
        let mut outputs = Vec::new();
        for key in ["output", "outputs"] {
            match table.get(key) {
                None => {}
                Some(Value::Array(a)) => {
                    for v in a {
                        outputs.push(path_of(v, "output", dir)?);
                    }
                }
                Some(v) => outputs.push(path_of(v, "output", dir)?),
            }
        }
        let graph = table.get("graph").map(|v| path_of(v, "graph", dir)).transpose()?;
        let metadata = match table.get("metadata") {
            None => vec![],
            Some(Value::Table(t)) => t
                .iter()
                .map(|(k, v)| match v {
                    _ if k.starts_with("thunder.merge.") => Err(MergeError::Recipe(format!(
                        "[metadata] `{k}`: the thunder.merge.* keys are written by thunder-merge itself"
                    ))),
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(MergeError::Recipe(format!(
                        "[metadata] `{k}` must be a string, got {v}"
                    ))),
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(MergeError::Recipe("[metadata] must be a table of strings".into())),
        };
        let toml = toml::to_string(&table).unwrap_or_default();
        Ok(Recipe {
            base,
            experts,
            method,
            dare,
            svc,
            exclude,
            average,
            seed,
            threads,
            outputs,
            graph,
            metadata,
            toml,
        })
    }
}

/// Glob match with `*` (any run, including dots) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.norm.*", "blocks.3.norm.weight"));
        assert!(glob_match("head.*", "head.weight"));
        assert!(!glob_match("head.*", "blocks.head"));
        assert!(glob_match("blocks.?.attn*", "blocks.7.attn.qkv"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }
}
