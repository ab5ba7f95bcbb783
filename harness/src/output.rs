//! The output folder, written atomically.
//!
//! A run writes everything into a staging folder beside the requested one and renames it into
//! place only when every file is complete, so a run that fails half-way leaves no half-written
//! output behind, and a reader (a CI step, a dashboard) never sees a `results.json` without its
//! report. A run never mixes with an earlier run's files: an output folder that already holds
//! files is refused unless `--overwrite` is given, and then it is replaced as a whole — but only
//! when every entry in it is a file gauntlet writes, so that a mistyped `--out ~` can never
//! delete a user's own files.
//!
//! A run in progress keeps its journal in the output folder (`journal/`, and for a shard
//! `shard.json`; [`crate::journal`]). `gauntlet run` resumes from it and replaces it with the
//! finished outputs at the commit ([`Staging::begin_over_journal`]); for every other command a
//! folder holding only a journal counts as an earlier run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Names of the files gauntlet writes into an output folder (PNG plots aside).
const OWN_FILE_NAMES: [&str; 6] = [
    gauntlet_results::samples_file::FILE_NAME,
    gauntlet_reports::JSON_FILE_NAME,
    gauntlet_reports::CSV_FILE_NAME,
    gauntlet_reports::HTML_FILE_NAME,
    gauntlet_reports::JUNIT_FILE_NAME,
    gauntlet_reports::MARKDOWN_FILE_NAME,
];

/// Files that hold a run's data rather than a rendering of it: `gauntlet report --overwrite`
/// re-renders a folder in place and keeps these unless it rewrites them.
const DATA_FILE_NAMES: [&str; 2] = [
    gauntlet_results::samples_file::FILE_NAME,
    gauntlet_reports::JSON_FILE_NAME,
];

/// The name prefix of the temporary file of an atomic write.
const PARTIAL_PREFIX: &str = ".gauntlet-partial-";

/// What to do with an output folder that already holds files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse with an error that says how to proceed (the default).
    Refuse,
    /// Replace the earlier run's files as a whole (`--overwrite`).
    Replace,
    /// Replace the renderings and keep the run's data files unless they are rewritten
    /// (`gauntlet report --overwrite`, which re-renders a folder in place).
    ReplaceRenderings,
}

/// A staging folder that becomes the output folder on [`Staging::commit`], and is removed if
/// dropped before.
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    staging: PathBuf,
    existing: Existing,
    /// Whether a folder holding only a run journal may be replaced whatever `existing` says.
    over_journal: bool,
    committed: bool,
}

impl Staging {
    /// Check the output folder and create the staging folder beside it. Called before any work,
    /// so that a folder that would be refused is refused before an hour of attacks, not after.
    pub fn begin(target: &Path, existing: Existing) -> Result<Staging> {
        Self::start(target, existing, false)
    }

    /// As [`Staging::begin`], for a run that resumes from (and then replaces) the journal in
    /// the output folder: a folder that holds only a journal is this run's own state.
    pub fn begin_over_journal(target: &Path, existing: Existing) -> Result<Staging> {
        Self::start(target, existing, true)
    }

    fn start(target: &Path, existing: Existing, over_journal: bool) -> Result<Staging> {
        inspect_target(target, existing, over_journal)?;
        // Re-rendering in place keeps only the top-level data files: a matrix run's cells would
        // be lost with the folder it replaces.
        if existing == Existing::ReplaceRenderings
            && target.join(gauntlet_reports::matrix::CELLS_DIR).exists()
        {
            bail!(
                "the output folder `{}` holds a matrix run (`{}/`), which re-rendering in place \
                 would lose: re-render into a fresh --out",
                target.display(),
                gauntlet_reports::matrix::CELLS_DIR
            );
        }
        let parent = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs_err::create_dir_all(&parent).with_context(|| {
            format!(
                "cannot create the folder `{}` for the output folder `{}`",
                parent.display(),
                target.display()
            )
        })?;
        let name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gauntlet-out".to_string());
        let staging = unique_sibling(&parent, &format!(".{name}.partial"))?;
        Ok(Staging {
            target: target.to_path_buf(),
            staging,
            existing,
            over_journal,
            committed: false,
        })
    }

    /// The folder to write into until [`Staging::commit`].
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The output folder, once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where `written` (a path inside the staging folder) lies once committed.
    pub fn final_path(&self, written: &Path) -> PathBuf {
        match written.strip_prefix(&self.staging) {
            Ok(relative) => self.target.join(relative),
            Err(_) => written.to_path_buf(),
        }
    }

