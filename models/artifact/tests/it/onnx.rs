//! ONNX scanner on models written by the `onnx` package and exported by PyTorch (see
//! tests/fixtures/onnx/make_fixtures.py), plus no-panic properties on arbitrary and mutated bytes.

use std::path::PathBuf;

use gauntlet_artifact::scan::{identify, FileKind};
use gauntlet_artifact::{onnx, Finding, Location, RuleId, Severity};
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn scan(name: &str) -> Vec<Finding> {
    let location = Location {
        file: name.to_string(),
        ..Location::default()
    };
    onnx::scan(&fixture(name), &location)
}

fn rules(findings: &[Finding]) -> Vec<(&str, Severity)> {
    findings
        .iter()
        .map(|finding| (finding.rule.as_str(), finding.severity))
        .collect()
}

const ALL: [&str; 7] = [
    "torch_mlp.onnx",
    "helper_add.onnx",
    "external_data.onnx",
    "traversal.onnx",
    "absolute_path.onnx",
    "custom_op.onnx",
    "nested_subgraph.onnx",
];

#[test]
fn every_fixture_is_identified_as_onnx_by_content() {
    for name in ALL {
        let bytes = fixture(name);
        assert!(onnx::looks_like(&bytes), "{name}");
        assert_eq!(identify(&bytes), FileKind::Onnx, "{name}");
    }
}

#[test]
fn other_formats_do_not_look_like_onnx() {
    let safetensors = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/safetensors/benign.safetensors");
    let not_onnx: [&[u8]; 5] = [
        &std::fs::read(safetensors).unwrap(),
        b"hello, world\n",
        b"",
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
        b"PK\x03\x04",
    ];
    for bytes in not_onnx {
        assert!(!onnx::looks_like(bytes), "{bytes:?}");
    }
}

#[test]
fn normal_models_have_no_findings() {
    assert_eq!(scan("torch_mlp.onnx"), vec![]);
    assert_eq!(scan("helper_add.onnx"), vec![]);
}

#[test]
fn benign_external_data_is_listed_as_info() {
    let findings = scan("external_data.onnx");
    assert_eq!(rules(&findings), [("onnx-external-data", Severity::Info)]);
    assert!(
        findings[0].message.contains("\"external_data.onnx.data\""),
        "{}",
        findings[0].message
    );
    // The file it names is really there, beside the model.
    assert!(fixture_dir().join("external_data.onnx.data").is_file());
}

#[test]
fn traversal_and_absolute_locations_are_critical_and_name_the_tensor() {
    for (name, rule, path) in [
        (
            "traversal.onnx",
            "onnx-external-data-traversal",
            "../../etc/passwd",
        ),
        (
            "absolute_path.onnx",
            "onnx-external-data-absolute",
            "/etc/passwd",
        ),
    ] {
        let findings = scan(name);
        assert_eq!(
            rules(&findings),
            [
                (rule, Severity::Critical),
                ("onnx-external-data", Severity::Info)
            ],
            "{name}"
        );
        assert_eq!(findings[0].location.tensor.as_deref(), Some("bias"));
        assert_eq!(findings[0].location.file, name);
        assert!(
            findings[0].message.contains(path),
            "{}",
            findings[0].message
        );
        // The offset is that of the initializer inside the file: a TensorProto tag (field 5,
        // length-delimited) sits there.
        let offset = findings[0].location.offset.unwrap() as usize;
        assert_eq!(fixture(name)[offset], 5 << 3 | 2);
    }
}

#[test]
fn custom_domains_and_ops_are_medium() {
    let findings = scan("custom_op.onnx");
    assert_eq!(
        rules(&findings),
        [
            ("onnx-custom-domain", Severity::Medium),
            ("onnx-custom-op", Severity::Medium)
        ]
    );
    assert!(findings[0].message.contains("com.example.evil"));
    assert_eq!(findings[1].location.tensor.as_deref(), Some("evil"));
    assert!(findings[1].message.contains("RunShell"));
}

#[test]
fn problems_hidden_in_subgraphs_and_attribute_tensors_are_found() {
    let findings = scan("nested_subgraph.onnx");
    assert_eq!(
        rules(&findings),
        [
            ("onnx-external-data-traversal", Severity::Critical),
            ("onnx-external-data", Severity::Info),
            ("onnx-custom-domain", Severity::Medium),
            ("onnx-custom-op", Severity::Medium),
        ],
        "{findings:#?}"
    );
    assert_eq!(findings[0].location.tensor.as_deref(), Some("secret"));
    assert!(
        findings[0].message.contains(r"..\\..\\Windows\\win.ini"),
        "{}",
        findings[0].message
    );
    assert_eq!(findings[3].location.tensor.as_deref(), Some("hidden"));
    assert!(findings[3].message.contains("Exfiltrate"));
}

#[test]
fn truncated_models_are_malformed_not_a_crash() {
    let bytes = fixture("torch_mlp.onnx");
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        let findings = onnx::scan(&bytes[..cut], &Location::default());
        assert!(
            findings
                .iter()
                .any(|finding| finding.rule == RuleId::OnnxMalformed
                    && finding.severity == Severity::High),
            "cut at {cut}: {findings:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = onnx::looks_like(&bytes);
        let _ = onnx::scan(&bytes, &Location::default());
    }

    #[test]
    fn never_panics_on_mutated_fixtures(
        which in 0usize..ALL.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = fixture(ALL[which]);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = onnx::looks_like(&bytes);
        let _ = onnx::scan(&bytes, &Location::default());
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = onnx::scan(&bytes, &Location::default());
    }

    #[test]
    fn any_location_string_is_classified_without_panicking(location in any::<Vec<u8>>()) {
        let _ = onnx::classify_location(&location);
    }
}
