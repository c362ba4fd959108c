//! The DiT's layers as forward/backward pairs on one pass's activations: linear, adaLN's
//! modulation gradients, the embeddings (patch, timestep, label) and the final layer.

use super::{Activations, Dit};
use crate::kernels::{
    Activation, AttentionShape, Columns, GatedResidualArgs, GatedResidualBackwardArgs, Labels,
    Layout, MatmulArgs, Modulation,
};
use crate::kernels::{ActivationArgs, ActivationBackwardArgs, Region, Stream, Write};
use crate::kernels::{ConditionArgs, FoldArgs, LabelBackwardArgs, TokensArgs};
use crate::kernels::{LnModulateArgs, LnModulateBackwardArgs, SegmentSumsArgs};
use crate::Result;

/// A linear layer's sizes: `rows` inputs of `d_in` values to `d_out` values.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub rows: u32,
    pub d_in: u32,
    pub d_out: u32,
}

pub(super) fn dims(rows: u32, d_in: u32, d_out: u32) -> Dims {
    Dims { rows, d_in, d_out }
}

/// One forward or backward of `dit` over `acts`: the device, the sizes every layer needs,
/// and the layers.
pub(super) struct Pass<'a> {
    pub dit: &'a Dit,
    pub dev: &'a wgpu::Device,
    pub acts: &'a Activations,
    /// Samples B and rows R = B·repeats.
    pub b: u32,
    pub r: u32,
    /// Tokens N, width D, token values K = p²·C, MLP width.
    pub n: u32,
    pub d: u32,
    pub k: u32,
    pub m: u32,
    /// Token rows R·N.
    pub t: u32,
    pub stream: Stream,
    pub shape: AttentionShape,
}

impl<'a> Pass<'a> {
    pub fn new(dit: &'a Dit, dev: &'a wgpu::Device, acts: &'a Activations) -> Self {
        let c = &dit.config;
        let (b, r) = (acts.batch, acts.rows());
        let (n, d) = (c.tokens(), c.dim);
        let t = r * n;
        Self {
            dit,
            dev,
            acts,
            b,
            r,
            n,
            d,
            k: c.token_dim(),
            m: c.mlp_dim(),
            t,
            stream: Stream {
                rows: t,
                dim: d,
                tokens: n,
            },
            shape: AttentionShape {
                samples: r,
                tokens: n,
                heads: c.heads,
                head_dim: c.head_dim(),
            },
        }
    }

    /// y = x·Wᵀ + b with the parameters `name.weight`, `name.bias`.
    pub fn linear(
        &self,
        enc: &mut wgpu::CommandEncoder,
        name: &str,
        s: Dims,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        let args = MatmulArgs {
            m: s.rows,
            k: s.d_in,
            n: s.d_out,
            a: x.into(),
            a_layout: Layout::RowMajor,
            b: self.dit.param(&format!("{name}.weight")),
            b_layout: Layout::Transposed,
            bias: Some(self.dit.param(&format!("{name}.bias"))),
            c: y.into(),
            accumulate: false,
        };
        self.dit.kernels.matmul.record(self.dev, enc, &args)
    }

