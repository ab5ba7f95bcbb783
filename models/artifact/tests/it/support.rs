//! What the corpus tests share.

use std::path::Path;

/// The suffixes of a corpus folder's own files (its generator, its listing, its notes): every
/// other file in the folder is a fixture.
pub const CORPUS_OWN_FILES: &[&str] = &[".py", ".toml", ".md"];

/// Every file in `dir` except those ending in one of `own_files` is listed in its
/// `corpus.toml`, so no fixture sits in the folder untested.
pub fn assert_every_fixture_is_listed(dir: &Path, listed: &[String], own_files: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if own_files.iter().any(|suffix| name.ends_with(suffix)) {
            continue;
        }
        assert!(listed.contains(&name), "{name} is not in corpus.toml");
    }
}
