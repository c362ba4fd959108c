//! Launcher of `shaders/activation.wgsl`: tanh-GELU and SiLU, forward and backward, over a
//! flat array of `n` values.

use super::common::{Family, Operand, Region, Write};
use crate::{Error, Result};

/// Which nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Tanh-approximate GELU (DiT's MLP).
    Gelu,
    /// x·σ(x) (DiT's conditioning before the adaLN linears).
    Silu,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ActParams {
    pub(crate) n: u32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
    pub(crate) pad: u32,
}

/// y = f(x) over `n` values.
#[derive(Clone, Copy, Debug)]
pub struct ActivationArgs<'a> {
    /// The nonlinearity.
    pub act: Activation,
    /// Values.
    pub n: u32,
    /// Input: x.
    pub x: Region<'a>,
    /// Output: f(x).
    pub y: Region<'a>,
}

/// dx = dy·f'(x) over `n` values (or dx += … with [`Write::Accumulate`]).
#[derive(Clone, Copy, Debug)]
pub struct ActivationBackwardArgs<'a> {
    /// The nonlinearity.
    pub act: Activation,
    /// Values.
    pub n: u32,
    /// Input: the forward's x.
    pub x: Region<'a>,
    /// Input: ∂L/∂y.
    pub dy: Region<'a>,
    /// Output: ∂L/∂x.
    pub dx: Region<'a>,
    /// Whether `dx` is overwritten or added to.
    pub write: Write,
}

/// One forward or backward launch: the entry point and its operands.
struct OneActivation<'a> {
    entry: &'static str,
    n: u32,
    x: Region<'a>,
    dy: Option<Region<'a>>,
    /// The output's argument name, for errors.
    out_name: &'static str,
    out: Region<'a>,
    write: Write,
}

/// Compiled activation pipelines for one device.
pub struct ActivationKernels {
    family: Family,
}

impl ActivationKernels {
    /// The activation pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let entries = [
            "gelu_forward",
            "gelu_backward",
            "silu_forward",
            "silu_backward",
        ];
        Ok(Self {
            family: Family::new(device, "activation", &entries)?,
        })
    }

    /// y = f(x).
    pub fn record_forward(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        a: &ActivationArgs,
    ) -> Result<()> {
        let entry = match a.act {
            Activation::Gelu => "gelu_forward",
            Activation::Silu => "silu_forward",
        };
        let one = OneActivation {
            entry,
            n: a.n,
            x: a.x,
            dy: None,
            out_name: "y",
            out: a.y,
            write: Write::Overwrite,
        };
        self.launch(device, encoder, one)
    }

    /// dx = dy·f'(x), or dx += … .
    pub fn record_backward(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        a: &ActivationBackwardArgs,
    ) -> Result<()> {
        let entry = match a.act {
            Activation::Gelu => "gelu_backward",
            Activation::Silu => "silu_backward",
        };
        let one = OneActivation {
            entry,
            n: a.n,
            x: a.x,
            dy: Some(a.dy),
            out_name: "dx",
            out: a.dx,
            write: a.write,
        };
        self.launch(device, encoder, one)
    }

    fn launch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        one: OneActivation,
    ) -> Result<()> {
        let OneActivation {
            entry,
            n,
            x,
            dy,
            out_name,
            out,
            write,
        } = one;
        if n == 0 {
            return Err(Error::Shape("activation over 0 values".into()));
        }
        let bytes = n as u64 * 4;
        let operands = [
            Operand::buffer("x", x, bytes),
            Operand::maybe("dy", dy.map(|d| (d, bytes))),
            Operand::buffer("out", out, bytes).called(out_name),
        ];
        let params = |groups_x| ActParams {
            n,
            accumulate: write.flag(),
            groups_x,
            pad: 0,
        };
        let groups = (n as u64).div_ceil(256);
        self.family
            .launch(device, encoder, entry, groups, params, &operands)?;
        Ok(())
    }
}
