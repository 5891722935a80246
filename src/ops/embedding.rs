//! Host side of shaders/embedding.wgsl: a language model's token embedding and learned
//! positions, forward and backward. Records into the caller's encoder.

use crate::error::Result;
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor, TensorData};
use crate::model::Tokens;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct EmbeddingParams as "Params" {
        rows: u32,
        width: u32,
        seq_len: u32,
        table_rows: u32,
        flags: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

const POSITIONS: u32 = 1;
const ADD_INTO_TABLE: u32 = 2;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const IDS: BindingDecl = BindingDecl::new("ids", 1, Access::Read, Elem::U32);
const TABLE: BindingDecl = BindingDecl::new("table", 2, Access::Read, Elem::F32);
const POSITION_TABLE: BindingDecl = BindingDecl::new("positions", 3, Access::Read, Elem::F32);
const X: BindingDecl = BindingDecl::new("x", 4, Access::ReadWrite, Elem::F32);
const DX: BindingDecl = BindingDecl::new("dx", 5, Access::Read, Elem::F32);
const ORDER: BindingDecl = BindingDecl::new("order", 6, Access::Read, Elem::U32);
const OFFSETS: BindingDecl = BindingDecl::new("offsets", 7, Access::Read, Elem::U32);
const D_TABLE: BindingDecl = BindingDecl::new("d_table", 8, Access::ReadWrite, Elem::F32);

/// `x = table[ids] (+ positions)`.
pub const EMBED: Kernel = Kernel {
    shader: "embedding.wgsl",
    entry: "embed",
    bindings: &[PARAMS, IDS, TABLE, POSITION_TABLE, X],
    params: EmbeddingParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

/// The table's gradient, token by token.
pub const TABLE_GRAD: Kernel = Kernel {
    entry: "table_grad",
    bindings: &[PARAMS, DX, ORDER, OFFSETS, D_TABLE],
    ..EMBED
};

/// The positions' gradient.
pub const POSITION_GRAD: Kernel = Kernel {
    entry: "position_grad",
    bindings: &[PARAMS, DX, D_TABLE],
    ..EMBED
};

/// A batch's token ids on the device, with its rows listed token by token for the table's
/// gradient.
pub struct TokenIndex {
    ids: GpuTensor,
    order: GpuTensor,
    offsets: GpuTensor,
    batch: usize,
    seq_len: usize,
    /// The most rows any one token has: the table gradient's longest loop.
    most_rows: usize,
}

impl TokenIndex {
    /// Uploads `tokens` (already checked against the vocabulary) and their rows in token order.
    pub fn new(ctx: &GpuContext, tokens: &Tokens, vocab: usize) -> Result<Self> {
        let mut counts = vec![0u32; vocab + 1];
        for &id in &tokens.ids {
            counts[id as usize + 1] += 1;
        }
        let most_rows = counts.iter().copied().max().unwrap_or(0) as usize;
        let mut offsets = counts;
        for v in 0..vocab {
            offsets[v + 1] += offsets[v];
        }
        let mut next = offsets.clone();
        let mut order = vec![0u32; tokens.ids.len()];
        for (row, &id) in tokens.ids.iter().enumerate() {
            order[next[id as usize] as usize] = row as u32;
            next[id as usize] += 1;
        }
        let words = |name: &str, values: &[u32]| {
            GpuTensor::from_data(
                ctx,
                name,
                &[values.len()],
                TensorData::Words(bytemuck::cast_slice(values)),
            )
        };
        Ok(TokenIndex {
            ids: words("tokens", &tokens.ids)?,
            order: words("tokens in token order", &order)?,
            offsets: words("token offsets", &offsets)?,
            batch: tokens.batch,
            seq_len: tokens.seq_len,
            most_rows,
        })
    }

    fn rows(&self) -> usize {
        self.batch * self.seq_len
    }
}

/// x `[rows, width]` = `table[ids] (+ positions[row % seq_len])`.
pub fn embed_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    index: &TokenIndex,
    (table, positions): (&GpuTensor, Option<&GpuTensor>),
    x: &GpuTensor,
) -> Result<()> {
    let width = *table.shape().last().expect("a table has rows");
    let params = EmbeddingParams {
        rows: index.rows() as u32,
        width: width as u32,
        seq_len: index.seq_len as u32,
        flags: if positions.is_some() { POSITIONS } else { 0 },
        ..Default::default()
    };
    // Without positions the slot still needs a buffer; it is never read.
    let positions = positions.unwrap_or(table);
    let buffers = [
        (IDS.name, &index.ids.buffer),
        (TABLE.name, &table.buffer),
        (POSITION_TABLE.name, &positions.buffer),
        (X.name, &x.buffer),
    ];
    let grid = Grid::Invocations((index.rows() * width) as u64);
    ctx.run(encoder, &EMBED, &[], &params, &buffers, grid)
}

/// d_table (every row: 0 for tokens absent from the batch; added to what it holds where
/// `add`, as a tied head's weight gradient) and d_positions (0 past seq_len) from dx
/// `[rows, width]`.
pub fn embed_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    index: &TokenIndex,
    dx: &GpuTensor,
    ((d_table, add), d_positions): ((&GpuTensor, bool), Option<&GpuTensor>),
) -> Result<()> {
    let (vocab, width) = (d_table.shape()[0], d_table.shape()[1]);
    super::check_loop_budget(
        ctx,
        "a token's rows in the embedding gradient",
        index.most_rows as u64,
    )?;
    let base = EmbeddingParams {
        rows: index.rows() as u32,
        width: width as u32,
        seq_len: index.seq_len as u32,
        ..Default::default()
    };
    let params = EmbeddingParams {
        table_rows: vocab as u32,
        flags: if add { ADD_INTO_TABLE } else { 0 },
        ..base
    };
    let buffers = [
        (DX.name, &dx.buffer),
        (ORDER.name, &index.order.buffer),
        (OFFSETS.name, &index.offsets.buffer),
        (D_TABLE.name, &d_table.buffer),
    ];
    ctx.run(
        encoder,
        &TABLE_GRAD,
        &[],
        &params,
        &buffers,
        Grid::Invocations(d_table.len() as u64),
    )?;
    if let Some(d_positions) = d_positions {
        super::check_loop_budget(
            ctx,
            "the batch in the positions' gradient",
            index.batch as u64,
        )?;
        let params = EmbeddingParams {
            table_rows: d_positions.shape()[0] as u32,
            ..base
        };
        let buffers = [(DX.name, &dx.buffer), (D_TABLE.name, &d_positions.buffer)];
        let grid = Grid::Invocations(d_positions.len() as u64);
        ctx.run(encoder, &POSITION_GRAD, &[], &params, &buffers, grid)?;
    }
    Ok(())
}
