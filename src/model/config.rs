//! The model's configuration: the JSON of the `config` metadata key (shared/DESIGN.md §4), and
//! the names and shapes of the parameters it implies.

use serde::{Deserialize, Serialize};

use crate::attention::{Attention, AttentionKind};
use crate::error::{Error, Result};

use super::HostTensor;

/// Sizes and settings of a model, as stored in the safetensors metadata key `config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Blocks.
    pub n_layers: usize,
    /// The residual stream's width D.
    pub d_model: usize,
    /// Attention heads per block.
    pub n_heads: usize,
    /// Width of each head's q and k.
    pub d_qk: usize,
    /// Width of each head's v.
    pub d_v: usize,
    /// Width of the MLP's hidden layer.
    pub d_ff: usize,
    /// Whether position i attends to positions up to i only.
    pub causal: bool,
    /// "exact" or "poly" in the JSON.
    pub attention: AttentionKind,
    /// Degree of the Taylor polynomial (even, 2 to 8); read only when `attention` is "poly".
    #[serde(default = "default_degree")]
    pub degree: u32,
    /// LayerNorm's epsilon.
    pub ln_eps: f64,
    /// A language model's token embedding `tok_emb.weight [vocab_size, d_model]`: the input is
    /// then token ids `[B, n]` in `0..vocab_size` ([`crate::Tokens`]). Absent in the JSON:
    /// none, the input is x `[B, n, d_model]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Learned positions `pos_emb.weight [max_seq, d_model]`, added to the token embedding
    /// (needs `vocab_size`); a sequence may be at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seq: Option<usize>,
    /// An output head from y to `vocab_size` logits (needs `vocab_size`): "tied" (the token
    /// embedding's matrix) or "separate" (`head.weight [vocab_size, d_model]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadKind>,
}

/// How a language model's output head gets its matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// logits = y tok_emb.weight^T.
    Tied,
    /// logits = y head.weight^T.
    Separate,
}

/// The largest vocabulary and max_seq: their tables are rows of d_model.
pub const MAX_TABLE_ROWS: usize = 1 << 20;

/// The largest size field (layers, widths, heads) and the largest n_heads x d_qk or d_v: far
/// past any model a device can hold, small enough that nothing sized from a config overflows.
pub const MAX_SIZE: usize = 1 << 16;

/// Parameters per block.
const PER_LAYER: usize = 12;

fn default_degree() -> u32 {
    2
}

/// A small causal model with polynomial attention at degree 2: 2 layers, width 256, 4 heads of
/// 64, an MLP of 1024. Change it field by field, or through [`ModelConfig::builder`].
impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            n_layers: 2,
            d_model: 256,
            n_heads: 4,
            d_qk: 64,
            d_v: 64,
            d_ff: 1024,
            causal: true,
            attention: AttentionKind::Poly,
            degree: default_degree(),
            ln_eps: 1e-5,
            vocab_size: None,
            max_seq: None,
            head: None,
        }
    }
}

/// Builds a [`ModelConfig`] from [`ModelConfig::default`]; [`Self::build`] checks it.
#[derive(Clone, Debug)]
pub struct ModelConfigBuilder {
    config: ModelConfig,
}

impl ModelConfigBuilder {
    /// Blocks.
    pub fn layers(mut self, n_layers: usize) -> Self {
        self.config.n_layers = n_layers;
        self
    }

    /// The residual stream's width D.
    pub fn width(mut self, d_model: usize) -> Self {
        self.config.d_model = d_model;
        self
    }

    /// Heads, and the width of each head's q and k, and of its v.
    pub fn heads(mut self, n_heads: usize, d_qk: usize, d_v: usize) -> Self {
        self.config.n_heads = n_heads;
        self.config.d_qk = d_qk;
        self.config.d_v = d_v;
        self
    }