    /// Move the staging folder into place. An earlier run's folder (only allowed with
    /// `--overwrite`, checked again here) is moved aside first and removed after the rename, so
    /// the output folder is at every moment either the old run's or the new one's.
    pub fn commit(mut self) -> Result<PathBuf> {
        let mut old = None;
        match inspect_target(&self.target, self.existing, self.over_journal)? {
            Target::EarlierRun | Target::Journal => {
                if self.existing == Existing::ReplaceRenderings {
                    self.keep_data_files()?;
                }
                let parent = self.staging.parent().unwrap_or(Path::new("."));
                let aside = unique_sibling(parent, ".gauntlet-replaced")?;
                fs_err::remove_dir(&aside)?;
                fs_err::rename(&self.target, &aside).with_context(|| {
                    format!(
                        "cannot move the earlier output `{}` aside",
                        self.target.display()
                    )
                })?;
                old = Some(aside);
            }
            // An empty folder: rename(2) cannot replace it on every platform.
            Target::Empty => fs_err::remove_dir(&self.target)?,
            Target::Absent => {}
        }
        fs_err::rename(&self.staging, &self.target).with_context(|| {
            format!(
                "cannot move the finished output into place at `{}`",
                self.target.display()
            )
        })?;
        self.committed = true;
        if let Some(old) = old {
            fs_err::remove_dir_all(&old).with_context(|| {
                format!(
                    "the new output is in place, but the earlier one is left at `{}`",
                    old.display()
                )
            })?;
        }
        Ok(self.target.clone())
    }

    /// Copy the earlier folder's data files that this rendering does not rewrite into the
    /// staging folder, so re-rendering in place never loses `results.json` or `samples.parquet`.
    fn keep_data_files(&self) -> Result<()> {
        for name in DATA_FILE_NAMES {
            let (old, new) = (self.target.join(name), self.staging.join(name));
            if old.is_file() && !new.exists() {
                fs_err::copy(&old, &new)?;
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a failed run must not leave a partial folder behind.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Write `bytes` to `path` through a temporary file beside it, renamed into place once complete,
/// so a reader never sees a half-written file and a failure leaves the old file untouched.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a temporary file beside `{}`", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    file.persist(path).with_context(|| {
        format!(
            "cannot move the finished file into place at `{}`",
            path.display()
        )
    })?;
    Ok(())
}

/// A fresh, empty folder `parent/prefix-<pid>-<n>`.
fn unique_sibling(parent: &Path, prefix: &str) -> Result<PathBuf> {
    let pid = std::process::id();
    for attempt in 0..1000u32 {
        let candidate = parent.join(format!("{prefix}-{pid}-{attempt}"));
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot create a staging folder in `{}`", parent.display())
                })
            }
        }
    }
    bail!("cannot create a staging folder in `{}`", parent.display())
}

/// What the output folder holds now.
enum Target {
    Absent,
    Empty,
    /// Only files gauntlet writes, and `existing` allows replacing them.
    EarlierRun,
    /// Only a run journal (and a shard manifest), which the caller may replace.
    Journal,
}

/// What an entry of an output folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A file of a finished run (results, report, plots, per-sample file).
    Result,
    /// A run journal (`journal/` holding only what gauntlet writes there) or `shard.json`.
    Journal,
    Foreign,
}

/// Where in an output folder an entry lies: a matrix's `cells/` and `matrix.json` are gauntlet's
/// only at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Cell,
}

fn classify(entry: &fs_err::DirEntry) -> Entry {
    classify_at(entry, Level::Top)
}

