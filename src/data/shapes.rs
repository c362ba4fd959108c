//! `shapes` (docs/design.md): small RGB images of flat-coloured shapes, drawn by a deterministic
//! renderer (no anti-aliasing), so a detector can later read every object back exactly.
//!
//! Two label modes:
//! - classes (default): one object in the middle; label = shape·|COLOURS| + colour, with the
//!   per-class counts of a long-tail profile.
//! - concepts: two objects, in the left and right slot; four concept tokens per image
//!   (slot-0 shape, slot-0 colour, slot-1 shape, slot-1 colour). Each slot's shape and colour
//!   are drawn independently from the profile's frequencies, so some concepts and many
//!   combinations are rare; a draw that lands on one of the slot's four *inert* (shape, colour)
//!   pairs ([`is_inert`]) is drawn again, so those pairs never occur in training although each
//!   of their concepts does (the paper's Inert-CompBench, in miniature).

use super::split::{frequency_order, profile_weight};
use super::{profile_counts, uniform, Dataset, Profile};
use crate::{Error, Result};

pub const SHAPES: [&str; 4] = ["square", "circle", "triangle", "cross"];
pub const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [1.0, -1.0, -1.0]),
    ("green", [-1.0, 1.0, -1.0]),
    ("blue", [-1.0, -1.0, 1.0]),
    ("yellow", [1.0, 1.0, -1.0]),
];

/// How a `shapes` set is drawn.
#[derive(Clone, Debug)]
pub struct ShapesSpec {
    /// Image height and width (≥ 8; concepts mode needs an even size).
    pub size: u32,
    pub concepts: bool,
    /// Images of the head class (classes mode); in concepts mode the set has
    /// head_count·|SHAPES| images.
    pub head_count: usize,
    pub imbalance: f64,
    pub profile: Profile,
    pub seed: u32,
    /// Each image a draw of its class (position, size and colour jitter, see [`Jitter`]);
    /// else every image of a class is the same render.
    pub jitter: bool,
    /// Which class (concepts mode: which shape and which colour) gets which frequency rank:
    /// a seeded permutation, so that frequency is not tied to one shape; else class 0 is the
    /// head, as listed.
    pub permute: bool,
}

impl Jitter {
    /// No jitter: the box fills the strip's width, centred vertically, in the palette colour
    /// (the fixed renders).
    pub fn none(strip: u32, height: u32) -> Self {
        Self {
            box_size: strip,
            x: 0,
            y: (height - strip) / 2,
            colour: [0.0; 3],
        }
    }
}

impl Default for ShapesSpec {
    fn default() -> Self {
        Self {
            size: 16,
            concepts: false,
            head_count: 200,
            imbalance: 20.0,
            profile: Profile::Exponential,
            seed: 0,
            jitter: false,
            permute: false,
        }
    }
}

/// One object's placement and colour in a jittered render: a square box of `box_size`
/// pixels at (x, y) within its slot strip, and per channel how far the palette value (±1)
/// moves toward 0, in \[0, `COLOUR_JITTER`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    pub box_size: u32,
    pub x: u32,
    pub y: u32,
    pub colour: [f32; 3],
}

/// The most a jittered channel moves from its palette value (±1) toward 0. Palette colours
/// differ by 2 in some channel, so the nearest palette colour stays the drawn one, and a
/// full channel (≥ 0.7) stays lit (> 0) while an off one (≤ −0.7) stays dark.
pub const COLOUR_JITTER: f32 = 0.3;

/// Box sizes a jittered object may take in a strip of width `w`, and the fewest pixels in
/// which every two shapes' templates of a size must differ for that size to be drawn (at small
/// sizes a square and a circle can render the same):
/// - below 16 pixels, from ⌈7w/8⌉ up to w, apart by `MIN_TEMPLATE_GAP` pixels (at 8 pixels a
///   circle and a square differ only in their four corners);
/// - from 16 pixels, from ⌈5w/8⌉ up to ⌊7w/8⌋, apart by `MIN_TEMPLATE_GAP_LARGE` pixels: at 16
///   pixels boxes of 10 to 14 pixels, anywhere within up to 6 pixels of room each way, and
///   every two shapes differ in at least 12 pixels at every size.
pub fn jitter_sizes(w: u32) -> Vec<u32> {
    let (sizes, gap) = if w >= 16 {
        ((5 * w).div_ceil(8)..=7 * w / 8, MIN_TEMPLATE_GAP_LARGE)
    } else {
        ((7 * w).div_ceil(8)..=w, MIN_TEMPLATE_GAP)
    };
    sizes
        .filter(|&b| {
            let t: Vec<Vec<bool>> = (0..SHAPES.len()).map(|s| template(s, b)).collect();
            (0..t.len()).all(|i| {
                (i + 1..t.len())
                    .all(|j| t[i].iter().zip(&t[j]).filter(|(a, b)| a != b).count() >= gap)
            })
        })
        .collect()
}

