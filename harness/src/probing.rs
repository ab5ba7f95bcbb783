//! The `[probing]` section: a simulated black-box attacker's query stream against the
//! query-similarity monitor (`gauntlet_attacks::detector::probing`).
//!
//! The monitor's threshold is fixed on a benign stream — the first `benign_samples` clean
//! inputs of the dataset, one after another — at `target_fpr`. Then each of the first
//! `sessions` correctly classified samples is attacked alone by the black-box attack (Square or
//! HopSkipJump, with its own parameters), through a model wrapper that logs every query in
//! order: that log is one attacker session's stream. Replayed through a fresh monitor session,
//! it gives the query at which the monitor first flags the session and the query at which the
//! model first misclassifies; `results.json`'s `probing` holds both per session.
//!
//! It runs in the whole-model work unit: the sessions are few (default 10), and each is a
//! sequence whose monitor state cannot be split across shards.

use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::detector::probing::QuerySimilarity;
use gauntlet_attacks::{find_attack, Attack, AttackEntry, ModelAccess, SampleRandomness, ATTACKS};
use gauntlet_models::{InputGradient, Loss, Model, ModelError};
use gauntlet_reports::probing::{ProbingReport, ProbingSession};
use serde::Deserialize;

use crate::progress::Progress;

/// The `[probing]` table. Keys not listed here go to the attack's own parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbingSection {
    /// A black-box attack of the registry (`square`, `hop_skip_jump`).
    pub attack: String,
    pub epsilon: f32,
    /// Attacker sessions: the first this many correctly classified samples (default 10).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// The monitor's neighbours (default 20) and history per session (default 1000).
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default = "default_window")]
    pub window: usize,
    /// The benign stream the threshold is fixed on: the first this many clean inputs (default
    /// 500, at most the dataset).
    #[serde(default = "default_benign_samples")]
    pub benign_samples: usize,
    /// The benign stream's false-positive rate the threshold is fixed at (default 0.01).
    #[serde(default = "default_target_fpr")]
    pub target_fpr: f64,
    #[serde(flatten)]
    pub params: toml::Table,
}

fn default_sessions() -> usize {
    10
}
fn default_k() -> usize {
    20
}
fn default_window() -> usize {
    1000
}
fn default_benign_samples() -> usize {
    500
}
fn default_target_fpr() -> f64 {
    0.01
}

/// A validated `[probing]` section.
pub struct PlannedProbing {
    pub section: ProbingSection,
    pub entry: &'static AttackEntry,
    pub attack: Box<dyn Attack>,
    pub monitor: QuerySimilarity,
}

impl PlannedProbing {
    /// Check what needs no data: the attack is a registered black box and builds with its
    /// parameters at `epsilon`, and the monitor's settings are valid. Errors name the key.
    pub fn validate(section: &ProbingSection) -> Result<Self> {
        let entry = find_attack(&section.attack).with_context(|| {
            let black_box: Vec<&str> = ATTACKS
                .iter()
                .filter(|a| a.needs != ModelAccess::InputGradients)
                .map(|a| a.name)
                .collect();
            format!(
                "`probing.attack`: unknown attack `{}`; black-box attacks: {}",
                section.attack,
                black_box.join(", ")
            )
        })?;
        if entry.needs == ModelAccess::InputGradients {
            bail!(
                "`probing.attack`: `{}` needs input gradients; a probing stream is what a \
                 black-box attacker sends (`square`, `hop_skip_jump`)",
                entry.name
            );
        }
        if !(section.epsilon.is_finite() && section.epsilon > 0.0) {
            bail!(
                "`probing.epsilon` must be a finite number > 0, got {}",
                section.epsilon
            );
        }
        if section.sessions == 0 {
            bail!("`probing.sessions` must be ≥ 1, got 0");
        }
        if !(0.0..1.0).contains(&section.target_fpr) {
            bail!(
                "`probing.target_fpr` must be in [0, 1), got {}",
                section.target_fpr
            );
        }
        if section.benign_samples <= section.k {
            bail!(
                "`probing.benign_samples` must exceed `probing.k` = {} (the monitor scores a \
                 query once it has k predecessors), got {}",
                section.k,
                section.benign_samples
            );
        }
        let monitor = QuerySimilarity::new(section.k, section.window).context("`probing`")?;
        let attack = (entry.build)(&section.params, section.epsilon)
            .with_context(|| format!("`probing`: attack `{}`", entry.name))?;
        Ok(Self {
            section: section.clone(),
            entry,
            attack,
            monitor,
        })
    }

    /// `gauntlet check`'s line.
    pub fn describe(&self) -> String {
        format!(
            "  probing: {} sessions of `{}` at ε = {} against a query-similarity monitor (k = {}, \
             window {}, threshold at {}% false positives on {} benign inputs)\n",
            self.section.sessions,
            self.entry.name,
            self.section.epsilon,
            self.section.k,
            self.section.window,
            self.section.target_fpr * 100.0,
            self.section.benign_samples
        )
    }
}

