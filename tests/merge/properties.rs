//! Properties from the issue, plus the documented BoostedTSV-M choices.

use thunder::merge::linalg::{polar_newton_schulz, polar_svd};
use thunder::merge::method::{MergeMethod, TensorInput};
use thunder::merge::methods::boosted_tsv::boost_spectrum;
use thunder::merge::methods::tsv::{orthogonalize_pair, tsv_bases};
use thunder::merge::methods::*;
use thunder::merge::rng::{mix, uniform};

use super::rel_err;

/// Deterministic pseudo-random matrix with entries in [-1, 1).
fn rand_mat(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let key = mix(seed);
    (0..rows * cols)
        .map(|j| (uniform(key, j as u64) * 2.0 - 1.0) as f32)
        .collect()
}

/// Rank-`r` matrix plus a little noise.
fn low_rank(seed: u64, rows: usize, cols: usize, r: usize, noise: f32) -> Vec<f32> {
    let a = rand_mat(seed, rows, r);
    let b = rand_mat(seed + 1, r, cols);
    let n = rand_mat(seed + 2, rows, cols);
    let mut out = vec![0.0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let mut s = 0.0;
            for k in 0..r {
                s += a[i * r + k] * b[k * cols + j];
            }
            out[i * cols + j] = 0.1 * s + noise * n[i * cols + j];
        }
    }
    out
}

fn input<'a>(taus: Vec<Vec<f32>>, weights: &'a [f32], shape: &'a [usize]) -> TensorInput<'a> {
    TensorInput {
        name: "w",
        shape,
        taus,
        weights,
        seed: 0,
    }
}

#[test]
fn k_copies_with_ta_one_over_k_return_the_expert() {
    let tau = low_rank(1, 12, 9, 3, 0.01);
    for k in [1usize, 2, 4] {
        let w = vec![1.0f32; k];
        let t = input(vec![tau.clone(); k], &w, &[12, 9]);
        let d = TaskArithmetic { lambda: 1.0 / k as f32 }
            .merge_matrix(&t, 12, 9)
            .unwrap();
        assert!(rel_err(&d, &tau) < 1e-6, "K={k}");
    }
}

#[test]
fn tsv_single_task_full_rank_returns_tau() {
    for (r, c) in [(10, 7), (7, 10), (8, 8)] {
        let tau = rand_mat(3, r, c); // full rank
        let t = input(vec![tau.clone()], &[1.0], &[]);
        let d = TsvMerge { alpha: 1.0 }.merge_matrix(&t, r, c).unwrap();
        assert!(rel_err(&d, &tau) < 1e-5, "{r}x{c}: {}", rel_err(&d, &tau));
    }
}

