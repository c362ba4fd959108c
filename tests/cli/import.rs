//! `imba import`: a PyTorch state dict (the learn_sigma = true golden, written by PyTorch)
//! becomes a model file that `imba sample --model` takes; bad input is refused and nothing
//! is written or overwritten.

use crate::{common, imba};
use imba::model::{checkpoint, DitConfig};

fn golden(name: &str) -> std::path::PathBuf {
    common::repo_root().join("tests/goldens").join(name)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("imba-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_pytorch_state_dict_imports_and_samples() {
    let dir = scratch("ok");
    let out = dir.join("model.safetensors");
    let sigma = golden("dit_tiny_sigma_weights.safetensors");
    let (ok, said) = imba(&[
        "import",
        sigma.to_str().unwrap(),
        "--heads",
        "2",
        "--label-names",
        "cat,dog,bird",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    assert!(said.contains("learn_sigma = true"), "{said}");
    // The shape read off the tensors is the golden's model; the weights are the import's.
    let m = imba::train::export::load(&out).unwrap();
    assert_eq!(m.model, DitConfig::tiny());
    assert_eq!(m.process, imba::diffusion::Process::Ddpm);
    assert_eq!(m.label_names, ["cat", "dog", "bird"]);
    assert_eq!((m.step, m.of_steps), (None, None));
    let want = checkpoint::load(&sigma, &DitConfig::tiny()).unwrap();
    assert!(m
        .weights
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let samples = dir.join("samples");
    let (ok, said) = imba(&[
        "sample",
        "--model",
        out.to_str().unwrap(),
        "--labels",
        "dog",
        "--count",
        "2",
        "--steps",
        "3",
        "--out",
        samples.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    assert!(samples.join("samples.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_imports_are_refused_and_write_nothing() {
    let dir = scratch("bad");
    let plain = golden("dit_tiny_weights.safetensors");
    let p = plain.to_str().unwrap();
    let out = dir.join("m.safetensors");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["import", p, "--heads", "3", "--out", o],
            "multiple of the heads",
        ),
        (
            &[
                "import",
                p,
                "--heads",
                "2",
                "--label-names",
                "a,b",
                "--out",
                o,
            ],
            "2 label names",
        ),
        (
            &[
                "import",
                p,
                "--heads",
                "2",
                "--label-names",
                "a,a,b",
                "--out",
                o,
            ],
            "repeated",
        ),
        (
            &["import", "Cargo.toml", "--heads", "2", "--out", o],
            "not a valid safetensors",
        ),
    ];
    for (args, why) in cases {
        let (ok, said) = imba(args);
        assert!(!ok && said.contains(why), "{args:?}: {said}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
    // A label table stored as a scalar (a hostile file) is refused, not indexed.
    let bytes = std::fs::read(&plain).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let table = "y_embedder.embedding_table.weight";
    let one = 1.0f32.to_le_bytes();
    let scalar = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![], &one);
    let mut views = st.tensors();
    views.retain(|(n, _)| n != table);
    views.push((table.to_string(), scalar.unwrap()));
    let odd = dir.join("scalar-table.safetensors");
    std::fs::write(&odd, safetensors::serialize(views, None).unwrap()).unwrap();
    let (ok, said) = imba(&["import", odd.to_str().unwrap(), "--heads", "2", "--out", o]);
    assert!(!ok && said.contains("fewer than 2 rows"), "{said}");
    assert!(!out.exists());
    // An existing file is never overwritten; an imba model is not imported again.
    let (ok, said) = imba(&["import", p, "--heads", "2", "--out", o]);
    assert!(ok, "{said}");
    let before = std::fs::read(&out).unwrap();
    let (ok, said) = imba(&["import", p, "--heads", "2", "--out", o]);
    assert!(!ok && said.contains("exists"), "{said}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let again = dir.join("again.safetensors");
    let (ok, said) = imba(&[
        "import",
        o,
        "--heads",
        "2",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(!ok && said.contains("already an imba model"), "{said}");
    assert!(!again.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
