//! Test support shared by gauntlet's crates (feature `testing`).
//!
//! * [`LinearModel`]: softmax regression with weights the test chooses, so attack tests can
//!   compare against closed-form answers (e.g. the worst L∞ perturbation of size ε lowers a
//!   margin `(w_a − w_b)·x` by exactly `ε‖w_a − w_b‖₁`).
//! * [`assert_gradient_matches_finite_differences`]: compares a model's input gradient with
//!   central finite differences of its own forward pass.
//! * [`device_tests!`](crate::device_tests): tests that take a `&Device` and run on the CPU
//!   always and also on CUDA device 0 when the calling crate is built with its `cuda` feature.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Loss, Model, ModelError};

/// Device-parameterised tests: each `fn name(device: &Device) { … }` becomes a module `name`
/// holding a test `cpu`, run on the CPU always, and a test `cuda`, run on CUDA device 0
/// ([`testing::cuda_device`](crate::testing::cuda_device)) when the **calling** crate is built with its `cuda` feature
/// (`cargo test --features cuda`). The `#[cfg(feature = "cuda")]` is expanded in the calling
/// crate, so every crate that uses this macro declares a `cuda` feature (gauntlet-models,
/// gauntlet-attacks and gauntlet do). Attributes written above a `fn` (doc comments,
/// `#[ignore]`, `#[should_panic]`) go on both tests. The body sees the enclosing module's
/// items through `use super::*`.
///
/// ```ignore
/// use candle_core::Device;
/// gauntlet_models::device_tests! {
///     /// The logits have one row per sample.
///     fn logits_have_one_row_per_sample(device: &Device) {
///         let network = Network::init(&spec, 0, device).unwrap();
///         // …
///     }
/// }
/// ```
///
/// runs as `logits_have_one_row_per_sample::cpu` and, with the feature,
/// `logits_have_one_row_per_sample::cuda`.
#[macro_export]
macro_rules! device_tests {
    ($(
        $(#[$attribute:meta])*
        fn $name:ident($device:ident : $device_type:ty) $body:block
    )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn device_test_body($device: $device_type) $body

            $(#[$attribute])*
            #[test]
            fn cpu() {
                device_test_body(&$crate::testing::cpu_device());
            }

            $(#[$attribute])*
            #[cfg(feature = "cuda")]
            #[test]
            fn cuda() {
                device_test_body(&$crate::testing::cuda_device());
            }
        }
    )*};
}

/// The device of the `cpu` half of [`device_tests!`](crate::device_tests).
pub fn cpu_device() -> Device {
    Device::Cpu
}

/// CUDA device 0, for the `cuda` half of [`device_tests!`](crate::device_tests). Panics with
/// candle's reason when it cannot be opened: a test run that asked for CUDA
/// (`--features cuda`) must not pass without one.
pub fn cuda_device() -> Device {
    match Device::new_cuda(0) {
        Ok(device) => device,
        Err(error) => panic!(
            "the tests were built with the `cuda` feature but CUDA device 0 cannot be opened: {error}"
        ),
    }
}

/// A model that counts the samples it is asked about, per sample: every forward pass, and
/// every gradient (`loss_and_input_gradient`, one forward and one backward). Tests hold what
/// an attack or scan declares it costs against what it does.
pub struct CountingModel<M> {
    inner: M,
    forward: std::sync::atomic::AtomicU64,
    backward: std::sync::atomic::AtomicU64,
}

impl<M: Model> CountingModel<M> {
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            forward: 0.into(),
            backward: 0.into(),
        }
    }

    /// `(forward, backward)` passes counted so far, per sample.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.forward.load(SeqCst), self.backward.load(SeqCst))
    }

    fn count(&self, inputs: &Tensor, gradient: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        let rows = inputs.dims().first().copied().unwrap_or(0) as u64;
        self.forward.fetch_add(rows, SeqCst);
        if gradient {
            self.backward.fetch_add(rows, SeqCst);
        }
    }
}

