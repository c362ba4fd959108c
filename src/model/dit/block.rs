//! One adaLN-Zero block, forward and backward:
//! (shift₁, scale₁, gate₁, shift₂, scale₂, gate₂) = Linear(SiLU(c));
//! x += gate₁·Attn(LN(x)(1 + scale₁) + shift₁); x += gate₂·MLP(LN(x)(1 + scale₂) + shift₂).

use super::arena::BlockActs;
use super::layers::{dims, Pass};
use crate::kernels::AttentionArgs;
use crate::kernels::{Activation, AttentionBackwardArgs, Modulation, Write};
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
        let (d, t, m) = (self.d, self.t, self.m);
        let name = |s: &str| format!("blocks.{i}.{s}");
        let (attn, mlp) = (self.modulation(ba, 0), self.modulation(ba, 3));
        let sc = &self.acts.sc;
        self.linear(
            enc,
            &name("adaLN_modulation.1"),
            dims(self.r, d, 6 * d),
            sc,
            &ba.modv,
        )?;
        // Attention branch.
        self.ln_modulate(enc, attn, &ba.h1, &ba.xhat1, &ba.rstd1)?;
        self.linear(enc, &name("attn.qkv"), dims(t, d, 3 * d), &ba.h1, &ba.qkv)?;
        let attention = &self.dit.kernels.attention;
        attention.record_forward(
            self.dev,
            enc,
            &AttentionArgs {
                shape: self.shape,
                qkv: (&ba.qkv).into(),
                o: (&ba.o).into(),
                lse: (&ba.lse).into(),
            },
        )?;
        self.linear(enc, &name("attn.proj"), dims(t, d, d), &ba.o, &ba.a)?;
        self.gated_residual(enc, attn, &ba.a)?;
        // MLP branch.
        self.ln_modulate(enc, mlp, &ba.h2, &ba.xhat2, &ba.rstd2)?;
        self.linear(enc, &name("mlp.fc1"), dims(t, d, m), &ba.h2, &ba.f1)?;
        self.activation(enc, Activation::Gelu, t * m, &ba.f1, &ba.g)?;
        self.linear(enc, &name("mlp.fc2"), dims(t, m, d), &ba.g, &ba.f2)?;
        self.gated_residual(enc, mlp, &ba.f2)
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
        let name = |x: &str| format!("blocks.{i}.{x}");
        let (attn, mlp) = (self.modulation(ba, 0), self.modulation(ba, 3));
        // The modulation's gradient has the modulation's column layout.
        let (dattn, dmlp) = (attn.of(&s.dmod), mlp.of(&s.dmod));
        // MLP branch.
        self.gated_residual_backward(enc, mlp)?;
        self.sample_sums(enc, &s.dx, Some(&ba.f2), dmlp.gate_columns())?;
        self.linear_backward(
            enc,
            &name("mlp.fc2"),
            dims(t, m, d),
            &ba.g,
            &s.dbranch,
            into(&s.dg),
        )?;
        self.activation_backward(enc, Activation::Gelu, t * m, &ba.f1, &s.dg, &s.df1)?;
        self.linear_backward(
            enc,
            &name("mlp.fc1"),
            dims(t, d, m),
            &ba.h2,
            &s.df1,
            into(&s.dh),
        )?;
        self.modulation_grads(enc, &s.dh, &ba.xhat2, dmlp)?;
        self.ln_modulate_backward(enc, mlp, &ba.xhat2, &ba.rstd2, Write::Accumulate)?;
        // Attention branch.
        self.gated_residual_backward(enc, attn)?;
        self.sample_sums(enc, &s.dx, Some(&ba.a), dattn.gate_columns())?;
        self.linear_backward(
            enc,
            &name("attn.proj"),
            dims(t, d, d),
            &ba.o,
            &s.dbranch,
            into(&s.d_o),
        )?;
        let attention = AttentionBackwardArgs {
            shape: self.shape,
            qkv: (&ba.qkv).into(),
            o: (&ba.o).into(),
            lse: (&ba.lse).into(),
            d_o: (&s.d_o).into(),
            dqkv: (&s.dqkv).into(),
            delta: (&s.delta).into(),
        };
        self.dit
            .kernels
            .attention
            .record_backward(self.dev, enc, &attention)?;
        self.linear_backward(
            enc,
            &name("attn.qkv"),
            dims(t, d, 3 * d),
            &ba.h1,
            &s.dqkv,
            into(&s.dh),
        )?;
        self.modulation_grads(enc, &s.dh, &ba.xhat1, dattn)?;
        self.ln_modulate_backward(enc, attn, &ba.xhat1, &ba.rstd1, Write::Accumulate)?;
        // The modulation linear: its gradient into SiLU(c) accumulates over the blocks.
        let modulation = (&self.acts.sc, &s.dmod);
        let linear = dims(self.r, d, 6 * d);
        self.linear_backward(
            enc,
            &name("adaLN_modulation.1"),
            linear,
            modulation.0,
            modulation.1,
            Some((&s.dsc, Write::Accumulate)),
        )
    }
}

/// A linear backward's input gradient, overwritten.
fn into(dx: &wgpu::Buffer) -> Option<(&wgpu::Buffer, Write)> {
    Some((dx, Write::Overwrite))
}
