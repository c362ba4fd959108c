//! What a comparison refuses before it trains: variants and seeds given twice, options no
//! compared run reads, values out of range.

use super::*;

/// The resolved base config, once the variants, their order and the data set are known to
/// make a comparison.
pub(super) fn check(spec: &CompareSpec) -> Result<crate::train::TrainConfig> {
    if spec.variants.is_empty() || spec.seeds.is_empty() {
        return Err(Error::Config(
            "compare needs at least one objective and one seed".into(),
        ));
    }
    for v in &spec.variants {
        variant(v)?;
    }
    refuse_repeats("objective", &spec.variants)?;
    refuse_repeats("seed", &spec.seeds)?;
    if spec.data_per_seed && spec.base.data_seed.is_some() {
        return Err(Error::Config(
            "--data-per-seed sets each run's data seed to its seed; leave out --data-seed (or \
             drop --data-per-seed to keep one data set for every seed)"
                .into(),
        ));
    }
    spec.eval.validate()?;
    for &g in &spec.sweep {
        crate::bounds::guidance("guidance-sweep", g)?;
    }
    if let Some(c) = spec.control.as_ref().filter(|c| !spec.variants.contains(c)) {
        return Err(Error::Config(format!(
            "the control `{c}` is not among the compared objectives {:?}; add it or choose one \
             of them",
            spec.variants
        )));
    }
    let position = |name: &str| spec.variants.iter().position(|v| v == name);
    if let Some(i) = position("invdiff") {
        if position("baseline").is_none_or(|b| b > i) {
            return Err(Error::Config(
                "the invdiff variant freezes the baseline run of each seed: list baseline \
                 before invdiff"
                    .into(),
            ));
        }
    }
    let base = spec.base.clone().resolve()?;
    // Refused before any training: there would be nothing to score the runs with.
    if base.dataset == DatasetKind::Folder {
        return Err(Error::Config(
            "compare needs an oracle: use toy2d, shapes or digits (folder data sets cannot be \
             evaluated)"
                .into(),
        ));
    }
    Ok(base)
}

/// The training options given to a comparison that none of its runs reads: those every
/// run sets itself (`seed` from --seeds, `sample_count`, an objective's own keys) and those
/// no compared objective or the data set reads (IMBA's γ in a comparison of baselines).
pub fn unread(spec: &CompareSpec) -> Result<Vec<&'static str>> {
    let mut unread = Vec::new();
    'names: for name in spec.base.given() {
        if matches!(name, "seed" | "sample_count") {
            unread.push(name);
            continue;
        }
        for v in &spec.variants {
            let own = variant(v)?;
            if own.given().contains(&name) {
                continue;
            }
            if own.or(spec.base.clone()).resolve()?.reads(name) {
                continue 'names;
            }
        }
        unread.push(name);
    }
    Ok(unread)
}

/// Refuses a list that names an item twice (two runs of one objective and seed would be
/// counted as two).
pub(super) fn refuse_repeats<T: PartialEq + std::fmt::Display>(
    what: &str,
    items: &[T],
) -> Result<()> {
    for (i, x) in items.iter().enumerate() {
        if items[..i].contains(x) {
            return Err(Error::Config(format!(
                "{what} {x} is listed twice; list each {what} once"
            )));
        }
    }
    Ok(())
}