impl<M: Model> Model for CountingModel<M> {
    fn name(&self) -> &str {
        "counting"
    }
    fn input_shape(&self) -> &[usize] {
        self.inner.input_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
        self.count(inputs, false);
        self.inner.forward(inputs)
    }
    fn loss_and_input_gradient(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        loss: Loss,
    ) -> Result<crate::InputGradient, ModelError> {
        self.count(inputs, true);
        self.inner.loss_and_input_gradient(inputs, labels, loss)
    }
}

/// Softmax regression `logits = flatten(x)·Wᵀ + b` with known weights.
///
/// The forward pass runs in the dtype of its input (f32 or f64), so finite-difference checks
/// can use f64 inputs for tight tolerances.
#[derive(Debug, Clone)]
pub struct LinearModel {
    weight: Tensor,
    bias: Tensor,
    weight_rows: Vec<Vec<f32>>,
    bias_values: Vec<f32>,
    input_shape: Vec<usize>,
    num_classes: usize,
    device: Device,
}

impl LinearModel {
    /// `weight` is row-major `(num_classes, features)` with `features = ∏ input_shape`;
    /// `bias` has `num_classes` entries.
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        input_shape: Vec<usize>,
        num_classes: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let features: usize = input_shape.iter().product();
        if input_shape.is_empty() || features == 0 || num_classes == 0 {
            return Err(ModelError::invalid_spec(format!(
                "linear model needs a non-empty input shape and at least one class, got input shape {input_shape:?} and {num_classes} classes"
            )));
        }
        if weight.len() != num_classes * features {
            return Err(ModelError::invalid_spec(format!(
                "linear model weight has {} values, expected {num_classes} × {features} = {}",
                weight.len(),
                num_classes * features
            )));
        }
        if bias.len() != num_classes {
            return Err(ModelError::invalid_spec(format!(
                "linear model bias has {} values, expected {num_classes}",
                bias.len()
            )));
        }
        let weight_rows = weight.chunks(features).map(<[f32]>::to_vec).collect();
        let weight_tensor = Tensor::from_vec(weight, (num_classes, features), device)?;
        let bias_tensor = Tensor::from_vec(bias.clone(), num_classes, device)?;
        Ok(Self {
            weight: weight_tensor,
            bias: bias_tensor,
            weight_rows,
            bias_values: bias,
            input_shape,
            num_classes,
            device: device.clone(),
        })
    }

    /// The weight matrix as one row per class.
    pub fn weight_rows(&self) -> Vec<Vec<f32>> {
        self.weight_rows.clone()
    }

    /// The bias, one value per class.
    pub fn bias(&self) -> Vec<f32> {
        self.bias_values.clone()
    }
}

impl Model for LinearModel {
    fn name(&self) -> &str {
        "linear_model"
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
        crate::network::check_input_shape(inputs, &self.input_shape)?;
        let dtype = match inputs.dtype() {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        let batch = inputs.dim(0)?;
        let flat = inputs.to_dtype(dtype)?.reshape((batch, ()))?;
        let weight = self.weight.to_dtype(dtype)?;
        let bias = self.bias.to_dtype(dtype)?;
        Ok(flat.matmul(&weight.t()?)?.broadcast_add(&bias)?)
    }
}

/// How [`check_gradient_against_finite_differences`] probes and judges a gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientCheck {
    /// Step `h` of the central difference `(L(x + h·e_i) − L(x − h·e_i)) / 2h`.
    pub step: f64,
    /// A coordinate passes when `|analytic − numeric| ≤ tolerance · max(|analytic|, |numeric|, floor)`,
    /// where `floor` is 1% of the largest analytic gradient entry: coordinates whose gradient is
    /// tiny are judged on the scale of the whole gradient, where round-off would otherwise dominate.
    pub tolerance: f64,
    /// At most this many coordinates are probed (all of them when the input is smaller).
    pub max_coordinates: usize,
    /// Seed of the generator that picks the probed coordinates.
    pub seed: u64,
}

impl GradientCheck {
    /// Defaults for the input's dtype: `h = 1e-6` in f64, `h = 1e-3` in f32; 48 coordinates.
    pub fn for_dtype(dtype: DType, tolerance: f64) -> Self {
        let step = if dtype == DType::F64 { 1e-6 } else { 1e-3 };
        Self {
            step,
            tolerance,
            max_coordinates: 48,
            seed: 0,
        }
    }
}

