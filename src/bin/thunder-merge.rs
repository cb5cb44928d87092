//! `thunder-merge`: merge domain-adapted checkpoints that share a base into one model.
//!
//! Thin CLI over [`thunder::merge`]: flags are folded into the (optional) TOML recipe, then the
//! library validates, plans and runs the merge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use thunder::merge::{MergeError, Plan, Recipe, RunOptions};
use toml::{Table, Value};

const AFTER_HELP: &str = "\
Examples:
  thunder-merge --base base.onnx --expert car.onnx --expert babble.onnx --method tsv-m -o merged.onnx
  thunder-merge --recipe merge.toml --dry-run
  thunder-merge --recipe merge.toml --set method.alpha=0.8 --svc 1.0 -o merged.safetensors

Methods: ta, ties, tsv-m, boosted-tsv-m, drm, iso-c   (pre-step: --dare P, post-step: --svc ALPHA)

Exit codes: 0 success, 2 bad recipe or arguments, 3 invalid or mismatched inputs,
            4 numerical problem (NaN/Inf in a tensor, SVD failure), 5 cannot write the output.
No output file is left behind on error.";

/// Merge fine-tuned checkpoints (safetensors or ONNX) that share a base model.
#[derive(Parser, Debug)]
#[command(name = "thunder-merge", version, about, after_help = AFTER_HELP)]
struct Args {
    /// TOML recipe (see the module docs); flags below override its values.
    #[arg(long, short = 'r')]
    recipe: Option<PathBuf>,
    /// Base checkpoint (.safetensors or .onnx).
    #[arg(long, short = 'b')]
    base: Option<PathBuf>,
    /// Expert checkpoint; repeat for each expert (replaces the recipe's experts).
    #[arg(long = "expert", short = 'e')]
    experts: Vec<PathBuf>,
    /// Per-expert weights, comma-separated, in --expert order (default 1.0 each).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<f32>,
    /// Merge method: ta, ties, tsv-m, boosted-tsv-m, drm, iso-c.
    #[arg(long, short = 'm')]
    method: Option<String>,
    /// Method scaling λ (ta, ties).
    #[arg(long)]
    lambda: Option<f64>,
    /// Method scaling α (tsv-m, boosted-tsv-m, iso-c).
    #[arg(long)]
    alpha: Option<f64>,
    /// TIES density (fraction kept).
    #[arg(long)]
    density: Option<f64>,
    /// BoostedTSV-M energy threshold β.
    #[arg(long)]
    beta: Option<f64>,
    /// DRM drop rate.
    #[arg(long)]
    drop_rate: Option<f64>,
    /// DRM direction: vertical or horizontal.
    #[arg(long)]
    direction: Option<String>,
    /// Any parameter as KEY=VALUE (e.g. method.orthogonalizer=newton-schulz, svc.mode=reference).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Enable the DARE pre-step with drop probability P.
    #[arg(long, value_name = "P")]
    dare: Option<f64>,
    /// Enable the SVC post-step with clamp ALPHA.
    #[arg(long, value_name = "ALPHA")]
    svc: Option<f64>,
    /// Glob pattern of tensors that skip the matrix path (averaged); repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Glob pattern of tensors set to the experts' weighted mean (statistics such as
    /// `*.running_var`); repeatable.
    #[arg(long)]
    average: Vec<String>,
    /// ONNX template graph for .onnx outputs when the base is safetensors.
    #[arg(long)]
    graph: Option<PathBuf>,
    /// Random seed (DARE masks).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long, short = 'j')]
    threads: Option<u64>,
    /// Output file (.onnx and/or .safetensors); repeatable. Replaces the recipe's outputs.
    #[arg(long = "output", short = 'o')]
    outputs: Vec<PathBuf>,
    /// Validate the inputs and print the plan without merging.
    #[arg(long)]
    dry_run: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn parse_value(s: &str) -> Value {
    format!("v = {s}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(s.to_string()))
}

fn sub_table<'a>(t: &'a mut Table, key: &str) -> Result<&'a mut Table, MergeError> {
    let entry = t.entry(key.to_string()).or_insert_with(|| Value::Table(Table::new()));
    if let Value::String(name) = entry {
        let mut nt = Table::new();
        nt.insert("name".into(), Value::String(name.clone()));
        *entry = Value::Table(nt);
    }
    entry
        .as_table_mut()
        .ok_or_else(|| MergeError::Recipe(format!("`{key}` is not a table")))
}

fn cwd_path(p: &Path) -> Value {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    Value::String(abs.display().to_string())
}

