//! Writing samples as pictures: PNG per image and PNG grids (values in [−1, 1] → 0..255,
//! 1 channel grey or 3 channels RGB, enlarged by nearest-neighbour for small images).

use crate::{Error, Result};
use std::path::Path;

fn io(path: &Path, e: image::ImageError) -> Error {
    Error::io(path, "cannot write the image", e)
}

fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Whether images of `channels` channels can be written as PNG.
pub fn drawable(channels: u32) -> bool {
    channels == 1 || channels == 3
}

/// A grid of `images` ((n, C, H, W), n ≥ 1) with `cols` columns, each pixel `scale`×`scale`,
/// with 1-pixel grey gutters.
pub fn grid(images: &[f32], c: u32, h: u32, w: u32, cols: u32, scale: u32) -> image::RgbImage {
    let len = (c * h * w) as usize;
    let n = (images.len() / len) as u32;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let (cw, ch) = (w * scale + 1, h * scale + 1);
    let mut img =
        image::RgbImage::from_pixel(cols * cw + 1, rows * ch + 1, image::Rgb([96, 96, 96]));
    for k in 0..n {
        let src = &images[k as usize * len..(k as usize + 1) * len];
        let (ox, oy) = (1 + (k % cols) * cw, 1 + (k / cols) * ch);
        for y in 0..h * scale {
            for x in 0..w * scale {
                let p = ((y / scale) * w + x / scale) as usize;
                let plane = (h * w) as usize;
                let rgb = if c == 3 {
                    [src[p], src[plane + p], src[2 * plane + p]].map(to_byte)
                } else {
                    [to_byte(src[p]); 3]
                };
                img.put_pixel(ox + x, oy + y, image::Rgb(rgb));
            }
        }
    }
    img
}

/// Saves a grid (see [`grid`]).
pub fn save_grid(path: &Path, images: &[f32], c: u32, h: u32, w: u32, cols: u32) -> Result<()> {
    let scale = (64 / h.max(w)).clamp(1, 8);
    save_png(path, &grid(images, c, h, w, cols, scale))
}

/// Saves one image (C, H, W) as PNG at its own size.
pub fn save_one(path: &Path, image: &[f32], c: u32, h: u32, w: u32) -> Result<()> {
    let g = grid(image, c, h, w, 1, 1);
    let cropped = image::imageops::crop_imm(&g, 1, 1, w, h).to_image();
    save_png(path, &cropped)
}

/// Encodes `image` as PNG in memory and writes it to `path` atomically (a crash never leaves
/// a partial image).
fn save_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| io(path, e))?;
    crate::files::write_atomic(path, png.get_ref())
}
