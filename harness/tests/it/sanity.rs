//! The sanity checks that need the model: a second forward pass (randomised defences) and the
//! input gradients at the clean inputs (vanishing gradients), each made to fire by a wrapper
//! around the bundled model and quiet on the bundled model itself.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use gauntlet::load::load;
use gauntlet::progress::Progress;
use gauntlet::runner::{run, Evaluation};
use gauntlet::suite::{Overrides, Suite};
use gauntlet_models::{Model, ModelError};
use gauntlet_reports::{CheckStatus, SanityCheck};
use rand::{Rng, SeedableRng};

/// The embedded default suite on its first `limit` samples with FGSM only: the model probes
/// run whatever the attacks, so the cheapest attack keeps the test fast.
fn suite(limit: usize) -> Suite {
    let overrides = Overrides {
        limit: Some(limit),
        ..Overrides::default()
    };
    let mut suite = Suite::embedded_default(&overrides).unwrap();
    suite.attacks.retain(|a| a.label == "fgsm");
    suite.sanity.full_budget = false;
    suite
}

fn evaluate(suite: &Suite, wrap: impl FnOnce(Box<dyn Model>) -> Box<dyn Model>) -> Evaluation {
    let mut loaded = load(suite).unwrap();
    loaded.model = wrap(loaded.model);
    run(suite, &loaded, &Progress::hidden()).unwrap()
}

fn find(evaluation: &Evaluation, name: &str) -> SanityCheck {
    let report = evaluation.report().unwrap();
    report
        .sanity_checks
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no check `{name}` in {:?}", report.sanity_checks))
}

/// A randomised defence: Gaussian noise of standard deviation `sigma` on the inputs, a fresh
/// draw on every call (seeded by a call counter, so the test itself is reproducible).
struct NoisyInputs {
    inner: Box<dyn Model>,
    sigma: f32,
    calls: AtomicU64,
}

