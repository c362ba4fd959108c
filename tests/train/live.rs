//! The live view's runs (what the browser page runs): the same steps as the trainer's, the
//! D monitor's attribution, grids from a checkpoint or an exported model in memory, and
//! refusals.

use crate::common;

use common::{assert_error_mentions, gpu};
use imba::train::live::{config_from_toml, Checkpoint, GridOptions, LiveRun};
use imba::train::{setup, Trainer};

const TINY: &str = "dataset = 'shapes'\nimage_size = 8\nhead_count = 6\nimbalance = 3.0\n\
    model = 'tiny'\nbatch = 4\nsteps = 3\nwarmup = 2\nobjective = 'imba'\nseed = 5\n";

fn options(per_label: u32) -> GridOptions {
    GridOptions {
        per_label,
        seed: 3,
        guidance: 1.5,
        steps: 3,
    }
}

/// A live run's steps are the trainer's own, bit for bit, and stop at the configured total.
#[test]
fn live_steps_are_the_trainers_steps() {
    let config = config_from_toml(TINY).unwrap();
    let mut live = LiveRun::new(gpu(), config.clone()).unwrap();
    let got = pollster::block_on(live.steps(10)).unwrap();
    assert_eq!(got.len(), 3, "the run stops at its configured 3 steps");
    assert!(pollster::block_on(live.steps(1)).unwrap().is_empty());
    let (data, _) = setup::load_data(&config).unwrap();
    let model = setup::model_config(&config, &data).unwrap();
    let mut t = Trainer::new(gpu(), config, model, data, None).unwrap();
    for s in &got {
        let want = t.step().unwrap();
        assert_eq!(s.loss.to_bits(), want.loss.to_bits(), "step {}", s.step);
        assert_eq!(s.grad_norm.to_bits(), want.grad_norm.to_bits());
    }
    let state = t.state().unwrap();
    let live_state = live.trainer.state().unwrap();
    assert_eq!(state.params, live_state.params);
    assert_eq!(live.history.len(), 3);
}

/// D is credited to every label a batch carried, as the D monitor does: the mean of the
/// tokens' D, and nothing for labels no batch drew.
#[test]
fn d_by_label_averages_the_credited_tokens() {
    let mut live = LiveRun::new(gpu(), config_from_toml(TINY).unwrap()).unwrap();
    let before = live.d_by_label();
    assert!(before.iter().all(|l| l.mean_d.is_none()));
    pollster::block_on(live.steps(1)).unwrap();
    let t = &live.trainer;
    let (last, data) = (&t.last, &t.data);
    let tokens = last.d.len() / last.batch.len();
    let mut sums = vec![(0.0f64, 0usize); data.num_labels() as usize];
    for (b, &i) in last.batch.iter().enumerate() {
        let label = data.labels_of(i)[0] as usize;
        for &d in &last.d[b * tokens..(b + 1) * tokens] {
            sums[label].0 += d as f64;
            sums[label].1 += 1;
        }
    }
    let counts = data.label_counts();
    for (l, got) in live.d_by_label().iter().enumerate() {
        assert_eq!(got.count, counts[l]);
        assert_eq!(got.name, data.label_names[l]);
        match got.mean_d {
            Some(m) => {
                approx::assert_relative_eq!(m, sums[l].0 / sums[l].1 as f64, max_relative = 1e-9)
            }
            None => assert_eq!(sums[l].1, 0, "label {l} was drawn but has no D"),
        }
    }
}

