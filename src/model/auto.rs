//! Automatic attention (issue 12): each layer gets the cheapest attention that meets a
//! tolerance, decided as the forward pass reaches the layer, from the layer's own q, k, v.
//!
//! In order: the smallest even degree up to `max_degree` (of those whose features fit the
//! device) whose certified output bound (shared/DESIGN.md §3) is at most the tolerance; where
//! none is certified, the smallest degree whose error measured on sampled rows is at most the
//! tolerance; where none qualifies, exact attention. The sampled decision sees o in the
//! forward; dq is measured in the backward, and a layer whose dq misses the tolerance moves to
//! its next candidate in a new pass (see `GpuModel::gradients_auto`).

use crate::attention::{Attention, AttentionShape};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::certificate::{largest_logit_bound, HeadBound};
use crate::ops::sampled_check::{self, Checked};
use crate::ops::{AttentionOp, AttentionSaved};
use crate::poly::{check_degree, output_error_bound, ROUNDING_FLOOR, SUPPORTED_DEGREES};

/// `--attention auto --tolerance T --max-degree G`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoAttention {
    tolerance: f64,
    max_degree: u32,
}

impl AutoAttention {
    /// The default largest degree tried.
    pub const DEFAULT_MAX_DEGREE: u32 = 4;

    /// Refuses a tolerance that is not a positive finite number, and a max degree that is
    /// not one polygrad supports (even, 2 to 8).
    pub fn new(tolerance: f64, max_degree: u32) -> Result<Self> {
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(Error::Option {
                option: "--tolerance".into(),
                message: format!(
                    "is {tolerance}; it must be a positive number (the largest error of a \
                     layer's attention output relative to max |v|, e.g. 1e-3)"
                ),
            });
        }
        check_degree(max_degree).map_err(|e| Error::Option {
            option: "--max-degree".into(),
            message: e.to_string(),
        })?;
        Ok(AutoAttention {
            tolerance,
            max_degree,
        })
    }

    /// The certified or measured error a layer must meet.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The highest degree tried.
    pub fn max_degree(&self) -> u32 {
        self.max_degree
    }

    /// The degrees tried, smallest first.
    pub fn degrees(&self) -> impl Iterator<Item = u32> + '_ {
        SUPPORTED_DEGREES
            .into_iter()
            .filter(move |&g| g <= self.max_degree)
    }
}

/// Why a layer got its attention.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The attention the layer got.
    pub attention: Attention,
    /// Why, in words.
    pub reason: String,
    /// Where the decision rests on the sampled o error (dq is still to be measured): the
    /// index of the chosen degree among the candidates, so that a new pass can skip it.
    pub sampled_candidate: Option<usize>,
}

/// The attention ops of one pass, one per kind, built on first use.
pub(crate) struct OpSet {
    shape: AttentionShape,
    ops: Vec<(Attention, AttentionOp)>,
}

impl OpSet {
    pub fn new(shape: AttentionShape) -> Self {
        OpSet {
            shape,
            ops: Vec::new(),
        }
    }

    /// An op set holding one op already built.
    pub fn of(op: AttentionOp, attention: Attention) -> Self {
        OpSet {
            shape: *op.shape(),
            ops: vec![(attention, op)],
        }
    }

    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// The op of `attention`, built here if it was not yet.
    pub fn get(&mut self, ctx: &GpuContext, attention: Attention) -> Result<&AttentionOp> {
        if let Some(i) = self.ops.iter().position(|(a, _)| *a == attention) {
            return Ok(&self.ops[i].1);
        }
        let op = AttentionOp::new(ctx, attention, self.shape)?;
        self.ops.push((attention, op));
        Ok(&self.ops.last().expect("just pushed").1)
    }

    /// The op of `attention`, which [`Self::get`] built before.
    pub fn built(&self, attention: Attention) -> &AttentionOp {
        let (_, op) = (self.ops.iter())
            .find(|(a, _)| *a == attention)
            .expect("an op is built before its layer uses it");
        op
    }
}

/// What the decision reads of one layer: its heads' certificate and its q, k, v.
pub(crate) struct LayerInputs<'a> {
    pub heads: &'a [HeadBound],
    pub qkv: (&'a GpuTensor, &'a GpuTensor, &'a GpuTensor),
    /// The rows the sampled check takes; None where sampling is off (certificates only).
    pub rows: Option<&'a [usize]>,
}

/// The decision for one layer, skipping the first `floor` candidates (a new pass after a dq
/// check failed). Returns the polynomial forward it ran to decide, when that is the choice,
/// so the pass need not run it again.
pub(crate) fn decide(
    ctx: &GpuContext,
    auto: &AutoAttention,
    ops: &mut OpSet,
    layer: LayerInputs,
    floor: usize,
) -> Result<(Decision, Option<AttentionSaved>)> {
    let logit_bound = largest_logit_bound(layer.heads);
    let t = auto.tolerance;
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for g in auto.degrees() {
        // Only degrees whose features fit the device (and its loop limit) are candidates.
        match ops.get(ctx, Attention::Poly { degree: g }) {
            Ok(_) => candidates.push(g),
            Err(e) => skipped.push(format!("g={g} does not fit: {e}")),
        }
    }
    let fits = if skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", skipped.join("; "))
    };
    let remaining = || candidates.iter().copied().enumerate().skip(floor);

    for (_, g) in remaining() {
        let bound = output_error_bound(logit_bound, g, 1.0) + ROUNDING_FLOOR;
        if bound <= t {
            let reason = format!(
                "certified: logits within {logit_bound:.3e} bound the output error by \
                 {bound:.2e} <= {t:.2e} at g={g}{fits}"
            );
            let decision = Decision {
                attention: Attention::Poly { degree: g },
                reason,
                sampled_candidate: None,
            };
            return Ok((decision, None));
        }
    }
    let mut measured = Vec::new();
    if let Some(rows) = layer.rows {
        for (i, g) in remaining() {
            let attention = Attention::Poly { degree: g };
            let op = ops.built(attention);
            let (q, k, v) = layer.qkv;
            let saved = op.forward(ctx, q, k, v)?;
            let mut encoder = ctx.encoder("automatic attention's sampled check");
            let checked = Checked {
                o: saved.o(),
                grad: None,
            };
            let shape = *ops.shape();
            let check = sampled_check::record(ctx, &mut encoder, &shape, rows, layer.qkv, checked)?;
            ctx.submit("automatic attention's sampled check", encoder)?;
            let error = check.measure(ctx)?.o_rel_err;
            if error <= t {
                let reason = format!(
                    "sampled: no degree up to {} is certified (logits within \
                     {logit_bound:.3e}); o on {} rows per head is within {error:.2e} <= {t:.2e} \
                     at g={g}{fits}",
                    auto.max_degree,
                    rows.len()
                );
                let decision = Decision {
                    attention,
                    reason,
                    sampled_candidate: Some(i),
                };
                return Ok((decision, Some(saved)));
            }
            measured.push(format!("g={g}: {error:.2e}"));
        }
    }
    let sampled = match (layer.rows, measured.is_empty()) {
        (None, _) => "no rows are sampled".to_string(),
        (Some(_), true) => "every degree's sampled dq missed the tolerance".to_string(),
        (Some(_), false) => format!(
            "sampled o errors ({}) are above {t:.2e}",
            measured.join(", ")
        ),
    };
    let reason = format!(
        "exact: no degree up to {} is certified (logits within {logit_bound:.3e}) and \
         {sampled}{fits}",
        auto.max_degree
    );
    let decision = Decision {
        attention: Attention::Exact,
        reason,
        sampled_candidate: None,
    };
    Ok((decision, None))
}
