//! The adaLN kernels' other paths: the texture path (operands copied into read-only
//! storage textures, fast on llvmpipe) and the workgroup path's two-pass column sums.

use super::*;

/// The workgroup path's column sums' scratch (its pipelines are the family's
/// `WG_ENTRIES`).
#[derive(Default)]
pub(super) struct WorkgroupPath {
    /// Partial sums (segment, chunk, column), grown as launches need.
    pub(super) scratch: std::sync::Mutex<Option<wgpu::Buffer>>,
}

/// The texture path's family (`TEX_ENTRIES`) and operand textures.
pub(super) struct TexturePath {
    pub(super) family: Family,
    pub(super) textures: LinearTextures,
}

impl AdaLnKernels {
    /// Column sums in two passes: chunks of about √rows rows into the scratch (binding 5),
    /// then each segment's chunks in order into `out`.
    pub(super) fn chunked_sums(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        p: AdaParams,
        reads: [Operand; 3],
        out: Operand,
    ) -> Result<()> {
        let w = self.workgroup.as_ref().expect("workgroup path");
        let chunk_rows = ((p.tokens as f64).sqrt().ceil() as u32).max(16);
        let chunks = p.tokens.div_ceil(chunk_rows);
        let partials = p.segments as u64 * chunks as u64 * p.dim as u64;
        let scratch = self.scratch(device, w, partials * 4)?;
        let p = AdaParams {
            chunk_rows,
            chunks,
            ..p
        };
        let scratch_slot = Some(("scratch", (&scratch).into(), partials * 4));
        let partials = Launch {
            entry: "segment_partials",
            params: p,
            invocations: partials,
            reads: [reads[0], None, reads[2]],
            writes: [None, scratch_slot, None],
        };
        self.launch(device, encoder, partials)?;
        let combine = Launch {
            entry: "segment_combine",
            params: p,
            invocations: p.segments as u64 * p.dim as u64,
            reads: [None; 3],
            writes: [out, scratch_slot, None],
        };
        self.launch(device, encoder, combine)
    }

    /// The scratch buffer, at least `bytes` long.
    fn scratch(
        &self,
        device: &wgpu::Device,
        w: &WorkgroupPath,
        bytes: u64,
    ) -> Result<wgpu::Buffer> {
        let mut s = w.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let max = device.limits().max_storage_buffer_binding_size;
        if bytes > max {
            return Err(Error::Limit(format!(
                "column sums need {bytes} bytes of partial sums, over the {max}-byte binding limit; \
                 use a smaller batch"
            )));
        }
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("adaln-partial-sums"),
            size: bytes,
            // COPY_SRC: a captured case reads it (see crate::capture).
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *s = Some(b.clone());
        Ok(b)
    }
}

impl AdaLnKernels {
    /// Runs texture entry `entry` with `reads` (bindings 7–9) copied into textures and
    /// `writes` bound as storage buffers (4–6). Returns `false`, recording nothing, where the
    /// texture path is off or an operand cannot be copied; the caller then runs the portable
    /// kernel.
    pub(super) fn launch_texture(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        launch: &Launch,
    ) -> Result<bool> {
        let &Launch {
            entry,
            params,
            invocations,
            reads,
            writes,
        } = launch;
        let entry = variant(&TEX_ENTRIES, entry, "_tex");
        let Some(t) = &self.texture else {
            return Ok(false);
        };
        if !reads
            .iter()
            .flatten()
            .all(|&(_, r, bytes)| LinearTextures::fits(device, r, bytes / 4))
        {
            return Ok(false);
        }
        let read = reads.iter().flatten().map(|&(n, r, b)| (n, r, b, false));
        let written = writes.iter().flatten().map(|&(n, r, b)| (n, r, b, true));
        common::check_launch(device, &read.chain(written).collect::<Vec<_>>())?;
        const ROLES: [&str; 3] = ["adaln-input", "adaln-modulation", "adaln-aux"];
        let views: Vec<Option<wgpu::TextureView>> = reads
            .iter()
            .zip(ROLES)
            .map(|(op, role)| {
                op.and_then(|(_, r, bytes)| t.textures.fill(device, encoder, role, r, bytes / 4))
            })
            .collect();
        const TEXTURES: [&str; 3] = ["tex_input", "tex_mod", "tex_aux"];
        let mut operands: Vec<_> = named(&WRITES, writes).collect();
        for (var, view) in TEXTURES.into_iter().zip(&views) {
            if let Some(view) = view {
                operands.push(common::Operand::texture(var, view));
            }
        }
        let uniform = |groups_x| AdaParams { groups_x, ..params };
        let groups = invocations.div_ceil(64);
        t.family
            .launch(device, encoder, entry, groups, uniform, &operands)?;
        Ok(true)
    }
}
