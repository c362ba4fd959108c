//! A sample set on disk: a grid, one PNG per sample and the raw tensors (or a scatter plot
//! for 2-D data).

use crate::kernels::NO_LABEL;
use crate::model::DitConfig;
use crate::{Error, Result};

/// Puts the folder `fresh` where `old` is: the old one is moved aside first and removed
/// after, so `old` names either the whole earlier set or the whole new one.
fn replace_dir(fresh: &std::path::Path, old: &std::path::Path) -> std::io::Result<()> {
    let aside = old.with_file_name(".samples-old");
    let _ = std::fs::remove_dir_all(&aside);
    if old.exists() {
        std::fs::rename(old, &aside)?;
    }
    std::fs::rename(fresh, old)?;
    let _ = std::fs::remove_dir_all(&aside);
    Ok(())
}

/// Writes samples: `grid.png` (`cols` per row), one PNG per sample under `samples/`
/// (`NNNN-<label>.png`), and `samples.safetensors` (tensors `samples` (n, C, H, W) F32 and
/// `labels` (n, slots) U32). 2-D data (one pixel of two channels) gets `scatter.png` instead of
/// images. A second call into the same folder replaces the per-sample PNGs as a set (none
/// of the first call's stays). Returns the files written.
pub fn save_samples(
    dir: &std::path::Path,
    m: &DitConfig,
    images: &[f32],
    labels: &[u32],
    label_names: &[String],
    cols: u32,
    centres: &[[f64; 2]],
) -> Result<Vec<std::path::PathBuf>> {
    use safetensors::{tensor::TensorView, Dtype};
    let io = |p: &std::path::Path, e: std::io::Error| Error::io(p, "cannot write", e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let slots = m.label_slots as usize;
    let n = labels.len() / slots;
    let image = (m.channels * m.height * m.width) as usize;
    let name_of = |j: usize| -> String {
        labels[j * slots..(j + 1) * slots]
            .iter()
            .filter(|&&l| l != NO_LABEL)
            .map(|&l| {
                let name = label_names.get(l as usize).map_or("null", String::as_str);
                file_safe(name)
            })
            .collect::<Vec<_>>()
            .join("+")
    };
    let mut written = Vec::new();
    if m.channels == 2 && m.height == 1 && m.width == 1 {
        let p = dir.join("scatter.png");
        let pts: Vec<[f32; 2]> = images.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        let first: Vec<u32> = labels.iter().step_by(slots).copied().collect();
        super::plot::scatter(&p, "samples (crosses: class means)", &pts, &first, centres)?;
        written.push(p);
    } else if super::images::drawable(m.channels) {
        let p = dir.join("grid.png");
        super::images::save_grid(&p, images, m.channels, m.height, m.width, cols)?;
        written.push(p);
        // The set is written whole into a folder of its own, then put in the place of the
        // last set: no PNG of an earlier call stays beside this call's.
        let each = dir.join("samples");
        let fresh = dir.join(".samples-new");
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
        for j in 0..n {
            let p = fresh.join(format!("{j:04}-{}.png", name_of(j)));
            super::images::save_one(
                &p,
                &images[j * image..(j + 1) * image],
                m.channels,
                m.height,
                m.width,
            )?;
        }
        replace_dir(&fresh, &each).map_err(|e| io(&each, e))?;
        written.push(each);
    }
    let p = dir.join("samples.safetensors");
    let shape = vec![n, m.channels as usize, m.height as usize, m.width as usize];
    let views = vec![
        (
            "samples".to_string(),
            TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(images))
                .map_err(|e| Error::Shape(e.to_string()))?,
        ),
        (
            "labels".to_string(),
            TensorView::new(Dtype::U32, vec![n, slots], bytemuck::cast_slice(labels))
                .map_err(|e| Error::Shape(e.to_string()))?,
        ),
    ];
    let names = std::collections::BTreeMap::from([(
        "imba.label_names".to_string(),
        serde_json::to_string(label_names).expect("serialisable"),
    )]);
    let bytes = crate::model::checksum::serialize(&p, views, names)?;
    crate::files::write_atomic(&p, &bytes)?;
    written.push(p);
    Ok(written)
}

/// A label name as part of a file name: letters, digits, '-', '_' and '.' kept, anything
/// else (path separators of every system, ':', spaces, control characters) made '_', at most
/// 64 characters. Label names can come from a model file's metadata, which anyone can write.
fn file_safe(name: &str) -> String {
    let keep = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| if keep(c) { c } else { '_' })
        .collect();
    // A name of dots alone would read as a folder of its own ("..").
    if safe.chars().all(|c| c == '.') {
        safe.replace('.', "_")
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::file_safe;

    #[test]
    fn label_names_cannot_leave_the_samples_folder() {
        assert_eq!(file_safe("red-square"), "red-square");
        assert_eq!(file_safe("left:red"), "left_red");
        assert_eq!(file_safe("../..\\evil/x"), ".._.._evil_x");
        assert_eq!(file_safe(".."), "__");
        assert_eq!(file_safe("a\0b c"), "a_b_c");
        assert_eq!(file_safe(&"é".repeat(300)).chars().count(), 64);
    }
}
