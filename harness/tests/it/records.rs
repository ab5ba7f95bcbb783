//! Per-sample randomness: the records do not depend on the batch size or on how the samples
//! are split into shards.

use gauntlet::load::load;
use gauntlet::progress::Progress;
use gauntlet::runner::{run, run_shard, Evaluation};
use gauntlet::suite::{Overrides, Suite};

fn evaluate(batch_size: usize, shard: Option<std::ops::Range<usize>>) -> Evaluation {
    let overrides = Overrides {
        batch_size: Some(batch_size),
        limit: Some(300),
        ..Overrides::default()
    };
    let suite = Suite::embedded_default(&overrides).unwrap();
    let loaded = load(&suite).unwrap();
    match shard {
        None => run(&suite, &loaded, &Progress::hidden()).unwrap(),
        Some(shard) => run_shard(&suite, &loaded, &Progress::hidden(), shard).unwrap(),
    }
}

#[test]
fn batch_sizes_1_7_and_128_give_bit_identical_records() {
    let reference = evaluate(128, None);
    assert!(
        reference.records.len() > 300 * 5,
        "{}",
        reference.records.len()
    );
    for batch_size in [1, 7] {
        let other = evaluate(batch_size, None);
        assert_eq!(other.plan, reference.plan, "batch size {batch_size}");
        assert!(
            other.records == reference.records,
            "batch size {batch_size}: the records differ from batch size 128"
        );
        // Every figure but the wall time.
        let figures = |evaluation: &Evaluation| {
            let mut attacks = evaluation.report().unwrap().attacks;
            attacks.iter_mut().for_each(|a| a.seconds = 0.0);
            attacks
        };
        assert_eq!(figures(&other), figures(&reference));
    }
}

#[test]
fn shards_concatenate_to_the_whole_run() {
    let whole = evaluate(64, None);
    let mut first = evaluate(64, Some(0..130));
    let second = evaluate(64, Some(130..300));
    assert_eq!(first.plan, whole.plan);
    first.records.extend(second.records);
    let key = |r: &gauntlet_results::SampleRecord| (r.run, r.index);
    let mut merged = first.records.clone();
    merged.sort_by_key(key);
    let mut expected = whole.records.clone();
    expected.sort_by_key(key);
    assert!(
        merged == expected,
        "shard records differ from the whole run's"
    );
    let merged_report =
        gauntlet_results::aggregate(&whole.plan, &whole.measurements, &merged).unwrap();
    let without_seconds = |mut attacks: Vec<gauntlet_reports::AttackResult>| {
        attacks.iter_mut().for_each(|a| a.seconds = 0.0);
        attacks
    };
    assert_eq!(
        without_seconds(merged_report.attacks),
        without_seconds(whole.report().unwrap().attacks)
    );
    assert_eq!(
        merged_report.sanity_checks,
        whole.report().unwrap().sanity_checks
    );
}
