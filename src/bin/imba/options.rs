//! Options shared by several commands: evaluation sampling, a TOML file under the flags.

use clap::Args;
use imba::eval::EvalOptions;
use imba::train::TrainOptions;
use std::path::Path;

/// How evaluation samples are drawn.
#[derive(Args)]
pub struct EvalSampling {
    /// Samples per label (per prompt for shapes concepts; 0 = toy2d 100, shapes 16, all 256
    /// concept prompts once, digits 50).
    #[arg(long, default_value_t = 0)]
    pub eval_per_label: u32,
    /// DDIM (or Euler) steps of the evaluation samples.
    #[arg(long, default_value_t = 50)]
    pub eval_steps: u32,
    /// Classifier-free guidance of the evaluation samples.
    #[arg(long, default_value_t = 1.5)]
    pub eval_guidance: f32,
    /// Noise seed of the evaluation samples.
    #[arg(long, default_value_t = 1000)]
    pub eval_seed: u32,
}

impl From<&EvalSampling> for EvalOptions {
    fn from(s: &EvalSampling) -> Self {
        EvalOptions {
            per_label: s.eval_per_label,
            steps: s.eval_steps,
            guidance: s.eval_guidance,
            seed: s.eval_seed,
            ema: true,
        }
    }
}

/// Command-line options over those of a TOML file.
pub fn with_file(opts: TrainOptions, file: Option<&Path>) -> imba::Result<TrainOptions> {
    Ok(match file {
        Some(f) => opts.or(TrainOptions::from_toml_file(f)?),
        None => opts,
    })
}

/// `--dataset idx:DIR` and `--dataset folder:DIR` (also `--dataset=…`): the data set and its
/// folder in one option, spelled out as `--dataset KIND --data-path DIR` before parsing. A
/// `--data-path` beside such a shorthand is refused: the two would disagree.
pub fn expand_dataset_paths(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, String> {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let mut out = Vec::with_capacity(args.len() + 2);
    let (mut expanded, mut given_path) = (false, false);
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        given_path |= arg == "--data-path" || arg.starts_with("--data-path=");
        let value = match arg.strip_prefix("--dataset=") {
            Some(v) => Some(v.to_string()),
            None if arg == "--dataset" => args.get(i + 1).map(|v| v.to_string_lossy().into()),
            None => None,
        };
        let split = value.as_deref().and_then(|v| {
            ["idx", "folder"]
                .into_iter()
                .find_map(|k| Some((k, v.strip_prefix(k)?.strip_prefix(':')?)))
        });
        match split {
            Some((kind, dir)) => {
                if dir.is_empty() {
                    return Err(format!(
                        "--dataset {kind}: names no folder; give {kind}:DIR"
                    ));
                }
                out.extend(["--dataset", kind, "--data-path", dir].map(Into::into));
                expanded = true;
                i += if arg == "--dataset" { 2 } else { 1 };
            }
            None => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    if expanded && given_path {
        return Err(
            "--dataset KIND:DIR names the data folder; leave --data-path out (or give \
             --dataset KIND --data-path DIR)"
                .into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand_dataset_paths;

    fn expand(args: &[&str]) -> Result<Vec<String>, String> {
        let os = args.iter().map(std::ffi::OsString::from);
        let out = expand_dataset_paths(os)?;
        Ok(out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn a_dataset_with_its_folder_is_spelled_out() {
        let want = [
            "imba",
            "train",
            "--dataset",
            "idx",
            "--data-path",
            "/d/f",
            "--steps",
            "3",
        ];
        let got = expand(&["imba", "train", "--dataset", "idx:/d/f", "--steps", "3"]).unwrap();
        assert_eq!(got, want);
        let got = expand(&["imba", "train", "--dataset=idx:/d/f", "--steps", "3"]).unwrap();
        assert_eq!(got, want);
        let got = expand(&["imba", "train", "--dataset", "folder:my:images"]).unwrap();
        assert_eq!(
            got[2..],
            ["--dataset", "folder", "--data-path", "my:images"]
        );
    }

    #[test]
    fn other_arguments_pass_unchanged_and_conflicts_are_named() {
        let plain = [
            "imba",
            "train",
            "--dataset",
            "idx",
            "--data-path",
            "x",
            "--out",
            "idx:y",
        ];
        assert_eq!(expand(&plain).unwrap(), plain);
        assert_eq!(
            expand(&["imba", "--dataset"]).unwrap(),
            ["imba", "--dataset"]
        );
        let both = expand(&["imba", "train", "--dataset", "idx:/a", "--data-path", "/b"]);
        assert!(both.unwrap_err().contains("leave --data-path out"));
        assert!(expand(&["imba", "train", "--dataset", "idx:"])
            .unwrap_err()
            .contains("idx:DIR"));
    }
}
