//! The evaluation suite on inputs whose answer is known: the shapes detector on renders, noise
//! and blanks; every metric on perfect, wrong and collapsed "samples"; the statistics; the D
//! monitor's attribution.

use crate::common;
use imba::data::{is_inert, render_shapes, shapes, Dataset, ShapesSpec, COLOURS, SHAPES};
use imba::eval::detector::{Detector, Object, Unreadable};
use imba::eval::{self, Evaluation};
use imba::stats;
use imba::train::{monitor, setup, TrainOptions};

fn uniform_image(seed: u32, n: usize) -> Vec<f32> {
    (0..n as u32)
        .map(|i| 2.0 * imba::data::uniform(seed, 99, 0, i) as f32 - 1.0)
        .collect()
}

fn metric(e: &Evaluation, name: &str) -> f64 {
    e.metric(name)
        .unwrap_or_else(|| panic!("no metric {name} in {:?}", e.metrics))
}

/// 64 class-mode and 1,024 concepts-mode renders at several sizes, each read back exactly.
#[test]
fn detector_reads_every_render_exactly() {
    let mut renders = 0;
    for size in [12, 16, 20, 32] {
        let det = Detector::new(size, 1);
        for s in 0..SHAPES.len() {
            for c in 0..COLOURS.len() {
                let img = render_shapes(size, &[(s, c)]);
                let want = Object {
                    shape: s,
                    colour: c,
                };
                assert_eq!(det.read(&img), vec![Ok(want)], "size {size} {s}/{c}");
                renders += 1;
            }
        }
    }
    for size in [16, 20, 24, 32] {
        let det = Detector::new(size, 2);
        for a in 0..16 {
            for b in 0..16 {
                let objects = [(a / 4, a % 4), (b / 4, b % 4)];
                let want: Vec<_> = objects
                    .iter()
                    .map(|&(shape, colour)| Ok(Object { shape, colour }))
                    .collect();
                assert_eq!(det.read(&render_shapes(size, &objects)), want);
                renders += 1;
            }
        }
    }
    assert!(renders >= 1000);
}

/// Uniform and Gaussian noise, blank black, white and grey images are never read as objects,
/// by the fixed-render detector or the jittered one.
#[test]
fn detector_rejects_noise_and_blanks() {
    let detectors = [(16u32, 1u32), (16, 2), (32, 2)]
        .map(|(size, slots)| (size, slots, Detector::new(size, slots)))
        .into_iter()
        .chain(
            [(8, 1), (16, 1), (16, 2)]
                .map(|(size, slots)| (size, slots, Detector::jittered(size, slots))),
        );
    for (size, slots, det) in detectors {
        let n = (3 * size * size) as usize;
        let mut images: Vec<Vec<f32>> = (0..300).map(|k| uniform_image(k, n)).collect();
        for k in 0..300u32 {
            images.push(
                (0..n as u32)
                    .map(|i| imba::rng::normals4(i / 4, 9, k, 1)[(i % 4) as usize])
                    .collect(),
            );
        }
        for v in [-1.0f32, 0.0, 1.0] {
            images.push(vec![v; n]);
        }
        for (k, img) in images.iter().enumerate() {
            for r in det.read(img) {
                assert!(
                    r.is_err(),
                    "size {size} slots {slots} image {k} read as {r:?}"
                );
            }
        }
        assert_eq!(det.read(&vec![-1.0; n])[0], Err(Unreadable::Blank));
    }
}

/// Small deviations within the tolerance are still read; a square with its corners cut is a
/// circle, not an ambiguous square.
#[test]
fn detector_tolerance_is_the_unambiguous_radius() {
    let det = Detector::new(16, 1);
    let mut img = render_shapes(16, &[(0, 2)]);
    // Flip four background pixels far from the square to object pixels of the same colour.
    for (x, y) in [(0usize, 0usize), (15, 0), (0, 15), (15, 15)] {
        for (c, v) in COLOURS[2].1.iter().enumerate() {
            img[c * 256 + y * 16 + x] = *v;
        }
    }
    assert_eq!(
        det.read(&img)[0],
        Ok(Object {
            shape: 0,
            colour: 2
        })
    );
    // A colour slightly off (a darker blue) is still blue.
    let dim: Vec<f32> = render_shapes(16, &[(1, 2)])
        .iter()
        .map(|&v| if v > 0.0 { 0.6 } else { v })
        .collect();
    assert_eq!(
        det.read(&dim)[0],
        Ok(Object {
            shape: 1,
            colour: 2
        })
    );
}

