//! The closed loop of issue 11 on the shipped UCI digits: poison the training split with a
//! 3×3 BadNets patch at 5%, train the small CNN with the project's own trainer next to a
//! clean twin (same seed, same initial weights, same shuffle), and check that the backdoor
//! works, that the clean task does not suffer, and that the scans find it — Neural Cleanse
//! on the poisoned model and not on the twin, STRIP on the triggered inputs.

use std::sync::OnceLock;
use std::time::Instant;

use candle_core::Device;
use gauntlet_attacks::backdoor::{predictions, ImageSet, Trigger};
use gauntlet_attacks::data_scan::activation_clustering::{self, ActivationClustering};
use gauntlet_attacks::data_scan::precision_recall;
use gauntlet_attacks::data_scan::spectral_signatures::{self, SpectralSignatures};
use gauntlet_attacks::data_scan::DataScan;
use gauntlet_attacks::poisoning::sweep::{sweep, SweepConfig, SweepReport};
use gauntlet_attacks::poisoning::{
    attack_success_rate, find_poisoning, poison, DataShape, Poisoning,
};
use gauntlet_attacks::trigger_scan::known_triggers::{self, KnownTriggers};
use gauntlet_attacks::trigger_scan::neural_cleanse::{self, NeuralCleanse};
use gauntlet_attacks::trigger_scan::strip::{self, Strip};
use gauntlet_attacks::trigger_scan::{ScanData, ScanDetail, ScanReport, TriggerScan};
use gauntlet_datasets::Dataset;
use gauntlet_models::{ModelSpec, Network, Optimizer, TrainConfig};

const SEED: u64 = 7;
const TARGET: u32 = 0;
const RATE: f64 = 0.05;

/// Both models and the data around them.
struct ClosedLoop {
    poisoned_model: Network,
    clean_model: Network,
    poisoning: Box<dyn Poisoning>,
    /// Every sixth sample (300): clean accuracy, ASR, the scans' clean inputs.
    test: ImageSet,
    /// Samples 3 mod 6 (300): the images STRIP superimposes; in neither training set.
    overlays: ImageSet,
    poisoned_indices: Vec<usize>,
    /// The clean training split.
    train_set: ImageSet,
    /// The sweep that trained both models.
    report: SweepReport,
}

fn split() -> (ImageSet, ImageSet, ImageSet) {
    let dataset = gauntlet_datasets::embedded_uci_digits().unwrap();
    let all = dataset.batch(0..dataset.len(), &Device::Cpu).unwrap();
    let all = ImageSet::from_tensors(&all.inputs, &all.labels, 10).unwrap();
    // The file is ordered by writer, so interleaving keeps the parts alike.
    let part = |keep: &dyn Fn(usize) -> bool| {
        let indices: Vec<usize> = (0..all.len()).filter(|&i| keep(i)).collect();
        all.subset(&indices)
    };
    let train = part(&|i| i % 6 != 0 && i % 6 != 3);
    let test = part(&|i| i % 6 == 0);
    let overlays = part(&|i| i % 6 == 3);
    (train, test, overlays)
}

/// The sweep's configuration: the small CNN (two 3×3 convolutions with 2×2 max-pooling, then
/// a linear layer: 8×8 → 4×4 → 2×2) trained with Adam.
fn sweep_config() -> SweepConfig {
    SweepConfig {
        spec: ModelSpec::from_toml_str(
            "architecture = \"small_cnn\"\ninput_shape = [1, 8, 8]\nnum_classes = 10",
        )
        .unwrap(),
        train: TrainConfig {
            epochs: 20,
            batch_size: 32,
            optimizer: Optimizer::Adam {
                learning_rate: 0.005,
                weight_decay: 0.0,
            },
            seed: 0,
        },
        // Rate 0 is the clean twin: same seed, so the same initial weights and shuffle.
        rates: vec![0.0, RATE],
        seeds: vec![SEED],
        z: 1.96,
    }
}

