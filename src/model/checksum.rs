//! Sealed safetensors files: a CRC32 of every tensor and of the header, kept in the metadata
//! under `imba.checksum`, and a header written in a fixed order, so that the same tensors
//! and metadata always give the same bytes.
//!
//! Loading verifies the seal and names the tensor (or the header) whose bytes changed since
//! the file was written. Files written elsewhere (a PyTorch state dict) carry no seal and
//! load unverified; a file whose metadata says imba wrote it but whose seal is gone (an
//! edit that removed it) is refused unless the user trusts it ([`trust_unsealed`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `--trust-unsealed` (or `IMBA_TRUST_UNSEALED=1`): load imba files without a seal.
static TRUST_UNSEALED: AtomicBool = AtomicBool::new(false);

/// Loads imba-written files whose seal is missing, unverified, from now on in this process.
pub fn trust_unsealed() {
    TRUST_UNSEALED.store(true, Ordering::Relaxed);
}

fn trusting() -> bool {
    TRUST_UNSEALED.load(Ordering::Relaxed)
        || std::env::var("IMBA_TRUST_UNSEALED").is_ok_and(|v| v == "1")
}

use crate::{Error, Result};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata key of the seal.
pub const CHECKSUM: &str = "imba.checksum";

/// What `imba.checksum` holds: the header's CRC32 and each tensor's, as 8 hex digits.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seal {
    header: String,
    tensors: BTreeMap<String, String>,
}

fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// The CRC32 of the metadata (all but the seal) and of each tensor's name, dtype and shape.
fn header_crc<'a>(
    meta: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, String, &'a [usize])>,
) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (k, v) in meta.iter().filter(|(k, _)| *k != CHECKSUM) {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape) in sorted {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(dtype.as_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
    }
    h.finalize()
}

/// The bytes of a sealed safetensors file holding `views` and `meta`.
pub fn serialize(
    path: &Path,
    views: Vec<(String, TensorView)>,
    mut meta: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let tensors = views
        .iter()
        .map(|(n, v)| (n.clone(), hex(crc32fast::hash(v.data()))))
        .collect();
    let header = header_crc(
        &meta,
        views
            .iter()
            .map(|(n, v)| (n.as_str(), format!("{:?}", v.dtype()), v.shape())),
    );
    let seal = Seal {
        header: hex(header),
        tensors,
    };
    meta.insert(
        CHECKSUM.into(),
        serde_json::to_string(&seal).expect("serialisable"),
    );
    let bytes = safetensors::serialize(views, Some(meta.into_iter().collect::<HashMap<_, _>>()))
        .map_err(|e| Error::checkpoint(path, e.to_string()).with_source(e))?;
    stable_header(bytes).map_err(|e| Error::checkpoint(path, e))
}

/// One tensor's entry in a safetensors header, its fields in the format's order.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The same file with its header's keys sorted (safetensors writes the metadata in a hash
/// map's order, which differs from run to run). The tensors' bytes and offsets are unchanged.
fn stable_header(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let parsed: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| e.to_string())?;
    let mut json = String::from("{");
    for (i, (key, value)) in parsed.into_iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json += &serde_json::to_string(&key).expect("serialisable");
        json.push(':');
        json += &if key == "__metadata__" {
            let m: BTreeMap<String, String> =
                serde_json::from_value(value).map_err(|e| e.to_string())?;
            serde_json::to_string(&m)
        } else {
            let e: Entry = serde_json::from_value(value).map_err(|e| e.to_string())?;
            serde_json::to_string(&e)
        }
        .expect("serialisable");
    }
    json.push('}');
    // The same entries in another order: never longer than the padded original.
    if json.len() > n {
        return Err(format!(
            "reordered header is {} bytes, over {n}",
            json.len()
        ));
    }
    let mut header = json.into_bytes();
    header.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&header);
    Ok(bytes)
}

