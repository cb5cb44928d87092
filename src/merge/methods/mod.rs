//! Merge methods, one per file, all behind [`crate::merge::MergeMethod`].
//!
//! | method | file | defaults (source) |
//! | --- | --- | --- |
//! | Task arithmetic | [`task_arithmetic`] | λ = 0.3 (fusion_bench / SVC `TA`) |
//! | TIES | [`ties`] | density = 0.2 (top-20 %), λ = 1.0, disjoint mean (TIES paper) |
//! | DARE (pre-step) | [`dare`] | p = 0.8, rescale 1/(1−p) (SVC `DARE`) |
//! | TSV-M | [`tsv`] | α = 1.0, ⌊r/K⌋ triplets per task (task_singular_vectors) |
//! | BoostedTSV-M | [`boosted_tsv`] | β = 0.3, SVD polar (Newton–Schulz optional) |
//! | DRM | [`drm`] | drop rate 0.8, vertical, rank tol 1e-2·σ_max, disjoint mean (decom-renorm-merge) |
//! | Iso-C | [`iso_c`] | α = 1.0 (SVC `ISO_C`) |
//! | SVC (post-step) | [`svc`] | α = 1.0, ε = 1e-12 (SVC `coef_cal_multi_ranks`) |

pub mod boosted_tsv;
pub mod dare;
pub mod drm;
pub mod iso_c;
pub mod svc;
pub mod task_arithmetic;
pub mod ties;
pub mod tsv;

pub use boosted_tsv::{BoostedTsvMerge, Orthogonalizer};
pub use dare::Dare;
pub use drm::{Drm, DrmDirection};
pub use iso_c::IsoC;
pub use svc::{Svc, SvcMode};
pub use task_arithmetic::TaskArithmetic;
pub use ties::Ties;
pub use tsv::TsvMerge;