fn closed_loop() -> &'static ClosedLoop {
    static LOOP: OnceLock<ClosedLoop> = OnceLock::new();
    LOOP.get_or_init(|| {
        let started = Instant::now();
        let (train_set, test, overlays) = split();
        let table: toml::Table = toml::from_str(&format!("size = 3\ntarget = {TARGET}")).unwrap();
        let poisoning =
            (find_poisoning("badnets").unwrap().build)(&table, DataShape::of(&train_set)).unwrap();
        let mut models = Vec::new();
        let report = sweep(
            poisoning.as_ref(),
            &train_set,
            &test,
            &sweep_config(),
            &Device::Cpu,
            &mut |point, network| models.push((point.rate, network)),
        )
        .unwrap();
        eprintln!(
            "closed loop: trained both models in {:.1?}",
            started.elapsed()
        );
        let mut take = |rate: f64| {
            let position = models.iter().position(|(r, _)| *r == rate).unwrap();
            models.swap_remove(position).1
        };
        let poisoned_model = take(RATE);
        let clean_model = take(0.0);
        let poisoned_indices = report
            .points
            .iter()
            .find(|point| point.rate == RATE)
            .unwrap()
            .poisoned
            .clone();
        ClosedLoop {
            poisoned_model,
            clean_model,
            poisoning,
            test,
            overlays,
            poisoned_indices,
            train_set,
            report,
        }
    })
}

fn clean_accuracy(model: &Network, test: &ImageSet) -> f64 {
    let predicted = predictions(model, test, 512).unwrap();
    let correct = predicted
        .iter()
        .zip(test.labels())
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / test.len() as f64
}

fn trigger(run: &ClosedLoop) -> &Trigger {
    run.poisoning.trigger().unwrap()
}

#[test]
fn badnets_at_5_percent_plants_a_backdoor_without_hurting_clean_accuracy() {
    let run = closed_loop();
    // round(0.05 · 1198) = 60 poisoned samples, none of the target class.
    assert_eq!(
        run.poisoned_indices.len(),
        (RATE * run.train_set.len() as f64).round() as usize
    );
    let asr = attack_success_rate(&run.poisoned_model, run.poisoning.as_ref(), &run.test, 512)
        .unwrap()
        .unwrap();
    let clean_twin_asr =
        attack_success_rate(&run.clean_model, run.poisoning.as_ref(), &run.test, 512)
            .unwrap()
            .unwrap();
    let poisoned_accuracy = clean_accuracy(&run.poisoned_model, &run.test);
    let clean_accuracy = clean_accuracy(&run.clean_model, &run.test);
    eprintln!(
        "ASR {:.3} ({} of {}), clean twin's ASR {:.3}; clean accuracy poisoned {poisoned_accuracy:.3}, twin {clean_accuracy:.3}",
        asr.fraction().unwrap(),
        asr.hits,
        asr.total,
        clean_twin_asr.fraction().unwrap(),
    );
    assert!(
        clean_accuracy >= 0.9,
        "the clean twin did not train: {clean_accuracy}"
    );
    assert!(asr.fraction().unwrap() >= 0.9, "ASR {asr:?} below 90%");
    assert!(
        (poisoned_accuracy - clean_accuracy).abs() <= 0.02,
        "clean accuracy {poisoned_accuracy} vs the twin's {clean_accuracy}: more than 2 points apart"
    );
    // The patch alone does not send a clean model's inputs to the target.
    assert!(
        clean_twin_asr.fraction().unwrap() < 0.5,
        "{clean_twin_asr:?}"
    );
    // The sweep measured the same figures, and 5% is the smallest of its rates reaching 90%.
    let row = &run.report.rows[1];
    assert_eq!((row.rate, row.attack), (RATE, Some(asr)));
    let (low, high) = row.attack_interval.unwrap();
    assert!(low <= asr.fraction().unwrap() && asr.fraction().unwrap() <= high);
    assert_eq!(run.report.rows[0].attack, Some(clean_twin_asr));
    assert_eq!(run.report.smallest_rate_reaching(0.9), Some(RATE));
}

fn neural_cleanse_params() -> neural_cleanse::Params {
    neural_cleanse::Params {
        epochs: 40,
        ..neural_cleanse::Params::default()
    }
}

