//! A realistic `RunReport` built in code: a 10-class MNIST-like run with FGSM and PGD at three
//! L∞ radii each, the pointwise worst case, sanity checks, three gates (one failing) and three
//! 1×28×28 gallery examples. Counts are internally consistent (per-class counts sum to the
//! totals, robust ≤ clean, worst case ≤ every attack) and every interval is a real Wilson
//! interval, so tests can recompute what they assert.
//!
//! Hostile strings are planted where user input reaches the report: a class name with
//! `<b>&"`, a suite path with a `<script>` tag and a model path with a quote.

use gauntlet_reports::{
    AdversarialExample, AttackResult, CheckStatus, ClassAccuracy, CleanResult, DatasetInfo,
    GateBound, GateVerdict, KernelPathInfo, ModelInfo, PerturbationStats, Proportion, Provenance,
    ProvenanceCheck, ProvenanceFinding, RunReport, SanityCheck, SuiteInfo, Timings,
    WorstCaseResult, SCHEMA_VERSION,
};

pub const NUM_CLASSES: usize = 10;
pub const PER_CLASS: usize = 100;
pub const EPSILONS: [f64; 3] = [0.1, 0.2, 0.3];
pub const HOSTILE_CLASS: usize = 7;
pub const HOSTILE_CLASS_NAME: &str = r#"<b>&"seven""#;
pub const HOSTILE_SUITE_PATH: &str = "suites/<script>alert(1)</script>.toml";

/// Correctly classified clean samples per class (of [`PER_CLASS`]).
const CLEAN_CORRECT: [usize; NUM_CLASSES] = [99, 100, 97, 98, 98, 97, 98, 96, 95, 97];

/// 95% Wilson score interval for `successes` of `total`.
pub fn wilson(successes: usize, total: usize) -> Proportion {
    let n = total as f64;
    let p = successes as f64 / n;
    let z = 1.959_963_984_540_054_f64;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Proportion {
        value: p,
        successes,
        total,
        ci95_low: (center - half).max(0.0),
        ci95_high: (center + half).min(1.0),
    }
}

pub fn class_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names[HOSTILE_CLASS] = HOSTILE_CLASS_NAME.to_owned();
    names
}

fn per_class(correct: &[usize]) -> Vec<ClassAccuracy> {
    let names = class_names();
    correct
        .iter()
        .enumerate()
        .map(|(class, &k)| ClassAccuracy {
            class,
            name: names[class].clone(),
            accuracy: wilson(k, PER_CLASS),
        })
        .collect()
}

/// Robust counts per class when an attack breaks a fraction `strength` of the correct inputs
/// (a little more for higher class indices, so the bars differ).
fn robust_counts(strength: f64) -> Vec<usize> {
    CLEAN_CORRECT
        .iter()
        .enumerate()
        .map(|(class, &clean)| {
            let broken = (strength * (0.8 + 0.04 * class as f64)).min(1.0);
            (clean as f64 * (1.0 - broken)).floor() as usize
        })
        .collect()
}

fn attack_result(
    label: &str,
    epsilon: f64,
    strength: f64,
    params: serde_json::Map<String, serde_json::Value>,
    seconds: f64,
) -> (AttackResult, Vec<usize>) {
    let counts = robust_counts(strength);
    let robust: usize = counts.iter().sum();
    let clean: usize = CLEAN_CORRECT.iter().sum();
    let result = AttackResult {
        label: label.to_owned(),
        attack: label.to_owned(),
        norm: "linf".to_owned(),
        epsilon,
        params,
        kind: Some("iterative".to_owned()),
        needs: Some("input_gradients".to_owned()),
        objective: Some("untargeted cross_entropy".to_owned()),
        robust_accuracy: wilson(robust, NUM_CLASSES * PER_CLASS),
        success_rate: wilson(clean - robust, clean),
        mean_loss: 0.05 + 6.0 * strength,
        perturbation: PerturbationStats {
            mean: epsilon * 0.985,
            median: epsilon,
            max: epsilon,
            max_linf: epsilon,
        },
        per_class: per_class(&counts),
        seconds,
        broken_by: Vec::new(),
    };
    (result, counts)
}

