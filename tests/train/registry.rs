//! The objectives' registry: every registered objective is named, read, built and trained
//! through its registration alone, and the trainer names none of them.

use crate::common;

use common::{assert_error_mentions, gpu};
use imba::objectives::registry::OPTIONS;
use imba::objectives::{ObjectiveKind, REGISTERED};
use imba::train::{setup, TrainConfig, TrainOptions, Trainer};

fn tiny(objective: ObjectiveKind) -> TrainConfig {
    TrainOptions::from_toml(&format!(
        "dataset = 'shapes'\nimage_size = 8\nhead_count = 6\nimbalance = 3.0\nmodel = 'tiny'\n\
         batch = 4\nsteps = 2\nwarmup = 1\nobjective = '{}'\nseed = 3\n",
        objective.name()
    ))
    .unwrap()
    .resolve()
    .unwrap()
}

/// Each name is unique, round-trips through a config's TOML, and the built objective agrees
/// with its registration on the rows of its forward and on D read back.
#[test]
fn every_registered_objective_is_named_built_and_trained_by_its_registration() {
    let mut names: Vec<&str> = REGISTERED.iter().map(|k| k.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), REGISTERED.len(), "a name is registered twice");
    for &kind in REGISTERED {
        let config = tiny(kind);
        assert_eq!(config.objective, kind);
        let again = TrainConfig::from_toml(&config.to_toml()).unwrap();
        assert_eq!(again.objective, kind, "{kind} written and read back");
        let (data, _) = setup::load_data(&config).unwrap();
        let model = setup::model_config(&config, &data).unwrap();
        let mut t = Trainer::new(gpu(), config, model, data, None).unwrap();
        let stats = t.step().unwrap();
        assert!(stats.loss.is_finite(), "{kind}: loss {}", stats.loss);
        assert_eq!(
            t.objective().repeats(),
            kind.repeats(),
            "{kind}: forward rows"
        );
        if kind.registration().logs_d {
            assert!(
                t.objective().monitored_weights().is_some(),
                "{kind} logs D unread"
            );
        }
    }
}

/// A registration is asked only about objective options, and says yes only to options it
/// has: an objective that read an unknown key would answer for a key no config has.
#[test]
fn registrations_read_only_known_options() {
    let settings = TrainConfig::default().objective_settings();
    for &kind in REGISTERED {
        let reads = kind.registration().reads;
        assert!(
            !reads(&settings, "lr"),
            "{kind} claims a non-objective option"
        );
        assert!(!reads(&settings, "no_such_option"), "{kind}");
        let read: Vec<&str> = OPTIONS
            .into_iter()
            .filter(|k| reads(&settings, k))
            .collect();
        for key in &read {
            assert!(
                !TrainConfig::default().field(key).is_empty(),
                "{kind} reads unknown `{key}`"
            );
        }
    }
}

#[test]
fn an_unknown_objective_is_refused_with_the_known_ones_listed() {
    let e = TrainOptions::from_toml("objective = 'imbaa'").map(|_| ());
    assert_error_mentions(e, "unknown objective `imbaa`; known: baseline, imba");
    assert_error_mentions(ObjectiveKind::named("").map(|_| ()), "dual-baseline");
}

/// Adding an objective is its file and one line in the registry: the trainer, its config and
/// the run folder name no registered objective (they ask its registration).
#[test]
fn the_trainer_names_no_objective() {
    let root = common::repo_root().join("src/train");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let types = ["Baseline", "Imba", "Cbdm", "Ccua", "Reweighted"];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Tests inside the file may name objectives; the code above them may not.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for &kind in REGISTERED {
            for quoted in [format!("\"{}\"", kind.name()), format!("'{}'", kind.name())] {
                assert!(
                    !code.contains(&quoted),
                    "{} names objective {quoted}",
                    f.display()
                );
            }
        }
        for t in types {
            let path = format!("objectives::{t}");
            let named = code.match_indices(&path).any(|(i, _)| {
                let next = code[i + path.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            assert!(!named, "{} names {path}", f.display());
        }
    }
}
