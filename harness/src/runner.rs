//! Runs a validated [`Suite`]: dataset → model → attacks → [`RunReport`].
//!
//! Every number is computed sample by sample and then aggregated, so the worst case across
//! attacks is pointwise (an example counts as broken if any attack breaks it, as AutoAttack
//! counts) and per-class figures come for free. Each batch's random generator is seeded from
//! (suite seed, attack label, ε, batch index), so the numbers do not depend on batch order.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{projection::perturbation_norms, Norm};
use gauntlet_datasets::{Batch, Dataset};
use gauntlet_models::{Loss, Model};
use gauntlet_reports::{
    AdversarialExample, AttackResult, CleanResult, RunReport, SuiteInfo, Timings, WorstCaseResult,
    SCHEMA_VERSION,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::load::Loaded;
use crate::metrics::{count_true, epsilon_value, per_class, perturbation_stats, proportion};
use crate::progress::Progress;
use crate::sanity;
use crate::suite::{PlannedAttack, Suite};

/// Per-sample outcome of the clean pass.
pub struct CleanOutcome {
    pub labels: Vec<u32>,
    pub predictions: Vec<u32>,
    pub correct: Vec<bool>,
    pub losses: Vec<f32>,
}

/// Per-sample outcome of one attack at one ε.
pub struct AttackOutcome {
    pub label: String,
    pub name: String,
    /// [`PlannedAttack::objective`].
    pub objective: String,
    pub norm: Norm,
    pub epsilon: f32,
    /// Robust: correct on the clean input *and* on the adversarial one.
    pub robust: Vec<bool>,
    pub predictions: Vec<u32>,
    pub losses: Vec<f32>,
    pub norms: Vec<f32>,
    pub max_linf: f32,
    /// Smallest and largest adversarial pixel value seen, and whether any was NaN.
    pub min_value: f32,
    pub max_value: f32,
    pub has_nan: bool,
    pub seconds: f64,
}

/// Derive a batch's seed from the run's seed and what the batch is for.
///
/// ε is deliberately not an input: an attack draws the same random starts and targets at every
/// budget (scaled to it), so robust accuracy across ε compares like with like instead of
/// differing by random-start noise. SHA-256 of a fixed layout keeps the seed stable across
/// platforms and releases, unlike `Hash`.
pub fn derive_seed(seed: u64, purpose: &str, batch_index: usize) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update((purpose.len() as u64).to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.update((batch_index as u64).to_le_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The batches of the evaluated samples.
pub fn batch_ranges(len: usize, batch_size: usize) -> Vec<std::ops::Range<usize>> {
    (0..len)
        .step_by(batch_size.max(1))
        .map(|start| start..(start + batch_size).min(len))
        .collect()
}

fn to_u32s(tensor: &Tensor) -> Result<Vec<u32>> {
    Ok(tensor.to_dtype(DType::U32)?.to_vec1::<u32>()?)
}

/// Logits, predictions and per-sample cross-entropy.
fn evaluate(model: &dyn Model, inputs: &Tensor, labels: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    let logits = model.forward(inputs)?;
    let predictions = to_u32s(&logits.argmax(1)?)?;
    let losses = Loss::CrossEntropy
        .per_sample(&logits, labels)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok((predictions, losses))
}

/// What every pass over the data shares.
pub struct Pass<'a> {
    pub model: &'a dyn Model,
    pub dataset: &'a dyn Dataset,
    pub device: &'a Device,
    pub batch_size: usize,
    pub seed: u64,
    pub progress: &'a Progress,
}

pub fn clean_pass(pass: &Pass) -> Result<CleanOutcome> {
    let Pass {
        model,
        dataset,
        device,
        batch_size,
        progress,
        ..
    } = *pass;
    let mut outcome = CleanOutcome {
        labels: Vec::new(),
        predictions: Vec::new(),
        correct: Vec::new(),
        losses: Vec::new(),
    };
    for range in batch_ranges(dataset.len(), batch_size) {
        let batch = dataset.batch(range, device)?;
        let labels = to_u32s(&batch.labels)?;
        let (predictions, losses) = evaluate(model, &batch.inputs, &batch.labels)?;
        outcome
            .correct
            .extend(labels.iter().zip(&predictions).map(|(l, p)| l == p));
        outcome.labels.extend(labels);
        outcome.predictions.extend(predictions);
        outcome.losses.extend(losses);
        progress.advance(1);
    }
    Ok(outcome)
}

/// What the runner keeps of one batch's adversarial inputs for the gallery.
pub struct KeptBatch {
    pub clean: Batch,
    pub adversarial: Tensor,
}

/// Run one attack at one ε over the whole dataset.
pub fn attack_pass(
    pass: &Pass,
    planned: &PlannedAttack,
    clean: &CleanOutcome,
    keep_first_batch: bool,
) -> Result<(AttackOutcome, Option<KeptBatch>)> {
    let Pass {
        model,
        dataset,
        device,
        batch_size,
        seed,
        progress,
    } = *pass;
    let started = Instant::now();
    let norm = planned.attack.threat().norm;
    let mut outcome = AttackOutcome {
        label: planned.label.clone(),
        name: planned.name.clone(),
        objective: planned.objective(),
        norm,
        epsilon: planned.epsilon,
        robust: Vec::new(),
        predictions: Vec::new(),
        losses: Vec::new(),
        norms: Vec::new(),
        max_linf: 0.0,
        min_value: f32::INFINITY,
        max_value: f32::NEG_INFINITY,
        has_nan: false,
        seconds: 0.0,
    };
    let mut kept = None;
    for (index, range) in batch_ranges(dataset.len(), batch_size)
        .into_iter()
        .enumerate()
    {
        let batch = dataset.batch(range.clone(), device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &planned.label, index));
        let adversarial = planned
            .attack
            .perturb(model, &batch.inputs, &batch.labels, &mut rng)
            .with_context(|| {
                format!(
                    "attack `{}` at ε = {} failed on samples {}..{}",
                    planned.label, planned.epsilon, range.start, range.end
                )
            })?;
        let (predictions, losses) = evaluate(model, &adversarial, &batch.labels)?;
        let flat = adversarial.flatten_all()?;
        outcome.has_nan |= flat
            .ne(&flat)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?
            > 0.0;
        outcome.min_value = outcome.min_value.min(flat.min(0)?.to_scalar::<f32>()?);
        outcome.max_value = outcome.max_value.max(flat.max(0)?.to_scalar::<f32>()?);
        let linf = perturbation_norms(&adversarial, &batch.inputs, Norm::Linf)?;
        outcome.max_linf = linf.into_iter().fold(outcome.max_linf, f32::max);
        outcome
            .norms
            .extend(perturbation_norms(&adversarial, &batch.inputs, norm)?);
        for (offset, &prediction) in predictions.iter().enumerate() {
            let sample = range.start + offset;
            outcome
                .robust
                .push(clean.correct[sample] && prediction == clean.labels[sample]);
        }
        outcome.predictions.extend(predictions);
        outcome.losses.extend(losses);
        if keep_first_batch && index == 0 {
            kept = Some(KeptBatch {
                clean: batch,
                adversarial,
            });
        }
        progress.advance(1);
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok((outcome, kept))
}

/// Run the whole suite.
pub fn run(suite: &Suite, loaded: &Loaded, progress: &Progress) -> Result<RunReport> {
    let started = Instant::now();
    let model: &dyn Model = &loaded.model;
    let dataset: &dyn Dataset = loaded.dataset.as_ref();
    let device = &loaded.device;
    let batches = batch_ranges(dataset.len(), suite.batch_size).len();
    progress.set_length((batches * (1 + suite.attacks.len())) as u64 + sanity::extra_steps(suite));

    progress.set_message("clean accuracy");
    let clean_started = Instant::now();
    let pass = Pass {
        model,
        dataset,
        device,
        batch_size: suite.batch_size,
        seed: suite.seed,
        progress,
    };
    let clean = clean_pass(&pass)?;
    let clean_seconds = clean_started.elapsed().as_secs_f64();

    let gallery = gallery_choice(suite);
    let attack_started = Instant::now();
    let mut outcomes = Vec::new();
    let mut kept = None;
    for (index, planned) in suite.attacks.iter().enumerate() {
        progress.set_message(&format!("{} ε={}", planned.label, planned.epsilon));
        let (outcome, kept_batch) = attack_pass(&pass, planned, &clean, gallery == Some(index))?;
        if kept_batch.is_some() {
            kept = kept_batch;
        }
        outcomes.push(outcome);
    }
    let attack_seconds = attack_started.elapsed().as_secs_f64();

    progress.set_message("sanity checks");
    let class_names = &loaded.class_names;
    let clean_result = CleanResult {
        accuracy: proportion(count_true(&clean.correct), clean.correct.len()),
        mean_loss: mean(&clean.losses),
        per_class: per_class(&clean.labels, &clean.correct, class_names),
    };
    let attacks: Vec<AttackResult> = outcomes
        .iter()
        .zip(&suite.attacks)
        .map(|(outcome, planned)| attack_result(outcome, planned, &clean, class_names))
        .collect();
    let worst_case = worst_case(&outcomes, &clean, class_names);
    let sanity_checks =
        sanity::run_checks(suite, loaded, &clean, &outcomes, &worst_case, progress)?;
    let examples = match (&kept, gallery) {
        (Some(kept), Some(index)) => {
            gallery_examples(kept, &clean, &outcomes[index], suite.report.examples)?
        }
        _ => Vec::new(),
    };
    let mut report = RunReport {
        schema_version: SCHEMA_VERSION,
        gauntlet_version: env!("CARGO_PKG_VERSION").to_string(),
        suite: SuiteInfo {
            name: suite.name.clone(),
            path: suite.path.as_ref().map(|p| p.display().to_string()),
        },
        seed: suite.seed,
        device: loaded.device_name.clone(),
        model: loaded.model_info.clone(),
        dataset: loaded.dataset_info.clone(),
        clean: clean_result,
        attacks,
        worst_case,
        sanity_checks,
        gates: Vec::new(),
        examples,
        timings: Timings {
            load_seconds: loaded.load_seconds,
            clean_seconds,
            attack_seconds,
            total_seconds: 0.0,
        },
        provenance: loaded.provenance.clone(),
    };
    report.gates = crate::gate::evaluate(&suite.gates, &report);
    report.timings.total_seconds = loaded.load_seconds + started.elapsed().as_secs_f64();
    Ok(report)
}

fn mean(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

fn attack_result(
    outcome: &AttackOutcome,
    planned: &PlannedAttack,
    clean: &CleanOutcome,
    class_names: &[String],
) -> AttackResult {
    let clean_correct = count_true(&clean.correct);
    let broken = clean
        .correct
        .iter()
        .zip(&outcome.robust)
        .filter(|(&was_correct, &still)| was_correct && !still)
        .count();
    let params = serde_json::to_value(&planned.params)
        .ok()
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default();
    AttackResult {
        label: outcome.label.clone(),
        attack: outcome.name.clone(),
        norm: outcome.norm.to_string(),
        epsilon: epsilon_value(outcome.epsilon),
        params,
        robust_accuracy: proportion(count_true(&outcome.robust), outcome.robust.len()),
        success_rate: proportion(broken, clean_correct),
        mean_loss: mean(&outcome.losses),
        perturbation: perturbation_stats(&outcome.norms, outcome.max_linf),
        per_class: per_class(&clean.labels, &outcome.robust, class_names),
        seconds: outcome.seconds,
    }
}

/// Pointwise worst case over the attacks at each (norm, ε).
fn worst_case(
    outcomes: &[AttackOutcome],
    clean: &CleanOutcome,
    class_names: &[String],
) -> Vec<WorstCaseResult> {
    let mut keys: Vec<(Norm, f32)> = Vec::new();
    for outcome in outcomes {
        if !keys.contains(&(outcome.norm, outcome.epsilon)) {
            keys.push((outcome.norm, outcome.epsilon));
        }
    }
    keys.sort_by(|a, b| (a.0 as u8).cmp(&(b.0 as u8)).then(a.1.total_cmp(&b.1)));
    keys.into_iter()
        .map(|(norm, epsilon)| {
            let members: Vec<&AttackOutcome> = outcomes
                .iter()
                .filter(|o| o.norm == norm && o.epsilon == epsilon)
                .collect();
            let robust: Vec<bool> = (0..clean.correct.len())
                .map(|i| members.iter().all(|o| o.robust[i]))
                .collect();
            WorstCaseResult {
                norm: norm.to_string(),
                epsilon: epsilon_value(epsilon),
                attacks: members.iter().map(|o| o.label.clone()).collect(),
                robust_accuracy: proportion(count_true(&robust), robust.len()),
                per_class: per_class(&clean.labels, &robust, class_names),
            }
        })
        .collect()
}

/// The (attack, ε) whose adversarial examples the gallery shows: the last attack of the suite
/// (usually the strongest) at its middle ε.
fn gallery_choice(suite: &Suite) -> Option<usize> {
    if suite.report.examples == 0 {
        return None;
    }
    let last_label = &suite.attacks.last()?.label;
    let indices: Vec<usize> = suite
        .attacks
        .iter()
        .enumerate()
        .filter(|(_, a)| &a.label == last_label && a.epsilon > 0.0)
        .map(|(i, _)| i)
        .collect();
    indices.get(indices.len().saturating_sub(1) / 2).copied()
}

/// Up to `wanted` examples from the kept (first) batch: broken ones first, then unbroken ones.
fn gallery_examples(
    kept: &KeptBatch,
    clean: &CleanOutcome,
    outcome: &AttackOutcome,
    wanted: usize,
) -> Result<Vec<AdversarialExample>> {
    let shape: Vec<usize> = kept.clean.inputs.dims()[1..].to_vec();
    let originals = kept.clean.inputs.flatten_from(1)?.to_vec2::<f32>()?;
    let adversarials = kept.adversarial.flatten_from(1)?.to_vec2::<f32>()?;
    let mut order: Vec<usize> = (0..originals.len()).collect();
    order.sort_by_key(|&i| {
        let broken = clean.correct[i] && !outcome.robust[i];
        (!broken, i)
    });
    Ok(order
        .into_iter()
        .take(wanted)
        .map(|i| AdversarialExample {
            index: i,
            attack: outcome.label.clone(),
            epsilon: epsilon_value(outcome.epsilon),
            true_label: clean.labels[i] as usize,
            clean_prediction: clean.predictions[i] as usize,
            adversarial_prediction: outcome.predictions[i] as usize,
            shape: shape.clone(),
            original: originals[i].clone(),
            adversarial: adversarials[i].clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_run_seed_purpose_and_batch() {
        let base = derive_seed(0, "pgd", 0);
        assert_eq!(base, derive_seed(0, "pgd", 0));
        assert_ne!(base, derive_seed(1, "pgd", 0));
        assert_ne!(base, derive_seed(0, "fgsm", 0));
        assert_ne!(base, derive_seed(0, "pgd", 1));
    }

    #[test]
    fn batch_ranges_cover_every_sample_once() {
        let ranges = batch_ranges(10, 4);
        assert_eq!(ranges, vec![0..4, 4..8, 8..10]);
        assert!(batch_ranges(0, 4).is_empty());
    }
}
