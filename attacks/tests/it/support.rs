//! Models, data and measurements shared by the integration tests.

use candle_core::{DType, Device, Tensor, Var};
use gauntlet_attacks::{Attack, AttackEntry, ChaCha8Rng};
use gauntlet_datasets::Dataset;
use gauntlet_models::{Loss, Model, ModelError};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A one-hidden-layer ReLU network `W₂·relu(W₁·flatten(x) + b₁) + b₂`, built here from candle
/// ops so the attack tests have a non-linear model that depends on nothing but `Model`.
pub struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    input_shape: Vec<usize>,
    num_classes: usize,
    device: Device,
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal) * scale)
        .collect()
}

impl Mlp {
    /// He-initialised weights from `seed`.
    pub fn random(input_shape: &[usize], hidden: usize, num_classes: usize, seed: u64) -> Mlp {
        let device = Device::Cpu;
        let features: usize = input_shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w1 = gaussian(&mut rng, hidden * features, (2.0 / features as f32).sqrt());
        let b1 = gaussian(&mut rng, hidden, 0.1);
        let w2 = gaussian(&mut rng, num_classes * hidden, (2.0 / hidden as f32).sqrt());
        let b2 = gaussian(&mut rng, num_classes, 0.1);
        Mlp {
            w1: Tensor::from_vec(w1, (hidden, features), &device).unwrap(),
            b1: Tensor::from_vec(b1, hidden, &device).unwrap(),
            w2: Tensor::from_vec(w2, (num_classes, hidden), &device).unwrap(),
            b2: Tensor::from_vec(b2, num_classes, &device).unwrap(),
            input_shape: input_shape.to_vec(),
            num_classes,
            device,
        }
    }

    fn logits(
        inputs: &Tensor,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let batch = inputs.dim(0)?;
        let flat = inputs.reshape((batch, ()))?;
        let hidden = flat.matmul(&w1.t()?)?.broadcast_add(b1)?.relu()?;
        hidden.matmul(&w2.t()?)?.broadcast_add(b2)
    }

    /// Full-batch gradient descent with momentum on the mean cross-entropy.
    pub fn train(self, inputs: &Tensor, labels: &Tensor, steps: usize, learning_rate: f64) -> Mlp {
        let vars: Vec<Var> = [&self.w1, &self.b1, &self.w2, &self.b2]
            .into_iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let mut velocity: Vec<Tensor> = vars.iter().map(|v| v.zeros_like().unwrap()).collect();
        for _ in 0..steps {
            let logits = Mlp::logits(
                inputs,
                vars[0].as_tensor(),
                vars[1].as_tensor(),
                vars[2].as_tensor(),
                vars[3].as_tensor(),
            )
            .unwrap();
            let loss = Loss::CrossEntropy
                .per_sample(&logits, labels)
                .unwrap()
                .mean_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            for (var, velocity) in vars.iter().zip(velocity.iter_mut()) {
                let gradient = grads.get(var.as_tensor()).unwrap();
                *velocity = ((&*velocity * 0.9).unwrap() + gradient).unwrap();
                var.set(&(var.as_tensor() - (&*velocity * learning_rate).unwrap()).unwrap())
                    .unwrap();
            }
        }
        let [w1, b1, w2, b2] = [0, 1, 2, 3].map(|i| vars[i].as_tensor().detach());
        Mlp {
            w1,
            b1,
            w2,
            b2,
            ..self
        }
    }
}

impl Model for Mlp {
    fn name(&self) -> &str {
        "test_mlp"
    }
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        Ok(Mlp::logits(inputs, &self.w1, &self.b1, &self.w2, &self.b2)?)
    }
}

/// UCI digits (8×8, 10 classes): a model trained on the first part, the rest held out.
pub struct Digits {
    pub model: Mlp,
    pub test_inputs: Tensor,
    pub test_labels: Tensor,
}

/// An MLP (64 → 32 → 10) trained on UCI digits; every sixth sample (the first `test_samples`
/// of them) is held out. The file is ordered by writer, so interleaving keeps both parts alike.
pub fn trained_digits_mlp(test_samples: usize) -> Digits {
    let dataset = gauntlet_datasets::embedded_uci_digits().unwrap();
    assert_eq!(dataset.class_names().len(), 10);
    let (held_out, training): (Vec<usize>, Vec<usize>) =
        (0..dataset.len()).partition(|i| i % 6 == 0);
    assert!(held_out.len() >= test_samples);
    let train = dataset.subset(&training).unwrap();
    let train = train.batch(0..train.len(), &Device::Cpu).unwrap();
    let test = dataset.subset(&held_out[..test_samples]).unwrap();
    let test = test.batch(0..test_samples, &Device::Cpu).unwrap();
    let model = Mlp::random(dataset.sample_shape(), 32, 10, 5).train(
        &train.inputs,
        &train.labels,
        300,
        0.1,
    );
    Digits {
        model,
        test_inputs: test.inputs,
        test_labels: test.labels,
    }
}

/// Fraction of `inputs` the model classifies as `labels`.
pub fn accuracy(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> f64 {
    let predicted: Vec<u32> = model.predict(inputs).unwrap().to_vec1().unwrap();
    let labels: Vec<u32> = labels.to_dtype(DType::U32).unwrap().to_vec1().unwrap();
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / labels.len() as f64
}

/// Per-sample correctness.
pub fn correct(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> Vec<bool> {
    let predicted: Vec<u32> = model.predict(inputs).unwrap().to_vec1().unwrap();
    let labels: Vec<u32> = labels.to_dtype(DType::U32).unwrap().to_vec1().unwrap();
    predicted.iter().zip(&labels).map(|(p, l)| p == l).collect()
}

/// Per-sample loss of `inputs` against `labels`.
pub fn losses(model: &dyn Model, inputs: &Tensor, labels: &Tensor, loss: Loss) -> Vec<f32> {
    loss.per_sample(&model.forward(inputs).unwrap(), labels)
        .unwrap()
        .to_vec1()
        .unwrap()
}

pub fn mean(values: &[f32]) -> f64 {
    values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64
}

/// The bit patterns of a tensor, for bit-identity checks.
pub fn bits(tensor: &Tensor) -> Vec<u32> {
    tensor
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Build `entry` at `epsilon` from a TOML snippet.
pub fn build(entry: &AttackEntry, params: &str, epsilon: f32) -> Box<dyn Attack> {
    let table: toml::Table = toml::from_str(params).unwrap();
    (entry.build)(&table, epsilon)
        .unwrap_or_else(|error| panic!("{} with `{params}` at ε = {epsilon}: {error}", entry.name))
}

pub fn perturb(
    attack: &dyn Attack,
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    seed: u64,
) -> Tensor {
    attack
        .perturb(model, inputs, labels, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap_or_else(|error| panic!("{} failed: {error}", attack.name()))
}
