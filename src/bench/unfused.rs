//! Launcher of `shaders/unfused.wgsl`: the IMBA loss as a chain of simple kernels with every
//! intermediate in memory — the benchmark's comparison for the fused kernel and a second,
//! independently written check of it. It implements the token-wise, unnormalised variant
//! (every D form) with an ε target (Philox or explicit).

use crate::kernels::common::{self};
use crate::kernels::{
    DForm, Granularity, ImbaParams, Normalize, ReduceArgs, ReduceKernel, Target, TargetKind,
    TokenShape,
};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    cols: u32,
    groups_x: u32,
    _pad: u32,
    a: f32,
    b: f32,
    _pad1: [f32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Geometry {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    patch: u32,
    seed: u32,
    step: u32,
    total: u32,
}

/// Intermediates of the chain for one shape.
pub struct UnfusedWorkspace {
    shape: TokenShape,
    eps: wgpu::Buffer,
    diff_u: wgpu::Buffer,
    diff_c: wgpu::Buffer,
    elem: wgpu::Buffer,
    row_a: wgpu::Buffer,
    e_c: wgpu::Buffer,
    e_u: wgpu::Buffer,
    d_e_c: wgpu::Buffer,
    scratch: [wgpu::Buffer; 2],
    sums: [wgpu::Buffer; 3],
    sums_packed: wgpu::Buffer,
}

impl UnfusedWorkspace {
    pub fn new(device: &wgpu::Device, shape: TokenShape) -> Result<Self> {
        shape.validate()?;
        let buf = |label: &str, bytes: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16),
                usage: crate::gpu::storage_usage(),
                mapped_at_creation: false,
            })
        };
        let (nk, bn) = (shape.elements() * 4, shape.rows() * 4);
        let sb = ReduceKernel::scratch_bytes(shape.rows() as u32);
        Ok(Self {
            shape,
            eps: buf("eps", nk),
            diff_u: buf("diff_u", nk),
            diff_c: buf("diff_c", nk),
            elem: buf("elementwise", nk),
            row_a: buf("row", bn),
            e_c: buf("e_c", bn),
            e_u: buf("e_u", bn),
            d_e_c: buf("d_e_c", bn),
            scratch: [buf("scratch0", sb), buf("scratch1", sb)],
            sums: [buf("sum0", 16), buf("sum1", 16), buf("sum2", 16)],
            sums_packed: buf("sums", 48),
        })
    }
}

/// The unfused chain's pipelines.
pub struct UnfusedImba {
    /// Its layout and pipelines; the chain binds through neither cache (a fresh uniform and
    /// bind group per op, as a naive engine would).
    family: common::Family,
    reduce: ReduceKernel,
    unused: wgpu::Buffer,
}

const ENTRIES: [&str; 9] = [
    "eps_tokens",
    "sub",
    "mul",
    "square",
    "abs_pow",
    "scale",
    "row_sum",
    "scale_rows",
    "assemble",
];

/// One dispatch: entry, params, a, b, out (buffer, bytes).
/// A bound buffer with the bytes an op reads.
fn sized(b: &wgpu::Buffer, bytes: u64) -> Option<(&wgpu::Buffer, u64)> {
    Some((b, bytes))
}

type Op<'a> = (
    &'static str,
    Params,
    Option<(&'a wgpu::Buffer, u64)>,
    Option<(&'a wgpu::Buffer, u64)>,
    (&'a wgpu::Buffer, u64),
);

/// An elementwise op's parameters over `n` values.
fn elementwise(n: u32, a: f32) -> Params {
    Params {
        n,
        a,
        ..Default::default()
    }
}

/// A row op's parameters over `rows` rows of `cols` values.
fn rowwise(rows: u32, cols: u32, a: f32) -> Params {
    Params {
        n: rows,
        cols,
        a,
        ..Default::default()
    }
}

/// The ops that compute D from the unconditional error (ws.diff_u) into `weights`, by form.
fn weight_ops<'a>(
    ws: &'a UnfusedWorkspace,
    imba: &ImbaParams,
    weights: &'a wgpu::Buffer,
) -> Vec<Op<'a>> {
    let s = ws.shape;
    let (nk, bn) = (s.elements() * 4, s.rows() * 4);
    let (n, rows, k) = (s.elements() as u32, s.rows() as u32, s.token_dim);
    let ew = |a| elementwise(n, a);
    let rw = |a| rowwise(rows, k, a);
    let mut ops: Vec<Op> = Vec::new();
    match imba.form {
        DForm::MeanAbsPow => {
            ops.push((
                "abs_pow",
                ew(imba.gamma),
                sized(&ws.diff_u, nk),
                None,
                (&ws.elem, nk),
            ));
            ops.push((
                "row_sum",
                rw(1.0 / k as f32),
                sized(&ws.elem, nk),
                None,
                (weights, bn),
            ));
        }
        DForm::PowOfRms | DForm::PowOfMse => {
            let e = if imba.form == DForm::PowOfRms {
                0.5 * imba.gamma
            } else {
                imba.gamma
            };
            ops.push((
                "square",
                ew(0.0),
                sized(&ws.diff_u, nk),
                None,
                (&ws.elem, nk),
            ));
            ops.push((
                "row_sum",
                rw(1.0 / k as f32),
                sized(&ws.elem, nk),
                None,
                (&ws.row_a, bn),
            ));
            ops.push((
                "abs_pow",
                Params {
                    n: rows,
                    a: e,
                    ..Default::default()
                },
                sized(&ws.row_a, bn),
                None,
                (weights, bn),
            ));
        }
    }
    ops
}

