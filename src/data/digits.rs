//! `digits`: the 1,797 real 8×8 handwritten digits of `data/digits` (UCI optdigits test set;
//! provenance in its README), embedded in the binary so they load from anywhere.

use super::Dataset;
use crate::{Error, Result};
use std::io::Read;

/// The gzipped CSV: 64 intensities 0..16 then the label, one image per row.
pub const DIGITS_CSV: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Parses a digits CSV (gzipped or plain) into a data set; intensities v map to v/8 − 1.
pub fn load_digits(bytes: &[u8]) -> Result<Dataset> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::Data(format!("digits: cannot decompress ({e})")))?;
    } else {
        text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Data("digits: the CSV is not UTF-8 text".into()))?;
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for (row, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 65 {
            return Err(Error::Data(format!(
                "digits: line {} has {} fields; each row needs 64 pixels and a label",
                row + 1,
                fields.len()
            )));
        }
        for f in &fields[..64] {
            let v: f32 = f.parse().map_err(|_| {
                Error::Data(format!("digits: line {}: `{f}` is not a number", row + 1))
            })?;
            // The format's intensities are counts of set pixels in a 4×4 cell: 0..=16 (a
            // non-finite value is refused with the data set's other checks).
            if v.is_finite() && !(0.0..=16.0).contains(&v) {
                return Err(Error::Data(format!(
                    "digits: line {}: pixel `{f}` is outside 0..16, the format's range; \
                     rescale the data to 0..16",
                    row + 1
                )));
            }
            images.push(v / 8.0 - 1.0);
        }
        let l: u32 = fields[64].parse().map_err(|_| {
            Error::Data(format!(
                "digits: line {}: label `{}` is not an integer",
                row + 1,
                fields[64]
            ))
        })?;
        labels.push(l);
    }
    let d = Dataset {
        name: "digits".into(),
        channels: 1,
        height: 8,
        width: 8,
        images,
        labels,
        slots: 1,
        label_names: (0..10).map(|c| c.to_string()).collect(),
    };
    d.validate()?;
    Ok(d)
}
