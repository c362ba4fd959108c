//! GPU time from timestamp queries written into a command encoder around recorded work.

use super::Gpu;
use crate::Result;

/// Two timestamps around a span of recorded commands. Needs
/// `TIMESTAMP_QUERY | TIMESTAMP_QUERY_INSIDE_ENCODERS` ([`Gpu::has_timestamps`]).
pub struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
}

impl GpuTimer {
    /// A timer, or `None` when the device cannot write timestamps inside encoders.
    pub fn new(gpu: &Gpu) -> Option<Self> {
        if !gpu.has_timestamps() {
            return None;
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer-resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Self {
            queries,
            resolve,
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// Records the start timestamp.
    pub fn start(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.write_timestamp(&self.queries, 0);
    }

    /// Records the end timestamp and the copy of both into the resolve buffer.
    pub fn stop(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.write_timestamp(&self.queries, 1);
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
    }

    /// Nanoseconds between start and stop of the last submitted span (waits for the GPU).
    pub fn elapsed_ns(&self, gpu: &Gpu) -> Result<f64> {
        let t: Vec<u64> = gpu.read(&self.resolve, 2)?;
        Ok(t[1].wrapping_sub(t[0]) as f64 * self.period_ns)
    }
}
