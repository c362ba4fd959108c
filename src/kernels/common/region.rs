//! Where a launch's operands live (a region of a buffer) and how each is checked against
//! the shape and the device's limits, then bound.

use crate::{Error, Result};
use std::num::NonZeroU64;

/// Where a launch's operand lives: a buffer and a byte offset into it, e.g. one named tensor
/// of a flat parameter buffer. A plain `&wgpu::Buffer` converts to offset 0. Offsets must be
/// multiples of the device's `min_storage_buffer_offset_alignment` (256 bytes is always
/// enough); launchers check.
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    /// The buffer (STORAGE usage).
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the start of `buffer`.
    pub offset: u64,
}

impl<'a> Region<'a> {
    /// `offset` bytes into `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        Self { buffer, offset }
    }
}

impl<'a> From<&'a wgpu::Buffer> for Region<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }
}

/// Checks that `region` can be bound as storage for `bytes` bytes on this device.
pub(crate) fn check_storage<'a>(
    device: &wgpu::Device,
    name: &'static str,
    region: impl Into<Region<'a>>,
    bytes: u64,
) -> Result<()> {
    let Region { buffer, offset } = region.into();
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    if offset % align != 0 {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "offset {offset} is not a multiple of the device's storage offset alignment \
                 {align}; align tensors to 256 bytes"
            ),
        });
    }
    // Checked: an offset near u64::MAX must not wrap into a small end.
    let need = bytes;
    let Some(bytes) = bytes.checked_add(offset) else {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "offset {offset} plus the {bytes} bytes the shape needs passes the end of any \
                 buffer; give an offset inside the buffer"
            ),
        });
    };
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::Buffer {
            name,
            problem: "lacks BufferUsages::STORAGE; create it with STORAGE usage".into(),
        });
    }
    if buffer.size() < bytes {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "holds {} bytes but needs {bytes}: the shape's {} values of 4 bytes ({need} \
                 bytes){}; allocate it for the shape",
                buffer.size(),
                need / 4,
                if offset > 0 {
                    format!(" after offset {offset}")
                } else {
                    String::new()
                }
            ),
        });
    }
    let max = device.limits().max_storage_buffer_binding_size;
    if bytes - offset > max {
        return Err(Error::Limit(format!(
            "`{name}` needs a {bytes}-byte storage binding but this device allows {max}; use a \
             smaller batch"
        )));
    }
    Ok(())
}

/// The binding of the first `bytes` bytes of a region.
pub(crate) fn range<'a>(region: impl Into<Region<'a>>, bytes: u64) -> wgpu::BindingResource<'a> {
    let Region { buffer, offset } = region.into();
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: NonZeroU64::new(bytes.max(4)),
    })
}
