//! The flat parameter layout: every DiT tensor, with the reference implementation's name and
//! shape (facebookresearch/DiT `models.py`), at an offset in one f32 buffer. Offsets are
//! multiples of 64 values (256 bytes, the largest storage-offset alignment wgpu allows a
//! device to require), so each tensor can be bound as a view; the gaps stay zero.
//! Also: DiT's initialisation, drawn on the CPU from a seed.

use super::config::DitConfig;

/// Values between tensor starts are padded to this multiple.
pub const ALIGN: usize = 64;

/// One named tensor of the flat buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The PyTorch state-dict name (e.g. `blocks.0.attn.qkv.weight`).
    pub name: String,
    /// The PyTorch shape.
    pub shape: Vec<usize>,
    /// First value in the flat buffer.
    pub offset: usize,
}

impl Tensor {
    /// Values in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Byte offset, for binding the tensor as a view.
    pub fn byte_offset(&self) -> u64 {
        self.offset as u64 * 4
    }
}

/// How a tensor is initialised (DiT's `initialize_weights`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Xavier-uniform over (fan_out, fan_in) = the first dim and the product of the rest.
    Xavier,
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
    /// All zeros (the adaLN-Zero modulations and the final layer).
    Zero,
}

/// Every trainable tensor of a config, in the reference's state-dict order.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// The tensors, each with its offset in the flat buffer.
    pub tensors: Vec<Tensor>,
    /// Values in the flat buffer, padding included.
    pub total: usize,
}

impl ParamLayout {
    /// The layout of `c`'s parameters.
    pub fn new(c: &DitConfig) -> Self {
        let (d, k, m) = (c.dim as usize, c.token_dim() as usize, c.mlp_dim() as usize);
        let mut specs: Vec<(String, Vec<usize>)> = vec![
            (
                "x_embedder.proj.weight".into(),
                vec![d, c.channels as usize, c.patch as usize, c.patch as usize],
            ),
            ("x_embedder.proj.bias".into(), vec![d]),
            ("t_embedder.mlp.0.weight".into(), vec![d, 256]),
            ("t_embedder.mlp.0.bias".into(), vec![d]),
            ("t_embedder.mlp.2.weight".into(), vec![d, d]),
            ("t_embedder.mlp.2.bias".into(), vec![d]),
            (
                "y_embedder.embedding_table.weight".into(),
                vec![c.table_rows() as usize, d],
            ),
        ];
        for i in 0..c.depth {
            let b = format!("blocks.{i}");
            specs.extend([
                (format!("{b}.attn.qkv.weight"), vec![3 * d, d]),
                (format!("{b}.attn.qkv.bias"), vec![3 * d]),
                (format!("{b}.attn.proj.weight"), vec![d, d]),
                (format!("{b}.attn.proj.bias"), vec![d]),
                (format!("{b}.mlp.fc1.weight"), vec![m, d]),
                (format!("{b}.mlp.fc1.bias"), vec![m]),
                (format!("{b}.mlp.fc2.weight"), vec![d, m]),
                (format!("{b}.mlp.fc2.bias"), vec![d]),
                (format!("{b}.adaLN_modulation.1.weight"), vec![6 * d, d]),
                (format!("{b}.adaLN_modulation.1.bias"), vec![6 * d]),
            ]);
        }
        specs.extend([
            ("final_layer.linear.weight".into(), vec![k, d]),
            ("final_layer.linear.bias".into(), vec![k]),
            (
                "final_layer.adaLN_modulation.1.weight".into(),
                vec![2 * d, d],
            ),
            ("final_layer.adaLN_modulation.1.bias".into(), vec![2 * d]),
        ]);
        let mut offset = 0;
        let tensors = specs
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor {
                    name,
                    shape,
                    offset,
                };
                offset += t.len().div_ceil(ALIGN) * ALIGN;
                t
            })
            .collect();
        Self {
            tensors,
            total: offset,
        }
    }

    /// The tensor called `name`. Panics on an unknown name: names are fixed by the layout,
    /// so a miss is a bug in the caller.
    pub fn get(&self, name: &str) -> &Tensor {
        self.find(name)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
    }

    /// The tensor named `name`, if the model has one.
    pub fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Trainable values (padding excluded).
    pub fn count(&self) -> usize {
        self.tensors.iter().map(Tensor::len).sum()
    }

    /// DiT's initialisation of a tensor.
    pub fn init_of(name: &str) -> Init {
        if name.starts_with("y_embedder")
            || name.starts_with("t_embedder.mlp.") && name.ends_with("weight")
        {
            Init::Normal(0.02)
        } else if name.contains("adaLN_modulation")
            || name.starts_with("final_layer.linear")
            || name.ends_with("bias")
        {
            Init::Zero
        } else {
            Init::Xavier
        }
    }

    /// A flat buffer initialised as DiT does (xavier-uniform linears and patch embedding,
    /// zero biases, N(0, 0.02) embeddings and timestep MLP, zero adaLN and final linear),
    /// drawn from `seed`.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        self.fill(seed, Self::init_of)
    }

    /// A flat buffer where every tensor, the zero-initialised ones too, is drawn non-zero
    /// (xavier-scale uniform; for tests that must see every gradient path).
    pub fn init_all_nonzero(&self, seed: u64) -> Vec<f32> {
        self.fill(seed, |_| Init::Xavier)
    }

    fn fill(&self, seed: u64, init: impl Fn(&str) -> Init) -> Vec<f32> {
        let mut rng = SplitMix(seed);
        let mut flat = vec![0.0f32; self.total];
        for t in &self.tensors {
            let out = &mut flat[t.offset..t.offset + t.len()];
            match init(&t.name) {
                Init::Zero => {}
                Init::Normal(std) => out
                    .iter_mut()
                    .for_each(|v| *v = (rng.normal() * std) as f32),
                Init::Xavier => {
                    let fan_out = t.shape[0] as f64;
                    let fan_in = if t.shape.len() > 1 {
                        t.len() as f64 / fan_out
                    } else {
                        fan_out
                    };
                    let a = (6.0 / (fan_in + fan_out)).sqrt();
                    out.iter_mut()
                        .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * a) as f32);
                }
            }
        }
        flat
    }
}

/// splitmix64: a small, fixed generator for initialisation (reproducible across platforms).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Box–Muller.
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