/// One probed coordinate of a gradient check.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedCoordinate {
    /// Flat index into the input batch.
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
}

/// The outcome of a gradient check: every probed coordinate and the ones that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientCheckReport {
    pub probed: Vec<ProbedCoordinate>,
    pub failures: Vec<ProbedCoordinate>,
    /// The largest |analytic| entry of the whole gradient.
    pub gradient_max_abs: f64,
}

/// Compares `model.loss_and_input_gradient` with central differences of `Σ loss(forward(x))`.
///
/// The arithmetic of the differences is done in f64; the forward passes run in the dtype of
/// `inputs` (pass f64 inputs to a model that computes in f64 for tight tolerances).
pub fn check_gradient_against_finite_differences(
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    loss: Loss,
    check: &GradientCheck,
) -> Result<GradientCheckReport, ModelError> {
    let analytic_result = model.loss_and_input_gradient(inputs, labels, loss)?;
    if analytic_result.gradient.dims() != inputs.dims() {
        return Err(ModelError::InputShape {
            expected: inputs.dims().to_vec(),
            got: analytic_result.gradient.dims().to_vec(),
        });
    }
    let analytic: Vec<f64> = analytic_result
        .gradient
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1()?;
    let base: Vec<f64> = inputs.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let gradient_max_abs = analytic.iter().fold(0.0f64, |acc, g| acc.max(g.abs()));
    let floor = (0.01 * gradient_max_abs).max(f64::MIN_POSITIVE);
    let mut probed = Vec::new();
    for index in probe_indices(base.len(), check) {
        let plus = total_loss_at(model, inputs, labels, loss, &base, index, check.step)?;
        let minus = total_loss_at(model, inputs, labels, loss, &base, index, -check.step)?;
        probed.push(ProbedCoordinate {
            index,
            analytic: analytic[index],
            numeric: (plus - minus) / (2.0 * check.step),
        });
    }
    let failures = probed
        .iter()
        .filter(|p| {
            let scale = p.analytic.abs().max(p.numeric.abs()).max(floor);
            let error = (p.analytic - p.numeric).abs();
            // NaN on either side is a failure too.
            error.is_nan() || error > check.tolerance * scale
        })
        .cloned()
        .collect();
    Ok(GradientCheckReport {
        probed,
        failures,
        gradient_max_abs,
    })
}

/// Panics with the failing coordinates unless the model's input gradient matches central
/// finite differences within `tolerance` (relative, see [`GradientCheck::tolerance`]).
///
/// Also panics when the gradient is identically zero, which would hide a cut-off graph.
pub fn assert_gradient_matches_finite_differences(
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    loss: Loss,
    tolerance: f64,
) {
    let check = GradientCheck::for_dtype(inputs.dtype(), tolerance);
    let report =
        match check_gradient_against_finite_differences(model, inputs, labels, loss, &check) {
            Ok(report) => report,
            Err(error) => panic!(
                "gradient check of `{}` could not run: {error:?}",
                model.name()
            ),
        };
    assert!(
        report.gradient_max_abs > 0.0,
        "the input gradient of `{}` is identically zero ({loss:?})",
        model.name()
    );
    assert!(
        report.failures.is_empty(),
        "input gradient of `{}` ({loss:?}) differs from central differences at {} of {} probed coordinates \
         (largest |gradient| {:e}); failures: {:?}",
        model.name(),
        report.failures.len(),
        report.probed.len(),
        report.gradient_max_abs,
        report.failures
    );
}

