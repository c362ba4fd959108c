//! The [`Collective`] of a job started by `mpirun` (Open MPI or MPICH), through the `mpi`
//! crate. The sum is a reduce-scatter and an all-gather written as MPI_Alltoallv and
//! MPI_Allgatherv, with the additions done here in rank order: each rank moves 2·(R−1)/R of
//! the vector, as a ring all-reduce does, and the bits do not depend on MPI's algorithms.

use super::{chunks, sum_in_order, Collective};
use crate::{Error, Result};
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

/// MPI's world communicator, and this process's rank on its machine.
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    // Dropped last: MPI_Finalize.
    _universe: mpi::environment::Universe,
}

impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Config("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(Self {
            world,
            local_rank,
            _universe: universe,
        })
    }

    /// Ends every rank of the job with `code` (what a rank does on an error the others cannot
    /// see, so that none of them waits for it forever).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

fn counts(parts: &[(usize, usize)]) -> Result<(Vec<Count>, Vec<Count>)> {
    let c = |v: usize| {
        Count::try_from(v).map_err(|_| Error::Limit(format!("{v} values exceed MPI's counts")))
    };
    let lens = parts.iter().map(|p| c(p.1)).collect::<Result<_>>()?;
    let starts = parts.iter().map(|p| c(p.0)).collect::<Result<_>>()?;
    Ok((lens, starts))
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn sum(&self, values: &mut [f32]) -> Result<()> {
        let (ranks, me) = (self.size(), self.rank());
        if ranks == 1 {
            return Ok(());
        }
        let parts = chunks(values.len(), ranks);
        let (lens, starts) = counts(&parts)?;
        // Chunk `me` of every rank, in rank order.
        let mine = parts[me].1;
        let recv_lens = vec![lens[me]; ranks];
        let recv_starts: Vec<Count> = (0..ranks).map(|i| (i * mine) as Count).collect();
        let mut gathered = vec![0.0f32; mine * ranks];
        self.world.all_to_all_varcount_into(
            &Partition::new(&*values, &lens[..], &starts[..]),
            &mut PartitionMut::new(&mut gathered[..], recv_lens, recv_starts),
        );
        let total = match mine {
            0 => Vec::new(),
            _ => sum_in_order(gathered.chunks(mine)),
        };
        self.world.all_gather_varcount_into(
            &total[..],
            &mut PartitionMut::new(values, &lens[..], &starts[..]),
        );
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let mut all = vec![0.0f32; local.len() * self.size()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }

    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        let mut buf = if self.rank() == 0 {
            bytes
        } else {
            vec![0u8; len as usize]
        };
        root.broadcast_into(&mut buf[..]);
        Ok(buf)
    }
}