/// A 28×28 ring, like a hand-drawn zero, offset by `shift`: mostly exact zeros as in MNIST.
fn digit_image(shift: f32) -> Vec<f32> {
    let mut pixels = Vec::with_capacity(28 * 28);
    for y in 0..28 {
        for x in 0..28 {
            let dx = x as f32 - 13.5 - shift;
            let dy = y as f32 - 13.5;
            let r = (dx * dx + dy * dy).sqrt();
            let v = (-(r - 8.0).powi(2) / 5.0).exp();
            // Quantised to 8 bits, as real image data is.
            pixels.push(if v < 0.05 {
                0.0
            } else {
                (v * 255.0).round() / 255.0
            });
        }
    }
    pixels
}

/// The original plus a ±ε sign pattern, clipped to [0, 1] (what an L∞ attack returns).
fn perturbed(original: &[f32], epsilon: f32, seed: usize) -> Vec<f32> {
    original
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let sign = if (i * 7 + seed * 13) % 5 < 2 {
                -1.0
            } else {
                1.0
            };
            (v + sign * epsilon).clamp(0.0, 1.0)
        })
        .collect()
}

fn example(
    index: usize,
    epsilon: f64,
    true_label: usize,
    adversarial_prediction: usize,
    seed: usize,
) -> AdversarialExample {
    let original = digit_image(seed as f32 - 1.0);
    let adversarial = perturbed(&original, epsilon as f32, seed);
    AdversarialExample {
        index,
        attack: "pgd".to_owned(),
        epsilon,
        true_label,
        clean_prediction: true_label,
        adversarial_prediction,
        shape: vec![1, 28, 28],
        original,
        adversarial,
    }
}

