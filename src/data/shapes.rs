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

use super::{profile_counts, split::profile_weight, uniform, Dataset, Profile};
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
        }
    }
}

/// Whether pixel centre (u, v) in a unit box [0,1]² lies inside `shape`.
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
    let s = size as usize;
    let mut img = vec![-1.0f32; 3 * s * s];
    let slots = objects.len().max(1);
    let slot_w = s / slots;
    // A square box per slot, centred vertically.
    let top = (s - slot_w) / 2;
    for (j, &(shape, colour)) in objects.iter().enumerate() {
        let rgb = COLOURS[colour].1;
        for y in 0..slot_w {
            for x in 0..slot_w {
                let (u, v) = (
                    (x as f32 + 0.5) / slot_w as f32,
                    (y as f32 + 0.5) / slot_w as f32,
                );
                if inside(shape, u, v) {
                    let (px, py) = (j * slot_w + x, top + y);
                    for c in 0..3 {
                        img[c * s * s + py * s + px] = rgb[c];
                    }
                }
            }
        }
    }
    img
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
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    if spec.concepts {
        super::split::validate_ratio(spec.imbalance)?;
        let sw: Vec<f64> = (0..SHAPES.len())
            .map(|k| profile_weight(spec.profile, k, SHAPES.len(), spec.imbalance))
            .collect();
        let cw: Vec<f64> = (0..COLOURS.len())
            .map(|k| profile_weight(spec.profile, k, COLOURS.len(), spec.imbalance))
            .collect();
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
                objects.push((shape, colour));
                let base = slot * CONCEPTS_PER_SLOT;
                labels.push(base + shape as u32);
                labels.push(base + SHAPES.len() as u32 + colour as u32);
            }
            images.extend(render_shapes(spec.size, &objects));
        }
    } else {
        let classes = SHAPES.len() * COLOURS.len();
        let counts = profile_counts(spec.profile, spec.head_count, classes, spec.imbalance)?;
        for (c, &n) in counts.iter().enumerate() {
            let object = (c / COLOURS.len(), c % COLOURS.len());
            let img = render_shapes(spec.size, &[object]);
            for _ in 0..n {
                images.extend_from_slice(&img);
                labels.push(c as u32);
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
