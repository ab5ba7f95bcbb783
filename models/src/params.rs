//! Where a network's tensors come from while it is built: a seeded initialiser or a
//! safetensors file (see `load.rs`). Building asks for each tensor by its PyTorch name.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ModelError;

/// How a freshly initialised tensor is filled (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Init {
    /// `U(−bound, bound)`; conv/linear weights and biases use `bound = 1/√fan_in`, which is
    /// what PyTorch's `kaiming_uniform_(a=√5)` and its bias rule give.
    Uniform { bound: f64 },
    /// Every entry equal (batch-norm weight 1, bias 0, running mean 0, running variance 1).
    Constant(f32),
}

/// Supplies tensors by name while a network is built.
pub(crate) trait ParamSource {
    /// The tensor called `name`, of shape `shape`, as f32 on the build device.
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, ModelError>;

    /// An optional integer tensor such as `num_batches_tracked`: its value if present.
    fn optional_count(&mut self, name: &str) -> Option<i64>;
}

/// Draws every tensor from one seeded ChaCha8 stream, in build order.
pub(crate) struct Initializer {
    rng: ChaCha8Rng,
    device: Device,
}

impl Initializer {
    pub(crate) fn new(seed: u64, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }
}

impl ParamSource for Initializer {
    fn tensor(&mut self, _name: &str, shape: &[usize], init: Init) -> Result<Tensor, ModelError> {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Uniform { bound } => {
                let bound = bound as f32;
                (0..count)
                    .map(|_| self.rng.random_range(-bound..=bound))
                    .collect()
            }
            Init::Constant(value) => vec![value; count],
        };
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }

    fn optional_count(&mut self, _name: &str) -> Option<i64> {
        None
    }
}