/// Fewest pixels in which two shapes' templates of one box size must differ, in strips
/// narrower than 16 pixels.
pub const MIN_TEMPLATE_GAP: usize = 3;
/// Fewest pixels in which two shapes' templates of one box size must differ, in strips of 16
/// pixels or more.
pub const MIN_TEMPLATE_GAP_LARGE: usize = 12;

/// The mask of `shape` in a square box of `b` pixels (row-major b·b).
pub fn template(shape: usize, b: u32) -> Vec<bool> {
    let b = b as usize;
    (0..b * b)
        .map(|p| {
            let (x, y) = (p % b, p / b);
            inside(
                shape,
                (x as f32 + 0.5) / b as f32,
                (y as f32 + 0.5) / b as f32,
            )
        })
        .collect()
}

/// Draws image `i`'s jitter for the object of slot `slot` (strip width `w`, image height
/// `h`) from Philox (seed, stream 12).
fn draw_jitter(seed: u32, i: u32, slot: u32, w: u32, h: u32, sizes: &[u32]) -> Jitter {
    let u = |k: u32| uniform(seed, 12, 8 * slot + k, i);
    let pick_int = |u: f64, n: u32| ((u * n as f64) as u32).min(n - 1);
    let box_size = sizes[pick_int(u(0), sizes.len() as u32) as usize];
    Jitter {
        box_size,
        x: pick_int(u(1), w - box_size + 1),
        y: pick_int(u(2), h - box_size + 1),
        colour: [3, 4, 5].map(|k| u(k) as f32 * COLOUR_JITTER),
    }
}

/// Renders objects with their jitter into a (3, size, size) image on black: object j in
/// strip j of `objects.len()` equal vertical strips.
pub fn render_jittered(size: u32, objects: &[((usize, usize), Jitter)]) -> Vec<f32> {
    let s = size as usize;
    let mut img = vec![-1.0f32; 3 * s * s];
    let strip = s / objects.len().max(1);
    for (j, &((shape, colour), jt)) in objects.iter().enumerate() {
        // Palette channels are ±1: each moves toward 0 by its jitter.
        let rgb: [f32; 3] = std::array::from_fn(|c| {
            let v = COLOURS[colour].1[c];
            v - v.signum() * jt.colour[c]
        });
        let b = jt.box_size as usize;
        for (p, _) in template(shape, jt.box_size)
            .iter()
            .enumerate()
            .filter(|t| *t.1)
        {
            let (px, py) = (j * strip + jt.x as usize + p % b, jt.y as usize + p / b);
            for c in 0..3 {
                img[c * s * s + py * s + px] = rgb[c];
            }
        }
    }
    img
}

/// Whether pixel centre (u, v) in a unit box \[0,1\]² lies inside `shape`.
pub fn inside(shape: usize, u: f32, v: f32) -> bool {
    let (x, y) = (u - 0.5, v - 0.5);
    match shape {
        0 => x.abs() <= 0.36 && y.abs() <= 0.36,
        1 => x * x + y * y <= 0.4 * 0.4,
        // Apex up: the half-width grows from 0 at the top to 0.42 at the bottom.
        2 => (-0.38..=0.38).contains(&y) && x.abs() <= 0.42 * (y + 0.38) / 0.76,
        _ => (x.abs() <= 0.14 && y.abs() <= 0.42) || (y.abs() <= 0.14 && x.abs() <= 0.42),
    }
}

/// Renders objects (shape, colour) into a (3, size, size) image with a black (−1)
/// background; object j occupies slot j of `objects.len()` equal vertical strips (one object:
/// the whole image).
pub fn render_shapes(size: u32, objects: &[(usize, usize)]) -> Vec<f32> {
    let strip = size / objects.len().max(1) as u32;
    let placed: Vec<_> = objects
        .iter()
        .map(|&o| (o, Jitter::none(strip, size)))
        .collect();
    render_jittered(size, &placed)
}

/// Label names: classes mode "red-square", …; concepts mode "left:square", "left:red", ….
fn names(concepts: bool) -> Vec<String> {
    if concepts {
        let mut v = Vec::new();
        for slot in ["left", "right"] {
            v.extend(SHAPES.iter().map(|s| format!("{slot}:{s}")));
            v.extend(COLOURS.iter().map(|c| format!("{slot}:{}", c.0)));
        }
        v
    } else {
        SHAPES
            .iter()
            .flat_map(|s| COLOURS.iter().map(move |c| format!("{}-{s}", c.0)))
            .collect()
    }
}

