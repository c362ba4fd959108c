//! The trainer: determinism, bit-exact resume, learning on toy2d, and refusal of bad input.

use crate::common;

use common::{assert_error_mentions, gpu};
use imba::diffusion::generate::{generate, SampleSpec};
use imba::diffusion::Sampler;
use imba::train::{setup, state, Process, State, TrainOptions, Trainer};

/// A tiny shapes run: 8×8 images, the tiny DiT, batch 4; `extra` (TOML) overrides.
fn tiny(objective: &str, extra: &str) -> TrainOptions {
    TrainOptions::from_toml(extra)
        .unwrap()
        .or(TrainOptions::from_toml(&format!(
            "dataset = 'shapes'\nimage_size = 8\nhead_count = 6\nimbalance = 3.0\nmodel = 'tiny'\n\
         batch = 4\nsteps = 4\nwarmup = 2\nobjective = '{objective}'\nseed = 5\n\
         process = 'ddpm'\n"
        ))
        .unwrap())
}

fn trainer(opts: TrainOptions, state: Option<State>) -> Trainer<'static> {
    let config = opts.resolve().unwrap();
    let (data, _) = setup::load_data(&config).unwrap();
    let model = setup::model_config(&config, &data).unwrap();
    Trainer::new(gpu(), config, model, data, state).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// An unfinished run is scored at its latest checkpoint, and the evaluation says which step
/// of how many it scored.
#[test]
fn evaluation_of_an_unfinished_run_names_its_step() {
    use imba::eval::{evaluate_run, EvalOptions, Trained};
    let mut t = trainer(tiny("baseline", ""), None);
    for _ in 0..2 {
        t.step().unwrap();
    }
    let dir = tempdir("unfinished");
    let run = imba::train::RunDir::new(&dir);
    t.save(&run.checkpoint(), &t.state().unwrap()).unwrap();
    let o = EvalOptions {
        per_label: 1,
        steps: 2,
        ..EvalOptions::default()
    };
    let e = evaluate_run(gpu(), &dir, &o).unwrap().evaluation;
    let trained = e.trained.expect("the scored step is recorded");
    assert_eq!(
        trained,
        Trained {
            step: 2,
            of_steps: 4
        }
    );
    assert!(
        trained.describe().contains("unfinished"),
        "{}",
        trained.describe()
    );
    let finished = Trained {
        step: 4,
        of_steps: 4,
    }
    .describe();
    assert_eq!(finished, "step 4 of 4");
}

