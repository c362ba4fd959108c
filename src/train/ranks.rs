//! The start of a data-parallel run: rank 0 alone opens the run folder and reads its
//! checkpoint, and sends the resolved config and the training state to every rank; every
//! rank then builds its trainer, and the ranks agree that all of them succeeded on the same
//! data before the first step (so a refusal ends every rank cleanly instead of leaving some
//! waiting).

use super::{State, TrainConfig};
use crate::parallel::Collective;
use crate::{Error, Result};

/// Rank 0's `Ok(value)` (encoded by `encode`) on every rank; rank 0's error stays rank 0's,
/// the others get [`Error::OtherRank`].
pub fn share<T>(
    comm: &dyn Collective,
    lead: Option<&Result<T>>,
    encode: impl FnOnce(&T) -> Vec<u8>,
) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8];
    if let Some(Ok(v)) = lead {
        bytes = vec![1u8];
        bytes.extend(encode(v));
    }
    let got = comm.broadcast(bytes)?;
    match got.split_first() {
        Some((1, rest)) => Ok(rest.to_vec()),
        _ => Err(Error::OtherRank { rank: 0 }),
    }
}

/// The config as every rank sees it.
pub fn encode_config(config: &TrainConfig) -> Vec<u8> {
    config.to_toml().into_bytes()
}

pub fn decode_config(bytes: &[u8]) -> Result<TrainConfig> {
    let text = String::from_utf8_lossy(bytes);
    TrainConfig::from_toml(&text).map_err(|e| Error::Config(format!("rank 0's config: {e}")))
}

/// A training state as bytes: the step, then each vector's length and values.
pub fn encode_state(state: &Option<State>) -> Vec<u8> {
    let Some(s) = state else {
        return Vec::new();
    };
    let mut out = s.step.to_le_bytes().to_vec();
    for v in [&s.params, &s.ema, &s.m, &s.v, &s.objective] {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(bytemuck::cast_slice::<f32, u8>(v));
    }
    out
}

pub fn decode_state(bytes: &[u8]) -> Result<Option<State>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let bad = || Error::Config("rank 0's training state arrived damaged".into());
    let (step, mut rest) = bytes.split_at_checked(4).ok_or_else(bad)?;
    let mut vectors = Vec::new();
    for _ in 0..5 {
        let (len, tail) = rest.split_at_checked(8).ok_or_else(bad)?;
        let len = u64::from_le_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let (values, tail) = tail.split_at_checked(len * 4).ok_or_else(bad)?;
        vectors.push(bytemuck::pod_collect_to_vec::<u8, f32>(values));
        rest = tail;
    }
    let mut v = vectors.into_iter();
    let mut next = || v.next().unwrap_or_default();
    Ok(Some(State {
        step: u32::from_le_bytes(step.try_into().map_err(|_| bad())?),
        params: next(),
        ema: next(),
        m: next(),
        v: next(),
        objective: next(),
        // Only rank 0 writes logs and checkpoints; it keeps its own.
        last_loss: None,
    }))
}

/// Whether every rank got ready on the same data: this rank's own error (unless rank 0 failed
/// too: then rank 0 reports, as the ranks mostly fail alike), or [`Error::OtherRank`] naming
/// the first rank that failed.
pub fn agree<T>(comm: &dyn Collective, mine: Result<T>, fingerprint: u64) -> Result<T> {
    let ok = f32::from(mine.is_ok());
    let halves = [fingerprint as u32, (fingerprint >> 32) as u32].map(f32::from_bits);
    let all = comm.all_gather(&[ok, halves[0], halves[1]])?;
    let ranks: Vec<&[f32]> = all.chunks(3).collect();
    let print = |p: &[f32]| (p[1].to_bits() as u64) | ((p[2].to_bits() as u64) << 32);
    if mine.is_err() && comm.rank() != 0 && ranks[0][0] == 0.0 {
        return Err(Error::OtherRank { rank: 0 });
    }
    let mine = mine?;
    if let Some(rank) = ranks.iter().position(|p| p[0] == 0.0) {
        return Err(Error::OtherRank { rank });
    }
    let lead = print(ranks[0]);
    if let Some(rank) = ranks.iter().position(|p| print(p) != lead) {
        return Err(Error::Data(format!(
            "rank {rank} loaded other data than rank 0 (fingerprint {:016x} vs {lead:016x}); \
             give every machine the same data files",
            print(ranks[rank])
        )));
    }
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_encoding() {
        let s = State {
            step: 7,
            params: vec![1.0, -2.5],
            ema: vec![3.0, 4.0],
            m: vec![0.5, 0.25],
            v: vec![1e-8, 2e-8],
            objective: vec![],
            last_loss: None,
        };
        let back = decode_state(&encode_state(&Some(s))).unwrap().unwrap();
        assert_eq!(
            (back.step, back.params, back.objective.len()),
            (7, vec![1.0, -2.5], 0)
        );
        assert!(decode_state(&[1, 2, 3]).is_err());
        assert!(decode_state(&[]).unwrap().is_none());
    }
}
