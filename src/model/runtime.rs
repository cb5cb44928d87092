//! Finding and loading ONNX Runtime (`libonnxruntime.so`, loaded dynamically by `ort`).
//!
//! Discovery order: an explicit path (`--ort-lib`), `ORT_DYLIB_PATH`, the project-local copy
//! `.cache/ort/libonnxruntime.so` that `scripts/setup.sh` provisions (looked for in every
//! ancestor of the executable's directory and of the crate directory this was built from),
//! then Python site-packages (`.venv/lib/python3*/site-packages/onnxruntime/capi/` beside the
//! same ancestors, then the system and user Python installs).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// Name of the environment variable that overrides discovery.
pub const ENV_VAR: &str = "ORT_DYLIB_PATH";

const HINT: &str = "run `bash scripts/setup.sh` (it installs ONNX Runtime 1.31.1 into .cache/ort/), \
or point ORT_DYLIB_PATH (or --ort-lib) at libonnxruntime.so";

/// Where a runtime library was found, and why it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The library path.
    pub path: PathBuf,
    /// How it was found ("--ort-lib", "ORT_DYLIB_PATH", "project cache", "python site-packages").
    pub source: &'static str,
}

fn lib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else if cfg!(windows) {
        "onnxruntime.dll"
    } else {
        "libonnxruntime.so"
    }
}

/// Directories whose ancestors are searched for the project cache and `.venv`.
fn anchor_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        if let Some(d) = exe.parent() {
            v.push(d.to_path_buf());
        }
    }
    v.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    v
}

fn ancestors(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        for a in d.ancestors() {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_path_buf());
            }
        }
    }
    out
}

/// `libonnxruntime.so*` files in `<site>/onnxruntime/capi/`, best (shortest name) first.
fn in_site_packages(site: &Path) -> Option<PathBuf> {
    let capi = site.join("onnxruntime").join("capi");
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(lib_name()))
        })
        .collect();
    libs.sort_by_key(|p| p.as_os_str().len());
    libs.into_iter().next()
}

/// `<prefix>/lib/python3*/{site,dist}-packages` directories.
fn python_sites(prefix: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(rd) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut pys: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pys.sort();
        for py in pys {
            v.push(py.join("site-packages"));
            v.push(py.join("dist-packages"));
        }
    }
    v
}

/// Search for the runtime without loading it.
pub fn discover(explicit: Option<&Path>) -> Result<Found> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(Found {
                path: p.to_path_buf(),
                source: "--ort-lib",
            })
        } else {
            Err(Error::Runtime(format!(
                "--ort-lib {}: no such file; {HINT}",
                p.display()
            )))
        };
    }
    if let Some(v) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if p.is_file() {
            Ok(Found {
                path: p,
                source: "ORT_DYLIB_PATH",
            })
        } else {
            Err(Error::Runtime(format!(
                "ORT_DYLIB_PATH={}: no such file; {HINT}",
                p.display()
            )))
        };
    }
    let roots = ancestors(&anchor_dirs());
    for r in &roots {
        let p = r.join(".cache").join("ort").join(lib_name());
        if p.is_file() {
            return Ok(Found {
                path: p,
                source: "project cache",
            });
        }
    }
    let mut prefixes: Vec<PathBuf> = roots.iter().map(|r| r.join(".venv")).collect();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        prefixes.insert(0, PathBuf::from(v));
    }
    prefixes.extend(["/usr/local", "/usr"].map(PathBuf::from));
    if let Some(home) = std::env::var_os("HOME") {
        prefixes.push(Path::new(&home).join(".local"));
    }
    for prefix in prefixes {
        for site in python_sites(&prefix) {
            if let Some(p) = in_site_packages(&site) {
                return Ok(Found {
                    path: p,
                    source: "python site-packages",
                });
            }
        }
    }
    Err(Error::Runtime(format!(
        "ONNX Runtime (libonnxruntime) not found; {HINT}"
    )))
}

struct Loaded {
    env: ort::environment::Environment,
    found: Found,
}

static RUNTIME: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Load the runtime once per process (later calls return the same one) and return its
/// environment and where it came from.
pub fn environment(explicit: Option<&Path>) -> Result<(ort::environment::Environment, Found)> {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let loaded = RUNTIME.get_or_init(|| {
        let found = discover(explicit).map_err(|e| e.to_string())?;
        let builder = ort::init_from(&found.path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {} ({}): {e}; {HINT}",
                found.path.display(),
                found.source
            )
        })?;
        let env = builder
            .with_name("thunder")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot initialise ONNX Runtime from {}: {e}", found.path.display()))?;
        Ok(Loaded { env, found })
    });
    match loaded {
        Ok(l) => Ok((l.env.clone(), l.found.clone())),
        Err(e) => Err(Error::Runtime(e.clone())),
    }
}
