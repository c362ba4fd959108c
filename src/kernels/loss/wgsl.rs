//! The values of the uniform's `d_form`, `target_source` and `target_kind`, named as
//! `shaders/lib/loss_common.wgsl` names them (a test checks that they agree).

/// D of the paper: mean_k |ε_u − ε|^γ.
pub(crate) const D_FORM_MEAN_ABS_POW: u32 = 0;
/// (RMS of ε_u − ε)^γ.
pub(crate) const D_FORM_POW_OF_RMS: u32 = 1;
/// (MSE of ε_u − ε)^γ.
pub(crate) const D_FORM_POW_OF_MSE: u32 = 2;
/// `loss_finalize` writes the baseline's scalars.
pub(crate) const D_FORM_BASELINE: u32 = 3;
/// The weight pass writes each token's mean squared error.
pub(crate) const D_FORM_TOKEN_MSE: u32 = 4;
/// The target is regenerated from Philox.
pub(crate) const TARGET_PHILOX: u32 = 0;
/// The target is read from a buffer.
pub(crate) const TARGET_BUFFER: u32 = 1;
/// A Philox target is ε.
pub(crate) const TARGET_EPSILON: u32 = 0;
/// A Philox target is the velocity ε − x0.
pub(crate) const TARGET_VELOCITY: u32 = 1;
/// Every constant by name, for the test that compares them with the WGSL.
#[cfg(test)]
pub(crate) const ALL: [(&str, u32); 9] = [
    ("D_FORM_MEAN_ABS_POW", D_FORM_MEAN_ABS_POW),
    ("D_FORM_POW_OF_RMS", D_FORM_POW_OF_RMS),
    ("D_FORM_POW_OF_MSE", D_FORM_POW_OF_MSE),
    ("D_FORM_BASELINE", D_FORM_BASELINE),
    ("D_FORM_TOKEN_MSE", D_FORM_TOKEN_MSE),
    ("TARGET_PHILOX", TARGET_PHILOX),
    ("TARGET_BUFFER", TARGET_BUFFER),
    ("TARGET_EPSILON", TARGET_EPSILON),
    ("TARGET_VELOCITY", TARGET_VELOCITY),
];