    /// dW = dyᵀ·x and db = Σ dy into the gradient buffer; dx (+)= dy·W if asked (overwritten or
    /// added to, as its `Write` says).
    pub fn linear_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        name: &str,
        s: Dims,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: Option<(&wgpu::Buffer, Write)>,
    ) -> Result<()> {
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        let mm = &self.dit.kernels.matmul;
        let dw = MatmulArgs {
            m: s.d_out,
            k: s.rows,
            n: s.d_in,
            a: dy.into(),
            a_layout: Layout::Transposed,
            b: x.into(),
            b_layout: Layout::RowMajor,
            bias: None,
            c: self.dit.grad(&wn),
            accumulate: false,
        };
        mm.record(self.dev, enc, &dw)?;
        let db = Columns::whole(self.dit.grad(&bn), s.d_out);
        self.dit.kernels.adaln.record_segment_sums(
            self.dev,
            enc,
            &SegmentSumsArgs {
                segments: 1,
                rows_per_segment: s.rows,
                dim: s.d_out,
                a: Columns::whole(dy, s.d_out),
                b: None,
                out: db,
                write: Write::Overwrite,
            },
        )?;
        let Some((dx, write)) = dx else {
            return Ok(());
        };
        let dx_args = MatmulArgs {
            m: s.rows,
            k: s.d_out,
            n: s.d_in,
            a: dy.into(),
            a_layout: Layout::RowMajor,
            b: self.dit.param(&wn),
            b_layout: Layout::RowMajor,
            bias: None,
            c: dx.into(),
            accumulate: write == Write::Accumulate,
        };
        mm.record(self.dev, enc, &dx_args)
    }

    /// y = f(x) over `n` values.
    pub fn activation(
        &self,
        enc: &mut wgpu::CommandEncoder,
        f: Activation,
        n: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        self.dit.kernels.act.record_forward(
            self.dev,
            enc,
            &ActivationArgs {
                act: f,
                n,
                x: x.into(),
                y: y.into(),
            },
        )
    }

    /// dx = dy·f'(x) over `n` values.
    pub fn activation_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        f: Activation,
        n: u32,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Result<()> {
        let args = ActivationBackwardArgs {
            act: f,
            n,
            x: x.into(),
            dy: dy.into(),
            dx: dx.into(),
            write: Write::Overwrite,
        };
        self.dit.kernels.act.record_backward(self.dev, enc, &args)
    }

    /// The per-sample column sums Σ_tokens a (⊙ b) into the columns `out`: the gradients of
    /// shift (a = dh), scale (a = dh, b = x̂) and gate (a = dx, b = the branch).
    pub fn sample_sums(
        &self,
        enc: &mut wgpu::CommandEncoder,
        a: &wgpu::Buffer,
        b: Option<&wgpu::Buffer>,
        out: Columns,
    ) -> Result<()> {
        let (r, n, d) = (self.r, self.n, self.d);
        let b = b.map(|b| Columns::whole(b, d));
        let ad = &self.dit.kernels.adaln;
        ad.record_segment_sums(
            self.dev,
            enc,
            &SegmentSumsArgs {
                segments: r,
                rows_per_segment: n,
                dim: d,
                a: Columns::whole(a, d),
                b,
                out,
                write: Write::Overwrite,
            },
        )
    }

    /// d(shift) and d(scale) into the shift and scale columns of `dmod` (a modulation's
    /// layout over its gradient), from dh and x̂.
    pub fn modulation_grads(
        &self,
        enc: &mut wgpu::CommandEncoder,
        dh: &wgpu::Buffer,
        xhat: &wgpu::Buffer,
        dmod: Modulation,
    ) -> Result<()> {
        self.sample_sums(enc, dh, None, dmod.shift_columns())?;
        self.sample_sums(enc, dh, Some(xhat), dmod.scale_columns())
    }

    fn labels(&self) -> Labels<'a> {
        Labels {
            buffer: (&self.acts.labels).into(),
            rows: self.r,
            slots: self.dit.config.label_slots,
        }
    }

    /// Patch embedding and position once, repeated for every label set; the timestep MLP
    /// once; c = t_emb + label rows; SiLU(c), which feeds every adaLN linear.
    pub fn embed(&self, enc: &mut wgpu::CommandEncoder, patches: Region) -> Result<()> {
        let (a, dit) = (self.acts, self.dit);
        let (b, n, d) = (self.b, self.n, self.d);
        let patch_embed = MatmulArgs {
            m: b * n,
            k: self.k,
            n: d,
            a: patches,
            a_layout: Layout::RowMajor,
            b: dit.param("x_embedder.proj.weight"),
            b_layout: Layout::Transposed,
            bias: Some(dit.param("x_embedder.proj.bias")),
            c: (&a.tok).into(),
            accumulate: false,
        };
        dit.kernels.matmul.record(self.dev, enc, &patch_embed)?;
        let embed = &dit.kernels.embed;
        embed.record_tokens(
            self.dev,
            enc,
            &TokensArgs {
                len: b * n * d,
                period: n * d,
                repeats: a.repeats,
                patch: (&a.tok).into(),
                pos: (&dit.pos).into(),
                x: (&a.x).into(),
            },
        )?;
        self.linear(enc, "t_embedder.mlp.0", dims(b, 256, d), &a.tfreq, &a.th1)?;
        self.activation(enc, Activation::Silu, b * d, &a.th1, &a.ts)?;
        self.linear(enc, "t_embedder.mlp.2", dims(b, d, d), &a.ts, &a.temb)?;
        let table = dit.param("y_embedder.embedding_table.weight");
        let rows = dit.config.table_rows();
        embed.record_condition(
            self.dev,
            enc,
            &ConditionArgs {
                batch: b,
                dim: d,
                table_rows: rows,
                t_emb: (&a.temb).into(),
                table,
                labels: self.labels(),
                c: (&a.c).into(),
            },
        )?;
        self.activation(enc, Activation::Silu, self.r * d, &a.c, &a.sc)
    }

    /// The backward of [`Self::embed`] from ∂L/∂SiLU(c) (in the scratch's `dsc`) and
    /// ∂L/∂x (its `dx`): the label table, the timestep MLP, the patch embedding.
    pub fn embed_backward(&self, enc: &mut wgpu::CommandEncoder, patches: Region) -> Result<()> {
        let (a, s, dit) = (self.acts, &self.acts.scratch, self.dit);
        let (b, n, d) = (self.b, self.n, self.d);
        let embed = &dit.kernels.embed;
        self.activation_backward(enc, Activation::Silu, self.r * d, &a.c, &s.dsc, &s.dc)?;
        let table = dit.grad("y_embedder.embedding_table.weight");
        let rows = dit.config.table_rows();
        embed.record_label_backward(
            self.dev,
            enc,
            &LabelBackwardArgs {
                dim: d,
                table_rows: rows,
                dc: (&s.dc).into(),
                labels: self.labels(),
                dtable: table,
                write: Write::Overwrite,
            },
        )?;
        embed.record_fold_repeats(
            self.dev,
            enc,
            &FoldArgs {
                len: b * d,
                repeats: a.repeats,
                x: (&s.dc).into(),
                out: (&s.dtemb).into(),
                write: Write::Overwrite,
            },
        )?;
        let mlp2 = dims(b, d, d);
        self.linear_backward(
            enc,
            "t_embedder.mlp.2",
            mlp2,
            &a.ts,
            &s.dtemb,
            Some((&s.dts, Write::Overwrite)),
        )?;
        self.activation_backward(enc, Activation::Silu, b * d, &a.th1, &s.dts, &s.dth1)?;
        self.linear_backward(
            enc,
            "t_embedder.mlp.0",
            dims(b, 256, d),
            &a.tfreq,
            &s.dth1,
            None,
        )?;
        // The patch embedding, shared by the repeats.
        embed.record_fold_repeats(
            self.dev,
            enc,
            &FoldArgs {
                len: b * n * d,
                repeats: a.repeats,
                x: (&s.dx).into(),
                out: (&s.dtok).into(),
                write: Write::Overwrite,
            },
        )?;
        let dw = MatmulArgs {
            m: d,
            k: b * n,
            n: self.k,
            a: (&s.dtok).into(),
            a_layout: Layout::Transposed,
            b: patches,
            b_layout: Layout::RowMajor,
            bias: None,
            c: dit.grad("x_embedder.proj.weight"),
            accumulate: false,
        };
        dit.kernels.matmul.record(self.dev, enc, &dw)?;
        let db = Columns::whole(dit.grad("x_embedder.proj.bias"), d);
        let ad = &dit.kernels.adaln;
        ad.record_segment_sums(
            self.dev,
            enc,
            &SegmentSumsArgs {
                segments: 1,
                rows_per_segment: b * n,
                dim: d,
                a: Columns::whole(&s.dtok, d),
                b: None,
                out: db,
                write: Write::Overwrite,
            },
        )
    }

    /// The final layer's modulation: (shift, scale) in the columns of `modf`.
    fn final_modulation(&self) -> Modulation<'a> {
        Modulation {
            region: (&self.acts.modf).into(),
            stride: 2 * self.d,
            shift: 0,
            scale: self.d,
            gate: 0,
        }
    }

    /// LN, modulation by SiLU(c), and the linear map to p²·C values per token: `acts.out`.
    pub fn final_layer(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let (a, d) = (self.acts, self.d);
        let ad = &self.dit.kernels.adaln;
        let name = "final_layer.adaLN_modulation.1";
        self.linear(enc, name, dims(self.r, d, 2 * d), &a.sc, &a.modf)?;
        let mf = self.final_modulation();
        ad.record_ln_modulate(
            self.dev,
            enc,
            &LnModulateArgs {
                stream: self.stream,
                x: (&a.x).into(),
                modulation: mf,
                h: (&a.hf).into(),
                xhat: (&a.xhatf).into(),
                rstd: (&a.rstdf).into(),
            },
        )?;
        self.linear(
            enc,
            "final_layer.linear",
            dims(self.t, d, self.k),
            &a.hf,
            &a.out,
        )
    }

    /// The backward of [`Self::final_layer`] from ∂L/∂out: writes ∂L/∂x into `dx` and
    /// ∂L/∂SiLU(c) into `dsc`.
    pub fn final_layer_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        dout: &wgpu::Buffer,
    ) -> Result<()> {
        let (a, s, d) = (self.acts, &self.acts.scratch, self.d);
        let ad = &self.dit.kernels.adaln;
        let out = dims(self.t, d, self.k);
        self.linear_backward(
            enc,
            "final_layer.linear",
            out,
            &a.hf,
            dout,
            Some((&s.dh, Write::Overwrite)),
        )?;
        let mf = self.final_modulation();
        self.modulation_grads(enc, &s.dh, &a.xhatf, mf.of(&s.dmod))?;
        ad.record_ln_modulate_backward(
            self.dev,
            enc,
            &LnModulateBackwardArgs {
                stream: self.stream,
                xhat: (&a.xhatf).into(),
                rstd: (&a.rstdf).into(),
                modulation: mf,
                dh: (&s.dh).into(),
                dx: (&s.dx).into(),
                write: Write::Overwrite,
            },
        )?;
        let name = "final_layer.adaLN_modulation.1";
        let modulation = dims(self.r, d, 2 * d);
        self.linear_backward(
            enc,
            name,
            modulation,
            &a.sc,
            &s.dmod,
            Some((&s.dsc, Write::Overwrite)),
        )
    }

    /// LN(x)·(1 + scale) + shift into `h`, saving x̂ and 1/σ.
    pub fn ln_modulate(
        &self,
        enc: &mut wgpu::CommandEncoder,
        modulation: Modulation,
        h: &wgpu::Buffer,
        xhat: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
    ) -> Result<()> {
        let args = LnModulateArgs {
            stream: self.stream,
            x: (&self.acts.x).into(),
            modulation,
            h: h.into(),
            xhat: xhat.into(),
            rstd: rstd.into(),
        };
        self.dit
            .kernels
            .adaln
            .record_ln_modulate(self.dev, enc, &args)
    }

    /// The backward of [`Self::ln_modulate`] from `dh`: the scratch's `dx` (+)= ∂L/∂x.
    pub fn ln_modulate_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        modulation: Modulation,
        xhat: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
        write: Write,
    ) -> Result<()> {
        let s = &self.acts.scratch;
        let args = LnModulateBackwardArgs {
            stream: self.stream,
            xhat: xhat.into(),
            rstd: rstd.into(),
            modulation,
            dh: (&s.dh).into(),
            dx: (&s.dx).into(),
            write,
        };
        self.dit
            .kernels
            .adaln
            .record_ln_modulate_backward(self.dev, enc, &args)
    }

    /// x += gate ⊙ branch.
    pub fn gated_residual(
        &self,
        enc: &mut wgpu::CommandEncoder,
        modulation: Modulation,
        branch: &wgpu::Buffer,
    ) -> Result<()> {
        let args = GatedResidualArgs {
            stream: self.stream,
            a: branch.into(),
            modulation,
            x: (&self.acts.x).into(),
        };
        self.dit
            .kernels
            .adaln
            .record_gated_residual(self.dev, enc, &args)
    }

    /// ∂L/∂branch = gate ⊙ dx into the scratch's `dbranch`.
    pub fn gated_residual_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        modulation: Modulation,
    ) -> Result<()> {
        let s = &self.acts.scratch;
        let args = GatedResidualBackwardArgs {
            stream: self.stream,
            dx: (&s.dx).into(),
            modulation,
            da: (&s.dbranch).into(),
            write: Write::Overwrite,
        };
        self.dit
            .kernels
            .adaln
            .record_gated_residual_backward(self.dev, enc, &args)
    }
}