/// Concepts per slot (shapes then colours).
pub const CONCEPTS_PER_SLOT: u32 = (SHAPES.len() + COLOURS.len()) as u32;

/// Whether (shape, colour) is held out of slot `slot` in concepts mode. A Latin-square choice:
/// every shape and every colour loses exactly one partner per slot, and the two slots hold out
/// different pairs (left: colour = shape + 2 mod 4, right: colour = shape + 1 mod 4), so each
/// inert pair is still seen in the other slot.
pub fn is_inert(slot: usize, shape: usize, colour: usize) -> bool {
    colour == (shape + 2 - slot.min(1)) % COLOURS.len()
}

/// Draws index k of n with probabilities ∝ profile weights, from a uniform u.
fn pick(u: f64, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    for (k, w) in weights.iter().enumerate() {
        acc += w / total;
        if u < acc {
            return k;
        }
    }
    weights.len() - 1
}

/// Draws the set.
pub fn shapes(spec: &ShapesSpec) -> Result<Dataset> {
    if spec.size < 8 || (spec.concepts && !spec.size.is_multiple_of(2)) {
        return Err(Error::Config(format!(
            "shapes images must be at least 8 pixels (and even in concepts mode), got {}",
            spec.size
        )));
    }
    let strip = if spec.concepts {
        spec.size / 2
    } else {
        spec.size
    };
    if spec.jitter && jitter_sizes(strip).is_empty() {
        return Err(Error::Config(format!(
            "shapes with jitter need room to vary each object: at {} pixels no box size keeps \
             the four shapes apart; use image_size ≥ {}",
            spec.size,
            if spec.concepts { 16 } else { 8 }
        )));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    if spec.concepts {
        super::split::validate_ratio(spec.imbalance)?;
        let weights = |n: usize, salt: u32| {
            let order = frequency_order(spec.seed, salt, n, spec.permute);
            let mut w = vec![0.0; n];
            for (rank, &item) in order.iter().enumerate() {
                w[item] = profile_weight(spec.profile, rank, n, spec.imbalance);
            }
            w
        };
        let (sw, cw) = (weights(SHAPES.len(), 0), weights(COLOURS.len(), 1));
        let half = spec.size / 2;
        let sizes = jitter_sizes(half);
        let n = spec.head_count * SHAPES.len();
        for i in 0..n as u32 {
            let mut objects = Vec::new();
            for slot in 0..2u32 {
                // Redraw (from the next counters) until the pair is not inert; an expected
                // ≤ 1.4 draws at the default profile.
                let (shape, colour) = (0u32..)
                    .map(|k| {
                        let sub = slot + 2 * k;
                        (
                            pick(uniform(spec.seed, 11, 2 * sub, i), &sw),
                            pick(uniform(spec.seed, 11, 2 * sub + 1, i), &cw),
                        )
                    })
                    .find(|&(s, c)| !is_inert(slot as usize, s, c))
                    .expect("a non-inert pair has positive probability");
                let jt = if spec.jitter {
                    draw_jitter(spec.seed, i, slot, half, spec.size, &sizes)
                } else {
                    Jitter::none(half, spec.size)
                };
                objects.push(((shape, colour), jt));
                let base = slot * CONCEPTS_PER_SLOT;
                labels.push(base + shape as u32);
                labels.push(base + SHAPES.len() as u32 + colour as u32);
            }
            images.extend(render_jittered(spec.size, &objects));
        }
    } else {
        let classes = SHAPES.len() * COLOURS.len();
        let by_rank = profile_counts(spec.profile, spec.head_count, classes, spec.imbalance)?;
        let mut counts = vec![0; classes];
        for (rank, &c) in frequency_order(spec.seed, 2, classes, spec.permute)
            .iter()
            .enumerate()
        {
            counts[c] = by_rank[rank];
        }
        let sizes = jitter_sizes(spec.size);
        let mut i = 0u32;
        for (c, &n) in counts.iter().enumerate() {
            let object = (c / COLOURS.len(), c % COLOURS.len());
            let img = render_shapes(spec.size, &[object]);
            for _ in 0..n {
                if spec.jitter {
                    let jt = draw_jitter(spec.seed, i, 0, spec.size, spec.size, &sizes);
                    images.extend(render_jittered(spec.size, &[(object, jt)]));
                } else {
                    images.extend_from_slice(&img);
                }
                labels.push(c as u32);
                i += 1;
            }
        }
    }
    Ok(Dataset {
        name: "shapes".into(),
        channels: 3,
        height: spec.size,
        width: spec.size,
        images,
        labels,
        slots: if spec.concepts { 4 } else { 1 },
        label_names: names(spec.concepts),
    })
}