fn build_recipe(a: &Args) -> Result<Recipe, MergeError> {
    let (mut table, dir) = match &a.recipe {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| MergeError::Recipe(format!("cannot read recipe {}: {e}", p.display())))?;
            let t: Table = text
                .parse()
                .map_err(|e| MergeError::Recipe(format!("{} is not valid TOML: {e}", p.display())))?;
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            (t, dir)
        }
        None => (Table::new(), PathBuf::from(".")),
    };
    // CLI paths are relative to the working directory: store them absolute.
    if let Some(b) = &a.base {
        table.insert("base".into(), cwd_path(b));
    }
    if !a.experts.is_empty() {
        if !a.weights.is_empty() && a.weights.len() != a.experts.len() {
            return Err(MergeError::Recipe(format!(
                "--weights has {} values for {} experts",
                a.weights.len(),
                a.experts.len()
            )));
        }
        let arr = a
            .experts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut t = Table::new();
                t.insert("path".into(), cwd_path(p));
                t.insert(
                    "weight".into(),
                    Value::Float(a.weights.get(i).copied().unwrap_or(1.0) as f64),
                );
                Value::Table(t)
            })
            .collect();
        table.insert("experts".into(), Value::Array(arr));
    } else if !a.weights.is_empty() {
        let Some(Value::Array(arr)) = table.get_mut("experts") else {
            return Err(MergeError::Recipe("--weights needs experts".into()));
        };
        if arr.len() != a.weights.len() {
            return Err(MergeError::Recipe(format!(
                "--weights has {} values for {} experts",
                a.weights.len(),
                arr.len()
            )));
        }
        for (v, w) in arr.iter_mut().zip(&a.weights) {
            let path = match &*v {
                Value::Table(t) => t.get("path").cloned(),
                other => Some(other.clone()),
            };
            let mut t = Table::new();
            if let Some(p) = path {
                t.insert("path".into(), p);
            }
            t.insert("weight".into(), Value::Float(*w as f64));
            *v = Value::Table(t);
        }
    }
    if let Some(m) = &a.method {
        // a new method discards the recipe's method parameters
        let mut t = Table::new();
        t.insert("name".into(), Value::String(m.clone()));
        table.insert("method".into(), Value::Table(t));
    }
    for (k, v) in [
        ("lambda", a.lambda),
        ("alpha", a.alpha),
        ("density", a.density),
        ("beta", a.beta),
        ("drop_rate", a.drop_rate),
    ] {
        if let Some(v) = v {
            sub_table(&mut table, "method")?.insert(k.into(), Value::Float(v));
        }
    }
    if let Some(d) = &a.direction {
        sub_table(&mut table, "method")?.insert("direction".into(), Value::String(d.clone()));
    }
    if let Some(p) = a.dare {
        sub_table(&mut table, "dare")?.insert("p".into(), Value::Float(p));
    }
    if let Some(al) = a.svc {
        sub_table(&mut table, "svc")?.insert("alpha".into(), Value::Float(al));
    }
    if !a.exclude.is_empty() {
        table.insert(
            "exclude".into(),
            Value::Array(a.exclude.iter().map(|s| Value::String(s.clone())).collect()),
        );
    }
    if !a.average.is_empty() {
        table.insert(
            "average".into(),
            Value::Array(a.average.iter().map(|s| Value::String(s.clone())).collect()),
        );
    }
    if let Some(g) = &a.graph {
        table.insert("graph".into(), cwd_path(g));
    }
    if let Some(s) = a.seed {
        table.insert("seed".into(), Value::Integer(s as i64));
    }
    if let Some(t) = a.threads {
        table.insert("threads".into(), Value::Integer(t as i64));
    }
    if !a.outputs.is_empty() {
        table.remove("output");
        table.insert(
            "outputs".into(),
            Value::Array(a.outputs.iter().map(|p| cwd_path(p)).collect()),
        );
    }
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| MergeError::Recipe(format!("--set expects KEY=VALUE, got `{kv}`")))?;
        match k.split_once('.') {
            Some((sect, key)) => {
                sub_table(&mut table, sect)?.insert(key.to_string(), parse_value(v));
            }
            None => {
                table.insert(k.to_string(), parse_value(v));
            }
        }
    }
    Recipe::from_table(table, &dir)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = build_recipe(&args).and_then(Plan::new).and_then(|plan| {
        if args.dry_run {
            print!("{}", plan.describe());
            return Ok(None);
        }
        if !args.quiet {
            eprint!("{}", plan.describe().lines().take(8).collect::<Vec<_>>().join("\n"));
            eprintln!();
        }
        plan.execute(RunOptions { progress: !args.quiet }).map(Some)
    });
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(r)) => {
            if !args.quiet {
                eprintln!(
                    "merged {} matrices, {} element-wise tensors, copied {} non-float tensors in {:.1} s",
                    r.matrix, r.vector, r.copied, r.seconds
                );
            }
            for o in &r.outputs {
                println!("wrote {}", o.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("thunder-merge: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
