//! Data-parallel training: R processes (ranks) share every batch, each running the model on
//! its shard of B/R samples, and exchange what the step needs from the whole batch through a
//! [`Collective`]: the gradients (averaged before clipping and AdamW, so every rank keeps the
//! same parameters), the time-bucket normalisation's per-bucket sums, the loss scalars and the
//! monitors' per-sample values (for rank 0's logs), and a stop flag.
//!
//! Every sum is taken in rank order by one rank per element, so the bits do not depend on
//! the transport's reduction algorithm: two runs with the same R are identical, and every
//! rank holds the same values. [`Single`] is one process; with the `mpi` feature,
//! `mpi::Mpi` (feature `mpi`) is a job started by `mpirun`.

#[cfg(feature = "mpi")]
pub mod mpi;

use crate::{Error, Result};

/// What the ranks of one job exchange. Every call is collective: all ranks make the same calls
/// in the same order, with the same lengths.
pub trait Collective {
    /// This process's rank, 0..size.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// The rank among the processes of this machine (which adapter to open).
    fn local_rank(&self) -> usize;
    /// Replaces `values` by their element-wise sum over the ranks, added in rank order; every
    /// rank gets the same bits.
    fn sum(&self, values: &mut [f32]) -> Result<()>;
    /// Every rank's `local` (the same length on every rank), concatenated in rank order, on
    /// every rank.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// Rank 0's `bytes` on every rank (the others' argument is ignored).
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>>;
}

/// The number of processes an MPI launcher (Open MPI's or an MPICH/PMI one) started, if it
/// started this one: read from the environment, before MPI is initialised.
pub fn launched_ranks() -> Option<u64> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

static LOCKSTEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The span in which this process's errors are the whole job's: the other ranks wait for its
/// next exchange (inside a training loop, or between two exchanges of the start-up), so an
/// error there must end the whole job rather than this rank alone. Made by
/// [`Lockstep::enter`]; ended by [`Lockstep::leave`] (past the last exchange) or
/// [`Lockstep::agreed`] (an error every rank meets alike: a refusal the ranks agreed on, a
/// shared stop). Dropped without either, as when an error propagates with `?`, it stays
/// entered, and [`in_lockstep`] tells the caller to end the job.
#[must_use = "a lockstep is left with `leave` or `agreed`; dropping it keeps it entered"]
pub struct Lockstep(());

impl Lockstep {
    /// Enters the lockstep.
    pub fn enter() -> Self {
        LOCKSTEP.store(true, std::sync::atomic::Ordering::SeqCst);
        Lockstep(())
    }

    /// The ranks are past their last exchange.
    pub fn leave(self) {
        LOCKSTEP.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every rank knows of `error`: it ends this rank alone.
    pub fn agreed(self, error: crate::Error) -> crate::Error {
        self.leave();
        error
    }
}

/// Whether an error now would leave other ranks waiting (inside a [`Lockstep`]).
pub fn in_lockstep() -> bool {
    LOCKSTEP.load(std::sync::atomic::Ordering::SeqCst)
}

/// One process: every exchange is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        Ok(bytes)
    }
}

/// Rank `rank`'s part of a global batch of `batch` samples split evenly over `ranks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank, from 0.
    pub rank: u32,
    /// Processes in the job.
    pub ranks: u32,
    /// Samples per rank (B/R).
    pub len: u32,
}

impl Shard {
    /// The whole batch in one process.
    pub fn whole(batch: u32) -> Self {
        Self {
            rank: 0,
            ranks: 1,
            len: batch,
        }
    }

    /// Rank `rank` of `ranks` over a batch of `batch`, which must split evenly.
    pub fn new(batch: u32, rank: u32, ranks: u32) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(Error::Config(format!(
                "rank {rank} of {ranks} does not exist"
            )));
        }
        if !batch.is_multiple_of(ranks) {
            return Err(Error::Config(format!(
                "`batch` {batch} does not split evenly over {ranks} ranks; use a batch that is a \
                 multiple of {ranks} (each rank trains on batch/ranks samples of every step)"
            )));
        }
        Ok(Self {
            rank,
            ranks,
            len: batch / ranks,
        })
    }

    /// The first sample of this shard in the global batch.
    pub fn first(&self) -> u32 {
        self.rank * self.len
    }

    /// The shard's samples in the global batch.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first() as usize..(self.first() + self.len) as usize
    }
}

/// `n` values split into `parts` contiguous chunks, the first n mod parts one longer:
/// (start, length) of each. Rank i adds up chunk i in the fixed-order sum.
pub fn chunks(n: usize, parts: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let chunk = (start, len);
            start += len;
            chunk
        })
        .collect()
}

/// The element-wise sum of `parts` (equal lengths), added in order: what every rank computes
/// for its chunk.
pub fn sum_in_order<'a>(mut parts: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut total = parts.next().map(<[f32]>::to_vec).unwrap_or_default();
    for part in parts {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_value_once() {
        for (n, parts) in [(10, 3), (2, 4), (0, 2), (7, 1), (1_000_003, 8)] {
            let c = chunks(n, parts);
            assert_eq!(c.len(), parts);
            assert_eq!(c.iter().map(|x| x.1).sum::<usize>(), n);
            for w in c.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0);
                assert!(w[0].1 >= w[1].1 && w[0].1 - w[1].1 <= 1);
            }
        }
    }

    #[test]
    fn shards_split_the_batch() {
        let s = Shard::new(12, 2, 3).unwrap();
        assert_eq!((s.first(), s.len, s.range()), (8, 4, 8..12));
        assert!(Shard::new(10, 0, 4)
            .unwrap_err()
            .to_string()
            .contains("multiple of 4"));
        assert!(Shard::new(8, 2, 2).is_err());
    }

    #[test]
    fn the_sum_adds_in_rank_order() {
        let a = [1e8f32, 1.0];
        let b = [-1e8f32, 1.0];
        let c = [1.0f32, 1e8];
        // (1e8 + −1e8) + 1 = 1, where 1e8 + (−1e8 + 1) would give 0: the order is kept.
        let total = sum_in_order([&a[..], &b[..], &c[..]].into_iter());
        assert_eq!(total, vec![1.0, 1e8 + 2.0]);
    }
}
