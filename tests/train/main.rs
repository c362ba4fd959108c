//! Training, sampling, evaluation and the remedies through the library: resume, the
//! oracles, SeedSelect and InvDiff.

#[path = "../common/mod.rs"]
mod common;

mod eval;
mod invdiff;
mod live;
mod registry;
mod seedselect;
mod train;
