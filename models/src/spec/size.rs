//! Sizes written the way PyTorch accepts them: `stride = 2` or `stride = [2, 2]`.
//!
//! `nn.Conv2d` takes `stride`, `padding` and `dilation` as an int or a tuple. gauntlet's
//! convolution (and its native kernels) use one value for both spatial dimensions, so a
//! two-element array with equal entries is the same layer and is accepted; unequal entries
//! are refused with a message saying so, instead of serde's `invalid type: sequence`.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Deserialises an int, or `[h, w]` with `h == w`, as one size.
pub(crate) fn square<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    deserializer.deserialize_any(SquareVisitor)
}

struct SquareVisitor;

impl<'de> Visitor<'de> for SquareVisitor {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer, or [height, width] with equal entries")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<usize, E> {
        usize::try_from(value).map_err(|_| E::custom(format!("size {value} is too large")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<usize, E> {
        let value = u64::try_from(value)
            .map_err(|_| E::custom(format!("sizes must be non-negative, got {value}")))?;
        self.visit_u64(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut values: Vec<u64> = Vec::new();
        while let Some(value) = seq.next_element::<u64>()? {
            values.push(value);
            if values.len() > 2 {
                break;
            }
        }
        match values.as_slice() {
            [h, w] if h == w => self.visit_u64(*h),
            [h, w] => Err(de::Error::custom(format!(
                "per-dimension values [{h}, {w}] are not supported by conv2d (gauntlet's \
                 convolution uses one value for both dimensions); use equal values"
            ))),
            other => Err(de::Error::custom(format!(
                "expected an integer or [height, width], got an array of {} values",
                other.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Holder {
        #[serde(deserialize_with = "super::square")]
        stride: usize,
    }

    fn parse(text: &str) -> Result<usize, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.stride)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ints_and_square_pairs_are_the_same_size() {
        assert_eq!(parse("stride = 2"), Ok(2));
        assert_eq!(parse("stride = [2, 2]"), Ok(2));
    }

    #[test]
    fn unequal_pairs_say_why() {
        let error = parse("stride = [1, 2]").unwrap_err();
        assert!(
            error.contains("per-dimension values [1, 2] are not supported"),
            "{error}"
        );
        assert!(parse("stride = [1, 1, 1]").is_err());
        assert!(parse("stride = -1").is_err());
    }
}
