//! Launcher of `shaders/activation.wgsl`: tanh-GELU and SiLU, forward and backward, over a
//! flat array of `n` values.

use super::common::{self, Slot};
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

/// Compiled activation pipelines for one device.
pub struct ActivationKernels {
    layout: wgpu::BindGroupLayout,
    /// gelu_forward, gelu_backward, silu_forward, silu_backward.
    pipelines: Vec<wgpu::ComputePipeline>,
    unused: wgpu::Buffer,
    binder: common::Binder,
}

impl ActivationKernels {
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        use Slot::*;
        let layout = common::layout(
            device,
            "activation",
            &[(0, Uniform), (1, Read), (2, Read), (3, ReadWrite)],
        );
        let pipelines = common::pipelines(
            device,
            "activation",
            &layout,
            &[
                "gelu_forward",
                "gelu_backward",
                "silu_forward",
                "silu_backward",
            ],
        )?;
        Ok(Self {
            layout,
            pipelines,
            unused: common::placeholder(device),
            binder: Default::default(),
        })
    }

    /// y = f(x) for `n` values.
    pub fn record_forward(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        act: Activation,
        n: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        let entry = match act {
            Activation::Gelu => 0,
            Activation::Silu => 2,
        };
        self.launch(device, encoder, entry, n, x, None, y, false)
    }

    /// dx = dy·f'(x) for `n` values, or dx += … with `accumulate`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_backward(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        act: Activation,
        n: u32,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let entry = match act {
            Activation::Gelu => 1,
            Activation::Silu => 3,
        };
        self.launch(device, encoder, entry, n, x, Some(dy), dx, accumulate)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        entry: usize,
        n: u32,
        x: &wgpu::Buffer,
        dy: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        if n == 0 {
            return Err(Error::Shape("activation over 0 values".into()));
        }
        let bytes = n as u64 * 4;
        common::check_storage(device, "x", x, bytes)?;
        if let Some(dy) = dy {
            common::check_storage(device, "dy", dy, bytes)?;
        }
        common::check_storage(device, "out", out, bytes)?;
        let (gx, gy) = common::grid(device, (n as u64).div_ceil(256))?;
        let params = ActParams {
            n,
            accumulate: accumulate as u32,
            groups_x: gx,
            pad: 0,
        };
        let bg = self.binder.bind(
            device,
            &self.layout,
            &params,
            vec![
                (1, common::range(x, bytes)),
                (2, common::range_or(dy.map(|d| (d, bytes)), &self.unused)),
                (3, common::range(out, bytes)),
            ],
        );
        common::record_pass(
            encoder,
            "activation",
            &[(&self.pipelines[entry], &bg, (gx, gy))],
        );
        Ok(())
    }
}
