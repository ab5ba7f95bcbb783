//! Per-sample randomness: the records do not depend on the batch size or on how the samples
//! are split into shards.

use gauntlet::load::load;
use gauntlet::progress::Progress;
use gauntlet::runner::{run, Evaluation};
use gauntlet::shard::WorkUnit;
use gauntlet::suite::{Overrides, Suite};
use gauntlet::work::Work;
use gauntlet_results::SampleRecord;

fn suite(batch_size: usize) -> Suite {
    let overrides = Overrides {
        batch_size: Some(batch_size),
        limit: Some(300),
        ..Overrides::default()
    };
    Suite::embedded_default(&overrides).unwrap()
}

fn evaluate(batch_size: usize) -> Evaluation {
    let suite = suite(batch_size);
    let loaded = load(&suite).unwrap();
    run(&suite, &loaded, &Progress::hidden()).unwrap()
}

/// The records of the units of 130-sample chunks whose samples start in `samples`, run by a
/// fresh `Work` (as a separate shard process would).
fn records_of_chunks(batch_size: usize, samples: std::ops::Range<u64>) -> Vec<SampleRecord> {
    let suite = suite(batch_size);
    let loaded = load(&suite).unwrap();
    let mut work = Work::new(&suite, &loaded, 130).unwrap();
    let ids: Vec<_> = work
        .units
        .units
        .iter()
        .filter(|u| matches!(u.unit, WorkUnit::Samples { start, .. } if samples.contains(&start)))
        .map(|u| u.id)
        .collect();
    ids.into_iter()
        .flat_map(|id| work.execute(id, &Progress::hidden()).unwrap().records)
        .collect()
}

#[test]
fn batch_sizes_1_7_and_128_give_bit_identical_records() {
    let reference = evaluate(128);
    assert!(
        reference.records.len() > 300 * 5,
        "{}",
        reference.records.len()
    );
    for batch_size in [1, 7] {
        let other = evaluate(batch_size);
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
    let whole = evaluate(64);
    // Chunk 0 in one process, chunks 130 and 260 in another, which has to recompute the
    // clean outcomes its attack units need.
    let mut merged = records_of_chunks(64, 0..130);
    merged.extend(records_of_chunks(64, 130..300));
    let key = |r: &SampleRecord| (r.run, r.index);
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