/// The unfused chain's operands: what [`crate::kernels::ImbaLossArgs`] names, as whole
/// buffers.
#[derive(Clone, Copy)]
pub struct UnfusedArgs<'a> {
    pub pred_cond: &'a wgpu::Buffer,
    pub pred_uncond: &'a wgpu::Buffer,
    pub target: Target<'a>,
    /// Output: D.
    pub weights: &'a wgpu::Buffer,
    pub grad_cond: &'a wgpu::Buffer,
    pub grad_uncond: &'a wgpu::Buffer,
    /// Output: [L, L_c, L_u, mean D].
    pub scalars: &'a wgpu::Buffer,
}

impl UnfusedImba {
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Ok(Self {
            family: common::Family::new(device, "unfused", &ENTRIES)?,
            reduce: ReduceKernel::new(device)?,
            unused: common::placeholder(device),
        })
    }

    /// Records the chain. Same outputs as
    /// [`LossKernels::record_imba`](crate::kernels::LossKernels::record_imba): D, both gradients, and
    /// [L, L_c, L_u, mean D].
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        ws: &UnfusedWorkspace,
        args: &UnfusedArgs,
        imba: &ImbaParams,
    ) -> Result<()> {
        let (geo, eps) = Self::check(device, ws, args, imba)?;
        let UnfusedArgs {
            weights, scalars, ..
        } = *args;
        let s = ws.shape;
        let ops = Self::ops(ws, args, eps, imba, &geo);
        let rows = s.rows() as u32;
        let inv = (1.0 / s.elements() as f64) as f32;
        let gub = common::uniform(device, &geo);
        self.record_ops(device, encoder, "unfused", &gub, ops)?;
        let scratch = [&ws.scratch[0], &ws.scratch[1]];
        for (src, dst) in [
            (&ws.d_e_c, &ws.sums[0]),
            (&ws.e_u, &ws.sums[1]),
            (weights, &ws.sums[2]),
        ] {
            let args = ReduceArgs {
                input: src.into(),
                items: rows,
                width: 1,
                scratch: scratch.map(crate::kernels::Region::from),
                out: dst.into(),
            };
            self.reduce.record(device, encoder, &args)?;
        }
        for (i, src) in ws.sums.iter().enumerate() {
            encoder.copy_buffer_to_buffer(src, 0, &ws.sums_packed, i as u64 * 16, 16);
        }
        let p = Params {
            n: 1,
            cols: rows,
            a: imba.lambda,
            b: inv,
            ..Default::default()
        };
        let assemble = (
            "assemble",
            p,
            sized(&ws.sums_packed, 48),
            None,
            (scalars, 16),
        );
        self.record_ops(device, encoder, "unfused-assemble", &gub, vec![assemble])
    }

    /// Checks the inputs and binds the target: the geometry uniform and the ε buffer (the
    /// workspace's, regenerated from Philox, or the explicit one).
    fn check<'a>(
        device: &wgpu::Device,
        ws: &'a UnfusedWorkspace,
        args: &UnfusedArgs<'a>,
        imba: &ImbaParams,
    ) -> Result<(Geometry, &'a wgpu::Buffer)> {
        let UnfusedArgs {
            pred_cond,
            pred_uncond,
            target,
            weights,
            grad_cond,
            grad_uncond,
            scalars,
        } = *args;
        imba.validate()?;
        if imba.granularity != Granularity::Token || imba.normalize != Normalize::None {
            return Err(Error::Param(
                "the unfused chain implements the token-wise, unnormalised IMBA loss only".into(),
            ));
        }
        let s = ws.shape;
        let (nk, bn) = (s.elements() * 4, s.rows() * 4);
        for (name, b, bytes) in [
            ("pred_cond", pred_cond, nk),
            ("pred_uncond", pred_uncond, nk),
            ("weights", weights, bn),
            ("grad_cond", grad_cond, nk),
            ("grad_uncond", grad_uncond, nk),
            ("scalars", scalars, 16),
        ] {
            common::check_storage(device, name, b, bytes)?;
        }
        let mut geo = Geometry::default();
        let eps: &wgpu::Buffer = match target {
            Target::Philox {
                first_sample: 1.., ..
            } => {
                return Err(Error::Param(
                    "the unfused chain draws whole batches only, not a shard's target".into(),
                ))
            }
            Target::Philox {
                seed,
                step,
                geometry,
                kind,
                ..
            } => {
                if kind != TargetKind::Epsilon {
                    return Err(Error::Param(
                        "the unfused chain supports the ε target only".into(),
                    ));
                }
                geometry.validate()?;
                if geometry.token_shape() != s {
                    return Err(Error::Shape(format!(
                        "geometry {geometry:?} does not match {s:?}"
                    )));
                }
                geo = Geometry {
                    batch: geometry.batch,
                    channels: geometry.channels,
                    height: geometry.height,
                    width: geometry.width,
                    patch: geometry.patch,
                    seed,
                    step,
                    total: geometry.elements() as u32,
                };
                &ws.eps
            }
            Target::Explicit(t) => {
                common::check_storage(device, "target", t, nk)?;
                if t.offset != 0 {
                    return Err(Error::Param(
                        "the unfused chain reads a whole target buffer (offset 0)".into(),
                    ));
                }
                t.buffer
            }
        };
        Ok((geo, eps))
    }

    /// The chain's elementwise and row ops, in order.
    fn ops<'a>(
        ws: &'a UnfusedWorkspace,
        args: &UnfusedArgs<'a>,
        eps: &'a wgpu::Buffer,
        imba: &ImbaParams,
        geo: &Geometry,
    ) -> Vec<Op<'a>> {
        let UnfusedArgs {
            pred_cond,
            pred_uncond,
            weights,
            grad_cond,
            grad_uncond,
            ..
        } = *args;
        let philox = matches!(args.target, Target::Philox { .. });
        let s = ws.shape;
        let (nk, bn) = (s.elements() * 4, s.rows() * 4);
        let n = s.elements() as u32;
        let rows = s.rows() as u32;
        let k = s.token_dim;
        let inv = (1.0 / s.elements() as f64) as f32;
        let ew = |a| elementwise(n, a);
        let rw = |a| rowwise(rows, k, a);
        let mut ops: Vec<Op> = Vec::new();
        if philox {
            let quads = geo.total.div_ceil(4);
            ops.push((
                "eps_tokens",
                Params {
                    n: quads,
                    ..Default::default()
                },
                None,
                None,
                (&ws.eps, nk),
            ));
        }
        ops.push((
            "sub",
            ew(0.0),
            sized(pred_uncond, nk),
            sized(eps, nk),
            (&ws.diff_u, nk),
        ));
        ops.push((
            "sub",
            ew(0.0),
            sized(pred_cond, nk),
            sized(eps, nk),
            (&ws.diff_c, nk),
        ));
        ops.extend(weight_ops(ws, imba, weights));
        ops.push((
            "square",
            ew(0.0),
            sized(&ws.diff_c, nk),
            None,
            (&ws.elem, nk),
        ));
        ops.push(("row_sum", rw(1.0), sized(&ws.elem, nk), None, (&ws.e_c, bn)));
        ops.push((
            "mul",
            Params {
                n: rows,
                ..Default::default()
            },
            sized(weights, bn),
            sized(&ws.e_c, bn),
            (&ws.d_e_c, bn),
        ));
        ops.push((
            "square",
            ew(0.0),
            sized(&ws.diff_u, nk),
            None,
            (&ws.elem, nk),
        ));
        ops.push(("row_sum", rw(1.0), sized(&ws.elem, nk), None, (&ws.e_u, bn)));
        let gc = Params {
            n,
            cols: k,
            a: 2.0 * imba.lambda * inv,
            ..Default::default()
        };
        ops.push((
            "scale_rows",
            gc,
            sized(&ws.diff_c, nk),
            sized(weights, bn),
            (grad_cond, nk),
        ));
        ops.push((
            "scale",
            ew(2.0 * (1.0 - imba.lambda) * inv),
            sized(&ws.diff_u, nk),
            None,
            (grad_uncond, nk),
        ));

        ops
    }

    /// Binds each op (one element, or row for row kernels, per invocation over `n`) and
    /// records them in order in one compute pass.
    fn record_ops<'a>(
        &'a self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        label: &str,
        geometry: &wgpu::Buffer,
        ops: Vec<Op<'a>>,
    ) -> Result<()> {
        let mut recorded = Vec::new();
        for (entry, mut p, a, b, out) in ops {
            let (gx, gy) = common::grid(device, (p.n as u64).div_ceil(256))?;
            p.groups_x = gx;
            let ub = common::uniform(device, &p);
            let or_unused = |x: Option<(&'a wgpu::Buffer, u64)>| match x {
                Some((buffer, bytes)) => common::range(buffer, bytes),
                None => self.unused.as_entire_binding(),
            };
            let bg = common::bind_group(
                device,
                self.family.layout(),
                vec![
                    (0, ub.as_entire_binding()),
                    (1, or_unused(a)),
                    (2, or_unused(b)),
                    (3, common::range(out.0, out.1)),
                    (4, geometry.as_entire_binding()),
                ],
            );
            recorded.push((entry, bg, gx, gy));
        }
        let dispatches: Vec<_> = recorded
            .iter()
            .map(|(entry, bg, gx, gy)| (self.family.pipeline(entry), bg, (*gx, *gy)))
            .collect();
        common::record_pass(encoder, label, &dispatches);
        Ok(())
    }
}
