//! The texture path of attention (fast on llvmpipe): q, k, v, dO and (lse, δ) read
//! through linear textures, filled by copies or by `pack_linear4`.

use super::*;

/// The texture path's family and cached operand textures.
pub(super) struct TexturePath {
    pub(super) family: Family,
    /// qkv, dO and (lse, δ) as linear textures, filled by copies or by `pack_linear4`.
    pub(super) textures: LinearTextures,
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
        let operands = [
            Operand::buffer("src4", src, 4 * floats),
            Operand::texture("dst", &view),
        ];
        let pack = self.tex_dispatch(device, shape, floats / 4, floats / 4, &operands)?;
        Ok((view, Some(pack)))
    }

    /// One texture-path dispatch of `invocations` with `operands` (placeholders where a
    /// binding is not named).
    fn tex_dispatch(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        texels: u64,
        invocations: u64,
        operands: &[Operand],
    ) -> Result<(wgpu::BindGroup, (u32, u32))> {
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
        Ok((tex.family.bind(device, &uni, operands)?, grid))
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
        let operands = [
            Operand::buffer("lse", lse, 4 * l),
            Operand::buffer("out4", o, 4 * e).called("o"),
            Operand::texture("qkv_tex", &qkv_tex),
        ];
        let fwd = self.tex_dispatch(device, shape, 0, l, &operands)?;
        let mut dispatches: Vec<_> = pack.iter().map(|p| ("pack_linear4", &p.0, p.1)).collect();
        dispatches.push(("attention_forward_tex", &fwd.0, fwd.1));
        tex.family.record(encoder, &dispatches);
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
        let delta_operands = [
            Operand::buffer("src4", o, 4 * e).called("o"),
            Operand::buffer("do4", d_o, 4 * e).called("d_o"),
            Operand::buffer("lse", lse, 4 * l),
            Operand::texture("dst", &ld_tex),
        ];
        let delta = self.tex_dispatch(device, shape, 0, l, &delta_operands)?;
        let grad_operands = [
            Operand::buffer("out4", dqkv, 12 * e).called("dqkv"),
            Operand::texture("qkv_tex", &qkv_tex),
            Operand::texture("do_tex", &do_tex),
            Operand::texture("ld_tex", &ld_tex),
        ];
        let grads = self.tex_dispatch(device, shape, 0, l, &grad_operands)?;
        let mut dispatches: Vec<_> = qkv_pack
            .iter()
            .chain(&do_pack)
            .map(|d| ("pack_linear4", &d.0, d.1))
            .collect();
        dispatches.extend([
            ("attention_delta_tex", &delta.0, delta.1),
            ("attention_dq_tex", &grads.0, grads.1),
            ("attention_dkv_tex", &grads.0, grads.1),
        ]);
        tex.family.record(encoder, &dispatches);
        Ok(())
    }
}
