//! The sane range of every count and scale a user gives, and the memory check made before
//! anything large is allocated. A value outside its range is refused with the value named;
//! a size over the memory at hand is refused with the estimate.

use crate::{Error, Result};

/// Training steps: DiT-XL's published run is 7 M steps.
pub const MAX_STEPS: u32 = 10_000_000;
/// Images per training batch.
pub const MAX_BATCH: u32 = 65_536;
/// Image height and width in pixels (the model works in pixel space).
pub const MAX_IMAGE_SIZE: u32 = 512;
/// Images of the largest label of a generated data set.
pub const MAX_HEAD_COUNT: u32 = 1_000_000;
/// Samples drawn by one command (training's end-of-run samples, `imba sample`, an
/// evaluation per label).
pub const MAX_SAMPLES: u32 = 100_000;
/// Sampler steps (DDPM's full chain is 1000).
pub const MAX_SAMPLER_STEPS: u32 = 10_000;
/// Transformer blocks of a DiT (DiT-XL has 28).
pub const MAX_DEPTH: u32 = 1_024;
/// Hidden size of a DiT (DiT-XL has 1152).
pub const MAX_DIM: u32 = 16_384;
/// Labels (concepts) a model or data set may have (ImageNet has 1000).
pub const MAX_LABELS: u32 = 1_000_000;
/// Image channels (RGB 3, SD latents 4).
pub const MAX_CHANNELS: u32 = 64;
/// Repetitions, warm-up runs and rounds of a benchmark, and steps of a remedy's optimiser.
pub const MAX_REPS: u32 = 1_000_000;
/// Learning rates: AdamW moves every weight by about lr per step, so above 1 each step
/// throws the weights past their own scale (the usual values are 1e-4 to 3e-3).
pub const MAX_LR: f32 = 1.0;
/// Classifier-free guidance scales: 0 is unconditional, 1 conditional, DiT uses 1.5–4.
pub const GUIDANCE: std::ops::RangeInclusive<f32> = 0.0..=100.0;

/// Refuses `value` of the option `name` above `max`.
pub fn at_most(name: &str, value: impl Into<u64>, max: u32) -> Result<()> {
    let value = value.into();
    if value > max as u64 {
        return Err(Error::Config(format!(
            "`{name}` is {value}, over its bound of {max}; give a smaller value"
        )));
    }
    Ok(())
}

/// Refuses a non-finite or absurd guidance scale.
pub fn guidance(name: &str, g: f32) -> Result<()> {
    if !GUIDANCE.contains(&g) {
        return Err(Error::Config(format!(
            "`{name}` is {g}; give a finite scale in {}..={} (1 = conditional, DiT uses 1.5-4)",
            GUIDANCE.start(),
            GUIDANCE.end()
        )));
    }
    Ok(())
}

/// The host memory available now, in bytes, where the platform tells (Linux).
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses to allocate `bytes` of host memory for `what` when that is over what is
/// available (platforms that do not tell are not checked).
pub fn host_memory(what: &str, bytes: u64) -> Result<()> {
    match host_available() {
        Some(free) if bytes > free => Err(Error::Limit(format!(
            "{what} would need about {} of memory, and {} is available; make it smaller",
            crate::files::human_bytes(bytes),
            crate::files::human_bytes(free)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_their_bounds_are_named() {
        assert!(at_most("steps", MAX_STEPS, MAX_STEPS).is_ok());
        let e = at_most("steps", MAX_STEPS + 1, MAX_STEPS).unwrap_err();
        assert!(e.to_string().contains("`steps` is 10000001"), "{e}");
        for g in [f32::NAN, f32::INFINITY, -1.0, 1e30] {
            let e = guidance("guidance", g).unwrap_err().to_string();
            assert!(e.contains(&format!("{g}")), "{e}");
        }
        assert!(guidance("guidance", 1.5).is_ok());
    }

    #[test]
    fn an_allocation_over_the_host_memory_is_refused() {
        if host_available().is_none() {
            return; // not told on this platform: nothing to check against
        }
        let e = host_memory("the data set", u64::MAX / 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the data set would need about"), "{e}");
        assert!(host_memory("a byte", 1).is_ok());
    }
}
