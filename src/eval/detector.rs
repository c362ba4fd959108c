//! The `shapes` oracle: reads each slot's shape and colour back from an image, or says that
//! the slot holds no readable object.
//!
//! The renderer has no anti-aliasing and flat colours, so on its own renders this reading is
//! exact. On generated images it is deliberately strict:
//! - a pixel is *object* when its brightest channel is above 0 (halfway between the black
//!   background −1 and a full channel +1);
//! - the object's colour is the palette colour nearest (RGB distance) to most of its pixels,
//!   and at least [`COLOUR_AGREEMENT`] of them must agree;
//! - its shape is the template nearest in Hamming distance, and that distance must be less
//!   than half the distance from that template to any other one, so no reading is ambiguous
//!   (at a slot width of 8 px a square and a circle differ in 4 pixels: one wrong pixel is
//!   tolerated there; at 16 px, 9);
//! - outside the slots' boxes at most [`STRAY_LIMIT`] of the pixels may be object pixels.
//!
//! Noise and blank images fail these tests (tested).
//!
//! Jittered sets ([`Detector::jittered`]) place each object anywhere in its strip at any box
//! size of [`jitter_sizes`], with its colour moved toward 0 by up to 0.3 per channel. Their
//! detector matches the strip's lit pixels against every shape at every such size and
//! position (Hamming distance), and reads the nearest shape when it differs from its best
//! placed template in at most [`MAX_MISMATCH`] of that template's pixels and its distance
//! is at most [`SHAPE_MARGIN`] of the nearest other shape's: a sample of a class
//! distribution is never pixel-exact, so the jittered oracle tolerates ragged edges that the
//! fixed-render oracle (one unambiguous radius per template) would refuse, while every render
//! still reads exactly (distance 0) and noise does not read at all. Lit pixels anywhere in a
//! strip count against the match, so there is no separate stray test.

use crate::data::{inside, jitter_sizes, template, COLOURS, SHAPES};

/// Share of an object's pixels whose nearest palette colour must agree.
pub const COLOUR_AGREEMENT: f64 = 0.75;
/// Share of the pixels outside every slot box that may be lit.
pub const STRAY_LIMIT: f64 = 0.05;

/// One slot's reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub shape: usize,
    pub colour: usize,
}

/// Where a jittered set's object sits in its strip: its box size and the box's top-left
/// pixel (the placement of the template it was read as).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub size: u32,
    pub x: u32,
    pub y: u32,
}

/// Why a slot could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Too few object pixels.
    Blank,
    /// The object's pixels disagree on the colour.
    MixedColour,
    /// The mask is not within the unambiguous radius of any template.
    UnknownShape,
    /// Lit pixels outside the slot boxes (the image as a whole is not a clean render).
    Stray,
}

/// A detector for images of one size and slot count (1: class mode, 2: concepts mode).
pub struct Detector {
    size: usize,
    slots: usize,
    /// Per shape: the template mask of one slot box (slot_w²).
    templates: Vec<Vec<bool>>,
    /// Per shape: half the Hamming distance to the nearest other template.
    radius: Vec<usize>,
    /// For jittered sets: the box sizes and placed-template radii.
    jitter: Option<JitterMatch>,
}

/// The templates of a jittered set: per box size, each shape's lit pixels.
struct JitterMatch {
    sizes: Vec<u32>,
    /// templates[size index][shape]: the lit pixels of the b·b mask, row-major indices.
    templates: Vec<Vec<Vec<usize>>>,
}

/// The most a jittered object's mask may differ from its best placed template, as a share of
/// that template's pixels.
pub const MAX_MISMATCH: f64 = 0.25;
/// The best shape's distance must be at most this share of the best other shape's.
pub const SHAPE_MARGIN: f64 = 0.7;

impl JitterMatch {
    fn new(w: usize) -> Self {
        let sizes = jitter_sizes(w as u32);
        let templates = sizes
            .iter()
            .map(|&b| {
                (0..SHAPES.len())
                    .map(|s| {
                        let t = template(s, b);
                        (0..t.len()).filter(|&p| t[p]).collect()
                    })
                    .collect()
            })
            .collect();
        Self { sizes, templates }
    }

