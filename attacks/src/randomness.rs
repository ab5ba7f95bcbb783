//! Randomness per sample: every random draw an attack makes for sample *i* comes from a
//! generator keyed by (run seed, purpose, global index *i*), on a stream chosen by what the
//! draw is for (the target choice, the start of restart *r*).
//!
//! Keying by the sample's *global* index (its index in the dataset, not its position in a
//! batch, a subset or a shard) is what makes results independent of the batch size and of
//! where a subset starts: running samples [0, 250) and [250, 500) separately gives exactly the
//! records of [0, 500). It costs one SHA-256 per sample and attack run, which is nothing next
//! to one forward pass.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// What a draw is for: each gets its own ChaCha stream of the sample's generator, so adding a
/// draw of one kind never shifts the numbers of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The target class of a targeted attack with `target = "random"`.
    Targets,
    /// The random start (and any other draw) of restart `r`, counted from 0.
    Restart(u32),
    /// A stream an attack defines for itself (e.g. a black-box attack's proposals); values
    /// below 2³² are free for attacks to use.
    Custom(u32),
}

impl Stream {
    /// The ChaCha stream id. Restarts own 0..2³², custom streams 2³²..2³³, targets the last id.
    fn id(self) -> u64 {
        match self {
            Stream::Restart(r) => u64::from(r),
            Stream::Custom(k) => (1 << 32) | u64::from(k),
            Stream::Targets => u64::MAX,
        }
    }
}

/// The per-sample generators of one batch of one attack run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRandomness {
    /// One ChaCha key per sample of the batch, in batch order.
    keys: Vec<[u8; 32]>,
}

impl SampleRandomness {
    /// Generators for the samples with global indices `indices`, for `purpose` (an attack
    /// run's label) under the run's `seed`.
    ///
    /// ε is deliberately not an input: an attack draws the same random starts and targets at
    /// every budget (scaled to it), so robust accuracy across ε compares like with like instead
    /// of differing by random-start noise.
    pub fn for_samples(seed: u64, purpose: &str, indices: impl IntoIterator<Item = usize>) -> Self {
        let mut prefix = Sha256::new();
        prefix.update(b"gauntlet sample randomness v1");
        prefix.update(seed.to_le_bytes());
        prefix.update((purpose.len() as u64).to_le_bytes());
        prefix.update(purpose.as_bytes());
        let keys = indices
            .into_iter()
            .map(|index| {
                let mut hasher = prefix.clone();
                hasher.update((index as u64).to_le_bytes());
                hasher.finalize().into()
            })
            .collect();
        Self { keys }
    }

    /// Generators for the global index range `range`.
    pub fn for_range(seed: u64, purpose: &str, range: Range<usize>) -> Self {
        Self::for_samples(seed, purpose, range)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The generator of the sample at batch position `position` on `stream`, from its start.
    ///
    /// # Panics
    /// If `position` is not below [`SampleRandomness::len`]: an attack asked for a sample the
    /// batch does not have, a bug in the attack.
    pub fn generator(&self, position: usize, stream: Stream) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.keys[position]);
        rng.set_stream(stream.id());
        rng
    }

    /// One generator per sample on `stream`, in batch order.
    pub fn generators(&self, stream: Stream) -> Vec<ChaCha8Rng> {
        (0..self.len())
            .map(|position| self.generator(position, stream))
            .collect()
    }

    /// The generators of the samples at `positions` (a sub-batch, e.g. the samples an
    /// ensemble's later attack still has to break).
    pub fn subset(&self, positions: &[usize]) -> Self {
        Self {
            keys: positions.iter().map(|&p| self.keys[p]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn first_draw(randomness: &SampleRandomness, position: usize, stream: Stream) -> u64 {
        randomness.generator(position, stream).random()
    }

    #[test]
    fn a_sample_draws_the_same_numbers_whatever_batch_it_is_in() {
        let whole = SampleRandomness::for_range(7, "pgd", 0..10);
        let tail = SampleRandomness::for_range(7, "pgd", 6..10);
        for offset in 0..4 {
            assert_eq!(
                first_draw(&whole, 6 + offset, Stream::Restart(0)),
                first_draw(&tail, offset, Stream::Restart(0))
            );
        }
        assert_eq!(whole.subset(&[6, 7, 8, 9]), tail);
    }

    #[test]
    fn seed_purpose_index_and_stream_each_change_the_draws() {
        let base = SampleRandomness::for_range(0, "pgd", 0..2);
        let draw = first_draw(&base, 0, Stream::Restart(0));
        assert_eq!(
            draw,
            first_draw(
                &SampleRandomness::for_range(0, "pgd", 0..1),
                0,
                Stream::Restart(0)
            )
        );
        assert_ne!(
            draw,
            first_draw(
                &SampleRandomness::for_range(1, "pgd", 0..1),
                0,
                Stream::Restart(0)
            )
        );
        assert_ne!(
            draw,
            first_draw(
                &SampleRandomness::for_range(0, "fgsm", 0..1),
                0,
                Stream::Restart(0)
            )
        );
        assert_ne!(draw, first_draw(&base, 1, Stream::Restart(0)));
        assert_ne!(draw, first_draw(&base, 0, Stream::Restart(1)));
        assert_ne!(draw, first_draw(&base, 0, Stream::Targets));
        assert_ne!(draw, first_draw(&base, 0, Stream::Custom(0)));
    }

    // A purpose is length-prefixed: ("ab", index) and ("a", …) can never collide by
    // concatenation.
    #[test]
    fn purposes_are_length_prefixed() {
        let a = SampleRandomness::for_samples(0, "ab", [0]);
        let b = SampleRandomness::for_samples(0, "a", [0]);
        assert_ne!(a, b);
    }
}
