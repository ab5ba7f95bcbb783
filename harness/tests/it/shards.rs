//! Shards, merge and resume through the real binary, as CI and Kubernetes would run them:
//! shard processes in parallel, a merge, and runs killed with SIGKILL and started again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{gauntlet, stderr, stdout};

/// Samples of the embedded default the tests evaluate, and the unit size: 300 / 60 = 5 chunks
/// per run, so shards split both across runs and across samples.
const LIMIT: &str = "300";
const UNIT_SAMPLES: &str = "60";

fn run_args(out: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "-q",
        "--limit",
        LIMIT,
        "--unit-samples",
        UNIT_SAMPLES,
        "--out",
        out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn spawn(dir: &Path, args: &[String], env: Option<(&str, &str)>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    command.spawn().expect("the gauntlet binary starts")
}

/// `results.json` without what measures time (`timings`, each attack's, minimal-norm run's and
/// detector's `seconds`): everything
/// else must be identical between runs.
pub(crate) fn results_without_timings(out: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let object = value.as_object_mut().unwrap();
    assert!(
        object.remove("timings").is_some(),
        "results.json has timings"
    );
    for attack in object["attacks"].as_array_mut().unwrap() {
        attack.as_object_mut().unwrap().remove("seconds");
    }
    for section in ["minimal_norm", "detectors"] {
        if let Some(runs) = object.get_mut(section).and_then(|m| m.as_array_mut()) {
            for run in runs {
                run.as_object_mut().unwrap().remove("seconds");
            }
        }
    }
    object.clone()
}

/// Every field of `results.json` but the timings is the same, and so is every per-sample record.
pub(crate) fn assert_same_results(expected: &Path, actual: &Path) {
    let want = results_without_timings(expected);
    let got = results_without_timings(actual);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (key, value) in &want {
        assert_eq!(&got[key], value, "results.json field `{key}` differs");
    }
    let (plan_a, _, records_a) =
        gauntlet_results::samples_file::read(&expected.join("samples.parquet")).unwrap();
    let (plan_b, _, records_b) =
        gauntlet_results::samples_file::read(&actual.join("samples.parquet")).unwrap();
    assert_eq!(plan_a, plan_b);
    assert!(records_a == records_b, "the per-sample records differ");
}

#[test]
fn shards_run_in_parallel_merge_into_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gauntlet(
        dir.path(),
        &run_args("whole", &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        matches!(whole.status.code(), Some(0 | 1)),
        "{}",
        stderr(&whole)
    );
    // Three shard processes at once, as a CI matrix would; the last takes its index from the
    // environment, as a Kubernetes Indexed Job's pod does.
    let children: Vec<Child> = (0..3)
        .map(|index| {
            let out = format!("shard-{index}");
            if index == 2 {
                spawn(
                    dir.path(),
                    &run_args(&out, &["--shard", "auto/3"]),
                    Some(("JOB_COMPLETION_INDEX", "2")),
                )
            } else {
                spawn(
                    dir.path(),
                    &run_args(&out, &["--shard", &format!("{index}/3")]),
                    None,
                )
            }
        })
        .collect();
    let mut units = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.path().join(
                    stdout(&output)
                        .lines()
                        .last()
                        .unwrap()
                        .trim_start_matches("wrote "),
                ),
            )
            .unwrap(),
        )
        .unwrap();
        units += manifest["units"].as_array().unwrap().len();
        assert!(!manifest["units"].as_array().unwrap().is_empty());
    }
    let merged = gauntlet(
        dir.path(),
        &["merge", "shard-0", "shard-1", "shard-2", "--out", "merged"],
    );
    assert_eq!(
        merged.status.code(),
        whole.status.code(),
        "merge exits as the unsharded run: {}",
        stderr(&merged)
    );
    assert_same_results(&dir.path().join("whole"), &dir.path().join("merged"));
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("shard-0/shard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["identity"]["units"].as_u64().unwrap() as usize, units);
    // Order of the folders on the command line does not matter.
    let again = gauntlet(
        dir.path(),
        &[
            "merge", "shard-2", "shard-0", "shard-1", "--out", "merged-2",
        ],
    );
    assert_eq!(
        again.status.code(),
        whole.status.code(),
        "{}",
        stderr(&again)
    );
    assert_same_results(&dir.path().join("whole"), &dir.path().join("merged-2"));
}

