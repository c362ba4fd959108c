//! The fused pass's geometry (how many tokens an invocation takes, so each Philox quad is
//! generated once) and its two implementations: the portable `imba_fused` and the vector
//! `imba_fused_vec4`, specialised per patch geometry and compiled on first use.

use super::*;

/// Workgroups of a pass with one token per invocation.
pub(super) fn groups(shape: TokenShape) -> u64 {
    shape.rows().div_ceil(WG)
}

/// Workgroups of the fused pass, `run` tokens per invocation.
pub(super) fn fused_groups(shape: TokenShape, run: u32) -> u64 {
    shape.rows().div_ceil(WG * run as u64)
}

/// Tokens of one Philox quad: a quad covers four consecutive pixels of a row, so with patch
/// p it spans 4/gcd(p, 4) tokens. Both fused kernels give an invocation such a run of
/// adjacent tokens, so each quad is generated once; that needs the token row to divide
/// evenly (then every run starts on a quad boundary).
pub(super) fn quad_run(g: ImageGeometry) -> Option<u32> {
    let run = match g.patch % 4 {
        0 => 1,
        2 => 2,
        _ => 4,
    };
    (g.width / g.patch).is_multiple_of(run).then_some(run)
}

/// Adjacent tokens per invocation in the portable fused pass: a quad's run, else 1.
pub(super) fn tokens_per_thread(g: ImageGeometry) -> u32 {
    quad_run(g).unwrap_or(1)
}

/// Which implementation of the fused IMBA pass a launch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedPath {
    /// `imba_fused` of loss.wgsl: any shape, scalar access.
    Portable,
    /// `imba_fused_vec4` of loss_vec4.wgsl.
    Vec4 {
        /// Tokens per invocation.
        run: u32,
    },
}

/// The pipeline constants of one `imba_fused_vec4` specialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Vec4Spec {
    patch: u32,
    channels: u32,
    token_dim: u32,
    run: u32,
    explicit: bool,
}

/// The vector kernel's specialisation for a launch, or None when the shape needs the
/// portable kernel. An explicit target needs K a multiple of 4 (whole vec4s per token). A
/// Philox target needs C a multiple of 4 (four channels of a pixel are one vec4 of the token
/// layout), and a run of 4/gcd(p, 4) tokens, which covers whole Philox quads, must divide the
/// token row.
pub(super) fn vec4_shape_spec(s: TokenShape, target: &Target) -> Option<Vec4Spec> {
    if !s.token_dim.is_multiple_of(4) {
        return None;
    }
    let spec = match target.source() {
        // Patch and channels are unused with an explicit target; any values that keep the
        // shader's constant expressions defined (no division by zero) do.
        Source::Explicit(_) => Vec4Spec {
            patch: 1,
            channels: 4,
            token_dim: s.token_dim,
            run: 1,
            explicit: true,
        },
        Source::Philox(PhiloxTarget { geometry: g, .. }) => {
            if !g.channels.is_multiple_of(4) {
                return None;
            }
            let run = quad_run(g)?;
            Vec4Spec {
                patch: g.patch,
                channels: g.channels,
                token_dim: s.token_dim,
                run,
                explicit: false,
            }
        }
    };
    Some(spec)
}

impl LossKernels {
    /// Enables (the default) or disables the vector implementation of the fused pass; with
    /// it disabled every launch uses the portable kernel (for comparison and testing).
    pub fn with_vector_path(mut self, enabled: bool) -> Self {
        self.vector_path = enabled;
        self
    }

    /// The implementation of the fused IMBA pass a launch of `shape` with `target` and
    /// `workspace` uses.
    pub fn fused_path(
        &self,
        shape: TokenShape,
        target: &Target,
        workspace: &LossWorkspace,
    ) -> FusedPath {
        match self.vec4_spec(shape, target, workspace) {
            Some(spec) => FusedPath::Vec4 { run: spec.run },
            None => FusedPath::Portable,
        }
    }

    /// The vector pass's specialisation for a launch, if enabled, the shape allows it and
    /// the workspace holds one partial per invocation.
    pub(super) fn vec4_spec(
        &self,
        shape: TokenShape,
        target: &Target,
        workspace: &LossWorkspace,
    ) -> Option<Vec4Spec> {
        let spec = vec4_shape_spec(shape, target).filter(|_| self.vector_path)?;
        let invocations = shape.rows() / spec.run as u64;
        (workspace.partial_capacity() >= invocations).then_some(spec)
    }

    /// The fused pass's pipeline for a launch and the tokens each invocation handles.
    pub(super) fn fused_pipeline(
        &self,
        device: &wgpu::Device,
        shape: TokenShape,
        target: &Target,
        workspace: &LossWorkspace,
        portable_run: u32,
    ) -> Result<(wgpu::ComputePipeline, u32, u64)> {
        let Some(spec) = self.vec4_spec(shape, target, workspace) else {
            return Ok((
                self.family.pipeline("imba_fused").clone(),
                portable_run,
                fused_groups(shape, portable_run),
            ));
        };
        let partials = shape.rows() / spec.run as u64;
        let constants = [
            ("PATCH", spec.patch as f64),
            ("CHANNELS", spec.channels as f64),
            ("TOKEN_DIM", spec.token_dim as f64),
            ("RUN", spec.run as f64),
            ("EXPLICIT_TARGET", spec.explicit as u32 as f64),
        ];
        let pipeline =
            self.family
                .specialised(device, "loss_vec4", "imba_fused_vec4", &constants)?;
        Ok((pipeline, spec.run, partials))
    }
}