    /// The MLP's hidden width.
    pub fn mlp(mut self, d_ff: usize) -> Self {
        self.config.d_ff = d_ff;
        self
    }

    /// Causal attention or not.
    pub fn causal(mut self, causal: bool) -> Self {
        self.config.causal = causal;
        self
    }

    /// Exact or polynomial attention (and its degree).
    pub fn attention(mut self, attention: Attention) -> Self {
        self.config = self.config.with_attention(attention);
        self
    }

    /// LayerNorm's epsilon.
    pub fn ln_eps(mut self, ln_eps: f64) -> Self {
        self.config.ln_eps = ln_eps;
        self
    }

    /// A language model: a token embedding of `vocab_size`, learned positions up to
    /// `max_seq` (None: none), and an output head (None: y is the output).
    pub fn language_model(
        mut self,
        vocab_size: usize,
        max_seq: Option<usize>,
        head: Option<HeadKind>,
    ) -> Self {
        self.config.vocab_size = Some(vocab_size);
        self.config.max_seq = max_seq;
        self.config.head = head;
        self
    }

    /// The config, checked as a file's would be ([`ModelConfig::validate`]).
    pub fn build(self) -> Result<ModelConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl ModelConfig {
    /// A builder starting from [`ModelConfig::default`].
    pub fn builder() -> ModelConfigBuilder {
        ModelConfigBuilder {
            config: ModelConfig::default(),
        }
    }

    /// Parses the `config` JSON and checks every field.
    pub fn from_json(json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::config("config", format!("not valid JSON: {e}")))?;
        // serde would also read a struct from a positional array; the contract is an object.
        if !value.is_object() {
            return Err(Error::config(
                "config",
                "must be a JSON object of named fields (shared/DESIGN.md §4)",
            ));
        }
        if let Some(name) = value.get("attention").and_then(|a| a.as_str()) {
            AttentionKind::from_name(name)
                .map_err(|e| Error::config("attention", e.to_string()))?;
        }
        let config: ModelConfig = serde_json::from_value(value)
            .map_err(|e| Error::config("config", format!("not valid model JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The config as the JSON of the `config` metadata key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ModelConfig always serialises")
    }

    /// Refuses sizes of zero, a non-positive or non-finite ln_eps, an unknown attention and
    /// an odd or unsupported degree, naming the field.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("n_layers", self.n_layers),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_qk", self.d_qk),
            ("d_v", self.d_v),
            ("d_ff", self.d_ff),
        ] {
            if value == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
            // Bounded before anything is sized from it: a config of 1e15 layers once grew
            // the process to 24 GB listing parameter names.
            if value > MAX_SIZE {
                return Err(Error::config(
                    field,
                    format!("is {value}; polygrad takes at most {MAX_SIZE}"),
                ));
            }
        }
        for (field, heads, width) in [
            ("n_heads x d_qk", self.n_heads, self.d_qk),
            ("n_heads x d_v", self.n_heads, self.d_v),
        ] {
            if heads * width > MAX_SIZE {
                return Err(Error::config(
                    field,
                    format!(
                        "is {heads} x {width} = {}; polygrad takes at most {MAX_SIZE}",
                        heads * width
                    ),
                ));
            }
        }
        // The kernels compute in f32: an epsilon that is 0, subnormal or infinite there
        // gives NaN or all-zero outputs.
        let eps = self.ln_eps as f32;
        if !(eps.is_normal() && eps > 0.0) {
            return Err(Error::config(
                "ln_eps",
                format!(
                    "must be a positive normal f32 ({:e} to {:e}), got {}",
                    f32::MIN_POSITIVE,
                    f32::MAX,
                    self.ln_eps
                ),
            ));
        }
        self.check_language_model()?;
        self.attention_kind().map(|_| ())
    }

