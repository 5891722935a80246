// tanh-GELU's arithmetic, one definition for every kernel that applies it: prepended to
// gelu.wgsl (elementwise) and to matmul.wgsl (a product's epilogue: the linear layer before
// GELU stores both, and the product that makes GELU's upstream gradient applies gelu'), so
// that the fused and the elementwise paths make the same operations and the same results.
//   gelu(t) = 0.5 t (1 + tanh(z)),  z = sqrt(2/pi) (t + 0.044715 t^3)
//   gelu'(t) = 0.5 (1 + tanh(z)) + 0.5 t (1 - tanh(z)^2) sqrt(2/pi) (1 + 3 * 0.044715 t^2)
// z is clamped to [-10, 10] before tanh: tanh(10) rounds to 1 in f32, and some drivers'
// tanh overflows to NaN for large arguments.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const CUBIC: f32 = 0.044715;

fn tanh_z(v: f32) -> f32 {
    return tanh(clamp(SQRT_2_OVER_PI * (v + CUBIC * v * v * v), -10.0, 10.0));
}

// The same per component (the same operations, so the same result as the scalar forms).
fn tanh_z4(v: vec4<f32>) -> vec4<f32> {
    return tanh(clamp(SQRT_2_OVER_PI * (v + CUBIC * v * v * v), vec4<f32>(-10.0), vec4<f32>(10.0)));
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + tanh_z(v));
}

fn gelu4(v: vec4<f32>) -> vec4<f32> {
    return 0.5 * v * (1.0 + tanh_z4(v));
}

// upstream * gelu'(v).
fn gelu_grad(v: f32, upstream: f32) -> f32 {
    let th = tanh_z(v);
    let dz = SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * v * v);
    return upstream * (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * dz);
}

fn gelu_grad4(v: vec4<f32>, upstream: vec4<f32>) -> vec4<f32> {
    let th = tanh_z4(v);
    let dz = SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * v * v);
    return upstream * (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * dz);
}