/// Two runs with one seed give the same loss bits; 4 steps equal 2 steps, a checkpoint
/// written and read back, and 2 more (parameters, EMA, both moments and the losses).
#[test]
fn same_seed_same_bits_and_resume_is_exact() {
    for (objective, extra) in [
        ("imba", "normalize = 'none'"),
        ("baseline", "process = 'flow'\nlabel_dropout = 0.5"),
        ("imba", "concepts = true\ngranularity = 'sample'"),
        ("cbdm", "cbdm_uncond = 0.5"),
        ("cbdm", "concepts = true\ncbdm_prior = 'uniform'"),
        ("ccua", "process = 'flow'"),
        (
            "imba",
            "normalize = 't-bucket'\ntime_buckets = 3\ntime_decay = 0.5",
        ),
        (
            "imba",
            "normalize = 't-bucket'\nprocess = 'flow'\ngranularity = 'sample'",
        ),
        (
            "reweighted",
            "weight_rule = 'class-mean-d'\ntime_buckets = 3",
        ),
        (
            "reweighted",
            "weight_rule = 'shuffled-d'\ntime_buckets = 2\nprocess = 'flow'",
        ),
        ("reweighted", "weight_rule = 'inverse-frequency'"),
        (
            "reweighted",
            "weight_rule = 'time-mean-d'\ntime_buckets = 4",
        ),
        ("reweighted", "weight_rule = 'mean-d'\nprocess = 'flow'"),
    ] {
        let run = |steps: u32| {
            let mut t = trainer(tiny(objective, extra), None);
            let losses: Vec<f32> = (0..steps).map(|_| t.step().unwrap().loss).collect();
            (losses, t.state().unwrap(), t)
        };
        let (a, sa, _) = run(4);
        let (b, sb, _) = run(4);
        assert_eq!(
            bits(&a),
            bits(&b),
            "{objective} {extra}: losses differ between runs"
        );
        assert_eq!(bits(&sa.params), bits(&sb.params));
        assert!(a.iter().all(|l| l.is_finite() && *l > 0.0), "{a:?}");

        let (first, _, t) = run(2);
        let dir = tempdir("resume");
        let path = dir.join("checkpoint.safetensors");
        t.save(&path, &t.state().unwrap()).unwrap();
        let saved = state::load(&path).unwrap();
        assert_eq!(saved.state.step, 2);
        assert_eq!(saved.fingerprint, t.data.fingerprint());
        assert_eq!(saved.config, t.config);
        assert_eq!(saved.model, t.model);
        // IMBA's default normalisation is t-bucket: every IMBA case but the published one.
        // The reweighted rules that learn from D carry their running means (on the host).
        let carries = (objective == "imba" && !extra.contains("normalize = 'none'"))
            || (objective == "reweighted" && !extra.contains("inverse-frequency"));
        assert_eq!(!saved.state.objective.is_empty(), carries, "{extra}");
        if carries {
            // The running means moved off their zero start and are part of the resume.
            assert!(saved.state.objective.iter().any(|&x| x > 0.0));
            let mut wrong = state::load(&path).unwrap().state;
            wrong.objective.pop();
            let config = tiny(objective, extra).resolve().unwrap();
            let (data, _) = setup::load_data(&config).unwrap();
            let model = setup::model_config(&config, &data).unwrap();
            let refused = Trainer::new(gpu(), config, model, data, Some(wrong));
            assert_error_mentions(refused.map(|_| ()), "objective state");
        }
        let mut r = trainer(tiny(objective, extra), Some(saved.state));
        let rest: Vec<f32> = (0..2).map(|_| r.step().unwrap().loss).collect();
        let sr = r.state().unwrap();
        assert_eq!(bits(&first), bits(&a[..2]));
        assert_eq!(
            bits(&rest),
            bits(&a[2..]),
            "{objective} {extra}: resumed losses differ"
        );
        assert_eq!(sr.step, 4);
        for (name, x, y) in [
            ("params", &sr.params, &sa.params),
            ("ema", &sr.ema, &sa.ema),
            ("m", &sr.m, &sa.m),
            ("v", &sr.v, &sa.v),
            ("objective state", &sr.objective, &sa.objective),
        ] {
            assert_eq!(
                bits(x),
                bits(y),
                "{objective} {extra}: {name} differs after resume"
            );
        }
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("imba-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A short IMBA run on balanced toy2d lowers the loss, and guided DDIM samples of each class
/// land nearest their own class mean, within 3σ of it.
#[test]
fn toy2d_learns_the_class_means() {
    let opts = TrainOptions::from_toml(
        "dataset = 'toy2d'\nclasses = 4\nhead_count = 128\nimbalance = 1.0\ndepth = 2\ndim = 32\n\
         heads = 2\nbatch = 64\nsteps = 400\nwarmup = 20\nlr = 3e-3\nema = 0.95\nseed = 1\n\
         process = 'ddpm'",
    )
    .unwrap();
    let mut t = trainer(opts, None);
    let losses: Vec<f32> = (0..400).map(|_| t.step().unwrap().loss).collect();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (early, late) = (mean(&losses[..40]), mean(&losses[360..]));
    assert!(
        late < 0.6 * early,
        "loss did not fall enough: {early} → {late}"
    );

    let st = t.state().unwrap();
    let per = 32usize;
    let labels: Vec<u32> = (0..4u32)
        .flat_map(|c| std::iter::repeat_n(c, per))
        .collect();
    let x = generate(
        gpu(),
        &SampleSpec {
            model: &t.model,
            params: &st.ema,
            process: Process::Ddpm,
            sampler: Sampler::Ddim {
                steps: 25,
                eta: 0.0,
            },
            guidance: 2.0,
            seed: 3,
            batch: 64,
            delta: None,
        },
        &labels,
    )
    .unwrap();
    let spec = imba::data::Toy2dSpec::default();
    let means = imba::data::toy2d_means(4, spec.radius);
    let mut hits = 0;
    for (j, &c) in labels.iter().enumerate() {
        let p = [x[2 * j] as f64, x[2 * j + 1] as f64];
        let d: Vec<f64> = means
            .iter()
            .map(|m| ((p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)).sqrt())
            .collect();
        let nearest = (0..4).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
        if nearest == c as usize && d[c as usize] < 3.0 * spec.sigma {
            hits += 1;
        }
    }
    let rate = hits as f64 / labels.len() as f64;
    assert!(
        rate >= 0.8,
        "only {hits} of {} samples hit their class",
        labels.len()
    );
}

#[test]
fn bad_configs_are_refused_by_name() {
    assert_error_mentions(TrainOptions::from_toml("stepz = 3"), "stepz");
    assert_error_mentions(TrainOptions::from_toml("steps = 'many'"), "steps");
    for (toml, key) in [
        ("lr = -1.0", "lr"),
        ("batch = 0", "batch"),
        ("lambda = 1.5", "lambda"),
        ("gamma = -0.5", "gamma"),
        ("imbalance = 0.5", "imbalance"),
        ("ema = 1.0", "ema"),
        ("label_dropout = 2.0", "label_dropout"),
        ("dataset = 'folder'", "data_path"),
        ("cbdm_tau = -1.0", "cbdm_tau"),
        ("cbdm_uncond = 1.5", "cbdm_uncond"),
        ("ccua_alpha = nan", "ccua_alpha"),
        ("ccua_tau = 0.0", "ccua_tau"),
        ("objective = 'ccua'\nbatch = 1", "batch"),
        ("time_buckets = 0", "time_buckets"),
        ("time_buckets = 65", "time_buckets"),
        ("time_decay = 1.0", "time_decay"),
        // An explicit 0 or an empty folder would silently mean the default.
        ("imbalance = 0.0", "`imbalance` is 0"),
        ("head_count = 0", "`head_count` is 0"),
        ("out = ''", "`out` is empty"),
    ] {
        assert_error_mentions(TrainOptions::from_toml(toml).unwrap().resolve(), key);
    }
    // A ratio the head count cannot reach is refused with the largest it reaches, not
    // clamped to one image per tail label.
    for toml in ["imbalance = 1e38", "head_count = 6\nimbalance = 13.0"] {
        let opts = TrainOptions::from_toml(toml).unwrap().resolve().unwrap();
        assert_error_mentions(setup::load_data(&opts).map(|_| ()), "largest ratio");
    }
    // Options the data set or objective does not read are named.
    let opts = TrainOptions::from_toml(
        "objective = 'baseline'\ngamma = 0.3\nclasses = 5\njitter = true\nlabel_dropout = 0.2",
    )
    .unwrap();
    let config = opts.clone().resolve().unwrap();
    assert_eq!(config.unread(&opts), ["classes", "gamma"]);
    let opts = TrainOptions::from_toml("dataset = 'digits'\njitter = true\nlr = 1e-3").unwrap();
    assert_eq!(opts.clone().resolve().unwrap().unread(&opts), ["jitter"]);
    let reachable = TrainOptions::from_toml("head_count = 6\nimbalance = 6.0").unwrap();
    let (data, split) = setup::load_data(&reachable.resolve().unwrap()).unwrap();
    assert_eq!(split.counts.iter().min(), Some(&1), "{:?}", split.counts);
    assert!(!data.is_empty());
    let opts = TrainOptions::from_toml("model = 'Q/3'")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, _) = setup::load_data(&opts).unwrap();
    assert_error_mentions(setup::model_config(&opts, &data), "unknown model");
}

fn try_trainer(opts: TrainOptions) -> imba::Result<()> {
    let config = opts.resolve()?;
    let (data, _) = setup::load_data(&config)?;
    let model = setup::model_config(&config, &data)?;
    Trainer::new(gpu(), config, model, data, None).map(|_| ())
}

#[test]
fn batch_and_model_sizes_are_checked() {
    // 6 + 5 + … images after the split; a batch of 1000 cannot be drawn.
    assert_error_mentions(
        try_trainer(tiny("imba", "batch = 1000")),
        "larger than the data set",
    );
    // DiT-XL/2 has 675M parameters: over lavapipe's (and most GPUs') storage binding.
    let r = try_trainer(tiny("imba", "image_size = 16\nmodel = 'XL/2'\nbatch = 2"));
    assert!(r.is_err(), "an XL model fit a storage binding");
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("over this device") || msg.contains("storage"),
        "{msg}"
    );
}

#[test]
fn bad_checkpoints_are_refused() {
    let dir = tempdir("badckpt");
    assert_error_mentions(state::load(&dir.join("none.safetensors")), "cannot read");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    assert_error_mentions(state::load(&junk), "not a valid safetensors");
    let mut t = trainer(tiny("imba", ""), None);
    t.step().unwrap();
    let good = dir.join("good.safetensors");
    t.save(&good, &t.state().unwrap()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert_error_mentions(state::load(&cut), "truncated");
    // A model-only export is not a training state.
    let model_only = dir.join("model.safetensors");
    imba::model::checkpoint::save(&model_only, &t.model, &t.state().unwrap().params).unwrap();
    assert_error_mentions(state::load(&model_only), "not an imba training checkpoint");
}

#[test]
fn bad_data_is_refused() {
    let dir = tempdir("folder");
    assert_error_mentions(
        imba::data::load_folder(&dir.join("missing"), 3, None),
        "cannot read",
    );
    assert_error_mentions(imba::data::load_folder(&dir, 3, None), "no sub-folders");
    std::fs::create_dir_all(dir.join("cat")).unwrap();
    assert_error_mentions(imba::data::load_folder(&dir, 3, None), "holds no PNG");
    image::RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]))
        .save(dir.join("cat/a.png"))
        .unwrap();
    image::RgbImage::from_pixel(6, 5, image::Rgb([0, 255, 0]))
        .save(dir.join("cat/b.png"))
        .unwrap();
    assert_error_mentions(imba::data::load_folder(&dir, 3, None), "mixed sizes");
    // A tool's hidden folder (Jupyter's checkpoints) is no label, a hidden file no image.
    std::fs::create_dir_all(dir.join(".ipynb_checkpoints")).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]))
        .save(dir.join(".ipynb_checkpoints/x.png"))
        .unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
        .save(dir.join("cat/._a.png"))
        .unwrap();
    // Resized, they load: 2 images of 8×8, red then green.
    let d = imba::data::load_folder(&dir, 3, Some(8)).unwrap();
    assert_eq!((d.len(), d.height, d.width, d.num_labels()), (2, 8, 8, 1));
    assert_eq!(&d.image(0)[..2], &[1.0, 1.0]);
    assert_eq!(d.image(1)[64], 1.0);
    std::fs::write(dir.join("cat/c.png"), b"garbage").unwrap();
    assert_error_mentions(imba::data::load_folder(&dir, 3, Some(8)), "cannot decode");

    let row = |px: &str, label: &str| format!("{}{px},{label}\n", "0,".repeat(63));
    assert_error_mentions(
        imba::data::load_digits(row("0", "12").as_bytes()),
        "label 12",
    );
    assert_error_mentions(
        imba::data::load_digits(row("nan", "1").as_bytes()),
        "non-finite",
    );
    assert_error_mentions(
        imba::data::load_digits(row("17", "1").as_bytes()),
        "pixel `17` is outside 0..16",
    );
    assert_error_mentions(
        imba::data::load_digits(row("-1", "1").as_bytes()),
        "pixel `-1` is outside 0..16",
    );
    assert_error_mentions(imba::data::load_digits(b"1,2,3\n"), "64 pixels");
}