    /// vocab_size and max_seq in 1..=MAX_TABLE_ROWS; max_seq and head only with vocab_size.
    fn check_language_model(&self) -> Result<()> {
        for (field, value) in [("vocab_size", self.vocab_size), ("max_seq", self.max_seq)] {
            match value {
                Some(0) => return Err(Error::config(field, "must be at least 1")),
                Some(v) if v > MAX_TABLE_ROWS => {
                    let message = format!("is {v}; polygrad takes at most {MAX_TABLE_ROWS}");
                    return Err(Error::config(field, message));
                }
                _ => {}
            }
        }
        if self.vocab_size.is_none() {
            for (field, set) in [
                ("max_seq", self.max_seq.is_some()),
                ("head", self.head.is_some()),
            ] {
                if set {
                    return Err(Error::config(field, "needs vocab_size (a token embedding)"));
                }
            }
        }
        Ok(())
    }

    /// Whether the model's input is token ids (it has a token embedding).
    pub fn takes_tokens(&self) -> bool {
        self.vocab_size.is_some()
    }

    /// The width of the model's output rows: vocab_size logits with a head, else d_model.
    pub fn output_width(&self) -> usize {
        match (self.head, self.vocab_size) {
            (Some(_), Some(v)) => v,
            _ => self.d_model,
        }
    }

    /// The attention this config names.
    pub fn attention_kind(&self) -> Result<Attention> {
        Attention::of_kind(self.attention, self.degree).map_err(|e| match e {
            Error::InvalidDegree { .. } => Error::config("degree", e.to_string()),
            other => Error::config("attention", other.to_string()),
        })
    }

    /// The config with its attention replaced (what `--attention` and `--degree` do).
    pub fn with_attention(&self, attention: Attention) -> Self {
        let mut config = self.clone();
        config.attention = attention.kind();
        if let Attention::Poly { degree } = attention {
            config.degree = degree;
        }
        config
    }

    /// Checks that `x` is `[B, n, d_model]` and finite; returns (B, n).
    pub fn check_input(&self, name: &str, x: &HostTensor) -> Result<(usize, usize)> {
        if self.takes_tokens() {
            return Err(Error::bad_tensor(
                name,
                "the model takes token ids (config vocab_size): give it Tokens",
            ));
        }
        let d = self.d_model;
        match x.shape.as_slice() {
            &[b, n, width] if b > 0 && n > 0 && width == d => {
                x.check_finite(name)?;
                Ok((b, n))
            }
            _ => Err(Error::bad_tensor(
                name,
                format!(
                    "must be [B, n, d_model = {d}] with B, n >= 1, got shape {:?}",
                    x.shape
                ),
            )),
        }
    }

    /// Checks that the model takes tokens, every id is below vocab_size (naming the first that
    /// is not) and the sequence fits max_seq.
    pub fn check_tokens(&self, tokens: &super::Tokens) -> Result<()> {
        let Some(vocab) = self.vocab_size else {
            return Err(Error::bad_tensor(
                "tokens",
                "the model has no token embedding (config vocab_size); give it x [B, n, d_model]",
            ));
        };
        if let Some(i) = tokens.ids.iter().position(|&t| t as usize >= vocab) {
            let message = format!(
                "id {} at flat index {i} is not below vocab_size {vocab}",
                tokens.ids[i]
            );
            return Err(Error::bad_tensor("tokens", message));
        }
        if let Some(max_seq) = self.max_seq.filter(|&m| tokens.seq_len > m) {
            let message = format!(
                "sequences of {} are longer than max_seq {max_seq}",
                tokens.seq_len
            );
            return Err(Error::bad_tensor("tokens", message));
        }
        Ok(())
    }

