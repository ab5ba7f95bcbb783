//! The poison-rate sweep: rates × seeds → poison the training split, train a fresh network
//! with [`gauntlet_models::train()`], measure clean accuracy and attack success rate.
//!
//! Seed `s` drives all three random parts of one point: which samples are poisoned (and any
//! per-sample draw), the network's initial weights, and the training shuffle. Across rates
//! at one seed the network starts from the same weights and the poisoned samples are nested
//! ([`super::poison`]), so the curve over rates moves only by the added poison.
//!
//! Per rate, the counts of all seeds are pooled into one [`Rate`] and its Wilson interval.
//! Pooling treats the test inputs of different seeds as independent trials, which understates
//! the spread between seeds; each seed's point is kept for that reason.

use candle_core::Device;
use gauntlet_models::{ModelSpec, Network, TrainConfig};

use super::{attack_success_rate, poison, Poisoning};
use crate::backdoor::{predictions, ImageSet, Rate};
use crate::AttackError;

/// What a sweep trains and how.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The architecture, trained from scratch at every point.
    pub spec: ModelSpec,
    /// Epochs, batch size and optimiser; its `seed` is replaced by each point's seed.
    pub train: TrainConfig,
    /// Poison rates, each a fraction of the training set in [0, 1].
    pub rates: Vec<f64>,
    /// One training run per seed and rate.
    pub seeds: Vec<u64>,
    /// z of the Wilson intervals (1.96 for 95%).
    pub z: f64,
}

/// One trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub rate: f64,
    pub seed: u64,
    /// The poisoned training indices: the ground truth for data-level detectors.
    pub poisoned: Vec<usize>,
    /// Clean test inputs classified correctly.
    pub clean: Rate,
    /// Attack inputs sent to the target; `None` for a poisoning without one.
    pub attack: Option<Rate>,
}

/// One rate, pooled over the seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    pub rate: f64,
    pub clean: Rate,
    pub clean_interval: Option<(f64, f64)>,
    pub attack: Option<Rate>,
    pub attack_interval: Option<(f64, f64)>,
}

/// The whole sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    pub points: Vec<SweepPoint>,
    /// One per rate, in the order given.
    pub rows: Vec<SweepRow>,
}

impl SweepReport {
    /// The smallest rate whose pooled attack success rate is at least `level` (e.g. 0.9), if
    /// any.
    pub fn smallest_rate_reaching(&self, level: f64) -> Option<f64> {
        self.rows
            .iter()
            .filter(|row| {
                row.attack
                    .and_then(Rate::fraction)
                    .is_some_and(|asr| asr >= level)
            })
            .map(|row| row.rate)
            .min_by(f64::total_cmp)
    }
}

