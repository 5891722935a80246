//! AdamW in f64 on the host, from its definition (Loshchilov and Hutter, PyTorch's formulas):
//! what `ops::adamw` is checked against.

use crate::ops::adamw::AdamW;

/// Parameters and both moments of every tensor, in one order, and the steps taken.
#[derive(Clone, Debug)]
pub struct AdamWReference {
    /// Every tensor's values.
    pub params: Vec<Vec<f64>>,
    /// First moments.
    pub m: Vec<Vec<f64>>,
    /// Second moments.
    pub v: Vec<Vec<f64>>,
    /// Whether each tensor is decayed ([`AdamW::decays`]).
    pub decayed: Vec<bool>,
    /// Steps taken.
    pub steps: u64,
}

impl AdamWReference {
    /// Zero moments for `params` (shape, values).
    pub fn new(params: Vec<(Vec<usize>, Vec<f64>)>) -> Self {
        let zeros: Vec<Vec<f64>> = params.iter().map(|(_, p)| vec![0.0; p.len()]).collect();
        AdamWReference {
            decayed: params.iter().map(|(s, _)| AdamW::decays(s)).collect(),
            params: params.into_iter().map(|(_, p)| p).collect(),
            m: zeros.clone(),
            v: zeros,
            steps: 0,
        }
    }

    /// One step from `grads` (one per tensor, in the same order); returns the gradients'
    /// global L2 norm before clipping.
    pub fn step(&mut self, opt: &AdamW, grads: &[Vec<f64>]) -> f64 {
        let norm = grads.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
        let scale = opt
            .max_grad_norm
            .map_or(1.0, |max| (max / (norm + 1e-6)).min(1.0));
        self.steps += 1;
        let t = self.steps as i32;
        let (bc1, bc2) = (1.0 - opt.beta1.powi(t), 1.0 - opt.beta2.powi(t));
        for (i, g) in grads.iter().enumerate() {
            let decay = if self.decayed[i] {
                1.0 - opt.lr * opt.weight_decay
            } else {
                1.0
            };
            for (j, &g) in g.iter().enumerate() {
                let g = g * scale;
                let m = opt.beta1 * self.m[i][j] + (1.0 - opt.beta1) * g;
                let v = opt.beta2 * self.v[i][j] + (1.0 - opt.beta2) * g * g;
                self.m[i][j] = m;
                self.v[i][j] = v;
                let p = &mut self.params[i][j];
                *p = *p * decay - opt.lr / bc1 * m / (v.sqrt() / bc2.sqrt() + opt.eps);
            }
        }
        norm
    }
}
