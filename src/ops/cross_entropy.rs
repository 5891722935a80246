//! Host side of shaders/cross_entropy.wgsl: the cross-entropy of rows of logits against target
//! classes and its gradient, on the device; the row losses' mean is summed on the host in f64.

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor, TensorData};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct CrossEntropyParams as "Params" {
        rows: u32,
        classes: u32,
        scale: f32,
        _pad0: u32,
    }
}

/// The shader's target of a row the loss ignores.
const IGNORED: u32 = u32::MAX;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const LOGITS: BindingDecl = BindingDecl::new("logits", 1, Access::Read, Elem::F32);
const TARGETS: BindingDecl = BindingDecl::new("targets", 2, Access::Read, Elem::U32);
const GRAD: BindingDecl = BindingDecl::new("grad", 3, Access::ReadWrite, Elem::F32);
const ROW_LOSS: BindingDecl = BindingDecl::new("row_loss", 4, Access::ReadWrite, Elem::F32);

/// The loss and gradient of each row.
pub const CROSS_ENTROPY_ROWS: Kernel = Kernel {
    shader: "cross_entropy.wgsl",
    entry: "rows",
    bindings: &[PARAMS, LOGITS, TARGETS, GRAD, ROW_LOSS],
    params: CrossEntropyParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

/// Target classes of rows, checked: one per row, each in `0..classes` or `ignore_index`.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The shader's form: the class, or [`IGNORED`].
    words: Vec<u32>,
    counted: usize,
}

impl Targets {
    /// Refuses a target count other than `rows` and a target outside `0..classes` that is not
    /// `ignore_index`, naming the row.
    pub fn new(targets: &[i64], ignore_index: i64, rows: usize, classes: usize) -> Result<Self> {
        if targets.len() != rows {
            return Err(Error::LengthMismatch {
                tensor: "targets".into(),
                shape: vec![rows],
                expected: rows,
                count: targets.len(),
            });
        }
        let mut words = Vec::with_capacity(rows);
        for (row, &t) in targets.iter().enumerate() {
            if t == ignore_index {
                words.push(IGNORED);
            } else if (0..classes as i64).contains(&t) {
                words.push(t as u32);
            } else {
                return Err(Error::bad_tensor(
                    "targets",
                    format!(
                        "row {row}: class {t} is outside 0..{classes} and is not the ignore_index {ignore_index}"
                    ),
                ));
            }
        }
        let counted = words.iter().filter(|&&w| w != IGNORED).count();
        Ok(Targets { words, counted })
    }

    /// Rows whose target is not ignored.
    pub fn counted(&self) -> usize {
        self.counted
    }
}

/// The mean cross-entropy of `logits` `[.., classes]` against `targets` over the rows not
/// ignored (0 where all are), and dL/dlogits on the device (0 on ignored rows).
pub fn cross_entropy(
    ctx: &GpuContext,
    logits: &GpuTensor,
    targets: &Targets,
) -> Result<(f64, GpuTensor)> {
    let classes = *logits.shape().last().unwrap_or(&0);
    let rows = targets.words.len();
    if rows * classes != logits.len() || classes == 0 {
        return Err(Error::shape(
            format!("cross-entropy logits {}", logits.name()),
            format!("{:?} is not {rows} rows of classes", logits.shape()),
        ));
    }
    super::check_loop_budget(ctx, "cross-entropy over the classes", 3 * classes as u64)?;
    let words = GpuTensor::from_data(
        ctx,
        "targets",
        &[rows],
        TensorData::Words(bytemuck::cast_slice(&targets.words)),
    )?;
    let grad = GpuTensor::output(ctx, "dL/dlogits", logits.shape())?;
    let row_loss = GpuTensor::output(ctx, "cross-entropy per row", &[rows])?;
    let params = CrossEntropyParams {
        rows: rows as u32,
        classes: classes as u32,
        scale: (1.0 / targets.counted.max(1) as f64) as f32,
        ..Default::default()
    };
    let mut enc = ctx.encoder("cross-entropy");
    let buffers = [
        (LOGITS.name, &logits.buffer),
        (TARGETS.name, &words.buffer),
        (GRAD.name, &grad.buffer),
        (ROW_LOSS.name, &row_loss.buffer),
    ];
    ctx.run(
        &mut enc,
        &CROSS_ENTROPY_ROWS,
        &[],
        &params,
        &buffers,
        Grid::Invocations(rows as u64),
    )?;
    ctx.submit("cross-entropy", enc)?;
    let total: f64 = row_loss.download(ctx)?.iter().map(|&l| l as f64).sum();
    Ok((total / targets.counted.max(1) as f64, grad))
}
