//! The container and format corpus (issue 9, classes 1, 4 and 6): every malicious fixture fails
//! the default gate (`--fail-on high`) with its expected rule, every benign one passes it; and the
//! new parsers never panic.

use std::path::PathBuf;

use gauntlet_artifact::walk::{scan_paths, scan_paths_with, ScanOptions};
use gauntlet_artifact::{compressed, gguf, keras, npy, scan, tar, zip, Location, RuleId, Severity};
use proptest::prelude::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containers")
}

#[derive(serde::Deserialize)]
struct Corpus {
    fixture: Vec<Fixture>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    file: String,
    kind: String,
    rule: Option<RuleId>,
    #[allow(dead_code)]
    technique: String,
}

fn corpus() -> Corpus {
    let text = std::fs::read_to_string(corpus_dir().join("corpus.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

#[test]
fn malicious_container_fixtures_fail_and_benign_ones_pass_the_default_gate() {
    let corpus = corpus();
    assert!(corpus.fixture.len() >= 25, "corpus shrank");
    let mut wrong = Vec::new();
    for fixture in &corpus.fixture {
        let report = scan_paths(&[corpus_dir().join(&fixture.file)]).unwrap();
        let gate_fails = report.max_severity() >= Some(Severity::High);
        let described: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{} {} ({})", f.severity, f.rule, f.message))
            .collect();
        let ok = match fixture.kind.as_str() {
            "malicious" | "unverifiable" => {
                gate_fails
                    && report.findings.iter().any(|finding| {
                        Some(finding.rule) == fixture.rule && finding.severity >= Severity::High
                    })
            }
            "benign" => !gate_fails,
            other => panic!("unknown kind {other}"),
        };
        if !ok {
            wrong.push(format!(
                "{} ({}): {described:#?}",
                fixture.file, fixture.kind
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_container_fixture_is_listed() {
    let listed: Vec<String> = corpus().fixture.into_iter().map(|f| f.file).collect();
    crate::support::assert_every_fixture_is_listed(
        &corpus_dir(),
        &listed,
        crate::support::CORPUS_OWN_FILES,
    );
}

#[test]
fn unidentified_content_is_high_only_where_a_model_is_expected() {
    let junk = b"\x00\x01 nothing known \xff";
    let named = |file: &str| Location {
        file: file.to_string(),
        ..Location::default()
    };
    let severity = |location: &Location| scan::scan_bytes(junk, location)[0].severity;
    assert_eq!(severity(&named("README")), Severity::Medium);
    assert_eq!(severity(&named("model.bin")), Severity::High);
    assert_eq!(severity(&named("weights.gguf")), Severity::High);
    let member = Location {
        file: "bundle.zip".to_string(),
        member: Some("inner/model.ckpt".to_string()),
        ..Location::default()
    };
    assert_eq!(severity(&member), Severity::High);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn new_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let location = Location::default();
        let mut gguf_bytes = b"GGUF\x03\x00\x00\x00".to_vec();
        gguf_bytes.extend(&bytes);
        let _ = gguf::scan(&gguf_bytes, &location);
        let mut hdf5 = b"\x89HDF\r\n\x1a\n".to_vec();
        hdf5.extend(&bytes);
        let _ = keras::scan_hdf5(&hdf5, &location);
        let _ = keras::scan_keras_json(&bytes, &location);
        let mut npy_bytes = b"\x93NUMPY\x03\x00".to_vec();
        npy_bytes.extend(&bytes);
        let _ = npy::scan(&npy_bytes, &location);
        let _ = tar::scan(&bytes, &location);
        let _ = zip::scan(&bytes, &location);
        let _ = zip::embedded_archive(&bytes);
        let _ = scan::scan_bytes(&bytes, &location);
    }

    /// The Jinja tokenizer on arbitrary text, and on text built from the pieces templates and
    /// payloads are made of (unbalanced delimiters, escapes, quotes).
    #[test]
    fn jinja_check_never_panics(
        text in "\\PC{0,300}",
        pieces in proptest::collection::vec(
            prop::sample::select(vec![
                "{{", "}}", "{%", "%}", "{#", "#}", "'", "\"", "\\", "\\x5f", "\\u00", "\\N{",
                "[", "]", "(", ")", "|", "~", "attr", "set", "for", " in ", "=", "_", "raw",
                "endraw", "x", ".",
            ]),
            0..60,
        ),
    ) {
        let _ = gauntlet_artifact::jinja::check(&text);
        let _ = gauntlet_artifact::jinja::check(&pieces.concat());
    }

    #[test]
    fn decompressors_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        which in 0usize..8,
        declared in 0u64..4096,
    ) {
        // Real headers in front, so the decoders get past their magic into the stream.
        let (prefix, codec): (&[u8], compressed::Codec) = match which {
            0 => (b"x\x9c", compressed::Codec::Zlib),
            1 => (b"\x1f\x8b\x08", compressed::Codec::Gzip),
            2 => (b"BZh9", compressed::Codec::Bzip2),
            3 => (b"\xfd7zXZ\x00", compressed::Codec::Xz),
            4 => (b"\x5d\x00\x00\x10\x00", compressed::Codec::Lzma),
            5 => (b"ZF1a                 ", compressed::Codec::JoblibZfile),
            6 => (b"\x04\x22\x4d\x18", compressed::Codec::Lz4),
            _ => (b"", compressed::Codec::Lzma),
        };
        let mut stream = prefix.to_vec();
        stream.extend(&bytes);
        let _ = compressed::inflate(&stream, codec, 1 << 20);
        let _ = compressed::scan(&stream, &Location::default(), codec);
        let _ = compressed::inflate_bzip2_member(&bytes, 1 << 20);
        let mut member = b"\x09\x14\x05\x00\x5d\x00\x00\x10\x00".to_vec();
        member.extend(&bytes);
        let _ = compressed::inflate_lzma_member(&member, declared, 1 << 20);
        let _ = compressed::inflate_lzma_member(&bytes, declared, 1 << 20);
    }

    #[test]
    fn mutated_container_fixtures_never_panic(
        index in 0usize..64,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let corpus = corpus();
        let fixture = &corpus.fixture[index % corpus.fixture.len()];
        let mut bytes = std::fs::read(corpus_dir().join(&fixture.file)).unwrap();
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let location = Location { file: fixture.file.clone(), ..Location::default() };
        let _ = scan::scan_bytes(&bytes, &location);
    }
}

#[cfg(unix)]
#[test]
fn onnx_external_data_through_links_is_high() {
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let model = std::fs::read(onnx.join("external_data.onnx")).unwrap();
    let data = std::fs::read(onnx.join("external_data.onnx.data")).unwrap();
    let links = |dir: &std::path::Path| {
        let report = scan_paths(&[dir.join("model.onnx")]).unwrap();
        report
            .findings
            .iter()
            .filter(|finding| finding.rule == RuleId::OnnxExternalDataLink)
            .map(|finding| finding.severity)
            .collect::<Vec<_>>()
    };
    // A plain copy passes.
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("model.onnx"), &model).unwrap();
    std::fs::write(plain.path().join("external_data.onnx.data"), &data).unwrap();
    assert_eq!(links(plain.path()), Vec::<Severity>::new());
    // A symbolic link to the data.
    let symlinked = tempfile::tempdir().unwrap();
    std::fs::write(symlinked.path().join("model.onnx"), &model).unwrap();
    std::os::unix::fs::symlink(
        plain.path().join("external_data.onnx.data"),
        symlinked.path().join("external_data.onnx.data"),
    )
    .unwrap();
    assert_eq!(links(symlinked.path()), [Severity::High]);
    // A hard link to the data.
    let hard = tempfile::tempdir().unwrap();
    std::fs::write(hard.path().join("model.onnx"), &model).unwrap();
    std::fs::hard_link(
        plain.path().join("external_data.onnx.data"),
        hard.path().join("external_data.onnx.data"),
    )
    .unwrap();
    assert_eq!(links(hard.path()), [Severity::High]);
}

/// A Python that imports `modules`, for the differential tests: `GAUNTLET_PYTHON`, else the venv
/// `.ci/run` creates, else the one `make_fixtures.py` documents. A `GAUNTLET_PYTHON` that is set
/// but cannot import them is an error, not a skip: `.ci/run` sets it for the step that must run
/// these tests, and a failed install there must not pass as a skipped test.
fn reader_python(modules: &str) -> Option<PathBuf> {
    let imports = |python: &PathBuf| {
        python.exists()
            && std::process::Command::new(python)
                .args(["-c", &format!("import {modules}")])
                .output()
                .is_ok_and(|out| out.status.success())
    };
    if let Some(python) = std::env::var_os("GAUNTLET_PYTHON").map(PathBuf::from) {
        assert!(
            imports(&python),
            "GAUNTLET_PYTHON={} cannot import {modules}",
            python.display()
        );
        return Some(python);
    }
    let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".to_string());
    [
        PathBuf::from(tmp).join("gauntlet-model-signing-venv/bin/python"),
        PathBuf::from("/tmp/venv-containers/bin/python"),
    ]
    .into_iter()
    .find(imports)
}

/// gauntlet reads the same members (names and sizes) as Python's zipfile and tarfile, and the
/// same "holds objects" verdict from NumPy headers as numpy.lib.format, on every fixture the
/// real readers accept.
#[test]
fn gauntlet_reads_what_the_real_readers_read() {
    let Some(python) = reader_python("numpy") else {
        eprintln!(
            "SKIPPED gauntlet_reads_what_the_real_readers_read: no Python with NumPy (set \
             GAUNTLET_PYTHON, or create /tmp/venv-containers as make_fixtures.py says)"
        );
        return;
    };
    let output = std::process::Command::new(&python)
        .arg(corpus_dir().join("real_readers.py"))
        .arg(corpus_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let views: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).unwrap();
    assert!(views.len() >= 15, "real readers saw only {}", views.len());
    for (file, view) in views {
        let bytes = std::fs::read(corpus_dir().join(&file)).unwrap();
        if let Some(members) = view.get("zip") {
            let ours: Vec<serde_json::Value> = zip::members(&bytes)
                .into_iter()
                .map(|(name, size)| serde_json::json!([name, size]))
                .collect();
            assert_eq!(&serde_json::Value::Array(ours), members, "{file}");
        }
        if let Some(members) = view.get("tar") {
            let ours: Vec<serde_json::Value> = tar::members(&bytes)
                .into_iter()
                .map(|(name, size, kind)| {
                    serde_json::json!([name, size, char::from(kind).to_string()])
                })
                .collect();
            assert_eq!(&serde_json::Value::Array(ours), members, "{file}");
        }
        if let Some(objects) = view.get("npy_has_objects") {
            let ours = npy::parse_header(&bytes).map(|header| header.has_objects);
            assert_eq!(ours.ok(), objects.as_bool(), "{file}");
        }
        if view.get("npy_error").is_some() {
            assert!(
                npy::parse_header(&bytes).is_err(),
                "{file}: NumPy refuses it"
            );
        }
    }
}

/// gauntlet frames streams as joblib and pickletools do, on every fixture of the container,
/// pickle and benign corpora: the compressor joblib's `_detect_compressor` picks and the exact
/// bytes its decompressor yields (or a refusal where joblib refuses), and, for pickle files,
/// the same pickles one after the other as `pickletools.genops` reads them (start, end after
/// `STOP`, opcode count), with and without PROTO headers.
#[test]
fn gauntlet_frames_streams_as_joblib_and_pickletools_do() {
    let Some(python) = reader_python("joblib") else {
        eprintln!(
            "SKIPPED gauntlet_frames_streams_as_joblib_and_pickletools_do: no Python with joblib \
             (set GAUNTLET_PYTHON, or create /tmp/venv-containers as make_fixtures.py says)"
        );
        return;
    };
    let fixtures = corpus_dir().parent().unwrap().to_path_buf();
    let folders = ["containers", "pickle", "benign"].map(|folder| fixtures.join(folder));
    let output = std::process::Command::new(&python)
        .arg(corpus_dir().join("real_streams.py"))
        .args(&folders)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let views: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).unwrap();
    let (mut compressed, mut pickles) = (0, 0);
    for (file, view) in &views {
        let bytes = std::fs::read(fixtures.join(file)).unwrap();
        if let Some(joblib) = view.get("joblib") {
            compressed += 1;
            let theirs = joblib["compressor"].as_str().unwrap();
            let ours = compressed::codec(&bytes);
            let ours_name = match ours {
                Some(compressed::Codec::Zlib) => "zlib",
                Some(compressed::Codec::Gzip) => "gzip",
                Some(compressed::Codec::Bzip2) => "bz2",
                Some(compressed::Codec::Xz) => "xz",
                Some(compressed::Codec::Lzma) => "lzma",
                Some(compressed::Codec::JoblibZfile) => "compat",
                Some(compressed::Codec::Lz4) => "lz4",
                None => "not recognised",
            };
            let inflated =
                ours.map(|codec| compressed::inflate(&bytes, codec, compressed::MAX_INFLATED));
            // Trailing bytes that are not another stream: joblib stops there too.
            let inflated = inflated.map(|inflated| match inflated {
                compressed::Inflated::Trailing { out, .. } => compressed::Inflated::Complete(out),
                other => other,
            });
            match (joblib.get("sha256"), inflated) {
                (Some(sha), Some(compressed::Inflated::Complete(out))) => {
                    assert_eq!(ours_name, theirs, "{file}");
                    assert_eq!(Some(out.len() as u64), joblib["length"].as_u64(), "{file}");
                    assert_eq!(
                        serde_json::Value::String(hex::encode(
                            <sha2::Sha256 as sha2::Digest>::digest(&out)
                        )),
                        *sha,
                        "{file}: different bytes"
                    );
                }
                (Some(_), other) => {
                    panic!("{file}: joblib reads it ({theirs}), gauntlet got {other:?}")
                }
                // joblib refuses it: gauntlet must not claim a complete, verified stream.
                (None, Some(compressed::Inflated::Complete(_))) => {
                    panic!("{file}: joblib refuses it ({joblib}), gauntlet inflated it")
                }
                (None, _) => {}
            }
        }
        if let Some(pickle) = view.get("pickle") {
            pickles += 1;
            let ours: Vec<serde_json::Value> = gauntlet_artifact::pickle::spans(&bytes)
                .into_iter()
                .map(|span| serde_json::json!([span.start, span.end, span.opcodes]))
                .collect();
            assert_eq!(
                serde_json::Value::Array(ours),
                pickle["spans"],
                "{file}: pickle boundaries differ from pickletools"
            );
        }
    }
    assert!(compressed >= 15, "joblib framed only {compressed} files");
    assert!(pickles >= 60, "pickletools framed only {pickles} files");
}

/// A decoy end record (in the comment) that Python's zipfile picks hides no member from the
/// scan: the directory the real end record names is scanned too.
#[test]
fn members_behind_a_decoy_end_record_are_scanned() {
    let bytes = std::fs::read(corpus_dir().join("zip_two_end_records.npz")).unwrap();
    assert!(zip::members(&bytes).is_empty(), "zipfile sees no members");
    let findings = zip::scan(&bytes, &Location::default());
    assert!(
        findings
            .iter()
            .any(|finding| finding.rule == RuleId::ZipReaderDifferential),
        "{findings:#?}"
    );
    // x.npy is numeric and passes; the evidence that it was read is that mutating it into an
    // object array is caught.
    let mut evil = bytes.clone();
    let at = evil
        .windows(6)
        .position(|window| window == b"'<f4',")
        .unwrap();
    evil[at..at + 6].copy_from_slice(b"'|O', ");
    let findings = zip::scan(&evil, &Location::default());
    assert!(
        findings
            .iter()
            .any(|finding| finding.rule == RuleId::NpyObjectArray),
        "{findings:#?}"
    );
}

/// A GGUF file larger than the metadata prefix (sparse here) is scanned from its metadata alone,
/// still finds the template, and is never `file-too-large`.
#[test]
fn large_gguf_files_are_scanned_from_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    std::fs::copy(corpus_dir().join("gguf_template_injection.gguf"), &path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(gguf::METADATA_PREFIX_BYTES + 4096).unwrap();
    drop(file);
    let report = scan_paths_with(
        &[path],
        &ScanOptions {
            max_file_bytes: 1 << 20,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    let rules: Vec<RuleId> = report.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, [RuleId::GgufTemplateInjection]);
}

/// A file too large to read is not verified: high when its name says model, medium otherwise.
#[test]
fn files_too_large_to_read_are_high_when_named_as_models() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.pt"), vec![0x80u8; 256]).unwrap();
    std::fs::write(dir.path().join("notes.txt"), vec![b'a'; 256]).unwrap();
    let report = scan_paths_with(
        &[dir.path().to_path_buf()],
        &ScanOptions {
            max_file_bytes: 64,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    let found: Vec<(RuleId, Severity)> = report
        .findings
        .iter()
        .map(|f| (f.rule, f.severity))
        .collect();
    assert_eq!(
        found,
        [
            (RuleId::FileTooLarge, Severity::High),
            (RuleId::FileTooLarge, Severity::Medium)
        ]
    );
}

/// bzip2 and lzma members are inflated (zipfile reads them); a method no reader gauntlet
/// mirrors knows (here zstandard, 93, which Python 3.14's zipfile reads) still fails closed.
#[test]
fn zip_members_with_a_method_gauntlet_does_not_inflate_fail_closed() {
    let bytes = std::fs::read(corpus_dir().join("zip_bzip2_benign.npz")).unwrap();
    let rules = |bytes: &[u8]| -> Vec<(RuleId, Severity)> {
        zip::scan(bytes, &Location::default())
            .into_iter()
            .map(|finding| (finding.rule, finding.severity))
            .collect()
    };
    assert_eq!(rules(&bytes), []);
    let mut zstd = bytes.clone();
    // The method field: offset 8 in the local header, 10 in the central directory entry.
    for (signature, at) in [(&b"PK\x03\x04"[..], 8), (&b"PK\x01\x02"[..], 10)] {
        let start = zstd
            .windows(4)
            .position(|window| window == signature)
            .unwrap();
        assert_eq!(zstd[start + at..start + at + 2], [12, 0]);
        zstd[start + at..start + at + 2].copy_from_slice(&[93, 0]);
    }
    assert_eq!(
        rules(&zstd),
        [(RuleId::ZipUnsupportedCompression, Severity::High)]
    );
}
