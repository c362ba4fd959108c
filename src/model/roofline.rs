//! A roofline model of one IMBA training step, on paper: for each kernel family the
//! floating-point operations it performs and the fewest bytes it must move to and from device
//! memory, hence its arithmetic intensity and the time no implementation can beat on a
//! machine with the given peaks. It is for machines we cannot run on, and to judge how far a
//! measured step is from its bound.
//!
//! The step is the one the trainer records: the dual forward over 2B rows (the patch and
//! timestep embeddings once for B), the fused IMBA loss, the backward, the gradient norm for
//! clipping, AdamW and the EMA. Counting rules, kept simple and stated:
//! - a product (M, K, N) is 2MKN FLOPs and moves A, B and C once: 4(MK + KN + MN) bytes;
//!   its backward is the two products dX = dY·W and dW = dYᵀ·X (no dX for the image
//!   patches and the timestep features, which are inputs);
//! - attention forward is 4·R·N²·D FLOPs (scores and the weighted sum); its backward as our
//!   kernels run it is 14·R·N²·D (the dq and dkv kernels each recompute the scores and
//!   dO·Vᵀ, then form their own products); bytes are qkv, O, dO, dqkv and the per-row
//!   log-sum-exp and δ, once each;
//! - element-wise families (LayerNorm/modulation, gated residuals, activations, the loss,
//!   the noise, the optimiser) move each input and output once and do a handful of FLOPs
//!   per element (the count per element is given with each).

use super::{DitConfig, ParamLayout};
use crate::kernels::Tile;
use std::fmt;

/// Peak rates of a machine.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// FLOP/s.
    pub flops: f64,
    /// Bytes/s to and from device memory.
    pub bytes: f64,
}

impl Peaks {
    /// An H100/H200 SXM without tensor cores: 67 TFLOP/s FP32, 3.35 TB/s.
    pub const H100_FP32: Peaks = Peaks {
        flops: 67e12,
        bytes: 3.35e12,
    };
}

/// One family's share of a step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FamilyCost {
    /// The kernel family.
    pub family: &'static str,
    /// Floating-point operations of one training step.
    pub flops: f64,
    /// The fewest bytes the family must move through device memory in one step.
    pub bytes: f64,
    /// Σ over its launches of max(flops / peak, bytes / bandwidth), seconds.
    pub bound_s: f64,
}

impl FamilyCost {
    /// FLOPs per byte.
    pub fn intensity(&self) -> f64 {
        self.flops / self.bytes.max(1.0)
    }
}

/// The roofline of one training step.
#[derive(Clone, Debug)]
pub struct Roofline {
    /// The model.
    pub config: DitConfig,
    /// Samples per step.
    pub batch: u32,
    /// The device's peak rate and bandwidth.
    pub peaks: Peaks,
    /// Cost per kernel family.
    pub families: Vec<FamilyCost>,
    /// Global-memory bytes the tiled matmul moves for the step's products with the blocking
    /// each product runs with (operands re-read once per block row or column).
    pub tiled_matmul_bytes: f64,
}

/// A product (M, K, N).
type Product = (f64, f64, f64);

impl Roofline {
    /// The step of `config` at batch `batch` under `peaks`.
    pub fn new(config: &DitConfig, batch: u32, peaks: Peaks) -> Self {
        let mut r = Self {
            config: config.clone(),
            batch,
            peaks,
            families: Vec::new(),
            tiled_matmul_bytes: 0.0,
        };
        let products = forward_products(config, batch);
        for &((m, k, n), input_side) in &products {
            r.matmul((m, k, n)); // Y = X·Wᵀ
            r.matmul((n, m, k)); // dW = dYᵀ·X
            if !input_side {
                r.matmul((m, n, k)); // dX = dY·W
            }
        }
        r.attention();
        r.elementwise(config, batch);
        r
    }

    /// The step-time lower bound: every family at its own roof, one after the other.
    pub fn bound_s(&self) -> f64 {
        self.families.iter().map(|f| f.bound_s).sum()
    }

    /// Floating-point operations of the whole step.
    pub fn total_flops(&self) -> f64 {
        self.families.iter().map(|f| f.flops).sum()
    }