    /// Every parameter's name and shape, in the order of the forward pass.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.parameter_shapes_lazily().collect()
    }

    /// How many parameters the config implies.
    pub fn parameter_count(&self) -> usize {
        PER_LAYER * self.n_layers + 2 + self.language_model_shapes().len()
    }

    /// The language-model parts' parameters: token embedding, positions, a separate head.
    fn language_model_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.d_model;
        let mut shapes = Vec::new();
        if let Some(vocab) = self.vocab_size {
            shapes.push(("tok_emb.weight".to_string(), vec![vocab, d]));
            if let Some(max_seq) = self.max_seq {
                shapes.push(("pos_emb.weight".to_string(), vec![max_seq, d]));
            }
            if self.head == Some(HeadKind::Separate) {
                shapes.push(("head.weight".to_string(), vec![vocab, d]));
            }
        }
        shapes
    }

    /// [`Self::parameter_shapes`] one at a time: a check that stops at the first missing
    /// tensor builds no more names than it looked at.
    pub fn parameter_shapes_lazily(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        let (d, qk, v, ff) = (
            self.d_model,
            self.n_heads * self.d_qk,
            self.n_heads * self.d_v,
            self.d_ff,
        );
        let layer = move |l: usize| {
            let p = move |name: &str| format!("blocks.{l}.{name}");
            let shapes: [(String, Vec<usize>); PER_LAYER] = [
                (p("ln1.weight"), vec![d]),
                (p("ln1.bias"), vec![d]),
                (p("attn.q.weight"), vec![qk, d]),
                (p("attn.k.weight"), vec![qk, d]),
                (p("attn.v.weight"), vec![v, d]),
                (p("attn.o.weight"), vec![d, v]),
                (p("ln2.weight"), vec![d]),
                (p("ln2.bias"), vec![d]),
                (p("mlp.fc1.weight"), vec![ff, d]),
                (p("mlp.fc1.bias"), vec![ff]),
                (p("mlp.fc2.weight"), vec![d, ff]),
                (p("mlp.fc2.bias"), vec![d]),
            ];
            shapes
        };
        (0..self.n_layers)
            .flat_map(layer)
            .chain([
                ("ln_f.weight".into(), vec![d]),
                ("ln_f.bias".into(), vec![d]),
            ])
            .chain(self.language_model_shapes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> &'static str {
        r#"{"n_layers":2,"d_model":64,"n_heads":4,"d_qk":16,"d_v":16,"d_ff":256,"causal":true,
            "attention":"poly","degree":2,"ln_eps":1e-5}"#
    }

    #[test]
    fn the_design_example_parses_and_round_trips() {
        let config = ModelConfig::from_json(json()).unwrap();
        assert_eq!(config.n_layers, 2);
        assert_eq!(
            config.attention_kind().unwrap(),
            Attention::Poly { degree: 2 }
        );
        assert_eq!(ModelConfig::from_json(&config.to_json()).unwrap(), config);
        assert_eq!(config.parameter_shapes().len(), 2 * 12 + 2);
    }

    #[test]
    fn a_positional_array_is_refused() {
        let array = r#"[2, 64, 4, 16, 16, 256, true, "poly", 2, 1e-5]"#;
        let err = ModelConfig::from_json(array).unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |from: &str, to: &str| {
            ModelConfig::from_json(&json().replace(from, to))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("\"d_qk\":16", "\"d_qk\":0").contains("d_qk"));
        assert!(bad("\"degree\":2", "\"degree\":3").contains("degree"));
        assert!(bad("\"poly\"", "\"linear\"").contains("attention"));
        assert!(bad("1e-5", "-1").contains("ln_eps"));
        // 0 and infinite in f32, though finite and positive in f64.
        assert!(bad("1e-5", "1e-300").contains("ln_eps"));
        assert!(bad("1e-5", "1e300").contains("ln_eps"));
        assert!(bad("\"n_layers\":2", "\"n_layers\":1000000000000000").contains("n_layers"));
        assert!(bad("\"n_heads\":4", "\"n_heads\":65536").contains("n_heads x d_qk"));
        assert!(bad("\"causal\":true,", "").contains("causal"));
        assert!(bad("\"causal\"", "\"casual\"").contains("casual"));
    }
}
