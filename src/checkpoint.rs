//! Training checkpoints: one safetensors file holding the model's parameters under their names,
//! AdamW's moments under `adamw.m.<name>` and `adamw.v.<name>`, and as metadata the model's
//! `config`, the `step` reached, the `adamw` settings and the data sampler's `seed` (each step's
//! batch is drawn from the seed and the step, so these two are the whole RNG state). Written
//! through a temporary file and a rename, so a checkpoint on disk is always whole.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::io::{read_tensors, write_tensors};
use crate::model::{GpuModel, Model, ModelConfig, Tensors};
use crate::ops::adamw::{AdamW, AdamWState};

/// Tensor name prefixes of AdamW's first and second moments.
const FIRST: &str = "adamw.m.";
const SECOND: &str = "adamw.v.";

/// A training run's whole state, read back from the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The model's config and parameters.
    pub model: Model,
    /// AdamW's first and second moments by parameter name.
    pub moments: (Tensors, Tensors),
    /// Steps taken.
    pub step: u64,
    /// AdamW's settings.
    pub adamw: AdamW,
    /// The data sampler's seed.
    pub seed: u64,
}

impl Checkpoint {
    /// The state of a run: `model`'s parameters and `state`'s moments, read from the device.
    pub fn capture(
        ctx: &GpuContext,
        model: &GpuModel,
        (state, adamw): (&AdamWState, AdamW),
        seed: u64,
    ) -> Result<Self> {
        Ok(Checkpoint {
            model: Model::new(model.config().clone(), model.read_params(ctx)?)?,
            moments: state.moments(ctx)?,
            step: state.steps(),
            adamw,
            seed,
        })
    }

    /// The model and optimizer state on the device, to go on from `self.step`.
    pub fn resume(&self, ctx: &GpuContext) -> Result<(GpuModel, AdamWState)> {
        let model = GpuModel::new(ctx, &self.model)?;
        let (m, v) = &self.moments;
        let state = AdamWState::restore(ctx, &model, (m, v), self.step)?;
        Ok((model, state))
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = self.model.params().clone();
        for (prefix, set) in [(FIRST, &self.moments.0), (SECOND, &self.moments.1)] {
            for (name, t) in set {
                tensors.insert(format!("{prefix}{name}"), t.clone());
            }
        }
        let adamw = serde_json::to_string(&self.adamw).expect("AdamW serialises");
        let metadata = HashMap::from([
            ("config".to_string(), self.model.config().to_json()),
            ("step".to_string(), self.step.to_string()),
            ("adamw".to_string(), adamw),
            ("seed".to_string(), self.seed.to_string()),
        ]);
        write_tensors(path, &tensors, metadata)
    }

    /// Reads a checkpoint [`Self::save`] wrote; a missing or malformed part is an error naming
    /// it.
    pub fn load(path: &Path) -> Result<Self> {
        let (mut tensors, metadata) = read_tensors(path)?;
        let field = |key: &str| {
            metadata.get(key).ok_or_else(|| {
                Error::file(
                    path,
                    format!("has no metadata key \"{key}\" (not a checkpoint?)"),
                )
            })
        };
        let number = |key: &str| -> Result<u64> {
            let text = field(key)?;
            text.parse()
                .map_err(|_| Error::file(path, format!("metadata {key} = {text:?} is not a count")))
        };
        let adamw: AdamW = serde_json::from_str(field("adamw")?)
            .map_err(|e| Error::file(path, format!("metadata adamw: {e}")))?;
        adamw.check()?;
        let mut take = |prefix: &str| -> Tensors {
            let names: Vec<String> = tensors
                .keys()
                .filter(|n| n.starts_with(prefix))
                .cloned()
                .collect();
            names
                .into_iter()
                .map(|n| {
                    let t = tensors.remove(&n).expect("listed above");
                    (n[prefix.len()..].to_string(), t)
                })
                .collect()
        };
        let moments = (take(FIRST), take(SECOND));
        let config = ModelConfig::from_json(field("config")?)?;
        Ok(Checkpoint {
            model: Model::new(config, tensors)?,
            moments,
            step: number("step")?,
            adamw,
            seed: number("seed")?,
        })
    }
}
