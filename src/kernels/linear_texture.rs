//! Buffer regions copied into linear rgba32float textures, for kernels that read their operands
//! as read-only storage textures on llvmpipe (Mesa's CPU Vulkan driver). There a storage-buffer
//! load whose address differs per lane costs ~25 CPU cycles a value, while a storage-texture
//! load is a branch-free gather of four values (shaders/matmul_texture.wgsl says more); the
//! copy itself runs at memcpy speed.
//!
//! Layout: texel L holds values 4L..4L+3 of the region and sits at (L mod 4096, L / 4096), so
//! a texture row is 64 KiB (a multiple of the 256 bytes a copy row needs) and any region fits
//! whose texels fill at most `max_texture_dimension_2d` rows. Shaders address it with
//! `vec2<u32>(l & 4095u, l >> 12u)`.

use super::common::{self, Region};
use std::collections::HashMap;
use std::sync::Mutex;

/// Texels per texture row.
pub(crate) const WIDTH: u32 = 4096;

/// Textures by (role, rows), made on first use. Commands run in recording order and wgpu
/// orders a texture's copy after the earlier dispatches that read it, so one texture per role
/// serves every launch.
#[derive(Default)]
pub(crate) struct LinearTextures {
    textures: Mutex<HashMap<(&'static str, u32), wgpu::TextureView>>,
}

/// A 1×1 texture to bind in slots a launch does not use.
pub(crate) fn placeholder(device: &wgpu::Device) -> wgpu::TextureView {
    common::rgba32f_texture(device, "unused-texture-slot", 1, 1)
}

impl LinearTextures {
    /// The texture for `role` with room for `texels` texels (kernels may also write it).
    pub(crate) fn view(
        &self,
        device: &wgpu::Device,
        role: &'static str,
        texels: u64,
    ) -> wgpu::TextureView {
        let rows = texels.div_ceil(WIDTH as u64).max(1) as u32;
        self.textures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((role, rows))
            .or_insert_with(|| common::rgba32f_texture(device, role, WIDTH, rows))
            .clone()
    }

    /// Whether [`Self::fill`] can copy `floats` values from `region`: the region must start at
    /// a multiple of 16 bytes, hold whole texels, come from a buffer with COPY_SRC usage, and
    /// fit the device's texture height.
    pub(crate) fn fits(device: &wgpu::Device, region: Region, floats: u64) -> bool {
        floats > 0
            && floats.is_multiple_of(4)
            && region.offset.is_multiple_of(16)
            && region.buffer.usage().contains(wgpu::BufferUsages::COPY_SRC)
            && (floats / 4).div_ceil(WIDTH as u64)
                <= device.limits().max_texture_dimension_2d as u64
    }

    /// Records the copy of `floats` values from `region` into the texture for `role` and
    /// returns it; `None` where [`Self::fits`] says no (the caller then reads the buffer).
    pub(crate) fn fill(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        role: &'static str,
        region: Region,
        floats: u64,
    ) -> Option<wgpu::TextureView> {
        if !Self::fits(device, region, floats) {
            return None;
        }
        let texels = floats / 4;
        let view = self.view(device, role, texels);
        let row_bytes = WIDTH as u64 * 16;
        let (full, rest) = (texels / WIDTH as u64, (texels % WIDTH as u64) as u32);
        let mut copy = |row: u64, width: u32, height: u32| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: region.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: region.offset + row * row_bytes,
                        bytes_per_row: Some(row_bytes as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: view.texture(),
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full > 0 {
            copy(0, WIDTH, full as u32);
        }
        if rest > 0 {
            copy(full, rest, 1);
        }
        Some(view)
    }
}
