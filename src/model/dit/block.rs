//! One adaLN-Zero block, forward and backward:
//! (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = Linear(SiLU(c));
//! x += gate₁·Attn(LN(x)(1 + scale₁) + shift₁); x += gate₂·MLP(LN(x)(1 + scale₂) + shift₂).

use super::arena::BlockActs;
use super::layers::{dims, Pass};
use crate::kernels::AttentionBackwardArgs;
use crate::kernels::{Activation, Modulation};
use crate::kernels::{
    GatedResidualArgs, GatedResidualBackwardArgs, LnModulateArgs, LnModulateBackwardArgs, Write,
};
use crate::Result;

impl Pass<'_> {
    /// Block `i`'s six modulation vectors: (shift, scale, gate) number `first`, `first + 1`,
    /// `first + 2` of the block's 6·D columns.
    fn modulation<'b>(&self, ba: &'b BlockActs, first: u32) -> Modulation<'b> {
        let d = self.d;
        Modulation {
            region: (&ba.modv).into(),
            stride: 6 * d,
            shift: first * d,
            scale: (first + 1) * d,
            gate: (first + 2) * d,
        }
    }

    /// Block `i` forward on the residual stream `acts.x`, saving `ba`.
    pub(super) fn block(
        &self,
        enc: &mut wgpu::CommandEncoder,
        i: usize,
        ba: &BlockActs,
    ) -> Result<()> {
        let (a, d, t) = (self.acts, self.d, self.t);
        let (dev, ad) = (self.dev, &self.dit.kernels.adaln);
        let name = |s: &str| format!("blocks.{i}.{s}");
        let (attn, mlp) = (self.modulation(ba, 0), self.modulation(ba, 3));
        self.linear(
            enc,
            &name("adaLN_modulation.1"),
            dims(self.r, d, 6 * d),
            &a.sc,
            &ba.modv,
        )?;
        // Attention branch.
        ad.record_ln_modulate(
            dev,
            enc,
            &LnModulateArgs {
                stream: self.stream,
                x: (&a.x).into(),
                modulation: attn,
                h: (&ba.h1).into(),
                xhat: (&ba.xhat1).into(),
                rstd: (&ba.rstd1).into(),
            },
        )?;
        self.linear(enc, &name("attn.qkv"), dims(t, d, 3 * d), &ba.h1, &ba.qkv)?;
        let attention = &self.dit.kernels.attention;
        attention.record_forward(dev, enc, self.shape, &ba.qkv, &ba.o, &ba.lse)?;
        self.linear(enc, &name("attn.proj"), dims(t, d, d), &ba.o, &ba.a)?;
        ad.record_gated_residual(
            dev,
            enc,
            &GatedResidualArgs {
                stream: self.stream,
                a: (&ba.a).into(),
                modulation: attn,
                x: (&a.x).into(),
            },
        )?;
        // MLP branch.
        ad.record_ln_modulate(
            dev,
            enc,
            &LnModulateArgs {
                stream: self.stream,
                x: (&a.x).into(),
                modulation: mlp,
                h: (&ba.h2).into(),
                xhat: (&ba.xhat2).into(),
                rstd: (&ba.rstd2).into(),
            },
        )?;
        self.linear(enc, &name("mlp.fc1"), dims(t, d, self.m), &ba.h2, &ba.f1)?;
        self.activation(enc, Activation::Gelu, t * self.m, &ba.f1, &ba.g)?;
        self.linear(enc, &name("mlp.fc2"), dims(t, self.m, d), &ba.g, &ba.f2)?;
        ad.record_gated_residual(
            dev,
            enc,
            &GatedResidualArgs {
                stream: self.stream,
                a: (&ba.f2).into(),
                modulation: mlp,
                x: (&a.x).into(),
            },
        )
    }

    /// Block `i` backward: ∂L/∂x in the scratch's `dx` is carried through the block (in
    /// place), the block's parameter gradients are written, and its ∂L/∂SiLU(c) is added to
    /// `dsc`.
    pub(super) fn block_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        i: usize,
        ba: &BlockActs,
    ) -> Result<()> {
        let (s, d, t, m) = (&self.acts.scratch, self.d, self.t, self.m);
        let (dev, ad) = (self.dev, &self.dit.kernels.adaln);
        let name = |x: &str| format!("blocks.{i}.{x}");
        let (attn, mlp) = (self.modulation(ba, 0), self.modulation(ba, 3));
        let mods = |first: u32| (6 * d, first * d, (first + 1) * d);
        // MLP branch.
        ad.record_gated_residual_backward(
            dev,
            enc,
            &GatedResidualBackwardArgs {
                stream: self.stream,
                dx: (&s.dx).into(),
                modulation: mlp,
                da: (&s.dbranch).into(),
                write: Write::Overwrite,
            },
        )?;
        self.sample_sums(enc, (&s.dx, Some(&ba.f2)), &s.dmod, (6 * d, 5 * d))?;
        let fc2 = (&ba.g, &s.dbranch);
        self.linear_backward(
            enc,
            &name("mlp.fc2"),
            dims(t, m, d),
            fc2,
            Some((&s.dg, false)),
        )?;
        self.activation_backward(enc, Activation::Gelu, t * m, (&ba.f1, &s.dg), &s.df1)?;
        let fc1 = (&ba.h2, &s.df1);
        self.linear_backward(
            enc,
            &name("mlp.fc1"),
            dims(t, d, m),
            fc1,
            Some((&s.dh, false)),
        )?;
        self.modulation_grads(enc, (&s.dh, &ba.xhat2), &s.dmod, mods(3))?;
        ad.record_ln_modulate_backward(
            dev,
            enc,
            &LnModulateBackwardArgs {
                stream: self.stream,
                xhat: (&ba.xhat2).into(),
                rstd: (&ba.rstd2).into(),
                modulation: mlp,
                dh: (&s.dh).into(),
                dx: (&s.dx).into(),
                write: Write::Accumulate,
            },
        )?;
        // Attention branch.
        ad.record_gated_residual_backward(
            dev,
            enc,
            &GatedResidualBackwardArgs {
                stream: self.stream,
                dx: (&s.dx).into(),
                modulation: attn,
                da: (&s.dbranch).into(),
                write: Write::Overwrite,
            },
        )?;
        self.sample_sums(enc, (&s.dx, Some(&ba.a)), &s.dmod, (6 * d, 2 * d))?;
        let proj = (&ba.o, &s.dbranch);
        self.linear_backward(
            enc,
            &name("attn.proj"),
            dims(t, d, d),
            proj,
            Some((&s.d_o, false)),
        )?;
        self.dit.kernels.attention.record_backward(
            dev,
            enc,
            &AttentionBackwardArgs {
                shape: self.shape,
                qkv: (&ba.qkv).into(),
                o: (&ba.o).into(),
                lse: (&ba.lse).into(),
                d_o: (&s.d_o).into(),
                dqkv: (&s.dqkv).into(),
                delta: (&s.delta).into(),
            },
        )?;
        let qkv = (&ba.h1, &s.dqkv);
        self.linear_backward(
            enc,
            &name("attn.qkv"),
            dims(t, d, 3 * d),
            qkv,
            Some((&s.dh, false)),
        )?;
        self.modulation_grads(enc, (&s.dh, &ba.xhat1), &s.dmod, mods(0))?;
        ad.record_ln_modulate_backward(
            dev,
            enc,
            &LnModulateBackwardArgs {
                stream: self.stream,
                xhat: (&ba.xhat1).into(),
                rstd: (&ba.rstd1).into(),
                modulation: attn,
                dh: (&s.dh).into(),
                dx: (&s.dx).into(),
                write: Write::Accumulate,
            },
        )?;
        // The modulation linear: its gradient into SiLU(c) accumulates over the blocks.
        let modulation = dims(self.r, d, 6 * d);
        let inputs = (&self.acts.sc, &s.dmod);
        self.linear_backward(
            enc,
            &name("adaLN_modulation.1"),
            modulation,
            inputs,
            Some((&s.dsc, true)),
        )
    }
}
