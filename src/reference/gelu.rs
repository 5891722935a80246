//! tanh-GELU in f64: gelu(t) = 0.5 t (1 + tanh(sqrt(2/pi) (t + 0.044715 t^3))).

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CUBIC: f64 = 0.044715;

pub fn gelu(t: f64) -> f64 {
    0.5 * t * (1.0 + (SQRT_2_OVER_PI * (t + CUBIC * t.powi(3))).tanh())
}

/// d gelu / dt.
pub fn gelu_derivative(t: f64) -> f64 {
    let th = (SQRT_2_OVER_PI * (t + CUBIC * t.powi(3))).tanh();
    0.5 * (1.0 + th) + 0.5 * t * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * t * t)
}