/// Every image of jittered sets (classes and concepts mode, two sizes each) is read back as
/// its labels say; at 16 px a class set holds 1,285 different draws.
#[test]
fn jittered_detector_reads_every_jittered_image_exactly() {
    let mut read = 0;
    for (size, concepts) in [
        (8u32, false),
        (16, false),
        (20, false),
        (16, true),
        (24, true),
    ] {
        let data = shapes(&ShapesSpec {
            size,
            concepts,
            jitter: true,
            permute: true,
            head_count: if concepts { 60 } else { 200 },
            imbalance: 10.0,
            ..Default::default()
        })
        .unwrap();
        let det = Detector::jittered(size, if concepts { 2 } else { 1 });
        for i in 0..data.len() {
            let l = data.labels_of(i);
            let want: Vec<_> = if concepts {
                (0..2)
                    .map(|j| {
                        Ok(Object {
                            shape: (l[2 * j] % 8) as usize,
                            colour: (l[2 * j + 1] % 8 - 4) as usize,
                        })
                    })
                    .collect()
            } else {
                let c = l[0] as usize;
                vec![Ok(Object {
                    shape: c / 4,
                    colour: c % 4,
                })]
            };
            assert_eq!(det.read(data.image(i)), want, "size {size} image {i}");
            read += 1;
        }
    }
    assert!(read > 2000);
}

/// Placement coverage (jittered shapes): the training images as samples reproduce every
/// training placement; one image per class repeated reproduces only its own placement's
/// share; samples of the wrong class cover nothing; a fixed-render set has no such metric.
#[test]
fn placement_coverage_counts_training_placements_the_samples_reproduce() {
    let data = shapes(&ShapesSpec {
        jitter: true,
        permute: true,
        head_count: 200,
        imbalance: 10.0,
        ..Default::default()
    })
    .unwrap();
    let det = Detector::jittered(data.height, 1);
    let own: Vec<u32> = (0..data.len()).map(|i| data.labels_of(i)[0]).collect();
    let all = eval::shapes_classes(&data, &det, &own, &data.images);
    let mut first = vec![None; 16];
    for (i, &l) in own.iter().enumerate() {
        first[l as usize].get_or_insert(i);
    }
    let (mut labels, mut repeated) = (Vec::new(), Vec::new());
    for (l, i) in first.iter().enumerate() {
        for _ in 0..8 {
            labels.push(l as u32);
            repeated.extend_from_slice(data.image(i.unwrap()));
        }
    }
    let one = eval::shapes_classes(&data, &det, &labels, &repeated);
    let next: Vec<u32> = own.iter().map(|l| (l + 1) % 16).collect();
    let wrong = eval::shapes_classes(&data, &det, &next, &data.images);
    for b in ["head", "mid", "tail"] {
        let c = format!("coverage/{b}");
        assert_eq!(metric(&all, &c), 1.0, "{:?}", all.metrics);
        let share = metric(&one, &c);
        assert!(
            share > 0.0 && share < 0.5,
            "{c} = {share}: placements should vary"
        );
        assert_eq!(metric(&wrong, &c), 0.0);
    }
    let fixed = shapes_data(false);
    let labels = imba::data::class_labels(&fixed, 2);
    let e = eval::shapes_classes(&fixed, &Detector::new(16, 1), &labels, &fixed.images[..0]);
    assert!(e
        .metrics
        .iter()
        .all(|(name, _)| !name.starts_with("coverage")));
}

