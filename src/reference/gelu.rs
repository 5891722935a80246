//! tanh-GELU in f64: gelu(t) = 0.5 t (1 + tanh(sqrt(2/pi) (t + 0.044715 t^3))).

use super::Real;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CUBIC: f64 = 0.044715;

/// tanh-GELU.
pub fn gelu<T: Real>(t: T) -> T {
    let (half, one) = (T::of(0.5), T::one());
    half * t * (one + (T::of(SQRT_2_OVER_PI) * (t + T::of(CUBIC) * t.powi(3))).tanh())
}

/// d gelu / dt.
pub fn gelu_derivative<T: Real>(t: T) -> T {
    let (half, one, c) = (T::of(0.5), T::one(), T::of(CUBIC));
    let th = (T::of(SQRT_2_OVER_PI) * (t + c * t.powi(3))).tanh();
    half * (one + th)
        + half * t * (one - th * th) * T::of(SQRT_2_OVER_PI) * (one + T::of(3.0) * c * t * t)
}
