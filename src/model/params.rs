//! A model on the host: its config and its parameters by name, checked against each other.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

use super::ModelConfig;

/// A row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Its shape, row-major.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Refuses data whose length is not the product of `shape`, naming `name`.
    pub fn new(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                tensor: name.into(),
                shape,
                expected,
                count: data.len(),
            });
        }
        Ok(HostTensor { shape, data })
    }

    /// Refuses NaN and infinities, naming the tensor and the first bad index.
    pub fn check_finite(&self, name: &str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            Some(index) => Err(Error::NonFinite {
                tensor: name.into(),
                index,
                value: self.data[index],
            }),
            None => Ok(()),
        }
    }

    /// The Euclidean norm, in f64.
    pub fn norm(&self) -> f64 {
        self.data
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// Tensors by name, sorted (the order safetensors writes them in).
pub type Tensors = BTreeMap<String, HostTensor>;

/// A config and parameters that agree with it: every parameter present, with its shape, finite,
/// and nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    config: ModelConfig,
    params: Tensors,
}

impl Model {
    /// Checks `config` and that `params` holds exactly its parameters, with their shapes and
    /// finite values; the error names the field or tensor at fault.
    pub fn new(config: ModelConfig, params: Tensors) -> Result<Self> {
        config.validate()?;
        for (name, shape) in config.parameter_shapes_lazily() {
            let tensor = params.get(&name).ok_or_else(|| Error::MissingTensor {
                tensor: name.clone(),
                context: "the model".into(),
            })?;
            if tensor.shape != shape {
                return Err(Error::ShapeMismatch {
                    tensor: name.clone(),
                    expected: shape,
                    got: tensor.shape.clone(),
                });
            }
            tensor.check_finite(&name)?;
        }
        // Every parameter was found: any other tensor is one too many (and the names are no
        // more than the file's tensors).
        let extra = if params.len() > config.parameter_count() {
            let names: std::collections::HashSet<String> =
                config.parameter_shapes_lazily().map(|(n, _)| n).collect();
            params.keys().find(|k| !names.contains(*k))
        } else {
            None
        };
        if let Some(extra) = extra {
            return Err(Error::bad_tensor(
                extra.clone(),
                format!(
                    "is not a parameter of the config ({} layers); the config contradicts the tensors",
                    config.n_layers
                ),
            ));
        }
        Ok(Model { config, params })
    }

    /// A random model: weights uniform with standard deviation 1/sqrt(fan-in), LayerNorm
    /// weights near 1, biases small, none of them zero.
    pub fn random(config: ModelConfig, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = Tensors::new();
        for (name, shape) in config.parameter_shapes() {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with(".bias") {
                (0..len).map(|_| rng.random_range(-0.1..0.1)).collect()
            } else if shape.len() == 1 {
                (0..len).map(|_| rng.random_range(0.8..1.2)).collect()
            } else {
                // Uniform on [-a, a] has standard deviation a / sqrt(3).
                let a = (3.0 / shape[1] as f32).sqrt();
                (0..len).map(|_| rng.random_range(-a..a)).collect()
            };
            params.insert(name, HostTensor { shape, data });
        }
        Model::new(config, params)
    }

    /// Parameters initialised as GPT-2 does for training: every weight matrix normal with
    /// standard deviation 0.02, those of the projections that add into the residual stream
    /// (attn.o and mlp.fc2) scaled by 1 / sqrt(2 n_layers); biases 0; LayerNorm weights 1,
    /// biases 0. Drawn from `seed` in the parameters' name order. ([`Model::random`] is the
    /// tests' initialisation: uniform, with non-trivial LayerNorms and biases.)
    pub fn init(config: ModelConfig, seed: u64) -> Result<Self> {
        const STD: f64 = 0.02;
        config.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let residual = 1.0 / (2.0 * config.n_layers as f64).sqrt();
        let mut params = Tensors::new();
        for (name, shape) in config.parameter_shapes() {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = if shape.len() == 1 {
                // The only 1-D weights are LayerNorms'; every other 1-D tensor is a bias.
                vec![if name.ends_with(".weight") { 1.0 } else { 0.0 }; len]
            } else {
                let scaled = name.ends_with("attn.o.weight") || name.ends_with("mlp.fc2.weight");
                let std = if scaled { STD * residual } else { STD };
                (0..len)
                    .map(|_| (std * standard_normal(&mut rng)) as f32)
                    .collect()
            };
            params.insert(name, HostTensor { shape, data });
        }
        Model::new(config, params)
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Every parameter by name.
    pub fn params(&self) -> &Tensors {
        &self.params
    }

    /// The parameter `name` (one of `config().parameter_shapes()`).
    pub fn param(&self, name: &str) -> &HostTensor {
        &self.params[name]
    }

    /// The same parameters under another attention setting.
    pub fn with_config(&self, config: ModelConfig) -> Result<Self> {
        Model::new(config, self.params.clone())
    }
}

/// A standard normal draw (Box-Muller: rand has no normal distribution without rand_distr).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    // 1 - u is in (0, 1], so its logarithm is finite.
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}