#[test]
fn splits_follow_their_profiles() {
    use imba::data::{profile_counts, Profile};
    assert_eq!(
        profile_counts(Profile::Exponential, 100, 3, 100.0).unwrap(),
        vec![100, 10, 1]
    );
    assert_eq!(
        profile_counts(Profile::Step, 50, 4, 10.0).unwrap(),
        vec![50, 50, 5, 5]
    );
    let z = profile_counts(Profile::Zipf, 1000, 10, 100.0).unwrap();
    assert_eq!((z[0], z[9]), (1000, 10));
    // Real digits cut to an exponential tail of ratio 10 keep 100 … 10 per class, none of
    // them from the balanced held-out set of 60 per class.
    let opts = TrainOptions::from_toml("dataset = 'digits'")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, split) = setup::load_data(&opts).unwrap();
    assert_eq!(split.counts[0], 100);
    assert_eq!(split.counts[9], 10);
    assert_eq!(data.len(), split.counts.iter().sum::<usize>());
    let kept = split.kept.as_ref().unwrap();
    assert_eq!(kept.len(), data.len());
    let full = setup::digits_source(&opts).unwrap();
    let held = setup::digits_held_out(&opts).unwrap();
    assert_eq!(held.label_counts(), vec![setup::DIGITS_HELD_OUT; 10]);
    for (j, &k) in kept.iter().enumerate() {
        assert_eq!(
            full.image(k),
            data.image(j),
            "kept index {k} is not image {j}"
        );
        assert!(
            (0..held.len()).all(|h| held.image(h) != full.image(k)),
            "training image {k} is also held out"
        );
    }
    // The concepts of `shapes` follow the profile: head concepts are the commonest.
    let opts = TrainOptions::from_toml("concepts = true\nimbalance = 20.0")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, split) = setup::load_data(&opts).unwrap();
    assert_eq!(data.slots, 4);
    let c = &split.counts;
    assert!(c[0] > 5 * c[3] && c[4] > 5 * c[7], "{c:?}");
    // Inert pairs never occur in their slot, but each of their concepts does.
    use imba::data::{is_inert, CONCEPTS_PER_SLOT as K};
    let mut inert_seen = 0;
    for i in 0..data.len() {
        let l = data.labels_of(i);
        for slot in 0..2 {
            let (s, col) = (l[2 * slot] % K, l[2 * slot + 1] % K - 4);
            inert_seen += is_inert(slot, s as usize, col as usize) as u32;
        }
    }
    assert_eq!(inert_seen, 0);
    assert!(c.iter().all(|&n| n > 0), "{c:?}");
}