fn shard(dir: &Path, out: &str, spec: &str, extra: &[&str]) {
    let mut args = run_args(out, &["--shard", spec]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let output = gauntlet(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn merge_refused(dir: &Path, shards: &[&str], needles: &[&str]) {
    let mut args = vec!["merge"];
    args.extend(shards);
    args.extend(["--out", "merged"]);
    let output = gauntlet(dir, &args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{shards:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{shards:?}: expected `{needle}` in:\n{err}"
        );
    }
    assert!(!dir.join("merged").exists(), "a refused merge wrote output");
}

#[test]
fn merge_refuses_missing_duplicated_foreign_and_unfinished_shards() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    shard(dir, "a0", "0/2", &[]);
    shard(dir, "a1", "1/2", &[]);
    shard(dir, "seed7", "1/2", &["--seed", "7"]);
    shard(dir, "of3", "1/3", &[]);
    merge_refused(dir, &["a0"], &["shard 1 of 2 is missing"]);
    merge_refused(
        dir,
        &["a0", "a0", "a1"],
        &["shard 0/2 is given twice", "a0"],
    );
    merge_refused(
        dir,
        &["a0", "seed7"],
        &["different run", "seed: 7 in `seed7`, 0 in `a0`"],
    );
    merge_refused(dir, &["a0", "of3"], &["1/3", "0/2"]);
    merge_refused(dir, &["a0", "nowhere"], &["nowhere", "shard.json"]);
    // A shard whose manifest was lost (or that was killed): its journal is there, it is not
    // finished.
    std::fs::remove_file(dir.join("a1/shard.json")).unwrap();
    merge_refused(
        dir,
        &["a0", "a1"],
        &["not a finished shard", "run its `gauntlet run --shard`"],
    );
    // Running the same command again finishes it from the journal, without redoing a unit.
    let output = gauntlet(
        dir,
        &run_args("a1", &["--shard", "1/2"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("0 run now"), "{}", stdout(&output));
    let merged = gauntlet(dir, &["merge", "a0", "a1", "--out", "merged"]);
    assert!(
        matches!(merged.status.code(), Some(0 | 1)),
        "{}",
        stderr(&merged)
    );
    // A tampered unit file is caught by its hash.
    let unit = std::fs::read_dir(dir.join("a0/journal/units"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&unit).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&unit, bytes).unwrap();
    let output = gauntlet(dir, &["merge", "a0", "a1", "--out", "merged-2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("SHA-256"), "{}", stderr(&output));
}

#[test]
fn bad_shard_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, needle) in [
        ("3/3", "below 3"),
        ("x/3", "expected I/N"),
        ("0/0", "at least 1"),
    ] {
        let output = gauntlet(dir.path(), &["run", "--shard", spec, "--out", "o"]);
        assert_eq!(output.status.code(), Some(2), "{spec}");
        assert!(
            stderr(&output).contains(needle),
            "{spec}: {}",
            stderr(&output)
        );
    }
    let output = gauntlet(dir.path(), &["run", "--shard", "auto/3", "--out", "o"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("JOB_COMPLETION_INDEX"),
        "{}",
        stderr(&output)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--shard", "auto/3", "--out", "o"])
        .current_dir(dir.path())
        .env("JOB_COMPLETION_INDEX", "3")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("completions"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("o").exists());
}

/// A small deterministic generator for the kill points (xorshift64*).
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn journal_lines(out: &Path) -> usize {
    std::fs::read(out.join("journal/journal.jsonl"))
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn runs_killed_with_sigkill_resume_to_the_uninterrupted_results() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let reference = gauntlet(
        dir,
        &run_args("reference", &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let code = reference.status.code();
    assert!(matches!(code, Some(0 | 1)), "{}", stderr(&reference));
    // The plan's unit count, from the manifest of one shard of one (the whole plan).
    shard(dir, "count", "0/1", &[]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("count/shard.json")).unwrap())
            .unwrap();
    let units = manifest["identity"]["units"].as_u64().unwrap() as usize;
    let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
    for iteration in 0..3 {
        let out = format!("resumed-{iteration}");
        let args = run_args(&out, &[]);
        let mut killed_after = Vec::new();
        for _kill in 0..2 {
            // Kill once the journal holds a random number of finished units (its header is
            // line 1), a random few milliseconds later: inside a unit, a file write or an
            // append.
            if dir.join(&out).join("results.json").exists() {
                break;
            }
            let before = journal_lines(&dir.join(&out)).saturating_sub(1);
            let remaining = (units - before) as u64;
            if remaining < 2 {
                break;
            }
            let target = before + 1 + draws.below(remaining - 1) as usize;
            let mut child = spawn(dir, &args, None);
            loop {
                if journal_lines(&dir.join(&out)).saturating_sub(1) >= target {
                    break;
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(draws.below(30)));
            // SIGKILL: no destructor, no flush, no cleanup runs.
            child.kill().unwrap();
            child.wait().unwrap();
            killed_after.push(journal_lines(&dir.join(&out)).saturating_sub(1));
        }
        let finished = killed_after.last().copied().unwrap_or(0);
        if dir.join(&out).join("results.json").exists() {
            // The last kill came after the run had finished: nothing to resume.
            assert_same_results(&dir.join("reference"), &dir.join(&out));
            continue;
        }
        let output = gauntlet(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            output.status.code(),
            code,
            "iteration {iteration} (killed after {killed_after:?} units): {}",
            stderr(&output)
        );
        if finished > 0 && finished < units {
            assert!(
                stderr(&output).contains("resuming from the journal"),
                "iteration {iteration}: {}",
                stderr(&output)
            );
        }
        assert!(
            !dir.join(&out).join("journal").exists(),
            "the finished run replaced its journal"
        );
        assert_same_results(&dir.join("reference"), &dir.join(&out));
    }
}

#[test]
fn a_journal_from_another_run_is_refused_unless_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // A shard folder keeps its journal: use it as the interrupted run's journal.
    shard(dir, "out", "0/2", &[]);
    std::fs::remove_file(dir.join("out/shard.json")).unwrap();
    let again = |extra: &[&str]| {
        let mut args = run_args("out", &["--shard", "0/2"]);
        args.extend(extra.iter().map(|s| s.to_string()));
        gauntlet(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let output = again(&["--seed", "5"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    for needle in [
        "different run",
        "seed: 0 in the journal, 5 in this run",
        "--restart",
    ] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    let output = again(&["--seed", "5", "--restart"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("0 from the journal"),
        "{}",
        stdout(&output)
    );
    // And a journal of shard 0/2 is not resumed as shard 1/2.
    let args = run_args("out", &["--shard", "1/2", "--seed", "5"]);
    let output = gauntlet(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("shard: 0/2 in the journal, 1/2 in this run"),
        "{}",
        stderr(&output)
    );
}
