//! `folder`: users' own images, one sub-folder per label (labels in sorted folder-name
//! order), PNG or JPEG, optionally resized to a square size.

use super::Dataset;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Whether a name starts with a dot: tools' folders (`.ipynb_checkpoints`, `.git`) and
/// files (macOS's `._name.png`) are neither labels nor images.
fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Loads `root/<label>/*.{png,jpg,jpeg}` (names starting with a dot are skipped) as `channels` (1 or 3) channels in [−1, 1]. With
/// `size`, every image is resized to size×size (triangle filter); without, all images must
/// share one size.
pub fn load_folder(root: &Path, channels: u32, size: Option<u32>) -> Result<Dataset> {
    if channels != 1 && channels != 3 {
        return Err(Error::Config(format!(
            "folder data needs channels 1 (grey) or 3 (RGB), got {channels}"
        )));
    }
    let (mut images, mut labels, mut names) = (Vec::new(), Vec::new(), Vec::new());
    let mut dims: Option<(u32, u32, PathBuf)> = None;
    for (label, dir) in label_dirs(root)?.iter().enumerate() {
        names.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        for f in image_files(dir)? {
            let img = image::open(&f)
                .map_err(|e| Error::Data(format!("cannot decode image {} ({e})", f.display())))?;
            let img = match size {
                Some(s) => img.resize_exact(s, s, image::imageops::FilterType::Triangle),
                None => img,
            };
            same_size(&mut dims, &img, &f)?;
            push_pixels(&img, channels, &mut images);
            labels.push(label as u32);
        }
    }
    let (w, h, _) = dims.expect("at least one image");
    let d = Dataset {
        name: "folder".into(),
        channels,
        height: h,
        width: w,
        images,
        labels,
        slots: 1,
        label_names: names,
    };
    d.validate()?;
    Ok(d)
}

fn read_dir(p: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(p).map_err(|e| {
        Error::Data(format!(
            "cannot read the image folder {} ({e}); give a folder with one sub-folder per label",
            p.display()
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !is_hidden(p))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The label folders of `root`, sorted by name (a label's index is its place in that order).
fn label_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let dirs: Vec<_> = read_dir(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if dirs.is_empty() {
        return Err(Error::Data(format!(
            "{} has no sub-folders; put each label's images in a sub-folder named after it",
            root.display()
        )));
    }
    Ok(dirs)
}

/// The images of one label folder, sorted by name; a label without any is an error.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<_> = read_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    if files.is_empty() {
        return Err(Error::Data(format!(
            "label folder {} holds no PNG or JPEG images; add some or remove the folder",
            dir.display()
        )));
    }
    Ok(files)
}

/// Records the first image's size and refuses any image of another size.
fn same_size(
    dims: &mut Option<(u32, u32, PathBuf)>,
    img: &image::DynamicImage,
    f: &Path,
) -> Result<()> {
    let (w, h) = (img.width(), img.height());
    match dims {
        None => *dims = Some((w, h, f.to_path_buf())),
        Some((w0, h0, first)) if (*w0, *h0) != (w, h) => {
            return Err(Error::Data(format!(
                "images of mixed sizes: {} is {w}×{h} but {} is {w0}×{h0}; set \
                 `image_size` to resize them all",
                f.display(),
                first.display()
            )))
        }
        _ => {}
    }
    Ok(())
}

/// Appends the image as planar channels in [-1, 1] (grey, or R, G, B planes).
fn push_pixels(img: &image::DynamicImage, channels: u32, images: &mut Vec<f32>) {
    let plane = (img.width() * img.height()) as usize;
    let start = images.len();
    images.resize(start + plane * channels as usize, 0.0);
    let out = &mut images[start..];
    if channels == 1 {
        for (i, p) in img.to_luma8().pixels().enumerate() {
            out[i] = p.0[0] as f32 / 127.5 - 1.0;
        }
    } else {
        for (i, p) in img.to_rgb8().pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = p.0[c] as f32 / 127.5 - 1.0;
            }
        }
    }
}