/// Run the sweep of `poisoning` over `config.rates × config.seeds` on `train`, measuring on
/// `test`. `on_point` gets each point as it is done together with its trained network, so a
/// caller can report progress, keep the model, or hand it to the trigger scans (closing the
/// loop: the scans are scored against the poisoning that planted the backdoor).
pub fn sweep(
    poisoning: &dyn Poisoning,
    train: &ImageSet,
    test: &ImageSet,
    config: &SweepConfig,
    device: &Device,
    on_point: &mut dyn FnMut(&SweepPoint, Network),
) -> Result<SweepReport, AttackError> {
    if config.seeds.is_empty() {
        return Err(AttackError::invalid_parameter(
            "seeds",
            "a sweep needs at least one seed",
        ));
    }
    if config.rates.is_empty() {
        return Err(AttackError::invalid_parameter(
            "rates",
            "a sweep needs at least one rate",
        ));
    }
    for &rate in &config.rates {
        super::poisoned_count(rate, train.len())?;
    }
    let test_inputs_batch = config.train.batch_size.max(256);
    let mut points = Vec::new();
    for &rate in &config.rates {
        for &seed in &config.seeds {
            let poisoned = poison(poisoning, train, rate, seed)?;
            let mut network = Network::init(&config.spec, seed, device)?;
            let train_config = TrainConfig {
                seed,
                ..config.train.clone()
            };
            gauntlet_models::train(
                &mut network,
                &poisoned.data.inputs(device)?,
                &poisoned.data.label_tensor(device)?,
                &train_config,
                &mut |_| {},
            )?;
            let predicted = predictions(&network, test, test_inputs_batch)?;
            let clean = Rate {
                hits: predicted
                    .iter()
                    .zip(test.labels())
                    .filter(|(p, l)| p == l)
                    .count(),
                total: test.len(),
            };
            let attack = attack_success_rate(&network, poisoning, test, test_inputs_batch)?;
            let point = SweepPoint {
                rate,
                seed,
                poisoned: poisoned.indices,
                clean,
                attack,
            };
            on_point(&point, network);
            points.push(point);
        }
    }
    let rows = config
        .rates
        .iter()
        .map(|&rate| {
            let at_rate: Vec<&SweepPoint> = points.iter().filter(|p| p.rate == rate).collect();
            let pool = |rates: &mut dyn Iterator<Item = Rate>| {
                rates.fold(Rate { hits: 0, total: 0 }, |sum, r| Rate {
                    hits: sum.hits + r.hits,
                    total: sum.total + r.total,
                })
            };
            let clean = pool(&mut at_rate.iter().map(|p| p.clean));
            let attack = at_rate
                .iter()
                .all(|p| p.attack.is_some())
                .then(|| pool(&mut at_rate.iter().filter_map(|p| p.attack)));
            SweepRow {
                rate,
                clean,
                clean_interval: clean.wilson(config.z),
                attack,
                attack_interval: attack.and_then(|a| a.wilson(config.z)),
            }
        })
        .collect();
    Ok(SweepReport { points, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poisoning::{badnets, DataShape};
    use gauntlet_models::Optimizer;

    fn config(rates: Vec<f64>, seeds: Vec<u64>) -> SweepConfig {
        SweepConfig {
            spec: ModelSpec::from_toml_str(
                "architecture = \"linear\"\ninput_shape = [1, 4, 4]\nnum_classes = 2",
            )
            .unwrap(),
            train: TrainConfig {
                epochs: 1,
                batch_size: 4,
                optimizer: Optimizer::Sgd {
                    learning_rate: 0.1,
                    momentum: 0.0,
                    weight_decay: 0.0,
                },
                seed: 0,
            },
            rates,
            seeds,
            z: 1.96,
        }
    }

    #[test]
    fn bad_sweeps_name_the_key_before_training() {
        let data = ImageSet::new(
            [1, 4, 4],
            vec![0.5; 8 * 16],
            vec![0, 1, 0, 1, 0, 1, 0, 1],
            2,
        )
        .unwrap();
        let poisoning =
            badnets::BadNets::new(&badnets::Params::default(), DataShape::of(&data)).unwrap();
        for (config, key) in [
            (config(vec![0.1], vec![]), "seeds"),
            (config(vec![], vec![0]), "rates"),
            (config(vec![0.0, 1.5], vec![0]), "rate"),
        ] {
            let mut trained = 0;
            let error = sweep(
                &poisoning,
                &data,
                &data,
                &config,
                &Device::Cpu,
                &mut |_, _| {
                    trained += 1;
                },
            )
            .unwrap_err();
            assert!(error.to_string().contains(&format!("`{key}`")), "{error}");
            assert_eq!(trained, 0, "nothing is trained before the checks");
        }
    }

    #[test]
    fn rows_pool_the_seeds_of_each_rate() {
        let data = ImageSet::new(
            [1, 4, 4],
            (0..8 * 16).map(|i| (i % 5) as f32 / 4.0).collect(),
            vec![0, 1, 0, 1, 0, 1, 0, 1],
            2,
        )
        .unwrap();
        let poisoning = badnets::BadNets::new(
            &badnets::Params {
                size: 2,
                ..badnets::Params::default()
            },
            DataShape::of(&data),
        )
        .unwrap();
        let report = sweep(
            &poisoning,
            &data,
            &data,
            &config(vec![0.0, 0.25], vec![1, 2]),
            &Device::Cpu,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(report.points.len(), 4);
        assert_eq!(report.rows.len(), 2);
        for row in &report.rows {
            let points: Vec<&SweepPoint> = report
                .points
                .iter()
                .filter(|p| p.rate == row.rate)
                .collect();
            assert_eq!(row.clean.total, 16);
            assert_eq!(
                row.clean.hits,
                points.iter().map(|p| p.clean.hits).sum::<usize>()
            );
            // 4 test inputs of class 1 per seed are attacked.
            assert_eq!(row.attack.unwrap().total, 8);
        }
        // round(0.25 · 8) = 2 poisoned samples per seed, nested across rates.
        assert!(report
            .points
            .iter()
            .all(|p| p.poisoned.len() == if p.rate == 0.0 { 0 } else { 2 }));
    }
}
