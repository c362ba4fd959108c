//! `idx`: image sets in the MNIST file format (IDX), such as Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist). A folder holds
//! `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (the training split) and
//! `t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte` (the test split), each plain or
//! gzipped (`.gz`). Intensities 0..255 map to [−1, 1].

use super::Dataset;
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The two splits of an IDX folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxSplit {
    Train,
    Test,
}

impl IdxSplit {
    fn prefix(self) -> &'static str {
        match self {
            IdxSplit::Train => "train",
            IdxSplit::Test => "t10k",
        }
    }
}

/// The most images one IDX file may declare (MNIST-format sets hold 10⁴–10⁵).
const MAX_IMAGES: u64 = 10_000_000;

/// Loads one split of the IDX folder `dir`.
pub fn load_idx(dir: &Path, split: IdxSplit) -> Result<Dataset> {
    let p = split.prefix();
    let images = read(dir, &format!("{p}-images-idx3-ubyte"))?;
    let labels = read(dir, &format!("{p}-labels-idx1-ubyte"))?;
    let (dims, pixels) = parse(&images, 0x0803, 3, &format!("{p} images"))?;
    let (ldims, values) = parse(&labels, 0x0801, 1, &format!("{p} labels"))?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if ldims[0] != n {
        return Err(Error::Data(format!(
            "{}: {n} images but {} labels; the two files must be of one split",
            dir.display(),
            ldims[0]
        )));
    }
    let classes = values.iter().copied().max().map_or(0, |m| m as u32 + 1);
    check_dense(values, classes, &format!("{p} labels"))?;
    let d = Dataset {
        name: "idx".into(),
        channels: 1,
        height: h as u32,
        width: w as u32,
        images: pixels.iter().map(|&v| v as f32 / 127.5 - 1.0).collect(),
        labels: values.iter().map(|&v| v as u32).collect(),
        slots: 1,
        label_names: (0..classes).map(|c| c.to_string()).collect(),
    };
    d.validate()?;
    Ok(d)
}

/// Refuses labels with gaps: the class count is the largest label + 1, so a file of
/// labels 3, 7, 200 would make a long-tail split ask for images of labels that have none.
fn check_dense(labels: &[u8], classes: u32, what: &str) -> Result<()> {
    let mut seen = vec![false; classes as usize];
    for &l in labels {
        seen[l as usize] = true;
    }
    let missing: Vec<String> = (0..classes)
        .filter(|&c| !seen[c as usize])
        .map(|c| c.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown = missing
        .iter()
        .take(8)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if missing.len() > 8 { ", …" } else { "" };
    Err(Error::Data(format!(
        "{what}: the labels run 0–{} but {} of them have no image ({shown}{more}); an IDX \
         label file must number its classes 0, 1, …, K − 1 without gaps",
        classes - 1,
        missing.len()
    )))
}

/// The bytes of `name` or `name.gz` in `dir`.
fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let (path, zipped): (PathBuf, bool) = if plain.exists() {
        (plain, false)
    } else if gz.exists() {
        (gz, true)
    } else {
        return Err(Error::Data(format!(
            "{} has no {name} (or {name}.gz); give a folder of MNIST-format files, e.g. \
             /usr/share/datasets/fashion-mnist (Debian: apt install dataset-fashion-mnist)",
            dir.display()
        )));
    };
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
    if !zipped {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| Error::Data(format!("{}: cannot decompress ({e})", path.display())))?;
    Ok(out)
}

/// The dimensions and the u8 values of an IDX file of `rank` dimensions and magic `magic`
/// (0x08 = unsigned bytes, then the rank).
fn parse<'a>(bytes: &'a [u8], magic: u32, rank: usize, what: &str) -> Result<(Vec<u64>, &'a [u8])> {
    let bad = |m: String| Error::Data(format!("{what}: {m}"));
    let head = 4 + 4 * rank;
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() >= 4 && word(0) != magic {
        return Err(bad(format!(
            "magic number {:#010x}, not {magic:#010x}: not an IDX file of unsigned bytes of \
             rank {rank}",
            word(0)
        )));
    }
    if bytes.len() < head {
        return Err(bad(format!(
            "{} bytes, too short for an IDX header",
            bytes.len()
        )));
    }
    let dims: Vec<u64> = (1..=rank).map(|i| word(i) as u64).collect();
    if dims[0] > MAX_IMAGES || dims.iter().skip(1).any(|&d| d == 0 || d > 4096) {
        return Err(bad(format!("implausible dimensions {dims:?}")));
    }
    let count: u64 = dims.iter().product();
    let body = &bytes[head..];
    if (body.len() as u64) != count {
        return Err(bad(format!(
            "the header declares {dims:?} ({count} values) but the file holds {}; it may be \
             truncated",
            body.len()
        )));
    }
    Ok((dims, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(body);
        v
    }

    #[test]
    fn reads_both_files_plain_and_gzipped_and_refuses_bad_ones() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("imba-idx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|i| (i * 20) as u8).collect();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x0803, &[3, 2, 2], &pixels),
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&idx(0x0801, &[3], &[2, 0, 1])).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
        let d = load_idx(&dir, IdxSplit::Train).unwrap();
        assert_eq!((d.len(), d.height, d.width, d.channels), (3, 2, 2, 1));
        assert_eq!(d.labels, vec![2, 0, 1]);
        assert_eq!(d.images[0], -1.0);
        assert!((d.images[5] - (100.0 / 127.5 - 1.0)).abs() < 1e-6);
        // Labels with a gap (no image of label 1): refused, naming the missing label.
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx(0x0801, &[3], &[2, 0, 2]),
        )
        .unwrap();
        let e = load_idx(&dir, IdxSplit::Train).unwrap_err().to_string();
        assert!(
            e.contains("0–2") && e.contains("(1)") && e.contains("gaps"),
            "{e}"
        );
        std::fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
        // A truncated file, a wrong magic, a missing split: errors naming the problem.
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x0803, &[3, 2, 2], &pixels[..10]),
        )
        .unwrap();
        let e = load_idx(&dir, IdxSplit::Train).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(0x0801, &[3], &[0; 3]),
        )
        .unwrap();
        let e = load_idx(&dir, IdxSplit::Train).unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
        let e = load_idx(&dir, IdxSplit::Test).unwrap_err().to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte") && e.contains("dataset-fashion-mnist"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