/// Jittered sets really vary: a class's images differ, positions and sizes spread; the
/// permutation moves the head away from class 0 and keeps the counts of the profile.
#[test]
fn jittered_sets_are_distributions_and_permuted() {
    let spec = ShapesSpec {
        jitter: true,
        permute: true,
        head_count: 200,
        imbalance: 10.0,
        ..Default::default()
    };
    let data = shapes(&spec).unwrap();
    let plain = shapes(&ShapesSpec {
        jitter: false,
        permute: false,
        ..spec.clone()
    })
    .unwrap();
    let mut counts = data.label_counts();
    let mut plain_counts = plain.label_counts();
    assert_ne!(counts, plain_counts, "the permutation changed nothing");
    counts.sort();
    plain_counts.sort();
    assert_eq!(
        counts, plain_counts,
        "the permutation must keep the profile"
    );
    let first: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels_of(i)[0] == 0)
        .collect();
    let distinct: std::collections::HashSet<Vec<u32>> = first
        .iter()
        .map(|&i| data.image(i).iter().map(|v| v.to_bits()).collect())
        .collect();
    assert_eq!(
        distinct.len(),
        first.len(),
        "every image of a class is its own draw"
    );
    // Another data seed permutes differently.
    let other = shapes(&ShapesSpec { seed: 1, ..spec }).unwrap();
    assert_ne!(other.label_counts(), data.label_counts());
}

/// The jittered oracle tolerates ragged edges (a twentieth of the object's pixels flipped
/// off, half as many background pixels in their rows lit) but not an object that is two
/// shapes at once (a square with a cross's arms).
#[test]
fn jittered_detector_tolerance() {
    use imba::data::{render_jittered, Jitter};
    let det = Detector::jittered(16, 1);
    // A box size of the 16-pixel rule (10 to 14).
    let jt = Jitter {
        box_size: 13,
        x: 1,
        y: 2,
        colour: [0.1, 0.2, 0.0],
    };
    for shape in 0..4 {
        let mut img = render_jittered(16, &[((shape, 1), jt)]);
        let lit: Vec<usize> = (0..256).filter(|&p| img[256 + p] > 0.0).collect();
        let step = 20;
        for (k, &p) in lit.iter().enumerate().filter(|(k, _)| k % step == 0) {
            // Flip this object pixel off, and light the background pixel left of the
            // object's row start instead (an edge that wanders by a pixel).
            img[256 + p] = -1.0;
            let row = p / 16;
            let off = (0..16)
                .map(|x| row * 16 + x)
                .find(|&q| img[256 + q] <= 0.0 && q != p);
            if let (Some(q), true) = (off, k % (2 * step) == 0) {
                img[256 + q] = 0.9;
            }
        }
        assert_eq!(
            det.read(&img)[0],
            Ok(Object { shape, colour: 1 }),
            "shape {shape}"
        );
    }
    // The union of a square and a cross at the largest box, where the cross's arms stick out
    // by a pixel or more on every side. (At boxes of 10–13 pixels the arms add only a few
    // pixels, within the tolerance: such a union reads as the square or the circle.)
    let jt = Jitter {
        box_size: 14,
        x: 0,
        y: 0,
        ..jt
    };
    let square = render_jittered(16, &[((0, 1), jt)]);
    let cross = render_jittered(16, &[((3, 1), jt)]);
    let both: Vec<f32> = square.iter().zip(&cross).map(|(a, b)| a.max(*b)).collect();
    assert!(det.read(&both)[0].is_err(), "{:?}", det.read(&both));
}