impl Model for NoisyInputs {
    fn name(&self) -> &str {
        "noisy_inputs"
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
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(self.calls.fetch_add(1, Ordering::Relaxed));
        let noise: Vec<f32> = (0..inputs.elem_count())
            .map(|_| {
                // Box–Muller.
                let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                self.sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        let noise = Tensor::from_vec(noise, inputs.dims(), inputs.device())?;
        self.inner.forward(&(inputs + noise)?.clamp(0f32, 1f32)?)
    }
}

/// Defensive distillation's failure mode: logits multiplied by a large temperature `factor`.
/// The predictions are the bundled model's, but the softmax saturates to exactly one in f32 on
/// confidently classified samples, so the cross-entropy's input gradient vanishes there
/// (Carlini & Wagner 2016, "Defensive distillation is not robust to adversarial examples").
struct ScaledLogits {
    inner: Box<dyn Model>,
    factor: f64,
}

impl Model for ScaledLogits {
    fn name(&self) -> &str {
        "scaled_logits"
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
        Ok(self.inner.forward(inputs)?.affine(self.factor, 0.0)?)
    }
}

#[test]
fn model_probes_pass_on_the_bundled_model() {
    let evaluation = evaluate(&suite(128), |model| model);
    let repeat = evaluation.measurements.repeat_forward.as_ref().unwrap();
    // The default batch: one batch of 128, so both probes cover all of it.
    assert_eq!(repeat.logit_distance.len(), 128);
    assert!(
        repeat.logit_distance.iter().all(|&d| d == 0.0),
        "the same forward pass on the same batch is bit-identical on the CPU: {:?}",
        repeat.logit_distance
    );
    let gradients = evaluation.measurements.clean_gradients.as_ref().unwrap();
    assert_eq!(gradients.l1.len(), 128);
    let deterministic = find(&evaluation, "deterministic_model_outputs");
    assert_eq!(deterministic.status, CheckStatus::Pass, "{deterministic:?}");
    let vanishing = find(&evaluation, "input_gradients_not_vanishing");
    assert_eq!(vanishing.status, CheckStatus::Pass, "{vanishing:?}");
    assert!(vanishing.detail.starts_with("0 of the "), "{vanishing:?}");
    // Four orders of magnitude above the threshold (measured: smallest 2.6e-6, median 2.3).
    let smallest = gradients.l1.iter().copied().fold(f32::INFINITY, f32::min);
    assert!(
        smallest > 1e4 * gauntlet_results::sanity::VANISHING_GRADIENT_L1,
        "{smallest:e}"
    );
}

#[test]
fn a_second_forward_pass_that_differs_warns_of_a_randomised_model() {
    let evaluation = evaluate(&suite(64), |inner| {
        Box::new(NoisyInputs {
            inner,
            sigma: 0.05,
            calls: AtomicU64::new(0),
        })
    });
    let check = find(&evaluation, "deterministic_model_outputs");
    assert_eq!(check.status, CheckStatus::Warn, "{check:?}");
    assert!(
        check
            .detail
            .contains("possible gradient masking (randomised model)")
            && check
                .detail
                .contains("first 64 clean samples changed the outputs of"),
        "{check:?}"
    );
    // Noise on every pixel moves every sample's logits.
    let repeat = evaluation.measurements.repeat_forward.as_ref().unwrap();
    assert!(
        repeat.logit_distance.iter().all(|&d| d > 1e-4),
        "{:?}",
        repeat.logit_distance
    );
    // The gradients of a noisy model are not zero: only the randomness check fires.
    let vanishing = find(&evaluation, "input_gradients_not_vanishing");
    assert_eq!(vanishing.status, CheckStatus::Pass, "{vanishing:?}");
}

#[test]
fn saturated_softmax_warns_of_vanishing_gradients() {
    let suite = suite(64);
    let plain = evaluate(&suite, |model| model);
    let evaluation = evaluate(&suite, |inner| {
        Box::new(ScaledLogits { inner, factor: 1e4 })
    });
    let report = evaluation.report().unwrap();
    // Same predictions as the bundled model, so the same samples are correct.
    assert_eq!(
        report.clean.accuracy,
        plain.report().unwrap().clean.accuracy
    );
    let correct = report.clean.accuracy.successes;
    let gradients = evaluation.measurements.clean_gradients.as_ref().unwrap();
    let zero = gradients.l1.iter().filter(|&&g| g == 0.0).count();
    assert!(
        zero * 2 > correct,
        "{zero} exact zeros of {correct} correct: {:?}",
        gradients.l1
    );
    let check = find(&evaluation, "input_gradients_not_vanishing");
    assert_eq!(check.status, CheckStatus::Warn, "{check:?}");
    assert!(
        check
            .detail
            .starts_with("possible gradient masking (vanishing gradients): ")
            && check
                .detail
                .contains(&format!("of the {correct} correctly classified samples")),
        "{check:?}"
    );
    // Scaling is deterministic.
    let deterministic = find(&evaluation, "deterministic_model_outputs");
    assert_eq!(deterministic.status, CheckStatus::Pass, "{deterministic:?}");
}

#[test]
fn model_probes_run_only_in_the_shard_that_holds_sample_0() {
    let suite = suite(96);
    let loaded = load(&suite).unwrap();
    // Units of 40 samples: the clean units of chunks 0 and 40.
    let mut work = gauntlet::work::Work::new(&suite, &loaded, 40).unwrap();
    let clean_unit = |start: u64| {
        work.units
            .units
            .iter()
            .find(|u| {
                matches!(u.unit, gauntlet::shard::WorkUnit::Samples { run, start: s, .. }
                    if run.position() == 0 && s == start)
            })
            .unwrap()
            .id
    };
    let (first, second) = (clean_unit(0), clean_unit(40));
    let first = work.execute(first, &Progress::hidden()).unwrap();
    let second = work.execute(second, &Progress::hidden()).unwrap();
    let repeat = first.measurements.repeat_forward.as_ref().unwrap();
    assert_eq!((repeat.start, repeat.logit_distance.len()), (0, 40));
    assert!(second.measurements.repeat_forward.is_none());
    assert!(second.measurements.clean_gradients.is_none());
}
