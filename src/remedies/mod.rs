//! Remedies that work on a trained model instead of changing its training objective:
//! SeedSelect (optimise the initial noise of a rare concept's samples) and InvDiff (a small
//! correction model trained beside the frozen one on loss-inferred groups).

pub mod invdiff;
pub mod seedselect;