/// A checkpoint from memory samples the grid `imba sample` would draw from its file: every
/// label `per_label` times, from the EMA weights.
#[test]
fn checkpoint_grid_matches_the_sampler() {
    let mut live = LiveRun::new(gpu(), config_from_toml(TINY).unwrap()).unwrap();
    pollster::block_on(live.steps(3)).unwrap();
    let dir = std::env::temp_dir().join(format!("imba-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let t = &live.trainer;
    t.save(&path, &t.state().unwrap()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let checkpoint = Checkpoint::from_bytes("checkpoint.safetensors", &bytes).unwrap();
    let grid = pollster::block_on(checkpoint.sample(gpu(), options(2))).unwrap();
    let from_run = pollster::block_on(live.sample(options(2))).unwrap();
    assert_eq!(grid.labels, from_run.labels);
    assert_eq!(grid.cols, 2);
    let labels = t.data.num_labels() as usize;
    assert_eq!(grid.labels.len(), 2 * labels);
    assert_eq!(grid.images.len(), 2 * labels * t.model.image_len());
    let same = grid
        .images
        .iter()
        .zip(&from_run.images)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "the checkpoint's EMA weights are the run's");
    // The run's exported model names its process and labels: the same grid from it alone.
    let model = dir.join("model.safetensors");
    t.export(&model, &t.state().unwrap()).unwrap();
    let exported = Checkpoint::from_bytes("model.safetensors", &std::fs::read(&model).unwrap());
    let exported = exported.unwrap();
    assert!(exported.config.is_none());
    assert_eq!(exported.exported.label_names, t.data.label_names);
    assert_eq!(exported.exported.process, t.config.process);
    assert_eq!(exported.exported.step, Some(3));
    let again = pollster::block_on(exported.sample(gpu(), options(2))).unwrap();
    assert_eq!(again.images.len(), grid.images.len());
    let same = (grid.images.iter().zip(&again.images)).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "the export samples as its checkpoint");
    std::fs::remove_dir_all(&dir).ok();
}

/// Bytes that are not a checkpoint, a truncated one, and a grid too large are refused by
/// name.
#[test]
fn bad_checkpoints_and_grids_are_refused() {
    assert_error_mentions(
        Checkpoint::from_bytes("notes.txt", b"hello").map(|_| ()),
        "not a valid safetensors file",
    );
    let bytes = std::fs::read(common::repo_root().join("web/test/tiny.safetensors")).unwrap();
    assert_error_mentions(
        Checkpoint::from_bytes("cut.safetensors", &bytes[..bytes.len() / 2]).map(|_| ()),
        "cut.safetensors",
    );
    let checkpoint = Checkpoint::from_bytes("tiny.safetensors", &bytes).unwrap();
    let dir = std::env::temp_dir().join(format!("imba-live-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.safetensors");
    // Weights without the process and labels (an older export, or PyTorch's state dict).
    let e = &checkpoint.exported;
    imba::model::checkpoint::save(&model, &e.model, &e.weights).unwrap();
    assert_error_mentions(
        Checkpoint::from_bytes("model.safetensors", &std::fs::read(&model).unwrap()).map(|_| ()),
        "sample from the run's checkpoint.safetensors instead",
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_error_mentions(
        pollster::block_on(checkpoint.sample(gpu(), options(u32::MAX))),
        "samples per label × labels",
    );
    assert_error_mentions(
        pollster::block_on(checkpoint.sample(gpu(), options(0))),
        "0 samples per label",
    );
    assert_error_mentions(config_from_toml("steps = 'many'").map(|_| ()), "steps");
}

/// A file whose metadata names a model far larger than its tensors (the bounds allow depth
/// 1,024 and width 16,384: terabytes of parameters) is refused by name, before anything of
/// that size is allocated.
#[test]
fn a_file_claiming_a_huge_model_is_refused_before_allocating() {
    let model = "height = 8\nwidth = 8\nchannels = 3\npatch = 2\ndim = 16384\ndepth = 1024\n\
                 heads = 128\nmlp_ratio = 4\nnum_labels = 2\nlabel_slots = 1\n";
    let meta = std::collections::BTreeMap::from([
        ("imba.model".to_string(), model.to_string()),
        ("imba.process".to_string(), "flow".to_string()),
        ("imba.label_names".to_string(), r#"["a","b"]"#.to_string()),
    ]);
    let one = [0.5f32];
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![1],
        bytemuck::cast_slice(&one),
    )
    .unwrap();
    // Sealed as imba seals its files: the seal is a check against damage, not a signature.
    let path = std::path::Path::new("huge.safetensors");
    let views = vec![("x_embedder.proj.weight".to_string(), view)];
    let bytes = imba::model::checksum::serialize(path, views, meta).unwrap();
    assert_error_mentions(
        Checkpoint::from_bytes("huge.safetensors", &bytes).map(|_| ()),
        "x_embedder.proj.weight` has shape [1]",
    );
}