/// Errors keep the lower-level error they come from: a missing checkpoint carries the
/// `std::io::Error` (NotFound), a malformed one the safetensors error; both name the file.
#[test]
fn errors_carry_their_sources() {
    use std::error::Error as _;
    let dir = std::env::temp_dir().join(format!("imba-err-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = imba::train::RunDir::new(dir.join("no-such-run"));
    let e = run.load().err().expect("no checkpoint there");
    assert!(e.to_string().contains("no-such-run"), "{e}");
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(|x| x.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{e:?}"
    );

    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let e = imba::train::state::load(&bad).err().expect("malformed");
    let st = e
        .source()
        .and_then(|s| s.downcast_ref::<safetensors::SafeTensorError>());
    assert!(st.is_some(), "{e:?}");

    let e = imba::files::write_file(&dir.join("missing-folder").join("x.json"), "{}").unwrap_err();
    assert!(
        e.source().is_some_and(|s| s.is::<std::io::Error>()),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kernel launches reuse their bind groups and uniform buffers, and what changes every step
/// (the Philox step, AdamW's learning rate and bias corrections, the EMA's decay) comes from
/// one per-step buffer written once per step: after the first steps, a training step creates
/// no launch objects, for every objective.
#[test]
fn a_steady_training_step_creates_no_launch_objects() {
    use imba::kernels::launch_objects_created;
    for objective in [
        "baseline",
        "imba",
        "dual-baseline",
        "cbdm",
        "ccua",
        "reweighted",
    ] {
        let mut t = trainer(tiny(objective, "steps = 8"), None);
        for _ in 0..3 {
            t.step().unwrap();
        }
        let per_step: Vec<u64> = (0..3)
            .map(|_| {
                let before = launch_objects_created();
                t.step().unwrap();
                launch_objects_created() - before
            })
            .collect();
        assert_eq!(per_step, [0, 0, 0], "{objective}: launch objects per step");
    }
}

/// The default run, and every objective, on a device opened with WebGPU's default limits (8
/// storage buffers per stage, 16 KiB of workgroup memory, 256 invocations per workgroup, 128
/// MiB per binding): what any browser grants. Two steps each, with the same losses as on the
/// adapter's full limits (the paths may stage fewer rows, so within f32 rounding).
#[test]
fn every_objective_trains_within_webgpu_default_limits() {
    use imba::gpu::{Gpu, GpuOptions, LimitsChoice};
    let webgpu: &'static Gpu = Box::leak(Box::new(
        Gpu::open(&GpuOptions {
            limits: LimitsChoice::WebGpu,
            ..GpuOptions::from_env().unwrap()
        })
        .unwrap(),
    ));
    let l = webgpu.device.limits();
    assert!(l.max_storage_buffers_per_shader_stage <= 8, "{l:?}");
    assert!(l.max_compute_workgroup_storage_size <= 16384, "{l:?}");
    assert!(l.max_compute_invocations_per_workgroup <= 256, "{l:?}");
    for objective in ["imba", "baseline", "dual-baseline", "cbdm", "ccua"] {
        let opts =
            || TrainOptions::from_toml(&format!("objective = '{objective}'\nsteps = 2")).unwrap();
        let losses = |g: &'static Gpu| {
            let config = opts().resolve().unwrap();
            let (data, _) = setup::load_data(&config).unwrap();
            let model = setup::model_config(&config, &data).unwrap();
            let mut t = Trainer::new(g, config, model, data, None).unwrap();
            (0..2).map(|_| t.step().unwrap().loss).collect::<Vec<f32>>()
        };
        let (small, full) = (losses(webgpu), losses(gpu()));
        for (a, b) in small.iter().zip(&full) {
            assert!(
                a.is_finite() && (a - b).abs() <= 1e-5 * b.abs(),
                "{objective}: {small:?} within WebGPU's limits, {full:?} with the adapter's"
            );
        }
    }
}