    /// Adds one launch of `family`.
    fn add(&mut self, family: &'static str, flops: f64, bytes: f64) {
        let bound = (flops / self.peaks.flops).max(bytes / self.peaks.bytes);
        let f = match self.families.iter_mut().find(|f| f.family == family) {
            Some(f) => f,
            None => {
                self.families.push(FamilyCost {
                    family,
                    ..Default::default()
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        f.flops += flops;
        f.bytes += bytes;
        f.bound_s += bound;
    }

    fn matmul(&mut self, (m, k, n): Product) {
        self.add("matmul", 2.0 * m * k * n, 4.0 * (m * k + k * n + m * n));
        let tile = Tile::for_product(m as u32, n as u32);
        self.tiled_matmul_bytes += 2.0 * m * k * n * tile.bytes_per_flop() + 4.0 * m * n;
    }

    fn attention(&mut self) {
        let c = &self.config;
        let rows = 2.0 * self.batch as f64; // the dual forward's samples
        let (n, d, h) = (c.tokens() as f64, c.dim as f64, c.heads as f64);
        let (qkv, o, lse) = (3.0 * rows * n * d, rows * n * d, rows * h * n);
        for _ in 0..c.depth {
            self.add("attention", 4.0 * rows * n * n * d, 4.0 * (qkv + o + lse));
            let bytes = 4.0 * (qkv + 2.0 * o + qkv + 2.0 * lse);
            self.add("attention", 14.0 * rows * n * n * d, bytes);
        }
    }

    /// (family, FLOPs per element, values read and written per element, elements) of the
    /// element-wise launches, forward and backward.
    fn elementwise(&mut self, c: &DitConfig, batch: u32) {
        let rows = 2.0 * batch as f64 * c.tokens() as f64;
        let (d, f) = (c.dim as f64, (c.mlp_ratio * c.dim) as f64);
        let image = batch as f64 * (c.channels * c.height * c.width) as f64;
        let params = ParamLayout::new(c).total as f64;
        let depth = c.depth as f64;
        // (family, flops/elem, values moved/elem, elements)
        let launches = [
            // LayerNorm + modulate: 2 per block and the final one; backward reads x, dy, writes dx.
            ("adaln", 8.0, 2.0, (2.0 * depth + 1.0) * rows * d),
            ("adaln", 12.0, 3.0, (2.0 * depth + 1.0) * rows * d),
            // Gated residuals: x + g·y; backward writes dx, dy and reduces dg.
            ("adaln", 2.0, 3.0, 2.0 * depth * rows * d),
            ("adaln", 4.0, 4.0, 2.0 * depth * rows * d),
            // GELU (tanh form) in every MLP, forward and backward.
            ("activation", 20.0, 2.0, depth * rows * f),
            ("activation", 30.0, 3.0, depth * rows * f),
            // Patchify and unpatchify, position embedding, and their backward.
            ("embed", 1.0, 3.0, 2.0 * image + 2.0 * rows * d),
            // The noise and x_t, then the fused loss over both halves and its gradient.
            ("noise", 30.0, 3.0, image),
            ("loss", 20.0, 5.0, image),
            // Gradient norm, AdamW (p, g, m, v in; p, m, v out) and the EMA.
            ("optim", 2.0, 1.0, params),
            ("optim", 15.0, 7.0, params),
            ("optim", 3.0, 3.0, params),
        ];
        for (family, flops, values, elems) in launches {
            self.add(family, flops * elems, 4.0 * values * elems);
        }
    }
}

/// The forward's products (M, K, N), each with whether its left operand is an input (no dX
/// in the backward).
fn forward_products(c: &DitConfig, batch: u32) -> Vec<(Product, bool)> {
    let b = batch as f64;
    let r = 2.0 * b;
    let n = c.tokens() as f64;
    let (d, f) = (c.dim as f64, (c.mlp_ratio * c.dim) as f64);
    let k = (c.patch * c.patch * c.channels) as f64;
    let mut v = vec![
        ((b * n, k, d), true),    // patch embedding, once for both halves
        ((b, 256.0, d), true),    // timestep MLP, first layer
        ((b, d, d), false),       // timestep MLP, second layer
        ((r, d, 2.0 * d), false), // final adaLN modulation
        ((r * n, d, k), false),   // final linear
    ];
    for _ in 0..c.depth {
        v.extend([
            ((r, d, 6.0 * d), false),     // adaLN modulation
            ((r * n, d, 3.0 * d), false), // qkv
            ((r * n, d, d), false),       // attention projection
            ((r * n, d, f), false),       // MLP fc1
            ((r * n, f, d), false),       // MLP fc2
        ]);
    }
    v
}

impl fmt::Display for Roofline {
    fn fmt(&self, out: &mut fmt::Formatter) -> fmt::Result {
        let c = &self.config;
        writeln!(
            out,
            "roofline of one IMBA training step: D={} depth={} heads={} patch={} {}×{}×{}, \
             batch {} (dual forward: {} rows of {} tokens)",
            c.dim,
            c.depth,
            c.heads,
            c.patch,
            c.channels,
            c.height,
            c.width,
            self.batch,
            2 * self.batch,
            c.tokens()
        )?;
        writeln!(
            out,
            "peaks: {:.1} TFLOP/s, {:.2} TB/s (ridge {:.1} FLOP/byte)\n",
            self.peaks.flops / 1e12,
            self.peaks.bytes / 1e12,
            self.peaks.flops / self.peaks.bytes
        )?;
        writeln!(
            out,
            "| family | GFLOP | min GB moved | FLOP/byte | bound ms | share |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
        let total = self.bound_s();
        for f in &self.families {
            writeln!(
                out,
                "| {} | {:.2} | {:.3} | {:.1} | {:.3} | {:.0}% |",
                f.family,
                f.flops / 1e9,
                f.bytes / 1e9,
                f.intensity(),
                f.bound_s * 1e3,
                100.0 * f.bound_s / total.max(f64::MIN_POSITIVE)
            )?;
        }
        writeln!(
            out,
            "| step | {:.2} | {:.3} | | {:.3} | 100% |",
            self.total_flops() / 1e9,
            self.families.iter().map(|f| f.bytes).sum::<f64>() / 1e9,
            total * 1e3
        )?;
        if self.families.iter().any(|f| f.family == "matmul") {
            writeln!(
                out,
                "\ntiled matmul: {:.3} GB of global traffic with its blocking ({} B/FLOP with \
                 128×128 blocks, {} with 64×64), a bound of {:.3} ms on bandwidth alone",
                self.tiled_matmul_bytes / 1e9,
                Tile::LARGE.bytes_per_flop(),
                Tile::SMALL.bytes_per_flop(),
                self.tiled_matmul_bytes / self.peaks.bytes * 1e3
            )?;
        }
        Ok(())
    }
}
