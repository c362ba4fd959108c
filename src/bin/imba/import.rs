//! `imba import`: a reference DiT's state dict saved in PyTorch turned into a model file that
//! `imba sample --model` takes (its shape, process and label names in the metadata).

use clap::Args;
use imba::diffusion::Process;
use imba::Error;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ImportArgs {
    /// The state dict: a safetensors file of the reference DiT's tensors (facebookresearch/DiT
    /// names), e.g. from `safetensors.torch.save_file(model.state_dict(), path)`;
    /// learn_sigma = true or false.
    state_dict: PathBuf,
    /// Attention heads, which the tensors do not record (the DiT paper's S: 6, B: 12, L and
    /// XL: 16).
    #[arg(long)]
    heads: u32,
    /// What the model predicts: ddpm (ε, the reference DiT's) or flow (velocity).
    #[arg(long, default_value = "ddpm", value_parser = parse_process)]
    process: Process,
    /// Label names, comma-separated, one per label in label order [default: 0, 1, 2, …].
    #[arg(long, value_delimiter = ',')]
    label_names: Vec<String>,
    /// The model file to write [default: beside the state dict, <name>-imba.safetensors].
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_process(s: &str) -> Result<Process, String> {
    Process::from_name(s).ok_or_else(|| format!("`{s}`: give ddpm (ε-prediction) or flow"))
}

pub fn run(a: ImportArgs) -> imba::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| beside(&a.state_dict));
    // Never over another file: a model of another import or run would be lost.
    if out.exists() {
        return Err(Error::Config(format!(
            "{} exists; choose another --out, or remove it first",
            out.display()
        )));
    }
    let data = std::fs::read(&a.state_dict).map_err(|e| {
        Error::checkpoint(&a.state_dict, format!("cannot read ({e}); check the path"))
            .with_source(e)
    })?;
    let sd = imba::model::state_dict::read(&a.state_dict, &data, a.heads)?;
    let names = label_names(&a.label_names, sd.model.num_labels)?;
    imba::train::export::save_imported(&out, &sd.model, a.process, &names, &sd.params)?;
    let m = &sd.model;
    println!(
        "model: {}×{}×{} images, patch {}, D {}, depth {}, {} heads, MLP ×{}, {} labels; {}",
        m.height,
        m.width,
        m.channels,
        m.patch,
        m.dim,
        m.depth,
        m.heads,
        m.mlp_ratio,
        m.num_labels,
        a.process.name()
    );
    if sd.learn_sigma {
        println!(
            "learn_sigma = true: the output layer's ε rows were taken, its variance rows dropped"
        );
    }
    println!("written: {}", out.display());
    println!("sample it: imba sample --model {}", out.display());
    Ok(())
}

/// `<name>-imba.safetensors` in the state dict's folder.
fn beside(state_dict: &Path) -> PathBuf {
    let stem = state_dict.file_stem().unwrap_or_default().to_string_lossy();
    state_dict.with_file_name(format!("{stem}-imba.safetensors"))
}

/// The names given (one per label, each distinct and not empty), or the label numbers.
fn label_names(given: &[String], labels: u32) -> imba::Result<Vec<String>> {
    if given.is_empty() {
        return Ok((0..labels).map(|l| l.to_string()).collect());
    }
    if given.len() != labels as usize {
        return Err(Error::Config(format!(
            "{} label names for a model of {labels} labels (its label table has {} rows, the \
             last the null label of classifier-free guidance); give one per label, in order",
            given.len(),
            labels + 1
        )));
    }
    for (i, n) in given.iter().enumerate() {
        if n.trim().is_empty() || given[..i].contains(n) {
            return Err(Error::Config(format!(
                "label name {} (`{n}`) is empty or repeated; give distinct names",
                i + 1
            )));
        }
    }
    Ok(given.to_vec())
}
