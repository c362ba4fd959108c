//! The host's random numbers: Philox4x32-10 and Box–Muller normals, the same function as
//! `shaders/lib/philox.wgsl` (same constants, same f32 operation order), so that data, noise
//! and label dropout drawn on the CPU agree bit for bit with the kernels'.

// The literals are written exactly as in the WGSL, digit for digit, so that both compilers
// round the same decimal to the same f32; clippy's suggestions would change the text.
#![allow(clippy::excessive_precision, clippy::approx_constant)]

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds (Salmon et al., SC'11).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// ln u for u in (0, 1], as the shader computes it.
pub fn ln(u: f32) -> f32 {
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    if m > 1.414_213_56 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s
        * (2.0
            + s2 * (0.666_666_666_7 + s2 * (0.4 + s2 * (0.285_714_285_7 + s2 * 0.222_222_222_2))));
    let ef = e as f32;
    ef * 0.693_145_751_953_125 + (p + ef * 1.428_606_765_330_187e-6)
}

/// (cos 2πv, sin 2πv) for v in [0, 1), as the shader computes it.
pub fn cos_sin_turns(v: f32) -> (f32, f32) {
    let t = v * 4.0;
    let q = (t + 0.5).floor();
    let a = (t - q) * 1.570_796_326_8;
    let a2 = a * a;
    let s = a + a
        * a2
        * (-0.166_666_666_67
            + a2 * (0.008_333_333_333_3 + a2 * (-0.000_198_412_698_41 + a2 * 2.755_731_922_4e-6)));
    let c = 1.0
        + a2 * (-0.5
            + a2 * (0.041_666_666_667
                + a2 * (-0.001_388_888_888_9
                    + a2 * (2.480_158_730_2e-5 + a2 * -2.755_731_922_4e-7))));
    match (q as u32) & 3 {
        0 => (c, s),
        1 => (-s, c),
        2 => (-c, -s),
        _ => (s, -c),
    }
}

/// Two normals from two words: radius from `a` as a uniform in (0, 1], angle from `b`.
pub fn box_muller(a: u32, b: u32) -> [f32; 2] {
    let u = ((a >> 8) as f32 + 1.0) * 5.960_464_477_539_062_5e-8;
    let v = (b >> 8) as f32 * 5.960_464_477_539_062_5e-8;
    let r = (-2.0 * ln(u)).sqrt();
    let (c, s) = cos_sin_turns(v);
    [r * c, r * s]
}

/// The four normals of a quad (flat indices 4·quad .. 4·quad+3) of a stream.
pub fn normals4(quad: u32, stream: u32, seed: u32, step: u32) -> [f32; 4] {
    let x = philox4x32_10([quad, stream, 0, 0], [seed, step]);
    let a = box_muller(x[0], x[1]);
    let b = box_muller(x[2], x[3]);
    [a[0], a[1], b[0], b[1]]
}

/// The normal at a flat index of a stream.
pub fn normal(index: u32, stream: u32, seed: u32, step: u32) -> f32 {
    normals4(index >> 2, stream, seed, step)[(index & 3) as usize]
}

/// Normals for flat indices 0..count of the noise stream (what the `normals` kernel writes).
pub fn noise(seed: u32, step: u32, count: usize) -> Vec<f32> {
    noise_range(seed, step, 0, count)
}

/// Normals for flat indices start..start+count of the noise stream.
pub fn noise_range(seed: u32, step: u32, start: u64, count: usize) -> Vec<f32> {
    (start..start + count as u64)
        .map(|i| normal(i as u32, 0, seed, step))
        .collect()
}

/// Whether sample b's label is dropped: the 24-bit word of Philox stream 1, counter b, key
/// (seed, step), is below `threshold` (see `kernels::noise::dropout_threshold`).
pub fn dropped(seed: u32, step: u32, b: u32, threshold: u32) -> bool {
    let x = philox4x32_10([b, 1, 0, 0], [seed, step]);
    (x[0] >> 8) < threshold
}

/// A uniform f64 in [0, 1) from Philox (key (seed, salt), counter (i, stream)): 53 bits of
/// the first two words.
pub fn uniform(seed: u32, salt: u32, stream: u32, i: u32) -> f64 {
    let w = philox4x32_10([i, stream, 0, 0], [seed, salt]);
    (((w[0] as u64) << 21) ^ (w[1] as u64 >> 11)) as f64 / (1u64 << 53) as f64
}
