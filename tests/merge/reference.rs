//! Each method against the independent numpy reference (tests/merge/reference.py).

use thunder::merge::io::Checkpoint;
use thunder::merge::method::{MergeMethod, TensorInput};
use thunder::merge::methods::*;
use thunder::merge::rng::{stream_key, uniform};

use super::{fixtures, rel_err, split, tensor};

const TOL: f64 = 1e-4;

struct Case {
    ck: Checkpoint,
    taus: Vec<Vec<f32>>,
    weights: Vec<f32>,
    rows: usize,
    cols: usize,
    name: String,
}

fn case(file: &str) -> Case {
    let ck = Checkpoint::open(&fixtures().join(file)).unwrap();
    let (t, shape) = tensor(&ck, "taus");
    let (w, _) = tensor(&ck, "weights");
    let name = ck.metadata.iter().find(|(k, _)| k == "name").unwrap().1.clone();
    Case {
        taus: split(&t, shape[0]),
        weights: w,
        rows: shape[1],
        cols: shape[2],
        name,
        ck,
    }
}

fn run(c: &Case, m: &dyn MergeMethod, weighted: bool) -> Vec<f32> {
    let ones = vec![1.0f32; c.taus.len()];
    let input = TensorInput {
        name: &c.name,
        shape: &[c.rows, c.cols],
        taus: c.taus.clone(),
        weights: if weighted { &c.weights } else { &ones },
        seed: 7,
    };
    m.merge_matrix(&input, c.rows, c.cols).unwrap()
}

fn check(c: &Case, key: &str, got: &[f32]) {
    let (exp, _) = tensor(&c.ck, &format!("exp_{key}"));
    let e = rel_err(got, &exp);
    assert!(e < TOL, "{} / {key}: relative error {e:.3e} > {TOL}", c.name);
}

fn all_methods(file: &str) {
    let c = case(file);
    let k = c.taus.len() as f32;
    check(&c, "ta", &run(&c, &TaskArithmetic { lambda: 0.3 }, true));
    check(
        &c,
        "ties",
        &run(
            &c,
            &Ties {
                density: 0.2,
                lambda: 1.0,
            },
            true,
        ),
    );
    check(&c, "tsv", &run(&c, &TsvMerge { alpha: 1.0 }, false));
    check(&c, "tsv_w", &run(&c, &TsvMerge { alpha: 0.8 }, true));
    check(&c, "boosted", &run(&c, &BoostedTsvMerge::default(), false));
    check(&c, "iso_c", &run(&c, &IsoC { alpha: 1.0 }, true));
    check(&c, "drm_v", &run(&c, &Drm::default(), false));
    let h = Drm {
        direction: DrmDirection::Horizontal,
        ..Drm::default()
    };
    check(&c, "drm_h", &run(&c, &h, false));
    let vw = Drm {
        drop_rate: 0.5,
        ..Drm::default()
    };
    check(&c, "drm_v_w", &run(&c, &vw, true));
    // DARE in front of TA
    let mut taus = c.taus.clone();
    Dare { p: 0.5, rescale: true }.apply(&c.name, 7, &mut taus);
    let dc = Case {
        taus,
        ck: Checkpoint::open(&fixtures().join(file)).unwrap(),
        weights: c.weights.clone(),
        rows: c.rows,
        cols: c.cols,
        name: c.name.clone(),
    };
    check(&c, "dare_ta", &run(&dc, &TaskArithmetic { lambda: 0.3 }, false));
    // SVC after TA (alpha = 1/K) and after TSV-M (alpha = 1)
    let svc = |alpha: f32, merged: Vec<f32>| {
        Svc {
            alpha,
            ..Svc::default()
        }
        .calibrate(&merged, &c.taus, c.rows, c.cols)
        .unwrap()
    };
    check(
        &c,
        "ta_svc",
        &svc(1.0 / k, run(&c, &TaskArithmetic { lambda: 0.3 }, false)),
    );
    check(&c, "tsv_svc", &svc(1.0, run(&c, &TsvMerge { alpha: 1.0 }, false)));
}

#[test]
fn methods_match_numpy_tall() {
    all_methods("tall.safetensors");
}

#[test]
fn methods_match_numpy_wide() {
    all_methods("wide.safetensors");
}

#[test]
fn random_stream_matches_numpy() {
    let ck = Checkpoint::open(&fixtures().join("rules.safetensors")).unwrap();
    let (exp, _) = tensor(&ck, "rng");
    let key = stream_key(7, "layer.tall.weight", 1);
    let got: Vec<f32> = (0..8).map(|j| uniform(key, j) as f32).collect();
    assert!(rel_err(&got, &exp) < 1e-7, "{got:?} vs {exp:?}");
}

#[test]
fn tensor_rules_match_numpy() {
    let ck = Checkpoint::open(&fixtures().join("rules.safetensors")).unwrap();
    let (b, bs) = tensor(&ck, "bias_taus");
    let (cv, cs) = tensor(&ck, "conv_taus");
    let ones = vec![1.0f32; 3];
    let bias = TensorInput {
        name: "bias",
        shape: &bs[1..],
        taus: split(&b, 3),
        weights: &ones,
        seed: 0,
    };
    let (e, _) = tensor(&ck, "exp_bias_tsv");
    assert!(rel_err(&TsvMerge::default().merge_vector(&bias).unwrap(), &e) < TOL);
    let (e, _) = tensor(&ck, "exp_bias_drm");
    assert!(rel_err(&Drm::default().merge_vector(&bias).unwrap(), &e) < TOL);
    // conv kernel (6, 4, 3) viewed as 6 × 12
    let conv = TensorInput {
        name: "conv",
        shape: &cs[1..],
        taus: split(&cv, 3),
        weights: &ones,
        seed: 0,
    };
    let (e, _) = tensor(&ck, "exp_conv_tsv");
    assert!(rel_err(&TsvMerge::default().merge_matrix(&conv, 6, 12).unwrap(), &e) < TOL);
    let (e, _) = tensor(&ck, "exp_conv_iso");
    assert!(rel_err(&IsoC::default().merge_matrix(&conv, 6, 12).unwrap(), &e) < TOL);
}
