//! The pickle / zip / tar / npy regression corpus and robustness properties.

use std::io::Write;
use std::path::PathBuf;

use gauntlet_artifact::scan::scan_bytes;
use gauntlet_artifact::{Finding, Location, RuleId, Severity};
use proptest::prelude::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle")
}

fn scan_named(name: &str, bytes: &[u8]) -> Vec<Finding> {
    scan_bytes(
        bytes,
        &Location {
            file: name.to_string(),
            ..Location::default()
        },
    )
}

fn scan_fixture(name: &str) -> Vec<Finding> {
    let bytes = fs_err::read(corpus_dir().join(name)).unwrap();
    scan_named(name, &bytes)
}

#[derive(serde::Deserialize)]
struct Corpus {
    fixture: Vec<Fixture>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    file: String,
    kind: String,
    severity: Option<Severity>,
    /// Deserialised as a registry rule, so a misspelt rule in corpus.toml fails to load.
    rule: Option<RuleId>,
    #[allow(dead_code)]
    technique: String,
}

fn corpus() -> Corpus {
    let text = fs_err::read_to_string(corpus_dir().join("corpus.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "\n  {} {} {:?}: {}",
                f.severity, f.rule, f.location.member, f.message
            )
        })
        .collect()
}

#[test]
fn every_corpus_file_gets_its_expected_verdict() {
    let corpus = corpus();
    assert!(
        corpus.fixture.len() >= 40,
        "corpus shrank to {}",
        corpus.fixture.len()
    );
    let mut failures = Vec::new();
    for fixture in &corpus.fixture {
        let findings = scan_fixture(&fixture.file);
        let worst = findings.iter().map(|f| f.severity).max();
        let ok = match fixture.kind.as_str() {
            "benign" => worst.is_none_or(|worst| worst < Severity::Medium),
            "malicious" | "suspicious" => {
                let expected = fixture
                    .severity
                    .expect("non-benign fixtures name a severity");
                let rule = fixture.rule.expect("non-benign fixtures name a rule");
                let right_rule = findings
                    .iter()
                    .any(|f| f.severity == expected && f.rule == rule);
                let floor_ok = fixture.kind != "malicious" || expected >= Severity::High;
                worst == Some(expected) && right_rule && floor_ok
            }
            other => panic!("unknown kind {other}"),
        };
        if !ok {
            failures.push(format!(
                "{} ({}):{}",
                fixture.file,
                fixture.kind,
                describe(&findings)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected verdicts:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_fixture_file_is_listed_in_the_corpus() {
    let listed: Vec<String> = corpus().fixture.into_iter().map(|f| f.file).collect();
    // This folder also holds a shell script, the scanner comparison (compare_scanners.sh).
    crate::support::assert_every_fixture_is_listed(
        &corpus_dir(),
        &listed,
        &[".py", ".toml", ".md", ".sh"],
    );
}

#[test]
fn findings_say_where_they_are() {
    let findings = scan_fixture("torch_zip_malicious.pt");
    let critical = findings
        .iter()
        .find(|f| f.severity == Severity::Critical)
        .unwrap();
    assert_eq!(critical.location.file, "torch_zip_malicious.pt");
    assert_eq!(
        critical.location.member.as_deref(),
        Some("archive/data.pkl")
    );
    assert!(critical.message.contains("posix.system"));
    // GLOBAL is the second opcode, after PROTO.
    assert_eq!(critical.location.opcode_index, Some(1));
    assert_eq!(critical.location.offset, Some(2));

    let nested = scan_fixture("nested_pickle_loads.pkl");
    assert!(
        nested.iter().any(|f| f
            .location
            .member
            .as_deref()
            .is_some_and(|m| m.starts_with("bytes@"))
            && f.message.contains("posix.system")),
        "{}",
        describe(&nested)
    );
}

/// A pickle whose payload sits in the second of two pickles in a zip inside a zip is still found.
#[test]
fn nested_containers_are_followed() {
    let inner = fs_err::read(corpus_dir().join("torch_zip_malicious.pt")).unwrap();
    let mut outer = Vec::new();
    {
        let mut writer = StoredZip::default();
        writer.add("models/model.pt", &inner);
        outer.extend(writer.finish());
    }
    let findings = scan_named("outer.zip", &outer);
    let critical = findings
        .iter()
        .find(|f| f.severity == Severity::Critical)
        .expect("payload found");
    assert_eq!(
        critical.location.member.as_deref(),
        Some("models/model.pt!/archive/data.pkl")
    );
}

/// A zip that contains itself (a quine-like chain) stops at the nesting limit instead of
/// recursing forever.
#[test]
fn deep_nesting_stops_at_the_limit() {
    let mut bytes = b"\x80\x02cos\nsystem\n.".to_vec();
    for level in 0..12 {
        let mut writer = StoredZip::default();
        writer.add(&format!("level{level}.bin"), &bytes);
        bytes = writer.finish();
    }
    let findings = scan_named("deep.zip", &bytes);
    assert!(
        findings.iter().any(|f| f.rule == RuleId::NestingTooDeep),
        "{}",
        describe(&findings)
    );
}

#[test]
fn tar_members_are_scanned() {
    let payload = fs_err::read(corpus_dir().join("reduce_posix_system.pkl")).unwrap();
    let mut tar = tar_member("checkpoint/pickle", b'0', &payload);
    tar.extend(tar_member("../escape", b'0', b"\x80\x02}q\x00."));
    tar.extend(tar_member("link", b'2', b""));
    tar.extend([0u8; 1024]);
    let findings = scan_named("legacy.tar", &tar);
    assert!(
        findings.iter().any(|f| f.severity == Severity::Critical
            && f.location.member.as_deref() == Some("checkpoint/pickle")),
        "{}",
        describe(&findings)
    );
    assert!(findings.iter().any(|f| f.rule == RuleId::TarPathTraversal));
    assert!(findings.iter().any(|f| f.rule == RuleId::TarLink));
}

#[test]
fn zip_member_whose_local_name_differs_is_reported() {
    let mut writer = StoredZip::default();
    writer.add("archive/data.pkl", b"\x80\x02}q\x00.");
    let mut bytes = writer.finish();
    // Rename the member in its local header only.
    let at = bytes.windows(8).position(|w| w == b"archive/").unwrap();
    bytes[at] = b'X';
    let findings = scan_named("renamed.zip", &bytes);
    assert!(
        findings.iter().any(|f| f.rule == RuleId::ZipHeaderMismatch),
        "{}",
        describe(&findings)
    );
}

// ----- tiny writers for test archives -----

#[derive(Default)]
struct StoredZip {
    body: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

impl StoredZip {
    fn add(&mut self, name: &str, data: &[u8]) {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = self.body.len() as u32;
        let mut local = Vec::new();
        local
            .write_all(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00")
            .unwrap();
        local.write_all(&crc.sum().to_le_bytes()).unwrap();
        local.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
        local.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
        local.write_all(&(name.len() as u16).to_le_bytes()).unwrap();
        local.write_all(&0u16.to_le_bytes()).unwrap();
        local.write_all(name.as_bytes()).unwrap();
        local.write_all(data).unwrap();
        self.body.extend(local);
        let mut central = Vec::new();
        central
            .write_all(b"PK\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00")
            .unwrap();
        central.write_all(&crc.sum().to_le_bytes()).unwrap();
        central
            .write_all(&(data.len() as u32).to_le_bytes())
            .unwrap();
        central
            .write_all(&(data.len() as u32).to_le_bytes())
            .unwrap();
        central
            .write_all(&(name.len() as u16).to_le_bytes())
            .unwrap();
        central.write_all(&[0u8; 12]).unwrap();
        central.write_all(&offset.to_le_bytes()).unwrap();
        central.write_all(name.as_bytes()).unwrap();
        self.central.extend(central);
        self.count += 1;
    }

    fn finish(self) -> Vec<u8> {
        let mut out = self.body;
        let central_offset = out.len() as u32;
        out.extend(&self.central);
        out.extend(b"PK\x05\x06\x00\x00\x00\x00");
        out.extend(self.count.to_le_bytes());
        out.extend(self.count.to_le_bytes());
        out.extend((self.central.len() as u32).to_le_bytes());
        out.extend(central_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}

fn tar_member(name: &str, type_flag: u8, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    header[156] = type_flag;
    if type_flag == b'2' {
        header[157..168].copy_from_slice(b"/etc/passwd");
    }
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = header.to_vec();
    out.extend(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

// ----- robustness -----

fn corpus_files() -> Vec<Vec<u8>> {
    corpus()
        .fixture
        .iter()
        .map(|f| fs_err::read(corpus_dir().join(&f.file)).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn pickle_walker_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let location = Location::default();
        let _ = gauntlet_artifact::pickle::scan(&bytes, &location);
        let _ = gauntlet_artifact::pickle::looks_like(&bytes);
        let mut with_header = b"\x80\x04".to_vec();
        with_header.extend(&bytes);
        let _ = gauntlet_artifact::pickle::scan(&with_header, &location);
    }

    #[test]
    fn zip_tar_npy_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let location = Location::default();
        let _ = gauntlet_artifact::zip::scan(&bytes, &location);
        let _ = gauntlet_artifact::tar::scan(&bytes, &location);
        let _ = gauntlet_artifact::npy::scan(&bytes, &location);
        let mut zip_like = b"PK\x03\x04".to_vec();
        zip_like.extend(&bytes);
        zip_like.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0\x2e\0\0\0\0\0\0\0\0\0");
        let _ = gauntlet_artifact::zip::scan(&zip_like, &location);
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        file in 0usize..64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let files = corpus_files();
        let mut bytes = files[file % files.len()].clone();
        for (at, value) in edits {
            if !bytes.is_empty() {
                let len = bytes.len();
                bytes[at % len] = value;
            }
        }
        if cut % 3 == 0 && !bytes.is_empty() {
            let len = bytes.len();
            bytes.truncate(cut % len);
        }
        let _ = scan_named("mutated", &bytes);
    }
}

/// Prints `file<TAB>verdict` for every corpus file; `compare_scanners.sh` runs it to build the
/// comparison table in docs/scanner.md.
#[test]
#[ignore = "prints the corpus verdicts for compare_scanners.sh"]
fn print_corpus_verdicts() {
    for fixture in corpus().fixture {
        let findings = scan_fixture(&fixture.file);
        let verdict = match findings.iter().max_by_key(|f| f.severity) {
            Some(worst) if worst.severity >= Severity::Low => {
                format!("{} ({})", worst.severity, worst.rule)
            }
            _ => "clean".to_string(),
        };
        println!("VERDICT\t{}\t{verdict}", fixture.file);
    }
}

/// `--allow module.Name`: an unknown class the pickle instantiates passes once allowed, and the
/// report lists it; allowing a deny-listed global changes nothing.
#[test]
fn allowed_globals_pass_and_are_listed_but_never_override_the_deny_list() {
    use gauntlet_artifact::walk::{scan_paths_with, ScanOptions};
    let file = corpus_dir().join("policy_newobj_unknown.pkl");
    let default = scan_paths_with(std::slice::from_ref(&file), &ScanOptions::default()).unwrap();
    assert_eq!(default.max_severity(), Some(Severity::High));

    let allowed = gauntlet_artifact::pickle::parse_allowed("mypkg.tools.Thing").unwrap();
    assert_eq!(allowed, ("mypkg.tools".to_string(), "Thing".to_string()));
    let options = ScanOptions {
        extra_allowed: vec![allowed],
        ..ScanOptions::default()
    };
    let report = scan_paths_with(std::slice::from_ref(&file), &options).unwrap();
    assert_eq!(report.max_severity(), Some(Severity::Info), "{report:?}");
    assert!(report.findings.iter().any(
        |f| f.rule == RuleId::PickleAllowedByOption && f.message.contains("mypkg.tools.Thing")
    ));

    // The allow-list is per scan: the next default scan fails again.
    let again = scan_paths_with(std::slice::from_ref(&file), &ScanOptions::default()).unwrap();
    assert_eq!(again.max_severity(), Some(Severity::High));

    for (entry, fixture) in [
        ("posix.system", "reduce_posix_system.pkl"),
        ("mypkg.system", "policy_alias_reexported_system.pkl"),
        (
            "torch._utils:os.system",
            "policy_alias_allowed_module_os.pkl",
        ),
    ] {
        let options = ScanOptions {
            extra_allowed: vec![gauntlet_artifact::pickle::parse_allowed(entry).unwrap()],
            ..ScanOptions::default()
        };
        let report = scan_paths_with(&[corpus_dir().join(fixture)], &options).unwrap();
        assert_eq!(report.max_severity(), Some(Severity::Critical), "{entry}");
    }
}

/// Invocation is traced through the stack and the memo: a global fetched back from the memo
/// and called is high; the same global only stored (a dict value) is medium.
#[test]
fn only_invoked_unknown_globals_are_high() {
    let worst = |bytes: &[u8]| scan_named("x.pkl", bytes).iter().map(|f| f.severity).max();
    // STACK_GLOBAL, MEMOIZE, POP, BINGET, then REDUCE.
    let called = b"\x80\x04\x8c\x05mypkg\x8c\x01f\x93\x940h\x00)R.";
    assert_eq!(worst(called), Some(Severity::High));
    // {'k': mypkg.f}: named, never called.
    let stored = b"\x80\x04}\x8c\x01k\x8c\x05mypkg\x8c\x01f\x93s.";
    assert_eq!(worst(stored), Some(Severity::Medium));
    // A benign allowed call with the unknown global as an argument: judged as called.
    let as_argument =
        b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93\x8c\x05mypkg\x8c\x01f\x93\x85R.";
    assert_eq!(worst(as_argument), Some(Severity::High));
    // NEWOBJ_EX keyword arguments: OrderedDict.__new__(OrderedDict, k=mypkg.f).
    let as_keyword = b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93)}\x8c\x01k\x8c\x05mypkg\x8c\x01f\x93s\x92.";
    assert_eq!(worst(as_keyword), Some(Severity::High));
}
