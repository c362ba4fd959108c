//! How this process was started: alone, or as one rank of an `mpirun` job (data-parallel
//! `imba train`, with the `mpi` feature). A rank's error ends the whole job, so that no rank
//! waits for one that has stopped.

use imba::parallel::{Collective, Single};
use std::process::ExitCode;

/// This process's place in its job.
pub enum Job {
    Single,
    #[cfg(feature = "mpi")]
    Mpi(imba::parallel::mpi::Mpi),
}

impl Job {
    /// Joins the MPI job this process was launched into, if any. `trains` tells whether the
    /// command is `imba train`, the only one that runs data-parallel.
    pub fn start(trains: bool) -> imba::Result<Self> {
        let launched = imba::parallel::launched_ranks();
        let ranks = launched.unwrap_or(1);
        #[cfg(feature = "mpi")]
        if launched.is_some() {
            let mpi = imba::parallel::mpi::Mpi::init()?;
            if mpi.size() > 1 && !trains {
                // Rank 0 says why; the others end quietly.
                let e = match mpi.rank() {
                    0 => only_train(ranks),
                    _ => imba::Error::OtherRank { rank: 0 },
                };
                drop(mpi);
                return Err(e);
            }
            return Ok(Job::Mpi(mpi));
        }
        if ranks > 1 {
            let e = if trains {
                imba::Error::Config(format!(
                    "started as one of {ranks} MPI ranks, but this imba was built without \
                     data-parallel training; rebuild with `cargo build --release --features \
                     mpi` (needs libopenmpi-dev and libclang-dev)"
                ))
            } else {
                only_train(ranks)
            };
            return Err(e);
        }
        Ok(Job::Single)
    }

    pub fn comm(&self) -> &dyn Collective {
        match self {
            Job::Single => &Single,
            #[cfg(feature = "mpi")]
            Job::Mpi(m) => m,
        }
    }

    /// The exit code of `result`, its error printed (in a job of several ranks, with the
    /// rank). An error met inside the training loop that only this rank can have met ends
    /// every rank (MPI_Abort), since the others wait for its next exchange; errors every rank
    /// met alike (a refusal before the first step, a divergence, a stop signal) end each rank
    /// normally.
    pub fn finish(self, result: imba::Result<()>) -> ExitCode {
        let (rank, size) = (self.comm().rank(), self.comm().size());
        let e = match result {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => e,
        };
        let who = if size > 1 {
            format!(" (rank {rank} of {size})")
        } else {
            String::new()
        };
        match e {
            imba::Error::OtherRank { .. } => ExitCode::FAILURE,
            imba::Error::Interrupted { signal, .. } => {
                if rank == 0 {
                    say(&e.to_string());
                }
                ExitCode::from((128 + signal) as u8)
            }
            e => {
                // Every rank diverges at the same step: rank 0 says so.
                let everywhere = matches!(e, imba::Error::Diverged(_));
                if rank == 0 || !everywhere {
                    say(&format!("error{who}: {e}"));
                }
                if imba::parallel::in_lockstep() && !everywhere {
                    self.abort_others(1);
                }
                ExitCode::FAILURE
            }
        }
    }

    fn abort_others(&self, code: i32) {
        #[cfg(feature = "mpi")]
        if let Job::Mpi(m) = self {
            if m.size() > 1 {
                m.abort(code);
            }
        }
        let _ = code;
    }
}

/// One line on stderr in one write, so that the lines of several ranks (forwarded by
/// `mpirun`) do not interleave.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

fn only_train(ranks: u64) -> imba::Error {
    imba::Error::Config(format!(
        "started as one of {ranks} MPI ranks: only `imba train` runs data-parallel; run the \
         other commands without mpirun"
    ))
}