    /// Per shape, the smallest Hamming distance between `mask` (the strip, w·h) and that
    /// shape's template at any size and position, with that template's pixel count and its
    /// placement (the first of equals, sizes then rows then columns).
    fn distances(&self, mask: &[bool], w: usize, h: usize) -> Vec<(usize, usize, Placement)> {
        let lit = mask.iter().filter(|&&v| v).count();
        let none = Placement {
            size: 0,
            x: 0,
            y: 0,
        };
        let mut best = vec![(usize::MAX, 0, none); SHAPES.len()];
        for (i, &b) in self.sizes.iter().enumerate() {
            let b = b as usize;
            for (shape, on) in self.templates[i].iter().enumerate() {
                for y in 0..=h - b {
                    for x in 0..=w - b {
                        let overlap = on
                            .iter()
                            .filter(|&&p| mask[(y + p / b) * w + x + p % b])
                            .count();
                        let d = lit + on.len() - 2 * overlap;
                        if d < best[shape].0 {
                            let (size, x, y) = (b as u32, x as u32, y as u32);
                            best[shape] = (d, on.len(), Placement { size, x, y });
                        }
                    }
                }
            }
        }
        best
    }

    /// The nearest shape and its placement, if its mismatch is at most [`MAX_MISMATCH`] of
    /// its template and clearly below every other shape's ([`SHAPE_MARGIN`]).
    fn best(&self, mask: &[bool], w: usize, h: usize) -> Option<(usize, Placement)> {
        let d = self.distances(mask, w, h);
        let (shape, &(dist, pixels, at)) = d.iter().enumerate().min_by_key(|(k, x)| (x.0, *k))?;
        let other = (0..d.len()).filter(|&k| k != shape).map(|k| d[k].0).min()?;
        let close = dist as f64 <= MAX_MISMATCH * pixels as f64;
        let clear = dist as f64 <= SHAPE_MARGIN * other as f64;
        (close && clear).then_some((shape, at))
    }
}