fn classify_at(entry: &fs_err::DirEntry, level: Level) -> Entry {
    let name = entry.file_name().to_string_lossy().into_owned();
    let Ok(kind) = entry.file_type() else {
        return Entry::Foreign;
    };
    let folder = entry
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if kind.is_file() && is_own_file_name(&name) {
        Entry::Result
    } else if kind.is_dir() && level == Level::Top && name == gauntlet_reports::matrix::CELLS_DIR {
        classify_cells(&entry.path())
    } else if kind.is_file() && name == crate::journal::SHARD_MANIFEST {
        // A manifest only when it reads as one: a user's own `shard.json` is not ours.
        match crate::journal::ShardManifest::read(&folder) {
            Ok(_) => Entry::Journal,
            Err(_) => Entry::Foreign,
        }
    } else if kind.is_file()
        && level == Level::Top
        && name == crate::matrix_run::MATRIX_SHARD_MANIFEST
    {
        match crate::matrix_run::read_shard_manifest(&folder) {
            Ok(_) => Entry::Journal,
            Err(_) => Entry::Foreign,
        }
    } else if kind.is_dir()
        && name == crate::journal::JOURNAL_DIR
        && crate::journal::is_own_journal(&entry.path())
    {
        Entry::Journal
    } else if kind.is_file() && name.starts_with(PARTIAL_PREFIX) {
        // What an atomic write killed half-way leaves (a shard's manifest).
        Entry::Journal
    } else {
        Entry::Foreign
    }
}

/// A matrix run's `cells/` folder: one folder per cell, named as a cell is
/// (`MODEL--DATASET`), each holding only what a run's output folder may hold. A result if any
/// cell holds one, a journal if they hold only journals.
fn classify_cells(dir: &Path) -> Entry {
    let Ok(cells) = fs_err::read_dir(dir) else {
        return Entry::Foreign;
    };
    let mut kind = Entry::Journal;
    for cell in cells {
        let Ok(cell) = cell else {
            return Entry::Foreign;
        };
        let name = cell.file_name().to_string_lossy().into_owned();
        if !cell.file_type().is_ok_and(|t| t.is_dir())
            || !gauntlet_reports::matrix::is_cell_id(&name)
        {
            return Entry::Foreign;
        }
        let Ok(entries) = fs_err::read_dir(cell.path()) else {
            return Entry::Foreign;
        };
        for entry in entries {
            match entry.map(|e| classify_at(&e, Level::Cell)) {
                Ok(Entry::Journal) => {}
                Ok(Entry::Result) => kind = Entry::Result,
                Ok(Entry::Foreign) | Err(_) => return Entry::Foreign,
            }
        }
    }
    kind
}

/// Which kind of run writes a shard folder: the two must not share one, or a merge would read
/// the other run's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKind {
    /// One model and one dataset: `journal/` and `shard.json` at the top.
    Single,
    /// A matrix suite: `cells/ID/` and `matrix.json`.
    Matrix,
}

/// Check a shard's output folder (written in place, journal then `shard.json`): absent, empty,
/// or holding only an earlier attempt's journal.
pub fn check_shard_folder(target: &Path, kind: ShardKind) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(target) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect `{}`", target.display()))
        }
        Ok(metadata) => metadata,
    };
    if !metadata.is_dir() {
        bail!(
            "the output folder `{}` exists and is not a folder; choose another --out",
            target.display()
        );
    }
    let mut foreign = Vec::new();
    let mut results = false;
    for entry in fs_err::read_dir(target)? {
        let entry = entry?;
        match classify(&entry) {
            Entry::Journal => {}
            Entry::Result => results = true,
            Entry::Foreign => foreign.push(entry.file_name().to_string_lossy().into_owned()),
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "the output folder `{}` holds files gauntlet did not write ({}): choose a fresh --out              folder for the shard",
            target.display(),
            shorten(&foreign)
        );
    }
    if results {
        bail!(
            "the output folder `{}` holds a whole run's results, not a shard; give each shard a              fresh --out folder",
            target.display()
        );
    }
    let other = match kind {
        ShardKind::Single => [
            gauntlet_reports::matrix::CELLS_DIR,
            crate::matrix_run::MATRIX_SHARD_MANIFEST,
        ],
        ShardKind::Matrix => [crate::journal::JOURNAL_DIR, crate::journal::SHARD_MANIFEST],
    };
    if let Some(name) = other.iter().find(|name| target.join(name).exists()) {
        bail!(
            "the output folder `{}` holds `{name}` from a shard of {}; give each shard of this \
             run a fresh --out folder",
            target.display(),
            match kind {
                ShardKind::Single => "a matrix suite",
                ShardKind::Matrix => "a single-model suite",
            }
        );
    }
    Ok(())
}

