//! safetensors scanner: every fixture gives its rule, the header-only scan agrees with the
//! whole-file scan and reads no payload, and the verdicts agree with the reference loader (the
//! `safetensors` crate) on fixtures and on random mutations of them.

use std::io::Read;
use std::path::PathBuf;

use gauntlet_artifact::{safetensors, Finding, Location, RuleId, Severity};
use proptest::prelude::*;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/safetensors")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn scan(bytes: &[u8]) -> Vec<Finding> {
    safetensors::scan(bytes, &Location::default())
}

/// (rule, severity, tensor) of each finding.
fn summary(findings: &[Finding]) -> Vec<(String, Severity, Option<String>)> {
    findings
        .iter()
        .map(|finding| {
            (
                finding.rule.to_string(),
                finding.severity,
                finding.location.tensor.clone(),
            )
        })
        .collect()
}

fn expect(name: &str, expected: &[(&str, Severity, Option<&str>)]) {
    let findings = scan(&fixture(name));
    let expected: Vec<(String, Severity, Option<String>)> = expected
        .iter()
        .map(|(rule, severity, tensor)| (rule.to_string(), *severity, tensor.map(str::to_string)))
        .collect();
    assert_eq!(summary(&findings), expected, "{name}: {findings:#?}");
    for finding in &findings {
        assert!(
            finding.location.offset.is_some(),
            "{name}: no offset in {finding:?}"
        );
    }
}

#[test]
fn the_benign_file_written_by_safetensors_has_no_findings() {
    let bytes = fixture("benign.safetensors");
    assert!(safetensors::looks_like(&bytes));
    assert_eq!(scan(&bytes), vec![]);
}

#[test]
fn each_malformed_fixture_gives_its_rule() {
    use Severity::*;
    expect(
        "header_bomb.safetensors",
        &[("safetensors-header-length", High, None)],
    );
    expect(
        "truncated.safetensors",
        &[("safetensors-header-length", High, None)],
    );
    expect(
        "name_not_utf8.safetensors",
        &[("safetensors-header-not-utf8", High, None)],
    );
    expect(
        "duplicate_names.safetensors",
        &[("safetensors-duplicate-name", High, Some("a"))],
    );
    expect(
        "duplicate_names_shadowed.safetensors",
        &[
            ("safetensors-duplicate-name", High, Some("a")),
            // Both entries named `a` claim bytes 0..8.
            ("safetensors-overlap", High, Some("a")),
        ],
    );
    expect(
        "overlap.safetensors",
        &[("safetensors-overlap", High, Some("b"))],
    );
    expect(
        "out_of_bounds.safetensors",
        &[
            ("safetensors-offsets-out-of-bounds", High, Some("b")),
            ("safetensors-trailing-bytes", Medium, None),
        ],
    );
    expect(
        "reversed_offsets.safetensors",
        &[
            ("safetensors-offsets-reversed", High, Some("b")),
            ("safetensors-trailing-bytes", Medium, None),
        ],
    );
    expect(
        "size_mismatch.safetensors",
        &[("safetensors-size-mismatch", High, Some("b"))],
    );
    expect(
        "size_overflow.safetensors",
        &[("safetensors-size-overflow", High, Some("b"))],
    );
    expect("gap.safetensors", &[("safetensors-gap", High, Some("b"))]);
    expect(
        "unknown_dtype.safetensors",
        &[("safetensors-unknown-dtype", Medium, Some("b"))],
    );
    expect(
        "bad_metadata.safetensors",
        &[("safetensors-bad-metadata", High, Some("__metadata__"))],
    );
    expect(
        "trailing_garbage.safetensors",
        &[("safetensors-trailing-bytes", Medium, None)],
    );
}

#[test]
fn offsets_point_at_the_problem() {
    // gap.safetensors: a = bytes 0..8, b = 12..16; the gap starts at data byte 8.
    let bytes = fixture("gap.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let findings = scan(&bytes);
    assert_eq!(findings[0].location.offset, Some(8 + header_len + 8));
    // The trailing bytes of trailing_garbage.safetensors start where benign.safetensors ends.
    let benign_len = fixture("benign.safetensors").len() as u64;
    let findings = scan(&fixture("trailing_garbage.safetensors"));
    assert_eq!(findings[0].location.offset, Some(benign_len));
    assert!(findings[0].message.starts_with("29 bytes"), "{findings:?}");
}

/// A reader that counts the bytes taken from it.
struct CountingReader<R> {
    inner: R,
    taken: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.taken += count as u64;
        Ok(count)
    }
}