impl Detector {
    pub fn new(size: u32, slots: u32) -> Self {
        let (size, slots) = (size as usize, slots.max(1) as usize);
        let w = size / slots;
        let templates: Vec<Vec<bool>> = (0..SHAPES.len())
            .map(|s| {
                (0..w * w)
                    .map(|p| {
                        let (x, y) = (p % w, p / w);
                        inside(s, (x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / w as f32)
                    })
                    .collect()
            })
            .collect();
        let radius = (0..templates.len())
            .map(|a| {
                (0..templates.len())
                    .filter(|&b| b != a)
                    .map(|b| hamming(&templates[a], &templates[b]))
                    .min()
                    .unwrap_or(usize::MAX)
                    .div_ceil(2)
            })
            .collect();
        Self {
            size,
            slots,
            templates,
            radius,
            jitter: None,
        }
    }

    /// The detector of a `shapes` data set (slots from its label mode), jittered or not.
    pub fn for_config(data: &crate::data::Dataset, jitter: bool) -> Self {
        let slots = if data.slots == 1 { 1 } else { 2 };
        if jitter {
            Self::jittered(data.height, slots)
        } else {
            Self::new(data.height, slots)
        }
    }

    /// A detector for jittered sets (objects anywhere in their strip, any box size of
    /// [`jitter_sizes`], colour jitter).
    pub fn jittered(size: u32, slots: u32) -> Self {
        let mut d = Self::new(size, slots);
        d.jitter = Some(JitterMatch::new(d.slot_w()));
        d
    }

    fn slot_w(&self) -> usize {
        self.size / self.slots
    }

    /// Reads every slot of a (3, size, size) image in [−1, 1]. Panics when `img` is not
    /// 3·size² values (a caller's bug: the evaluators pass the data set's own shape).
    pub fn read(&self, img: &[f32]) -> Vec<Result<Object, Unreadable>> {
        assert_eq!(img.len(), 3 * self.size * self.size, "image size");
        if let Some(j) = &self.jitter {
            let read = self.read_jittered(j, img).into_iter();
            return read.map(|r| r.map(|(o, _)| o)).collect();
        }
        let (s, w) = (self.size, self.slot_w());
        let top = (s - w) / 2;
        let lit = |x: usize, y: usize| (0..3).any(|c| img[c * s * s + y * s + x] > 0.0);
        let in_box = |x: usize, y: usize| x < w * self.slots && (top..top + w).contains(&y);
        let (mut stray, mut outside) = (0usize, 0usize);
        for y in 0..s {
            for x in 0..s {
                if !in_box(x, y) {
                    outside += 1;
                    stray += lit(x, y) as usize;
                }
            }
        }
        if outside > 0 && stray as f64 > STRAY_LIMIT * outside as f64 {
            return vec![Err(Unreadable::Stray); self.slots];
        }
        (0..self.slots)
            .map(|j| {
                let mut mask = vec![false; w * w];
                let mut votes = [0usize; COLOURS.len()];
                for y in 0..w {
                    for x in 0..w {
                        let (px, py) = (j * w + x, top + y);
                        if lit(px, py) {
                            mask[y * w + x] = true;
                            let rgb = [0, 1, 2].map(|c| img[c * s * s + py * s + px]);
                            votes[nearest_colour(rgb)] += 1;
                        }
                    }
                }
                self.classify(&mask, &votes)
            })
            .collect()
    }

    /// Whether this detector reads placements (a jittered set's).
    pub fn places(&self) -> bool {
        self.jitter.is_some()
    }

    /// [`Self::read`] with each object's placement, for a jittered detector (None from the
    /// fixed-render detector, whose objects always sit in their slot's box).
    pub fn read_placed(&self, img: &[f32]) -> Option<Vec<Result<(Object, Placement), Unreadable>>> {
        assert_eq!(img.len(), 3 * self.size * self.size, "image size");
        Some(self.read_jittered(self.jitter.as_ref()?, img))
    }

    /// [`Self::read`] for jittered sets: each strip's lit pixels against every placement.
    fn read_jittered(
        &self,
        j: &JitterMatch,
        img: &[f32],
    ) -> Vec<Result<(Object, Placement), Unreadable>> {
        let (s, w) = (self.size, self.slot_w());
        (0..self.slots)
            .map(|slot| {
                let mut mask = vec![false; w * s];
                let mut votes = [0usize; COLOURS.len()];
                for y in 0..s {
                    for x in 0..w {
                        let px = slot * w + x;
                        let rgb = [0, 1, 2].map(|c| img[c * s * s + y * s + px]);
                        if rgb.iter().any(|&v| v > 0.0) {
                            mask[y * w + x] = true;
                            votes[nearest_colour(rgb)] += 1;
                        }
                    }
                }
                let colour = self.colour(&votes)?;
                let (shape, at) = j.best(&mask, w, s).ok_or(Unreadable::UnknownShape)?;
                Ok((Object { shape, colour }, at))
            })
            .collect()
    }

    /// The colour most lit pixels agree on, if enough of them are lit and agree.
    fn colour(&self, votes: &[usize]) -> Result<usize, Unreadable> {
        let lit: usize = votes.iter().sum();
        let smallest = match &self.jitter {
            Some(j) => j.templates[0].iter().map(Vec::len).min().unwrap_or(0),
            None => self.templates.iter().map(|t| count(t)).min().unwrap_or(0),
        };
        if lit * 2 < smallest {
            return Err(Unreadable::Blank);
        }
        let (colour, &top) = votes
            .iter()
            .enumerate()
            .max_by_key(|&(k, &v)| (v, usize::MAX - k))
            .expect("palette is not empty");
        if (top as f64) < COLOUR_AGREEMENT * lit as f64 {
            return Err(Unreadable::MixedColour);
        }
        Ok(colour)
    }

    fn classify(&self, mask: &[bool], votes: &[usize]) -> Result<Object, Unreadable> {
        let colour = self.colour(votes)?;
        let (shape, d) = self
            .templates
            .iter()
            .map(|t| hamming(t, mask))
            .enumerate()
            .min_by_key(|&(k, d)| (d, k))
            .expect("templates are not empty");
        if d >= self.radius[shape] {
            return Err(Unreadable::UnknownShape);
        }
        Ok(Object { shape, colour })
    }
}

fn hamming(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

fn count(t: &[bool]) -> usize {
    t.iter().filter(|&&v| v).count()
}

fn nearest_colour(rgb: [f32; 3]) -> usize {
    COLOURS
        .iter()
        .enumerate()
        .map(|(k, (_, c))| {
            let d: f32 = (0..3).map(|i| (rgb[i] - c[i]).powi(2)).sum();
            (k, d)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("palette is not empty")
        .0
}
