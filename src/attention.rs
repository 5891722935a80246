//! What an attention call is: its shape and which attention (exact softmax or the polynomial
//! approximation) it computes. Shared by the GPU operations and the CPU reference.

use crate::error::{Error, Result};

/// One attention call over `batch * heads` independent heads. Tensors are row-major
/// `[batch, heads, seq_len, d]`: q and k with d = `d_qk`, v, o with d = `d_v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Batch elements.
    pub batch: usize,
    /// Heads per element.
    pub heads: usize,
    /// Tokens per sequence (n).
    pub seq_len: usize,
    /// Width of q and k per head.
    pub d_qk: usize,
    /// Width of v (and o) per head.
    pub d_v: usize,
    /// Row a attends to keys b <= a only.
    pub causal: bool,
}

/// Which attention to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    /// Softmax attention, exp(s) with s = q.k / sqrt(d_qk).
    Exact,
    /// Polynomial-method attention, P_g(s) = sum_{i<=g} s^i / i!, in time linear in n.
    Poly {
        /// g, even, 2 to 8.
        degree: u32,
    },
}

/// The model config's `attention` field: which attention, without its degree. On disk the
/// JSON strings "exact" and "poly".
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Exact softmax attention.
    Exact,
    /// Polynomial attention (its degree given apart).
    Poly,
}

impl AttentionKind {
    /// The names the config and the command line use.
    pub const NAMES: [&'static str; 2] = ["exact", "poly"];

    /// The name in a config's JSON: "exact" or "poly".
    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Exact => "exact",
            AttentionKind::Poly => "poly",
        }
    }

    /// The kind `name` spells, or an error naming the valid ones.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "exact" => Ok(AttentionKind::Exact),
            "poly" => Ok(AttentionKind::Poly),
            other => Err(Error::shape(
                "attention",
                format!("{other:?} is not an attention; use \"exact\" or \"poly\""),
            )),
        }
    }
}

impl std::fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Attention {
    /// The setting as the command line and the model config spell it: `exact`, or `poly` with
    /// a degree (checked: even, 2 to 8).
    pub fn from_setting(kind: &str, degree: u32) -> Result<Self> {
        Attention::of_kind(AttentionKind::from_name(kind)?, degree)
    }

    /// `kind` with `degree` (checked for poly: even, 2 to 8; ignored for exact).
    pub fn of_kind(kind: AttentionKind, degree: u32) -> Result<Self> {
        match kind {
            AttentionKind::Exact => Ok(Attention::Exact),
            AttentionKind::Poly => {
                crate::poly::check_degree(degree)?;
                Ok(Attention::Poly { degree })
            }
        }
    }

    /// Which kind this is.
    pub fn kind(self) -> AttentionKind {
        match self {
            Attention::Exact => AttentionKind::Exact,
            Attention::Poly { .. } => AttentionKind::Poly,
        }
    }
}

impl std::fmt::Display for Attention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attention::Exact => write!(f, "exact"),
            Attention::Poly { degree } => write!(f, "poly g={degree}"),
        }
    }
}

impl AttentionShape {
    /// A shape from its sizes (the operations check them before running).
    pub fn new(
        batch: usize,
        heads: usize,
        seq_len: usize,
        d_qk: usize,
        d_v: usize,
        causal: bool,
    ) -> Self {
        AttentionShape {
            batch,
            heads,
            seq_len,
            d_qk,
            d_v,
            causal,
        }
    }

    /// Independent heads: batch * heads.
    pub fn total_heads(&self) -> usize {
        self.batch * self.heads
    }

    /// Shape of q and k, `[batch, heads, seq_len, d_qk]`.
    pub fn qk_shape(&self) -> Vec<usize> {
        vec![self.batch, self.heads, self.seq_len, self.d_qk]
    }

    /// Shape of v, o and their gradients, `[batch, heads, seq_len, d_v]`.
    pub fn v_shape(&self) -> Vec<usize> {
        vec![self.batch, self.heads, self.seq_len, self.d_v]
    }

    /// Refuses empty dimensions, with the dimension's name in the error.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("batch", self.batch),
            ("heads", self.heads),
            ("seq_len (n)", self.seq_len),
            ("d_qk", self.d_qk),
            ("d_v", self.d_v),
        ] {
            if value == 0 {
                return Err(Error::shape(
                    format!("attention {name}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for AttentionShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "B={} H={} n={} d_qk={} d_v={} {}",
            self.batch,
            self.heads,
            self.seq_len,
            self.d_qk,
            self.d_v,
            if self.causal { "causal" } else { "full" }
        )
    }
}
