//! `gauntlet merge shard-*/ --out DIR`: the shards of one sharded run, joined into the results
//! and report of the run unsharded.
//!
//! Before reading a record, every shard's manifest (`shard.json`) is checked: the same
//! [`crate::journal::RunIdentity`] (suite, seed, model, spec and dataset digests, plan, unit list), the same
//! shard count, every shard index once, every work unit of the plan in exactly one shard. Each
//! unit's file is checked against the SHA-256 its shard recorded and its plan against the
//! identity. Then the units' outputs go through the same [`crate::work::assemble`] and
//! `commands::publish` as an unsharded run, so the numbers, verdicts, files and exit
//! code are the same; gates (relative ones against `--baseline` too) are evaluated on the
//! merged results. Any problem is exit 2, naming the shard folders involved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::MergeArgs;
use crate::commands::{existing_policy, publish, read_baseline_for, Outcome};
use crate::journal::{read_unit, ShardManifest, JOURNAL_DIR, JOURNAL_FILE, SHARD_MANIFEST};
use crate::output::{Existing, Staging};
use crate::progress::Progress;
use crate::shard::{digest_keys, UnitId};

/// Read and cross-check the shards' manifests; the manifests in shard order.
pub fn check_shards(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, ShardManifest)>> {
    let mut shards = Vec::with_capacity(dirs.len());
    for dir in dirs {
        shards.push((dir.clone(), read_manifest(dir)?));
    }
    let Some((first_dir, first)) = shards.first() else {
        bail!("no shard folders given");
    };
    for (dir, manifest) in &shards[1..] {
        let differences = first.identity.differences(
            &format!("`{}`", first_dir.display()),
            &manifest.identity,
            &format!("`{}`", dir.display()),
        );
        if !differences.is_empty() {
            bail!(
                "shard `{}` comes from a different run than `{}`: {}; only shards of one suite, \
                 seed, model, dataset and plan merge",
                dir.display(),
                first_dir.display(),
                differences.join("; ")
            );
        }
        if manifest.shard.count != first.shard.count {
            bail!(
                "shard `{}` is {} but `{}` is {}: the shards of one run share N",
                dir.display(),
                manifest.shard,
                first_dir.display(),
                first.shard
            );
        }
        if manifest.relative_gates != first.relative_gates || manifest.formats != first.formats {
            bail!(
                "shards `{}` and `{}` record different relative gates or output formats: they \
                 were run from different suite settings",
                first_dir.display(),
                dir.display()
            );
        }
    }
    let count = first.shard.count;
    let mut by_index: BTreeMap<u32, &Path> = BTreeMap::new();
    for (dir, manifest) in &shards {
        if let Some(other) = by_index.insert(manifest.shard.index, dir) {
            bail!(
                "shard {} is given twice: `{}` and `{}`",
                manifest.shard,
                other.display(),
                dir.display()
            );
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|index| !by_index.contains_key(index))
        .map(|index| index.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard{} {} of {count} {} missing (given: {}); merge needs every shard",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            by_index
                .keys()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let units = first.identity.units;
    let mut owner: BTreeMap<UnitId, (&Path, &str)> = BTreeMap::new();
    for (dir, manifest) in &shards {
        for entry in &manifest.units {
            if entry.unit.position() >= units {
                bail!(
                    "shard `{}` lists work unit {}, but the plan has {units} units",
                    dir.display(),
                    entry.unit
                );
            }
            if let Some((other, _)) = owner.insert(entry.unit, (dir, &entry.key)) {
                bail!(
                    "work unit {} ({}) is in two shards, `{}` and `{}`: every unit must be in \
                     exactly one",
                    entry.unit,
                    entry.key,
                    other.display(),
                    dir.display()
                );
            }
        }
    }
    if owner.len() != units {
        let absent: Vec<String> = (0..units)
            .map(|i| UnitId(i as u32))
            .filter(|id| !owner.contains_key(id))
            .take(5)
            .map(|id| id.to_string())
            .collect();
        bail!(
            "{} of the plan's {units} work units are in no shard (the first: {}); were the \
             shards cut with another N or --unit-samples?",
            units - owner.len(),
            absent.join(", ")
        );
    }
    let keys = owner.values().map(|(_, key)| key.to_string());
    if digest_keys(keys) != first.identity.units_sha256 {
        bail!("the shards' work units do not match the unit list their identity names");
    }
    shards.sort_by_key(|(_, manifest)| manifest.shard.index);
    Ok(shards)
}

fn read_manifest(dir: &Path) -> Result<ShardManifest> {
    if !dir.join(SHARD_MANIFEST).exists() {
        let journal = dir.join(JOURNAL_DIR).join(JOURNAL_FILE);
        if journal.is_file() {
            bail!(
                "`{}` is not a finished shard: its journal lists {} finished work units but it \
                 has no {SHARD_MANIFEST}; run its `gauntlet run --shard` command again to finish \
                 it (it resumes from the journal)",
                dir.display(),
                crate::journal::journaled_units(dir).unwrap_or(0)
            );
        }
        bail!(
            "`{}` is not a shard folder: it has no {SHARD_MANIFEST} (written by `gauntlet run \
             --shard I/N --out FOLDER` when the shard finishes)",
            dir.display()
        );
    }
    ShardManifest::read(dir)
}

/// The `merge` command: one run's shards, or a matrix run's (`matrix.json` in the folders).
pub fn merge(args: MergeArgs) -> Result<Outcome> {
    let is_matrix = |dir: &PathBuf| {
        dir.join(crate::matrix_run::MATRIX_SHARD_MANIFEST).exists()
            || dir.join(gauntlet_reports::matrix::CELLS_DIR).is_dir()
    };
    let matrices: Vec<&PathBuf> = args.shards.iter().filter(|d| is_matrix(d)).collect();
    if let Some(matrix) = matrices.first() {
        if let Some(single) = args.shards.iter().find(|d| !is_matrix(d)) {
            bail!(
                "`{}` is a shard of a matrix suite and `{}` is not: the shards of one run are \
                 all of one kind",
                matrix.display(),
                single.display()
            );
        }
        if let Some(both) = matrices.iter().find(|d| d.join(SHARD_MANIFEST).exists()) {
            bail!(
                "`{}` holds both a matrix shard and a single suite's {SHARD_MANIFEST}: it was \
                 reused for two runs; run its shard again into a fresh folder",
                both.display()
            );
        }
        return crate::matrix_run::merge(&args);
    }
    let shards = check_shards(&args.shards)?;
    let first = &shards[0].1;
    let baseline = read_baseline_for(
        &first.relative_gates,
        args.baseline.as_deref(),
        args.no_baseline,
    )?;
    let formats = args.format.clone().unwrap_or_else(|| first.formats.clone());
    let staging = Staging::begin(
        &args.out,
        existing_policy(args.overwrite, Existing::Replace),
    )?;
    let progress = Progress::with_format(true, args.log_format);
    progress.event(
        "merge_started",
        serde_json::json!({
            "shards": shards.iter().map(|(dir, _)| dir.display().to_string()).collect::<Vec<_>>(),
            "units": first.identity.units,
            "out": args.out.display().to_string(),
        }),
    );
    let evaluation = merged_evaluation(&shards)?;
    publish(
        &evaluation,
        staging,
        &formats,
        &first.relative_gates,
        baseline,
        &progress,
    )
}

/// The records and measurements of checked shards ([`check_shards`]), assembled as one run's.
pub(crate) fn merged_evaluation(
    shards: &[(PathBuf, ShardManifest)],
) -> Result<crate::runner::Evaluation> {
    let identity = &shards.first().context("no shard folders given")?.1.identity;
    let mut outputs = Vec::with_capacity(identity.units);
    let mut base_plan = None;
    for (dir, manifest) in shards {
        for entry in &manifest.units {
            let (plan, output) = read_unit(&dir.join(JOURNAL_DIR), entry, &entry.key, identity)
                .with_context(|| format!("cannot read shard `{}`", dir.display()))?;
            if entry.unit == UnitId(0) {
                base_plan = Some(plan);
            }
            outputs.push((entry.unit, output));
        }
    }
    let base_plan = base_plan.context("no shard holds work unit #0")?;
    let load_seconds = shards.iter().map(|(_, m)| m.timings.load_seconds).sum();
    crate::work::assemble(&base_plan, identity.units, load_seconds, outputs)
}
