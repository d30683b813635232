//! Float-to-integer conversions, for numbers that come from outside (job hashes, payloads, PDF
//! operands) or are computed from them. std has `TryFrom` between integer types, which the rest
//! of the crate uses; for floats these helpers name the rule instead of a bare `as`: round
//! toward zero, saturate at the target's ends, NaN is 0 (Rust's `as`, which never panics).
//! A caller that needs another rule (rounding, refusing out-of-range values) says so itself.

/// `x` toward zero as an `i64`, saturating; NaN is 0.
#[allow(
    clippy::cast_possible_truncation,
    reason = "saturating float-to-int is the rule this module names"
)]
pub fn f64_to_i64(x: f64) -> i64 {
    x as i64
}

/// `x` toward zero as an `i64`, saturating; NaN is 0.
pub fn f32_to_i64(x: f32) -> i64 {
    f64_to_i64(f64::from(x))
}

/// `x` toward zero as a `u32`, saturating (negative values are 0); NaN is 0.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "saturating float-to-int is the rule this module names"
)]
pub fn f32_to_u32(x: f32) -> u32 {
    x as u32
}

/// `x` toward zero as a `usize`, saturating (negative values are 0); NaN is 0.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "saturating float-to-int is the rule this module names"
)]
pub fn f64_to_usize(x: f64) -> usize {
    x as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toward_zero_saturating_nan_is_zero() {
        assert_eq!(f64_to_i64(-2.9), -2);
        assert_eq!(f64_to_i64(1e300), i64::MAX);
        assert_eq!(f64_to_i64(f64::NEG_INFINITY), i64::MIN);
        assert_eq!(f64_to_i64(f64::NAN), 0);
        assert_eq!(f32_to_i64(7.99), 7);
        assert_eq!(f32_to_u32(-1.0), 0);
        assert_eq!(f32_to_u32(5e9), u32::MAX);
        assert_eq!(f32_to_u32(f32::NAN), 0);
        assert_eq!(f64_to_usize(-3.0), 0);
        assert_eq!(f64_to_usize(12.5), 12);
    }
}
