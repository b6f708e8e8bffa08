//! Fixed-point activation formats and the integer helpers every step uses.

use crate::error::{InferError, Result};
use serde::{Deserialize, Serialize};

/// The fixed-point format of activations: an integer `X` stands for `X / 2^F`.
///
/// `X` is kept in `[-2^(I-1+F), (2^(I-1) - 1) * 2^F]`, the integer image of
/// DeepShift's activation range `[-2^(I-1), 2^(I-1) - 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActFormat {
    /// Integer bits `I`, sign included.
    pub integer_bits: u32,
    /// Fraction bits `F`.
    pub fraction_bits: u32,
}

impl ActFormat {
    /// A format the engine supports: `I >= 2` and `I + F <= 32`, so that an
    /// activation fits an `i32`.
    pub fn new(integer_bits: u32, fraction_bits: u32) -> Result<Self> {
        if integer_bits < 2 {
            return Err(InferError::unsupported(
                "activation_integer_bits",
                format!(
                    "{integer_bits} integer bits: the integer engine needs at least 2 \
                     (DeepShift's 1-bit case returns sign(x) - 1, which is not a fixed-point format)"
                ),
            ));
        }
        if integer_bits + fraction_bits > 32 {
            return Err(InferError::unsupported(
                "activation bits",
                format!(
                    "{integer_bits} integer + {fraction_bits} fraction bits = {} bits: the integer \
                     engine keeps activations in 32-bit integers (allowed: I + F <= 32)",
                    integer_bits + fraction_bits
                ),
            ));
        }
        Ok(ActFormat {
            integer_bits,
            fraction_bits,
        })
    }

    /// Smallest activation integer, `-2^(I-1+F)`.
    pub fn lo(&self) -> i64 {
        -(1i64 << (self.integer_bits - 1 + self.fraction_bits))
    }

    /// Largest activation integer, `(2^(I-1) - 1) * 2^F`.
    pub fn hi(&self) -> i64 {
        ((1i64 << (self.integer_bits - 1)) - 1) << self.fraction_bits
    }

    /// Bound on `|X|` for any activation: `2^(I-1+F)`.
    pub fn max_abs(&self) -> i64 {
        1i64 << (self.integer_bits - 1 + self.fraction_bits)
    }

    /// Saturates `v` to the activation range.
    #[inline]
    pub fn clamp(&self, v: i64) -> i32 {
        v.clamp(self.lo(), self.hi()) as i32
    }

    /// Saturates a 128-bit value to the activation range.
    #[inline]
    pub fn clamp_wide(&self, v: i128) -> i32 {
        v.clamp(i128::from(self.lo()), i128::from(self.hi())) as i32
    }

    /// `clamp(floor(x * 2^F))`: DeepShift's activation rounding of a float,
    /// as an integer (`x * 2^F` is exact in `f32`, so is its floor).
    #[inline]
    pub fn quantize(&self, x: f32) -> i32 {
        let scaled = (x * (self.fraction_bits as f32).exp2()).floor();
        if scaled.is_nan() {
            return 0;
        }
        self.clamp(scaled as i64)
    }
}

/// `v * 2^n` for `n >= 0`, `floor(v / 2^-n)` (arithmetic shift) for `n < 0`.
#[inline(always)]
pub fn shl(v: i64, n: i32) -> i64 {
    if n >= 0 {
        v << n
    } else {
        v >> (-n).min(63)
    }
}

/// `floor(v / 2^n)` on 128 bits.
#[inline(always)]
pub fn floor_shift_wide(v: i128, n: u32) -> i128 {
    v >> n.min(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_matches_deepshift() {
        let f = ActFormat::new(4, 4).unwrap();
        // 7.5 becomes 7 (upper bound 2^(I-1) - 1), -9 becomes -8.
        assert_eq!(f.quantize(7.5), 7 * 16);
        assert_eq!(f.quantize(-9.0), -8 * 16);
        assert_eq!(f.quantize(-0.01), -1);
        assert_eq!(f.quantize(0.99 / 16.0), 0);
        assert!(ActFormat::new(1, 8).is_err());
        assert!(ActFormat::new(16, 17).is_err());
        assert_eq!(shl(-3, -1), -2);
        assert_eq!(shl(3, 2), 12);
    }
}