fn nc_scan(model: &Network, run: &ClosedLoop) -> ScanReport {
    let scan = NeuralCleanse::new(neural_cleanse_params()).unwrap();
    let data = ScanData {
        clean: &run.test,
        held_out: None,
        true_trigger: Some(trigger(run)),
    };
    scan.scan(model, &data, SEED).unwrap()
}

fn describe(report: &ScanReport) -> String {
    report
        .classes
        .iter()
        .map(|c| {
            format!(
                "{}: L1 {:.2} index {:.2} asr {:.2} iou {:?}",
                c.class,
                c.mask_l1.unwrap_or(f64::NAN),
                c.anomaly_index.unwrap_or(f64::NAN),
                c.flip_rate.unwrap_or(f64::NAN),
                c.mask_iou
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn neural_cleanse_flags_the_target_of_the_poisoned_model_and_nothing_on_its_clean_twin() {
    let run = closed_loop();
    let started = Instant::now();
    let poisoned = nc_scan(&run.poisoned_model, run);
    let clean = nc_scan(&run.clean_model, run);
    eprintln!(
        "Neural Cleanse, 2 × 10 classes in {:.1?}\npoisoned:\n{}\nclean twin:\n{}",
        started.elapsed(),
        describe(&poisoned),
        describe(&clean)
    );
    assert_eq!(
        poisoned.flagged,
        vec![TARGET],
        "poisoned model:\n{}",
        describe(&poisoned)
    );
    assert!(
        clean.flagged.is_empty(),
        "clean twin:\n{}",
        describe(&clean)
    );
    let ScanDetail::NeuralCleanse(detail) = &poisoned.detail else {
        panic!("wrong detail");
    };
    let target = &detail.triggers[TARGET as usize];
    assert!(
        target.reached_target && target.attack_success >= 0.9,
        "{target:?}"
    );
}

#[test]
fn strip_detects_triggered_inputs_at_one_percent_false_rejection() {
    let run = closed_loop();
    let started = Instant::now();
    let scan = Strip::new(strip::Params::default()).unwrap();
    let data = ScanData {
        clean: &run.test,
        held_out: Some(&run.overlays),
        true_trigger: Some(trigger(run)),
    };
    let report = scan.scan(&run.poisoned_model, &data, SEED).unwrap();
    let ScanDetail::Strip(detail) = &report.detail else {
        panic!("wrong detail");
    };
    let detections = detail.detections.unwrap();
    eprintln!(
        "STRIP in {:.1?}: threshold {:.4} bits, false rejections {:?}, detections {:?}",
        started.elapsed(),
        detail.threshold,
        detail.false_rejections,
        detections
    );
    assert!(detail.false_rejections.fraction().unwrap() <= 0.01);
    assert!(
        detections.fraction().unwrap() >= 0.9,
        "STRIP detected {detections:?}"
    );
}

#[test]
fn the_known_trigger_sweep_finds_the_planted_patch() {
    let run = closed_loop();
    let scan = KnownTriggers::new(known_triggers::Params::default()).unwrap();
    let data = ScanData {
        clean: &run.test,
        held_out: None,
        true_trigger: Some(trigger(run)),
    };
    let poisoned = scan.scan(&run.poisoned_model, &data, SEED).unwrap();
    let clean = scan.scan(&run.clean_model, &data, SEED).unwrap();
    let pairs = |report: &ScanReport| {
        let ScanDetail::KnownTriggers(detail) = &report.detail else {
            panic!("wrong detail");
        };
        detail
            .flagged_pairs
            .iter()
            .map(|&(t, c)| {
                format!(
                    "{} → {c} ({:.2})",
                    detail.triggers[t].name,
                    detail.flip_rates[t][c as usize].unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
    };
    eprintln!(
        "known triggers: poisoned flags {:?} via {:?}; clean twin flags {:?} via {:?}",
        poisoned.flagged,
        pairs(&poisoned),
        clean.flagged,
        pairs(&clean)
    );
    assert!(poisoned.flagged.contains(&TARGET), "{:?}", pairs(&poisoned));
    let target = &poisoned.classes[TARGET as usize];
    assert_eq!(
        target.mask_iou,
        Some(1.0),
        "the best trigger into the target is the planted patch"
    );
}

#[test]
fn spectral_signatures_on_the_poisoned_training_set() {
    let run = closed_loop();
    let poisoned = poison(run.poisoning.as_ref(), &run.train_set, RATE, SEED).unwrap();
    assert_eq!(
        poisoned.indices, run.poisoned_indices,
        "poisoning is deterministic"
    );
    let scan = SpectralSignatures::new(spectral_signatures::Params::default()).unwrap();
    let report = scan.scan(&run.poisoned_model, &poisoned.data).unwrap();
    let (precision, recall) = precision_recall(&report.flagged, &poisoned.indices);
    eprintln!(
        "spectral signatures: {} flagged of {}, precision {precision:?}, recall {recall:?} against {} poisoned",
        report.flagged.len(),
        poisoned.data.len(),
        poisoned.indices.len()
    );
    // ⌈1.5 · 0.05 · n_y⌉ per class (by the poisoned labels).
    let expected: usize = poisoned
        .data
        .class_counts()
        .iter()
        .map(|&n| (1.5 * 0.05 * n as f64).ceil() as usize)
        .sum();
    assert_eq!(report.flagged.len(), expected);
    assert_eq!(report.scores.len(), poisoned.data.len());
    // The scores come from the features: not all tied (ties would flag by index order).
    assert!(report.scores.iter().any(|&score| score != report.scores[0]));

    let clustering = ActivationClustering::new(activation_clustering::Params::default()).unwrap();
    let report = clustering
        .scan(&run.poisoned_model, &poisoned.data)
        .unwrap();
    let (precision, recall) = precision_recall(&report.flagged, &poisoned.indices);
    eprintln!(
        "activation clustering: {} flagged, precision {precision:?}, recall {recall:?}",
        report.flagged.len()
    );
    assert_eq!(report.scores.len(), poisoned.data.len());
    // A flagged cluster is under 35% of its class, so under 35% of the set in total.
    assert!((report.flagged.len() as f64) < 0.35 * poisoned.data.len() as f64);
}

/// Neural Cleanse on five clean models trained with different seeds: how many (model, class)
/// pairs it flags is the false-positive rate to expect (docs/backdoors.md). Several minutes,
/// so run on demand: `cargo test -p gauntlet-attacks --test it calibration -- --ignored --nocapture`.
#[test]
#[ignore = "calibration run: five trainings and five scans"]
fn neural_cleanse_calibration_on_clean_models() {
    let (train_set, test, _) = split();
    let poisoning =
        (find_poisoning("badnets").unwrap().build)(&toml::Table::new(), DataShape::of(&train_set))
            .unwrap();
    let config = SweepConfig {
        rates: vec![0.0],
        seeds: vec![1, 2, 3, 4, 5],
        ..sweep_config()
    };
    let scan = NeuralCleanse::new(neural_cleanse_params()).unwrap();
    let data = ScanData {
        clean: &test,
        held_out: None,
        true_trigger: None,
    };
    let mut flagged_pairs = 0;
    let mut largest = Vec::new();
    sweep(
        poisoning.as_ref(),
        &train_set,
        &test,
        &config,
        &Device::Cpu,
        &mut |point, network| {
            let report = scan.scan(&network, &data, point.seed).unwrap();
            let low_side_max = report
                .classes
                .iter()
                .filter(|c| c.mask_l1.unwrap() < report_median(&report))
                .map(|c| c.anomaly_index.unwrap())
                .fold(0.0, f64::max);
            eprintln!(
                "seed {}: clean accuracy {:.3}, flagged {:?}, largest low-side index {low_side_max:.2}",
                point.seed,
                point.clean.fraction().unwrap(),
                report.flagged
            );
            flagged_pairs += report.flagged.len();
            largest.push(low_side_max);
        },
    )
    .unwrap();
    eprintln!("calibration: {flagged_pairs} of 50 (model, class) pairs flagged; largest low-side indices {largest:.2?}");
    assert!(
        flagged_pairs <= 5,
        "Neural Cleanse flags {flagged_pairs} of 50 clean pairs"
    );
}

fn report_median(report: &ScanReport) -> f64 {
    let ScanDetail::NeuralCleanse(detail) = &report.detail else {
        panic!("wrong detail");
    };
    detail.median
}