fn probe_indices(len: usize, check: &GradientCheck) -> Vec<usize> {
    if len <= check.max_coordinates {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(check.seed);
    let mut indices = rand::seq::index::sample(&mut rng, len, check.max_coordinates).into_vec();
    indices.sort_unstable();
    indices
}

fn total_loss_at(
    model: &dyn Model,
    inputs: &Tensor,
    labels: &Tensor,
    loss: Loss,
    base: &[f64],
    index: usize,
    offset: f64,
) -> Result<f64, ModelError> {
    let mut shifted = base.to_vec();
    shifted[index] += offset;
    let probe =
        Tensor::from_vec(shifted, inputs.dims(), inputs.device())?.to_dtype(inputs.dtype())?;
    let logits = model.forward(&probe)?;
    let per_sample = loss.per_sample(&logits, labels)?;
    Ok(per_sample
        .to_dtype(DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_model() -> LinearModel {
        toy_model_on(&Device::Cpu)
    }

    fn toy_model_on(device: &Device) -> LinearModel {
        // 3 classes over 2×2 inputs.
        let weight = vec![
            1.0, -2.0, 0.5, 0.0, //
            -1.0, 0.5, 2.0, 1.0, //
            0.25, 0.0, -0.5, 3.0,
        ];
        LinearModel::new(weight, vec![0.1, -0.2, 0.3], vec![1, 2, 2], 3, device).unwrap()
    }

    #[test]
    fn linear_model_forward_is_affine() {
        let model = toy_model();
        let x = Tensor::new(&[[[[1.0f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
        let logits: Vec<Vec<f32>> = model.forward(&x).unwrap().to_vec2().unwrap();
        // Row k: w_k · [1, 2, 3, 4] + b_k.
        assert_eq!(
            logits,
            vec![vec![
                1.0 - 4.0 + 1.5 + 0.1,
                -1.0 + 1.0 + 6.0 + 4.0 - 0.2,
                0.25 - 1.5 + 12.0 + 0.3
            ]]
        );
        assert_eq!(model.weight_rows()[1], vec![-1.0, 0.5, 2.0, 1.0]);
    }

    #[test]
    fn linear_model_rejects_wrong_sizes() {
        let err =
            LinearModel::new(vec![0.0; 5], vec![0.0; 3], vec![4], 3, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("5 values"), "{err}");
        let model = toy_model();
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            model.forward(&x),
            Err(ModelError::InputShape { .. })
        ));
    }

    crate::device_tests! {
        fn linear_model_gradient_is_the_closed_form(device: &Device) {
            // For the CW margin with a clear runner-up j, ∂(z_j − z_y)/∂x = w_j − w_y.
            let model = toy_model_on(device);
            let x = Tensor::new(&[[[[0.0f64, 0.0], [0.0, 1.0]]]], device).unwrap();
            let y = Tensor::new(&[0u32], device).unwrap();
            let result = model
                .loss_and_input_gradient(&x, &y, Loss::CwMargin)
                .unwrap();
            // Logits: [0.1, 0.8, 3.3] → runner-up is class 2.
            let gradient: Vec<f64> = result.gradient.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(gradient, vec![0.25 - 1.0, 0.0 + 2.0, -0.5 - 0.5, 3.0 - 0.0]);
            for loss in [Loss::CrossEntropy, Loss::CwMargin] {
                assert_gradient_matches_finite_differences(&model, &x, &y, loss, 1e-6);
            }
        }
    }

    #[test]
    #[should_panic(expected = "differs from central differences")]
    fn gradient_check_catches_a_wrong_gradient() {
        /// A model whose reported gradient is a quarter of the truth, like candle's max-pool bug.
        struct QuarterGradient(LinearModel);
        impl Model for QuarterGradient {
            fn name(&self) -> &str {
                "quarter"
            }
            fn input_shape(&self) -> &[usize] {
                self.0.input_shape()
            }
            fn num_classes(&self) -> usize {
                self.0.num_classes()
            }
            fn device(&self) -> &Device {
                self.0.device()
            }
            fn forward(&self, inputs: &Tensor) -> Result<Tensor, ModelError> {
                self.0.forward(inputs)
            }
            fn loss_and_input_gradient(
                &self,
                inputs: &Tensor,
                labels: &Tensor,
                loss: Loss,
            ) -> Result<crate::InputGradient, ModelError> {
                let mut result = self.0.loss_and_input_gradient(inputs, labels, loss)?;
                result.gradient = result.gradient.affine(0.25, 0.0)?;
                Ok(result)
            }
        }
        let model = QuarterGradient(toy_model());
        let x = Tensor::new(&[[[[0.3f64, 0.1], [0.7, 0.2]]]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        assert_gradient_matches_finite_differences(&model, &x, &y, Loss::CrossEntropy, 1e-4);
    }
}
