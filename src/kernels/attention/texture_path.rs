//! The texture path of attention (fast on llvmpipe): q, k, v, dO and (lse, δ) read
//! through linear textures, filled by copies or by `pack_linear4`.

use super::*;

/// The texture path's pipelines, placeholder textures and cached operand textures.
pub(super) struct TexturePath {
    pub(super) layout: crate::kernels::common::Layout,
    pub(super) pipelines: common::Pipelines,
    pub(super) read_placeholder: wgpu::TextureView,
    pub(super) storage_placeholder: wgpu::TextureView,
    /// qkv, dO and (lse, δ) as linear textures, filled by copies or by `pack_linear4`.
    pub(super) textures: LinearTextures,
}

/// What a texture-path dispatch binds: buffers in slots 1–4, sampled textures in 5–7, the
/// written texture in 8 (placeholders where `None`).
pub(super) struct TexOperands<'a> {
    buffers: [Option<(Region<'a>, u64)>; 4],
    sampled: [Option<&'a wgpu::TextureView>; 3],
    written: Option<&'a wgpu::TextureView>,
}

impl AttentionKernels {
    fn cached(&self, device: &wgpu::Device, role: &'static str, texels: u64) -> wgpu::TextureView {
        let tex = self.texture.as_ref().expect("texture path");
        tex.textures.view(device, role, texels)
    }

    /// `floats` values of `src` into the texture for `role`: by a copy where the region
    /// allows one (recorded now, before the caller's pass), else by a `pack_linear4`
    /// dispatch returned for the caller's pass.
    #[allow(clippy::type_complexity)]
    fn fill(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        role: &'static str,
        src: Region,
        floats: u64,
    ) -> Result<(wgpu::TextureView, Option<(wgpu::BindGroup, (u32, u32))>)> {
        let tex = self.texture.as_ref().expect("texture path");
        if let Some(view) = tex.textures.fill(device, encoder, role, src, floats) {
            return Ok((view, None));
        }
        let view = self.cached(device, role, floats / 4);
        let pack = self.tex_dispatch(
            device,
            shape,
            floats / 4,
            floats / 4,
            TexOperands {
                buffers: [Some((src, 4 * floats)), None, None, None],
                sampled: [None; 3],
                written: Some(&view),
            },
        )?;
        Ok((view, Some(pack)))
    }

    /// One texture-path dispatch: buffers in slots 1–4, sampled textures in 5–7, the written
    /// texture in 8 (placeholders where unused).
    fn tex_dispatch(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        texels: u64,
        invocations: u64,
        operands: TexOperands,
    ) -> Result<(wgpu::BindGroup, (u32, u32))> {
        let TexOperands {
            buffers,
            sampled,
            written,
        } = operands;
        let tex = self.texture.as_ref().expect("texture path");
        let grid = common::grid(device, invocations.div_ceil(64))?;
        let uni = AttnTexParams {
            samples: shape.samples,
            tokens: shape.tokens,
            heads: shape.heads,
            head_dim: shape.head_dim,
            dim: shape.dim(),
            scale: 1.0 / (shape.head_dim as f32).sqrt(),
            groups_x: grid.0,
            texels: texels as u32,
        };
        let mut entries = Vec::new();
        for (i, b) in buffers.into_iter().enumerate() {
            let fallback = if i < 2 {
                &self.unused_read
            } else {
                &self.unused_rw[i - 2]
            };
            entries.push((i as u32 + 1, common::range_or(b, fallback)));
        }
        for (i, t) in sampled.into_iter().enumerate() {
            entries.push((
                i as u32 + 5,
                wgpu::BindingResource::TextureView(t.unwrap_or(&tex.read_placeholder)),
            ));
        }
        entries.push((
            8,
            wgpu::BindingResource::TextureView(written.unwrap_or(&tex.storage_placeholder)),
        ));
        Ok((self.binder.bind(device, &tex.layout, &uni, entries)?, grid))
    }

    pub(super) fn forward_texture(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        qkv: Region,
        o: Region,
        lse: Region,
    ) -> Result<()> {
        let tex = self.texture.as_ref().expect("texture path");
        let (e, l) = (shape.elements(), shape.query_rows());
        let (qkv_tex, pack) = self.fill(device, encoder, shape, "attention-qkv", qkv, 3 * e)?;
        let fwd = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [None, None, Some((lse, 4 * l)), Some((o, 4 * e))],
                sampled: [Some(&qkv_tex), None, None],
                written: None,
            },
        )?;
        let mut dispatches: Vec<_> = pack
            .iter()
            .map(|p| (tex.pipelines.get("pack_linear4"), &p.0, p.1))
            .collect();
        dispatches.push((tex.pipelines.get("attention_forward_tex"), &fwd.0, fwd.1));
        common::record_pass(encoder, "attention-texture", &dispatches);
        Ok(())
    }

    pub(super) fn backward_texture(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        [qkv, o, lse, d_o, dqkv]: [Region; 5],
    ) -> Result<()> {
        let tex = self.texture.as_ref().expect("texture path");
        let (e, l) = (shape.elements(), shape.query_rows());
        let (qkv_tex, qkv_pack) = self.fill(device, encoder, shape, "attention-qkv", qkv, 3 * e)?;
        let (do_tex, do_pack) = self.fill(device, encoder, shape, "attention-do", d_o, e)?;
        let ld_tex = self.cached(device, "attention-ld", l);
        let delta = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [
                    Some((o, 4 * e)),
                    Some((d_o, 4 * e)),
                    Some((lse, 4 * l)),
                    None,
                ],
                sampled: [None; 3],
                written: Some(&ld_tex),
            },
        )?;
        let grads = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [None, None, None, Some((dqkv, 12 * e))],
                sampled: [Some(&qkv_tex), Some(&do_tex), Some(&ld_tex)],
                written: None,
            },
        )?;
        let p = &tex.pipelines;
        let mut dispatches: Vec<_> = qkv_pack
            .iter()
            .chain(&do_pack)
            .map(|d| (p.get("pack_linear4"), &d.0, d.1))
            .collect();
        dispatches.extend([
            (p.get("attention_delta_tex"), &delta.0, delta.1),
            (p.get("attention_dq_tex"), &grads.0, grads.1),
            (p.get("attention_dkv_tex"), &grads.0, grads.1),
        ]);
        common::record_pass(encoder, "attention-texture-backward", &dispatches);
        Ok(())
    }
}
