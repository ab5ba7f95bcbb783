//! What an attack costs: the model passes it makes per sample, from its parameters.
//!
//! A suite's work is a sum of these over samples, attacks and budgets. `gauntlet check`
//! prints it, and the suite's `max_passes` refuses a run beyond it before anything runs, so
//! `steps = 1000000000` is a message, not a night of GPU time.

use std::fmt;
use std::ops::Add;

/// Model passes over one sample: forward passes (logits) and backward passes (input
/// gradients; each also needs its own forward, counted in `forward`). Saturating: a count
/// past `u64::MAX` stays there, which any cap refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Passes {
    pub forward: u64,
    pub backward: u64,
}

impl Passes {
    /// `n` gradient evaluations: `n` forward and `n` backward passes.
    pub const fn gradients(n: u64) -> Self {
        Self {
            forward: n,
            backward: n,
        }
    }

    /// `n` forward passes.
    pub const fn forwards(n: u64) -> Self {
        Self {
            forward: n,
            backward: 0,
        }
    }

    /// Forward plus backward passes: the number a suite's `max_passes` caps.
    pub fn total(self) -> u64 {
        self.forward.saturating_add(self.backward)
    }

    /// These passes `n` times over (per restart, per sample, …).
    pub fn times(self, n: u64) -> Self {
        Self {
            forward: self.forward.saturating_mul(n),
            backward: self.backward.saturating_mul(n),
        }
    }
}

impl Add for Passes {
    type Output = Passes;

    fn add(self, other: Passes) -> Passes {
        Passes {
            forward: self.forward.saturating_add(other.forward),
            backward: self.backward.saturating_add(other.backward),
        }
    }
}

impl std::iter::Sum for Passes {
    fn sum<I: Iterator<Item = Passes>>(iter: I) -> Passes {
        iter.fold(Passes::default(), Add::add)
    }
}

impl fmt::Display for Passes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passes ({} forward, {} backward)",
            self.total(),
            self.forward,
            self.backward
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let huge = Passes::gradients(u64::MAX / 2 + 1);
        assert_eq!(huge.total(), u64::MAX);
        assert_eq!(huge.times(3).forward, u64::MAX);
        assert_eq!((huge + huge).backward, u64::MAX);
        assert_eq!(
            Passes::gradients(10).times(3) + Passes::forwards(3),
            Passes {
                forward: 33,
                backward: 30
            }
        );
    }
}