/// Checks a file's seal: `Ok(true)` when every tensor and the header match it, `Ok(false)`
/// when the file has none (written elsewhere), an error naming what changed otherwise.
pub fn verify(path: &Path, st: &SafeTensors, meta: &HashMap<String, String>) -> Result<bool> {
    let Some(text) = meta.get(CHECKSUM) else {
        // Every file imba writes is sealed: one that says imba wrote it and has no seal was
        // edited afterwards, and nothing it holds can be checked.
        let ours = meta.keys().any(|k| k.starts_with("imba."));
        if ours && !trusting() {
            return Err(Error::checkpoint(
                path,
                "imba wrote this file but its seal (`imba.checksum`) is gone, so its tensors \
                 cannot be checked; use another copy, or pass --trust-unsealed (or \
                 IMBA_TRUST_UNSEALED=1) to load it unverified",
            ));
        }
        return Ok(false);
    };
    let corrupt = |what: String| {
        Error::checkpoint(
            path,
            format!(
                "{what}: the file changed after it was written (a disk or copy error, or an \
                 edit). Use another copy, or the previous checkpoint"
            ),
        )
    };
    let seal: Seal = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("its checksum record is unreadable ({e})")))?;
    let sorted: BTreeMap<String, String> =
        meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let tensors = st.tensors();
    let header = header_crc(
        &sorted,
        tensors
            .iter()
            .map(|(n, v)| (n.as_str(), format!("{:?}", v.dtype()), v.shape())),
    );
    if hex(header) != seal.header {
        return Err(corrupt(
            "its header (metadata or tensor shapes) is corrupt".into(),
        ));
    }
    for (name, view) in &tensors {
        let Some(expected) = seal.tensors.get(name) else {
            return Err(corrupt(format!(
                "tensor `{name}` is not in its checksum record"
            )));
        };
        if hex(crc32fast::hash(view.data())) != *expected {
            return Err(corrupt(format!(
                "tensor `{name}` is corrupt (CRC32 mismatch)"
            )));
        }
    }
    if let Some(missing) = seal.tensors.keys().find(|n| st.tensor(n).is_err()) {
        return Err(corrupt(format!("tensor `{missing}` is missing")));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::Dtype;

    fn file(values: &[f32]) -> Vec<u8> {
        let views = vec![
            (
                "b".to_string(),
                TensorView::new(Dtype::F32, vec![values.len()], bytemuck::cast_slice(values))
                    .unwrap(),
            ),
            (
                "a".to_string(),
                TensorView::new(Dtype::F32, vec![1], bytemuck::cast_slice(&values[..1])).unwrap(),
            ),
        ];
        let meta = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        serialize(Path::new("t"), views, meta).unwrap()
    }

    fn check(bytes: &[u8]) -> Result<bool> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let (_, m) = SafeTensors::read_metadata(bytes).unwrap();
        verify(
            Path::new("t"),
            &st,
            &m.metadata().clone().unwrap_or_default(),
        )
    }

    #[test]
    fn identical_inputs_give_identical_bytes_and_verify() {
        let v = [1.0f32, -2.0, 3.5];
        let a = file(&v);
        for _ in 0..5 {
            assert_eq!(a, file(&v));
        }
        assert!(check(&a).unwrap());
    }

    #[test]
    fn a_flipped_tensor_byte_is_named() {
        let mut f = file(&[1.0, 2.0, 3.0]);
        let n = f.len();
        f[n - 2] ^= 0x10; // in tensor `b`, stored after `a`
        let e = check(&f).unwrap_err().to_string();
        assert!(e.contains("tensor `b` is corrupt"), "{e}");
    }

    #[test]
    fn a_changed_metadata_value_is_caught() {
        let mut f = file(&[1.0, 2.0, 3.0]);
        let at = f.windows(3).position(|w| w == b"v13").unwrap();
        f[at + 1] = b'7';
        let e = check(&f).unwrap_err().to_string();
        assert!(e.contains("header"), "{e}");
    }
}