pub fn report() -> RunReport {
    let clean_correct: usize = CLEAN_CORRECT.iter().sum();
    let clean = CleanResult {
        accuracy: wilson(clean_correct, NUM_CLASSES * PER_CLASS),
        mean_loss: 0.0731,
        per_class: per_class(&CLEAN_CORRECT),
    };

    let mut pgd_params = serde_json::Map::new();
    pgd_params.insert("steps".to_owned(), serde_json::json!(40));
    pgd_params.insert("step_size".to_owned(), serde_json::json!(0.01));
    pgd_params.insert("random_start".to_owned(), serde_json::json!(true));

    let mut attacks = Vec::new();
    let mut fgsm_counts = Vec::new();
    let mut pgd_counts = Vec::new();
    for (eps, strength) in EPSILONS.iter().zip([0.08, 0.35, 0.70]) {
        let (result, counts) = attack_result("fgsm", *eps, strength, serde_json::Map::new(), 0.84);
        attacks.push(result);
        fgsm_counts.push(counts);
    }
    for (eps, strength) in EPSILONS.iter().zip([0.12, 0.55, 0.93]) {
        let (result, counts) = attack_result("pgd", *eps, strength, pgd_params.clone(), 31.7);
        attacks.push(result);
        pgd_counts.push(counts);
    }

    let worst_case: Vec<WorstCaseResult> = EPSILONS
        .iter()
        .enumerate()
        .map(|(i, &epsilon)| {
            // Pointwise worst case: at most the better attack, one fewer where possible.
            let counts: Vec<usize> = fgsm_counts[i]
                .iter()
                .zip(&pgd_counts[i])
                .map(|(&f, &p)| f.min(p).saturating_sub(1))
                .collect();
            WorstCaseResult {
                norm: "linf".to_owned(),
                epsilon,
                attacks: vec!["fgsm".to_owned(), "pgd".to_owned()],
                robust_accuracy: wilson(counts.iter().sum(), NUM_CLASSES * PER_CLASS),
                per_class: per_class(&counts),
            }
        })
        .collect();

    let pgd_01 = attacks[3].robust_accuracy.value;
    let worst_03 = worst_case[2].robust_accuracy.value;
    let gates = vec![
        GateVerdict {
            gate: "min_clean_accuracy".to_owned(),
            threshold: 0.95,
            actual: clean.accuracy.value,
            passed: clean.accuracy.value >= 0.95,
            bound: GateBound::AtLeast,
            detail: None,
        },
        GateVerdict {
            gate: "min_robust_accuracy[pgd@0.1]".to_owned(),
            threshold: 0.8,
            actual: pgd_01,
            passed: pgd_01 >= 0.8,
            bound: GateBound::AtLeast,
            detail: None,
        },
        GateVerdict {
            gate: "min_robust_accuracy[worst_case@0.3]".to_owned(),
            threshold: 0.2,
            actual: worst_03,
            passed: worst_03 >= 0.2,
            bound: GateBound::AtLeast,
            detail: None,
        },
    ];

    let sanity_checks = vec![
        SanityCheck {
            name: "monotone_in_epsilon".to_owned(),
            status: CheckStatus::Pass,
            detail: "Robust accuracy never increases with ε for fgsm, pgd and the worst case."
                .to_owned(),
        },
        SanityCheck {
            name: "epsilon_ball_respected".to_owned(),
            status: CheckStatus::Pass,
            detail: "Every adversarial input lies within ε (+1e-6) of its original and in [0, 1]."
                .to_owned(),
        },
        SanityCheck {
            name: "attack_ordering".to_owned(),
            status: CheckStatus::Warn,
            detail: "At ε = 0.1 \"pgd\" beats \"fgsm\" by under 5 pp; more steps & restarts may lower it."
                .to_owned(),
        },
        SanityCheck {
            name: "robust_below_clean".to_owned(),
            status: CheckStatus::Pass,
            detail: "Robust accuracy ≤ clean accuracy at every ε.".to_owned(),
        },
    ];

    RunReport {
        schema_version: SCHEMA_VERSION,
        gauntlet_version: "0.1.0".to_owned(),
        suite: SuiteInfo {
            name: "mnist-linf-smoke".to_owned(),
            path: Some(HOSTILE_SUITE_PATH.to_owned()),
        },
        seed: 20_240_611,
        device: "cpu".to_owned(),
        model: ModelInfo {
            name: "mnist-cnn".to_owned(),
            architecture: "small_cnn".to_owned(),
            path: "models/o'brien's mnist-cnn.safetensors".to_owned(),
            sha256: "3f7a9c0d2b51e8f4a6c7d9e0b1f2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c4".to_owned(),
            format: "safetensors".to_owned(),
            input_shape: vec![1, 28, 28],
            num_classes: NUM_CLASSES,
            parameters: 421_642,
        },
        dataset: DatasetInfo {
            name: "mnist-test".to_owned(),
            path: "embedded:mnist-test-1000.idx".to_owned(),
            format: "idx".to_owned(),
            samples: NUM_CLASSES * PER_CLASS,
            class_names: class_names(),
        },
        clean,
        attacks,
        minimal_norm: Vec::new(),
        worst_case,
        sanity_checks,
        gates,
        examples: vec![
            example(17, 0.3, HOSTILE_CLASS, 1, 0),
            example(342, 0.3, 3, 8, 1),
            example(905, 0.3, 1, 1, 2),
        ],
        timings: Timings {
            load_seconds: 0.412,
            clean_seconds: 0.327,
            attack_seconds: 97.6,
            total_seconds: 98.35,
        },
        provenance: Some(Provenance {
            verdict: "verified".to_owned(),
            weights_sha256: "7b57491b09b01a03cca137152f6137876d17e495121e7bef7c7a09d39c1105c1"
                .to_owned(),
            checks: vec![ProvenanceCheck {
                kind: "sha256".to_owned(),
                passed: true,
                detail: "weights match the pinned SHA-256".to_owned(),
            }],
            signer: None,
            findings: vec![ProvenanceFinding {
                severity: "medium".to_owned(),
                rule: "pickle-unknown-global".to_owned(),
                location: "model.pt!/archive/data.pkl #12".to_owned(),
                message: "calls `<script>alert(1)</script>.evil` on load".to_owned(),
            }],
        }),
        kernel_path: Some(KernelPathInfo {
            path: "candle".to_owned(),
            reason: Some("<b>GELU</b> activation".to_owned()),
        }),
        notices: vec!["the model ran on candle's kernels: <i>GELU</i>".to_owned()],
        samples_file: Some("samples.parquet".to_owned()),
        backdoor: None,
        detectors: Vec::new(),
        output_drift: Vec::new(),
        probing: None,
        baseline: None,
    }
}

/// Path of the checked-in JSON copy of [`report`].
pub fn json_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_report.json")
}