/// A model that logs every input row it is queried with, in order, with the prediction it
/// gave: what the attacker sent, as a monitor in front of the model sees it.
struct Logged<'a> {
    inner: &'a dyn Model,
    log: Mutex<Vec<(Vec<f32>, u32)>>,
}

impl Logged<'_> {
    fn record(&self, inputs: &Tensor, logits: &Tensor) -> Result<(), ModelError> {
        let rows: Vec<Vec<f32>> = inputs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let predictions: Vec<u32> = logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1()?;
        // A panic elsewhere cannot leave the log half-written: a push is all it does.
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.extend(rows.into_iter().zip(predictions));
        Ok(())
    }

    fn take(&self) -> Vec<(Vec<f32>, u32)> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Model for Logged<'_> {
    fn name(&self) -> &str {
        self.inner.name()
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
        let logits = self.inner.forward(inputs)?;
        self.record(inputs, &logits)?;
        Ok(logits)
    }
    fn loss_and_input_gradient(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        loss: Loss,
    ) -> Result<InputGradient, ModelError> {
        // A black-box attack never asks; were one to, the query still counts.
        self.record(inputs, &self.inner.forward(inputs)?)?;
        self.inner.loss_and_input_gradient(inputs, labels, loss)
    }
    fn capabilities(&self) -> gauntlet_models::ModelCapabilities {
        self.inner.capabilities()
    }
}

/// Run the simulation on `dataset` with `model`.
pub fn run(
    planned: &PlannedProbing,
    model: &dyn Model,
    dataset: &dyn gauntlet_datasets::Dataset,
    seed: u64,
    progress: &Progress,
) -> Result<ProbingReport> {
    let section = &planned.section;
    let device = model.device();
    progress.set_message("probing: the benign stream");
    let benign_samples = section.benign_samples.min(dataset.len());
    if benign_samples <= section.k {
        bail!(
            "`probing.benign_samples`: the dataset has {} samples, too few for a benign \
             stream that scores any query with k = {}",
            dataset.len(),
            section.k
        );
    }
    let benign: Vec<Vec<f32>> = dataset
        .batch(0..benign_samples, device)?
        .inputs
        .flatten_from(1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let calibration = planned
        .monitor
        .calibrate(&benign, section.target_fpr)
        .context("`probing`: fixing the monitor's threshold on the benign stream")?;
    let logged = Logged {
        inner: model,
        log: Mutex::new(Vec::new()),
    };
    let mut sessions = Vec::new();
    for index in 0..dataset.len() {
        if sessions.len() == section.sessions {
            break;
        }
        let batch = dataset.batch(index..index + 1, device)?;
        let label = batch.labels.to_dtype(DType::U32)?.to_vec1::<u32>()?[0];
        let clean = model
            .forward(&batch.inputs)?
            .argmax(1)?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?[0];
        if clean != label {
            continue;
        }
        progress.set_message(&format!(
            "probing: session {} of {}",
            sessions.len() + 1,
            section.sessions
        ));
        let randomness = SampleRandomness::for_range(seed, "probing", index..index + 1);
        planned
            .attack
            .perturb(&logged, &batch.inputs, &batch.labels, &randomness)
            .with_context(|| format!("`probing`: attack `{}` on sample {index}", section.attack))?;
        let queries = logged.take();
        let mut monitor = planned.monitor.session();
        let (mut succeeded_at, mut detected_at) = (None, None);
        for (q, (query, prediction)) in queries.iter().enumerate() {
            let at = u32::try_from(q + 1).context("more than 2³² queries in one session")?;
            if succeeded_at.is_none() && *prediction != label {
                succeeded_at = Some(at);
            }
            let distance = monitor
                .observe(query)
                .with_context(|| format!("`probing`: query {at} of sample {index}"))?;
            if detected_at.is_none() && distance.is_some_and(|d| d < calibration.threshold) {
                detected_at = Some(at);
            }
        }
        sessions.push(ProbingSession {
            index: index as u64,
            queries: u32::try_from(queries.len()).context("too many queries")?,
            succeeded_at,
            detected_at,
        });
    }
    Ok(ProbingReport {
        attack: planned.entry.name.to_string(),
        norm: planned.attack.threat().norm.to_string(),
        epsilon: gauntlet_results::metrics::epsilon_value(section.epsilon),
        k: section.k,
        window: section.window,
        benign_queries: calibration.scored,
        target_fpr: section.target_fpr,
        threshold: calibration.threshold,
        achieved_fpr: calibration.achieved_fpr,
        sessions,
    })
}