fn shapes_data(concepts: bool) -> Dataset {
    shapes(&ShapesSpec {
        concepts,
        head_count: 40,
        imbalance: 10.0,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn shapes_metrics_on_perfect_and_wrong_samples() {
    let data = shapes_data(false);
    let labels = imba::data::class_labels(&data, 2);
    let perfect: Vec<f32> = labels
        .iter()
        .flat_map(|&l| render_shapes(16, &[(l as usize / 4, l as usize % 4)]))
        .collect();
    let e = eval::shapes_classes(&data, &Detector::new(16, 1), &labels, &perfect);
    for b in ["head", "mid", "tail", "all"] {
        assert_eq!(metric(&e, &format!("success/{b}")), 1.0);
    }
    // Every sample shows the next class: all failures.
    let wrong: Vec<f32> = labels
        .iter()
        .flat_map(|&l| {
            let w = (l as usize + 1) % 16;
            render_shapes(16, &[(w / 4, w % 4)])
        })
        .collect();
    let e = eval::shapes_classes(&data, &Detector::new(16, 1), &labels, &wrong);
    assert_eq!(metric(&e, "success/all"), 0.0);
    // The training images as samples: as precise and as covering as the real set itself;
    // every class's images given to the next class: like none of that class's images.
    let own: Vec<u32> = (0..data.len()).map(|i| data.labels_of(i)[0]).collect();
    let e = eval::shapes_classes(&data, &Detector::new(16, 1), &own, &data.images);
    let next: Vec<u32> = own.iter().map(|l| (l + 1) % 16).collect();
    let shifted = eval::shapes_classes(&data, &Detector::new(16, 1), &next, &data.images);
    for b in ["head", "mid", "tail"] {
        let (p, r) = (format!("precision/{b}"), format!("recall/{b}"));
        assert_eq!((metric(&e, &p), metric(&e, &r)), (1.0, 1.0), "{b}");
        assert_eq!(metric(&shifted, &p), 0.0, "{:?}", shifted.metrics);
    }

    let data = shapes_data(true);
    let prompts = eval::all_prompts(1);
    let render = |p: &[u32], swap: bool| {
        let o = |j: usize| ((p[2 * j] % 8) as usize, (p[2 * j + 1] % 8 - 4) as usize);
        if swap {
            render_shapes(16, &[o(1), o(0)])
        } else {
            render_shapes(16, &[o(0), o(1)])
        }
    };
    let perfect: Vec<f32> = prompts.chunks(4).flat_map(|p| render(p, false)).collect();
    let e = eval::shapes_concepts(&data, &Detector::new(16, 2), &prompts, &perfect);
    for m in [
        "concept/head",
        "concept/mid",
        "concept/tail",
        "prompt/seen",
        "prompt/inert",
    ] {
        assert_eq!(metric(&e, m), 1.0, "{m}");
    }
    // 256 prompts: 12 × 12 seen, the rest with an inert pair.
    let inert = prompts
        .chunks(4)
        .filter(|p| {
            (0..2).any(|s| is_inert(s, (p[2 * s] % 8) as usize, (p[2 * s + 1] % 8 - 4) as usize))
        })
        .count();
    assert_eq!(inert, 256 - 144);
    // Objects in the wrong slots: only prompts whose two objects are equal succeed.
    let swapped: Vec<f32> = prompts.chunks(4).flat_map(|p| render(p, true)).collect();
    let e = eval::shapes_concepts(&data, &Detector::new(16, 2), &prompts, &swapped);
    assert!((metric(&e, "prompt/all") - 16.0 / 256.0).abs() < 1e-12);
}

#[test]
fn toy2d_metrics_on_known_points() {
    let opts = TrainOptions::from_toml("dataset = 'toy2d'")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, _) = setup::load_data(&opts).unwrap();
    let means = imba::data::toy2d_means(8, 0.8);
    let labels = imba::data::class_labels(&data, 3);
    let at_means: Vec<f32> = labels
        .iter()
        .flat_map(|&l| means[l as usize].map(|v| v as f32))
        .collect();
    let e = eval::toy2d(&data, &opts, &labels, &at_means);
    assert_eq!(metric(&e, "hit/all"), 1.0);
    assert!(metric(&e, "pull/tail").abs() < 1e-6);
    // Every sample at the data's mean: no hits, a pull of exactly 1.
    let (mut mx, mut my) = (0.0f64, 0.0f64);
    for i in 0..data.len() {
        mx += data.image(i)[0] as f64 / data.len() as f64;
        my += data.image(i)[1] as f64 / data.len() as f64;
    }
    let at_mean: Vec<f32> = labels.iter().flat_map(|_| [mx as f32, my as f32]).collect();
    let e = eval::toy2d(&data, &opts, &labels, &at_mean);
    assert_eq!(metric(&e, "hit/all"), 0.0);
    assert!((metric(&e, "pull/tail") - 1.0).abs() < 1e-4);
    // Samples of class k at the mean of class k+1: nearest is wrong, no hit.
    let shifted: Vec<f32> = labels
        .iter()
        .flat_map(|&l| means[(l as usize + 1) % 8].map(|v| v as f32))
        .collect();
    assert_eq!(
        metric(&eval::toy2d(&data, &opts, &labels, &shifted), "hit/all"),
        0.0
    );
}

#[test]
fn digits_metrics_on_real_wrong_and_collapsed_samples() {
    let opts = TrainOptions::from_toml("dataset = 'digits'")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, _) = setup::load_data(&opts).unwrap();
    let held = setup::digits_held_out(&opts).unwrap();
    let (_, real_acc) = eval::digits_classifier(&held);
    assert!(
        real_acc >= 0.9,
        "classifier accuracy on real test digits {real_acc}"
    );
    // Real training digits (never seen by the classifier), 10 per class, as samples.
    let mut labels = Vec::new();
    let mut real = Vec::new();
    let mut taken = [0; 10];
    for i in 0..data.len() {
        let l = data.labels_of(i)[0];
        if taken[l as usize] < 10 {
            taken[l as usize] += 1;
            labels.push(l);
            real.extend_from_slice(data.image(i));
        }
    }
    let good = eval::digits(&data, &held, &labels, &real);
    assert!(metric(&good, "acc/all") >= 0.85, "{:?}", good.metrics);
    for b in ["head", "mid", "tail"] {
        let d = metric(&good, &format!("diversity/{b}"));
        assert!((0.75..1.25).contains(&d), "diversity/{b} = {d}");
    }
    // Wrong labels: the classifier disagrees.
    let wrong: Vec<u32> = labels.iter().map(|l| (l + 1) % 10).collect();
    let bad = eval::digits(&data, &held, &wrong, &real);
    assert!(metric(&bad, "acc/all") <= 0.15, "{:?}", bad.metrics);
    // A collapsed generator: one image per class, repeated.
    let mut collapsed = Vec::new();
    for (j, &l) in labels.iter().enumerate() {
        let first = labels.iter().position(|&m| m == l).unwrap();
        let _ = j;
        collapsed.extend_from_slice(&real[first * 64..(first + 1) * 64]);
    }
    let col = eval::digits(&data, &held, &labels, &collapsed);
    for b in ["head", "mid", "tail"] {
        assert_eq!(metric(&col, &format!("diversity/{b}")), 0.0);
        // Real digits are like real digits and cover them; one digit repeated covers none
        // of the held-out ones (its balls have radius 0) but is still like them.
        let (p, r) = (format!("precision/{b}"), format!("recall/{b}"));
        assert!(
            metric(&good, &p) >= 0.7 && metric(&good, &r) >= 0.6,
            "{:?}",
            good.metrics
        );
        assert_eq!(metric(&col, &r), 0.0);
        assert!(metric(&col, &p) >= 0.5, "{:?}", col.metrics);
    }
    assert!(
        metric(&col, "frechet") > 2.0 * metric(&good, "frechet"),
        "collapsed {} vs real {}",
        metric(&col, "frechet"),
        metric(&good, "frechet")
    );
}

/// The timestep monitor's summary on lines whose answer is known: the window, the buckets,
/// the conditional-only MSE, D's range over t and the within-t Spearman.
#[test]
fn time_monitor_summarises_by_timestep_and_frequency() {
    use imba::train::time_monitor::{summarise, TLine};
    let data = shapes_data(false);
    let freq = data.label_counts();
    let head = (0..data.len())
        .find(|&i| freq[data.labels_of(i)[0] as usize] == *freq.iter().max().unwrap())
        .unwrap();
    let tail = (0..data.len())
        .find(|&i| freq[data.labels_of(i)[0] as usize] == *freq.iter().min().unwrap())
        .unwrap();
    let line = |step, d: [f32; 2]| TLine {
        step,
        t: vec![0.05, 0.95],
        index: vec![head as u32, tail as u32],
        cond: vec![true, false],
        mse: vec![0.5, 0.1],
        d: d.to_vec(),
    };
    // Step 1 is before the window and would change every mean.
    let s = summarise(&[line(1, [100.0, 100.0]), line(2, [2.0, 0.5])], 1, &data);
    assert_eq!(s.buckets, 10);
    assert_eq!(s.mean_mse[0][0], 0.5);
    assert!(
        s.mean_mse[9][2].is_nan(),
        "a sample without its labels has no conditional MSE"
    );
    assert_eq!((s.mean_d[0][0], s.mean_d[9][2]), (2.0, 0.5));
    assert_eq!(s.d_range_over_t, 4.0);
    assert_eq!(s.count[0][0], 1);
}

#[test]
fn statistics_on_known_values() {
    assert_eq!(stats::mean_std(&[1.0, 2.0, 3.0]), (2.0, 1.0));
    assert_eq!(stats::mean_std(&[4.0]), (4.0, 0.0));
    assert!(stats::mean_std(&[]).0.is_nan());
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert!((stats::spearman(&x, &[2.0, 4.0, 8.0, 16.0, 32.0]) - 1.0).abs() < 1e-12);
    assert!((stats::spearman(&x, &[5.0, 1.0, 0.5, 0.2, 0.1]) + 1.0).abs() < 1e-12);
    // Ties get average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): ρ = 4.5/√(4.5·5).
    // Paired differences: d = (1, 2, 3) → mean 2, sd 1, t(0.975, 2) = 4.302653 (tables),
    // half-width 4.302653/√3; a NaN pair is dropped; one pair has no interval.
    let p = stats::paired_difference(&[2.0, 4.0, 6.0, f64::NAN], &[1.0, 2.0, 3.0, 0.0]);
    assert_eq!((p.n, p.mean), (3, 2.0));
    assert!(
        (p.half_width - 4.302653 / 3f64.sqrt()).abs() < 1e-5,
        "{p:?}"
    );
    assert!((stats::t_quantile_975(4) - 2.776445).abs() < 1e-5);
    assert!(stats::paired_difference(&[1.0], &[0.0]).half_width.is_nan());
    assert!((stats::slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-12);
    assert!(stats::slope(&[1.0, 1.0], &[0.0, 1.0]).is_nan());
    let r = stats::spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
    assert!((r - (4.5f64 / (4.5f64 * 5.0).sqrt())).abs() < 1e-12, "{r}");
    // Fréchet: identical sets → 0; a shift by v → |v|²; a doubled spread of 1-D data with
    // variance s² → s² (σ₁ − σ₂)² = s²·(2−1)².
    let a: Vec<f32> = (0..400)
        .flat_map(|i| {
            let t = i as f32 * 0.37;
            [t.sin(), (1.7 * t).cos(), (0.3 * t).sin()]
        })
        .collect();
    assert!(stats::frechet(&a, &a, 3) < 1e-9);
    let shifted: Vec<f32> = a
        .chunks(3)
        .flat_map(|r| [r[0] + 1.0, r[1] - 2.0, r[2]])
        .collect();
    assert!((stats::frechet(&a, &shifted, 3) - 5.0).abs() < 1e-6);
    let one: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.61).sin()).collect();
    let two: Vec<f32> = one.iter().map(|v| 2.0 * v).collect();
    let (_, s) = stats::mean_std(&one.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!((stats::frechet(&one, &two, 1) - s * s).abs() < 1e-3 * s * s);
}

#[test]
fn buckets_are_frequency_terciles() {
    assert_eq!(
        eval::buckets(&[10, 50, 30, 20, 40, 5]),
        vec![2, 0, 1, 1, 0, 2]
    );
    assert_eq!(eval::buckets(&[5, 5, 5]), vec![0, 1, 2]);
}

/// The D monitor credits each concept with the D of its own slot's tokens.
#[test]
fn d_monitor_attributes_slot_tokens() {
    let opts = TrainOptions::from_toml("concepts = true\nhead_count = 10")
        .unwrap()
        .resolve()
        .unwrap();
    let (data, _) = setup::load_data(&opts).unwrap();
    let model = setup::model_config(&opts, &data).unwrap();
    let tokens = monitor::slot_tokens(&data, &model);
    // 16×16, patch 4: a 4×4 token grid; the left slot is columns 0–1.
    assert_eq!(tokens[0], vec![0, 1, 4, 5, 8, 9, 12, 13]);
    assert_eq!(tokens[2], vec![2, 3, 6, 7, 10, 11, 14, 15]);
    // D = 1 on the left half, 3 on the right: left concepts average 1, right ones 3.
    let d: Vec<f32> = (0..2 * 16)
        .map(|i| if (i % 16) % 4 < 2 { 1.0 } else { 3.0 })
        .collect();
    let line = monitor::attribute(1, &data, &tokens, &[0, 1], &d);
    for i in 0..2 {
        for (slot, &l) in data.labels_of(i).iter().enumerate() {
            let want = if slot < 2 { 1.0 } else { 3.0 };
            assert_eq!(line.sum[l as usize] / line.tokens[l as usize] as f64, want);
        }
    }
    // A summary where D halves as frequency doubles has ρ = −1; lines of the first half are
    // left out.
    let names: Vec<String> = (0..4).map(|k| k.to_string()).collect();
    let freq = [80, 40, 20, 10];
    let lines = vec![
        monitor::DLine {
            step: 1,
            sum: vec![100.0; 4],
            tokens: vec![1; 4],
        },
        monitor::DLine {
            step: 3,
            sum: vec![1.0, 2.0, 4.0, 8.0],
            tokens: vec![1; 4],
        },
    ];
    let s = monitor::summarise(&lines, 2, &names, &freq);
    assert_eq!(s.mean_d, vec![1.0, 2.0, 4.0, 8.0]);
    assert!((s.spearman + 1.0).abs() < 1e-12);
}

/// The idx oracle on real Fashion-MNIST: the test split's own images, scored as if they were
/// samples, read at the k-NN's accuracy (≥ 0.75 on every bucket's mean), and the notes state
/// the oracle's accuracy on held-back real images. Needs Debian's dataset-fashion-mnist
/// (scripts/setup.sh installs it); a counted skip without it.
#[test]
fn idx_oracle_reads_real_fashion_mnist() {
    let dir = std::path::Path::new(imba::train::config::IDX_DEFAULT_PATH);
    if !dir.is_dir() {
        common::skip(
            "idx_oracle_reads_real_fashion_mnist",
            "no Fashion-MNIST at /usr/share/datasets/fashion-mnist (apt install dataset-fashion-mnist)",
        );
        return;
    }
    let train = imba::data::load_idx(dir, imba::data::IdxSplit::Train).unwrap();
    let test = imba::data::load_idx(dir, imba::data::IdxSplit::Test).unwrap();
    assert_eq!(
        (train.len(), test.len(), train.num_labels()),
        (60_000, 10_000, 10)
    );
    assert_eq!(train.label_counts(), vec![6000; 10]);
    // 30 real images per class from the end of the test split (beyond the oracle's
    // held-back check images), as "samples".
    let (mut x, mut labels, mut per) = (Vec::new(), Vec::new(), [0usize; 10]);
    for i in (0..test.len()).rev() {
        let l = test.labels_of(i)[0];
        if per[l as usize] < 30 {
            per[l as usize] += 1;
            x.extend_from_slice(test.image(i));
            labels.push(l);
        }
    }
    let e = imba::eval::idx(&train, &test, &labels, &x).unwrap();
    let all = e.metric("acc/all").unwrap();
    assert!(
        all >= 0.75,
        "the k-NN oracle read {all} of real images: {:?}",
        e.notes
    );
    assert!(e.notes[0].contains("accuracy"), "{:?}", e.notes);
}