#[test]
fn the_header_scan_agrees_with_the_whole_file_scan_and_reads_no_payload() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".safetensors"))
        .collect();
    names.sort();
    assert!(names.len() >= 15);
    for name in names {
        let bytes = fixture(&name);
        let location = Location {
            file: name.clone(),
            ..Location::default()
        };
        let mut reader = CountingReader {
            inner: bytes.as_slice(),
            taken: 0,
        };
        let streamed =
            safetensors::scan_reader(&mut reader, bytes.len() as u64, &location).unwrap();
        assert_eq!(streamed, safetensors::scan(&bytes, &location), "{name}");
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let header_fits = header_len <= bytes.len() as u64 - 8;
        let expected_read = if header_fits { 8 + header_len } else { 8 };
        assert_eq!(reader.taken, expected_read, "{name} read payload bytes");

        let from_disk = safetensors::scan_file(&fixture_dir().join(&name)).unwrap();
        assert_eq!(from_disk.len(), streamed.len(), "{name}");
    }
}

#[test]
fn a_multi_gigabyte_sparse_file_is_scanned_from_its_header() {
    // 6 GiB of F32 zeros that never touch the disk: a sparse file. Reading the payload would
    // take seconds and 6 GiB of memory; the header scan takes one small read.
    let elements: u64 = 3 << 29;
    let header = format!(
        r#"{{"big":{{"dtype":"F32","shape":[{elements}],"data_offsets":[0,{}]}}}}"#,
        elements * 4
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(bytes.len() as u64 + elements * 4).unwrap();
    drop(file);
    assert_eq!(safetensors::scan_file(&path).unwrap(), vec![]);
    // One byte short: the tensor runs past the end.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(bytes.len() as u64 + elements * 4 - 1).unwrap();
    drop(file);
    let findings = safetensors::scan_file(&path).unwrap();
    assert_eq!(findings[0].rule, RuleId::SafetensorsOffsetsOutOfBounds);
    assert_eq!(findings[0].location.file, path.display().to_string());
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = safetensors::scan_file(&fixture_dir().join("no-such.safetensors")).unwrap_err();
    assert!(error.to_string().contains("no-such.safetensors"), "{error}");
}

/// The differential property against the reference loader: what it accepts we do not call
/// high (except duplicate names, which it silently resolves), and what it refuses we flag.
fn agrees_with_reference_loader(bytes: &[u8]) -> Result<(), String> {
    let findings = scan(bytes);
    let reference = ::safetensors::SafeTensors::deserialize(bytes);
    let worst = findings.iter().map(|finding| finding.severity).max();
    match reference {
        Ok(_) => {
            // The reference loader keeps the last of duplicate entries and never looks at the
            // others; a first-wins parser would, so their problems are real: nothing to compare.
            if findings
                .iter()
                .any(|finding| finding.rule == RuleId::SafetensorsDuplicateName)
            {
                return Ok(());
            }
            let high: Vec<&Finding> = findings
                .iter()
                .filter(|finding| finding.severity >= Severity::High)
                .collect();
            if high.is_empty() {
                Ok(())
            } else {
                Err(format!("reference accepts, we report {high:?}"))
            }
        }
        Err(error) => {
            if worst >= Some(Severity::Medium) {
                Ok(())
            } else {
                Err(format!(
                    "reference refuses ({error}), we report {findings:?}"
                ))
            }
        }
    }
}

#[test]
fn fixtures_agree_with_the_reference_loader() {
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            if let Err(why) = agrees_with_reference_loader(&bytes) {
                panic!("{}: {why}", path.display());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = safetensors::looks_like(&bytes);
        let _ = scan(&bytes);
    }

    #[test]
    fn never_panics_on_a_header_length_and_arbitrary_json_like_text(
        header in "[{}\\[\\]\":,0-9a-zA-Z_ \\\\]{0,200}",
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        lie in 0u64..4,
    ) {
        let mut bytes = (header.len() as u64 + lie).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&payload);
        let _ = scan(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic_and_agree_with_the_reference_loader(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let name = ["benign.safetensors", "gap.safetensors", "duplicate_names_shadowed.safetensors"][which];
        let mut bytes = fixture(name);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        prop_assert!(agrees_with_reference_loader(&bytes).is_ok(), "{:?}", agrees_with_reference_loader(&bytes));
    }

    #[test]
    fn mutated_headers_agree_with_the_reference_loader(
        a_end in 0u64..24, b_begin in 0u64..24, b_end in 0u64..24,
        a_len in 0u64..6, b_len in 0u64..6, payload_len in 0usize..24,
        b_dtype in prop::sample::select(vec!["F32", "U8", "F16", "F4", "I64", "Q9"]),
    ) {
        let header = format!(
            r#"{{"a":{{"dtype":"U8","shape":[{a_len}],"data_offsets":[0,{a_end}]}},"b":{{"dtype":"{b_dtype}","shape":[{b_len}],"data_offsets":[{b_begin},{b_end}]}}}}"#
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, payload_len));
        prop_assert!(agrees_with_reference_loader(&bytes).is_ok(), "{:?}", agrees_with_reference_loader(&bytes));
    }
}