fn max_dev_from_identity(m: &faer::Mat<f32>) -> f32 {
    let g = m.transpose() * m;
    let mut e = 0.0f32;
    for i in 0..g.nrows() {
        for j in 0..g.ncols() {
            e = e.max((g[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    e
}

#[test]
fn tsv_bases_are_orthonormal_after_orthogonalisation() {
    let taus: Vec<Vec<f32>> = (0..3).map(|i| low_rank(10 + 7 * i, 20, 15, 4, 0.05)).collect();
    let b = tsv_bases(&taus, 20, 15, None).unwrap();
    assert_eq!(b.per_task, 5);
    // before: each task block is orthonormal, the concatenation is not
    assert!(max_dev_from_identity(&b.u) > 1e-2);
    let (u, v) = orthogonalize_pair(&b.u, &b.v, 3, Orthogonalizer::Svd).unwrap();
    assert!(max_dev_from_identity(&u) < 1e-5);
    assert!(max_dev_from_identity(&v) < 1e-5);
    let ns = Orthogonalizer::NewtonSchulz { iters: 30, tol: 1e-5 };
    let (un, vn) = orthogonalize_pair(&b.u, &b.v, 3, ns).unwrap();
    assert!(max_dev_from_identity(&un) < 1e-4);
    assert!(max_dev_from_identity(&vn) < 1e-4);
}

#[test]
fn newton_schulz_matches_svd_polar_factor() {
    let a = rand_mat(5, 30, 12);
    let m = faer::MatRef::from_row_major_slice(&a, 30, 12).to_owned();
    let exact = polar_svd(m.as_ref()).unwrap();
    // ‖A‖₂ ≤ ‖A‖_F is a valid scale
    let fro = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (ns, iters) = polar_newton_schulz(m.as_ref(), fro, 60, 1e-6);
    assert!(iters > 0 && iters <= 60);
    let mut d = 0.0f32;
    for i in 0..30 {
        for j in 0..12 {
            d = d.max((exact[(i, j)] - ns[(i, j)]).abs());
        }
    }
    assert!(d < 1e-3, "max deviation {d} after {iters} iterations");
}

#[test]
fn svc_leaves_an_exact_single_task_merge_unchanged() {
    let tau = low_rank(21, 14, 11, 4, 0.02);
    for mode in [SvcMode::MeanOfMax, SvcMode::Reference] {
        for alpha in [0.25f32, 0.5, 1.0] {
            let out = Svc {
                alpha,
                eps: 1e-12,
                mode,
            }
            .calibrate(&tau, std::slice::from_ref(&tau), 14, 11)
            .unwrap();
            assert!(
                rel_err(&out, &tau) < 1e-5,
                "{mode:?} alpha={alpha}: {}",
                rel_err(&out, &tau)
            );
        }
    }
}

#[test]
fn drm_is_invariant_to_expert_order() {
    let taus: Vec<Vec<f32>> = (0..3).map(|i| low_rank(40 + 5 * i, 16, 12, 3, 0.01)).collect();
    let w = [1.0f32, 0.5, 2.0];
    for direction in [DrmDirection::Vertical, DrmDirection::Horizontal] {
        let m = Drm {
            direction,
            ..Drm::default()
        };
        let a = m.merge_matrix(&input(taus.clone(), &w, &[16, 12]), 16, 12).unwrap();
        let perm = vec![taus[2].clone(), taus[0].clone(), taus[1].clone()];
        let wp = [w[2], w[0], w[1]];
        let b = m.merge_matrix(&input(perm, &wp, &[16, 12]), 16, 12).unwrap();
        assert!(rel_err(&b, &a) < 1e-4, "{direction:?}: {}", rel_err(&b, &a));
        // and the element-wise path
        let va = m.merge_vector(&input(taus.clone(), &w, &[192])).unwrap();
        let vb = m
            .merge_vector(&input(
                vec![taus[2].clone(), taus[0].clone(), taus[1].clone()],
                &wp,
                &[192],
            ))
            .unwrap();
        assert!(rel_err(&vb, &va) < 1e-6, "element-wise path: {}", rel_err(&vb, &va));
    }
}

#[test]
fn boosting_properties() {
    let full = [5.0f32, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1];
    for beta in [0.0, 0.1, 0.3, 0.6, 0.9, 1.0] {
        let mut kept = full[..5].to_vec();
        boost_spectrum(&full, &mut kept, beta);
        let energy: Vec<f64> = full
            .iter()
            .scan(0.0, |c, s| {
                *c += (*s as f64).powi(2);
                Some(*c)
            })
            .collect();
        let total = *energy.last().unwrap();
        let jstar = energy.iter().position(|e| e / total >= beta).unwrap();
        for j in 0..5 {
            assert!(kept[j] >= full[j], "never lowered");
            if j <= jstar {
                assert_eq!(kept[j], full[j], "unchanged up to j*");
            } else {
                assert_eq!(kept[j], full[jstar], "raised to sigma_j*");
            }
            if j > 0 {
                assert!(kept[j] <= kept[j - 1], "non-increasing");
            }
        }
    }
    // beta = 0.3 on this spectrum: 25/39.39 = 0.63 ≥ 0.3 at j* = 0 → all raised to 5
    let mut kept = full[..3].to_vec();
    boost_spectrum(&full, &mut kept, 0.3);
    assert_eq!(kept, vec![5.0, 5.0, 5.0]);
}

#[test]
fn boosted_tsv_with_beta_one_is_tsv() {
    let taus: Vec<Vec<f32>> = (0..2).map(|i| low_rank(60 + i, 10, 8, 3, 0.01)).collect();
    let w = [1.0f32, 1.0];
    let a = TsvMerge { alpha: 1.0 }
        .merge_matrix(&input(taus.clone(), &w, &[10, 8]), 10, 8)
        .unwrap();
    let b = BoostedTsvMerge {
        beta: 1.0,
        ..BoostedTsvMerge::default()
    }
    .merge_matrix(&input(taus, &w, &[10, 8]), 10, 8)
    .unwrap();
    assert!(rel_err(&b, &a) < 1e-6);
}

#[test]
fn boosted_tsv_newton_schulz_close_to_svd() {
    let taus: Vec<Vec<f32>> = (0..3).map(|i| low_rank(80 + 3 * i, 18, 18, 4, 0.02)).collect();
    let w = [1.0f32; 3];
    let svd = BoostedTsvMerge::default()
        .merge_matrix(&input(taus.clone(), &w, &[18, 18]), 18, 18)
        .unwrap();
    let ns = BoostedTsvMerge {
        orthogonalizer: Orthogonalizer::NewtonSchulz { iters: 30, tol: 1e-5 },
        ..BoostedTsvMerge::default()
    }
    .merge_matrix(&input(taus, &w, &[18, 18]), 18, 18)
    .unwrap();
    assert!(rel_err(&ns, &svd) < 1e-3, "{}", rel_err(&ns, &svd));
}

#[test]
fn dare_is_deterministic_and_unbiased_in_scale() {
    let tau = vec![1.0f32; 20000];
    let d = Dare { p: 0.8, rescale: true };
    let mut a = vec![tau.clone(), tau.clone()];
    let mut b = a.clone();
    d.apply("x", 3, &mut a);
    d.apply("x", 3, &mut b);
    assert_eq!(a, b, "same seed and name, same mask");
    assert_ne!(a[0], a[1], "experts get different masks");
    let mut c = vec![tau.clone()];
    d.apply("y", 3, &mut c);
    assert_ne!(a[0], c[0], "tensor name changes the mask");
    let kept = a[0].iter().filter(|x| **x != 0.0).count() as f64 / 20000.0;
    assert!((kept - 0.2).abs() < 0.02, "kept fraction {kept}");
    let mean = a[0].iter().sum::<f32>() / 20000.0;
    assert!((mean - 1.0).abs() < 0.1, "rescaled mean {mean}");
}

#[test]
fn ties_single_expert_full_density_is_identity() {
    let tau = low_rank(90, 6, 5, 2, 0.1);
    let d = Ties {
        density: 1.0,
        lambda: 1.0,
    }
    .merge_vector(&input(vec![tau.clone()], &[1.0], &[30]))
    .unwrap();
    assert_eq!(d, tau);
}