/// Describe the output folder, refusing one that cannot be written as asked and naming what is
/// in the way. Called when staging begins and again at the commit, since the folder may have
/// changed during the run.
fn inspect_target(target: &Path, existing: Existing, over_journal: bool) -> Result<Target> {
    let metadata = match std::fs::symlink_metadata(target) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Absent),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect `{}`", target.display()))
        }
        Ok(metadata) => metadata,
    };
    if !metadata.is_dir() {
        bail!(
            "the output folder `{}` exists and is not a folder; choose another --out",
            target.display()
        );
    }
    let mut foreign = Vec::new();
    let mut any = false;
    let mut results = false;
    for entry in fs_err::read_dir(target)? {
        let entry = entry?;
        any = true;
        match classify(&entry) {
            Entry::Result => results = true,
            Entry::Journal => {}
            Entry::Foreign => foreign.push(entry.file_name().to_string_lossy().into_owned()),
        }
    }
    if !any {
        return Ok(Target::Empty);
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "the output folder `{}` holds files gauntlet did not write ({}); gauntlet never \
             removes them: choose a fresh --out folder",
            target.display(),
            shorten(&foreign)
        );
    }
    if !results && over_journal {
        return Ok(Target::Journal);
    }
    if existing == Existing::Refuse {
        bail!(
            "the output folder `{}` already holds an earlier run's results; pass --overwrite to \
             replace them (the whole folder is replaced, never mixed), or choose a fresh --out",
            target.display()
        );
    }
    Ok(Target::EarlierRun)
}

fn is_own_file_name(name: &str) -> bool {
    OWN_FILE_NAMES.contains(&name) || gauntlet_reports::is_plot_file_name(name)
}

fn shorten(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), name).unwrap();
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_fresh_folder_appears_only_on_commit() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        let staging = Staging::begin(&target, Existing::Refuse).unwrap();
        write(staging.path(), "results.json");
        assert!(!target.exists(), "nothing is visible before the commit");
        staging.commit().unwrap();
        assert!(target.join("results.json").is_file());
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the output folder remains");
    }

    #[test]
    fn a_dropped_staging_folder_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        {
            let staging = Staging::begin(&target, Existing::Refuse).unwrap();
            write(staging.path(), "results.json");
        }
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_earlier_run_is_refused_without_overwrite_and_replaced_whole_with_it() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        std::fs::create_dir(&target).unwrap();
        write(&target, "results.json");
        write(&target, "report.html");
        write(&target, "robust_accuracy_vs_epsilon.png");
        let error = Staging::begin(&target, Existing::Refuse).unwrap_err();
        assert!(format!("{error:#}").contains("--overwrite"), "{error:#}");

        let staging = Staging::begin(&target, Existing::Replace).unwrap();
        write(staging.path(), "results.json");
        staging.commit().unwrap();
        assert_eq!(
            names(&target),
            ["results.json"],
            "the old report and plot are gone"
        );
    }

    #[test]
    fn a_users_own_images_are_never_taken_for_plots() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("photos");
        std::fs::create_dir(&target).unwrap();
        write(&target, "results.json");
        write(&target, "holiday.png");
        for existing in [Existing::Replace, Existing::ReplaceRenderings] {
            let error = Staging::begin(&target, existing).unwrap_err();
            assert!(format!("{error:#}").contains("holiday.png"), "{error:#}");
        }
        assert!(target.join("holiday.png").is_file());
    }

    #[test]
    fn a_folder_with_foreign_files_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("home");
        std::fs::create_dir(&target).unwrap();
        write(&target, "results.json");
        write(&target, "thesis.tex");
        for existing in [
            Existing::Refuse,
            Existing::Replace,
            Existing::ReplaceRenderings,
        ] {
            let error = Staging::begin(&target, existing).unwrap_err();
            assert!(format!("{error:#}").contains("thesis.tex"), "{error:#}");
        }
        assert!(target.join("thesis.tex").is_file());
    }

    #[test]
    fn re_rendering_in_place_keeps_the_data_files() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        std::fs::create_dir(&target).unwrap();
        write(&target, "samples.parquet");
        write(&target, "results.json");
        write(&target, "report.html");
        let staging = Staging::begin(&target, Existing::ReplaceRenderings).unwrap();
        std::fs::write(staging.path().join("results.csv"), "new").unwrap();
        staging.commit().unwrap();
        assert_eq!(
            names(&target),
            ["results.csv", "results.json", "samples.parquet"]
        );
    }

    #[test]
    fn an_empty_folder_is_used_as_is() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        std::fs::create_dir(&target).unwrap();
        let staging = Staging::begin(&target, Existing::Refuse).unwrap();
        write(staging.path(), "results.json");
        staging.commit().unwrap();
        assert!(target.join("results.json").is_file());
    }
}
