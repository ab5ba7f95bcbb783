//! model-signing v1.0 signatures: fixtures made by the real model-signing 1.1.1 (see
//! tests/fixtures/signing/make_fixtures.sh) verify here, and every tampering gives its verdict.

use std::path::{Path, PathBuf};

use gauntlet_artifact::signing::{
    public_key_fingerprint, public_key_pem, sign_folder, verify_folder, verify_folder_with,
    KeyAlgorithm, SignOptions, SignatureProblem, SigningError, VerifyOptions, BUNDLE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE, MODEL_SIGNING_PREDICATE_TYPE,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing")
}

fn key(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("keys").join(name)).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A scratch copy of the fixture model (fixtures are never modified) and its signatures.
struct Scratch {
    _root: tempfile::TempDir,
    model: PathBuf,
    p256_sig: PathBuf,
    p384_sig: PathBuf,
}

fn scratch() -> Scratch {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    copy_dir(&fixtures().join("model"), &model);
    let p256_sig = root.path().join("model.p256.sig");
    let p384_sig = root.path().join("model.p384.sig");
    std::fs::copy(fixtures().join("model.p256.sig"), &p256_sig).unwrap();
    std::fs::copy(fixtures().join("model.p384.sig"), &p384_sig).unwrap();
    Scratch {
        _root: root,
        model,
        p256_sig,
        p384_sig,
    }
}

fn only_problem(verdict: &gauntlet_artifact::signing::SignatureVerdict) -> &SignatureProblem {
    assert!(!verdict.valid, "{verdict:?}");
    assert_eq!(verdict.problems.len(), 1, "{:?}", verdict.problems);
    &verdict.problems[0]
}

#[test]
fn model_signing_p256_signature_verifies() {
    let s = scratch();
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    assert!(verdict.valid, "{:?}", verdict.problems);
    assert_eq!(verdict.files_verified, 5);
    assert_eq!(verdict.algorithm, KeyAlgorithm::EcdsaP256Sha256);
    assert_eq!(verdict.model_name.as_deref(), Some("model"));
    // Fingerprint = SHA-256 of the SPKI DER, which `openssl pkey -pubin -outform DER | sha256sum`
    // also gives; here: the DER is the base64 body of the PEM.
    let pem = key("p256.pub.pem");
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(
        verdict.signer_fingerprint,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der))
    );
}

#[test]
fn model_signing_p384_signature_verifies() {
    let s = scratch();
    let verdict = verify_folder(&s.model, &s.p384_sig, &key("p384.pub.pem")).unwrap();
    assert!(verdict.valid, "{:?}", verdict.problems);
    assert_eq!(verdict.algorithm, KeyAlgorithm::EcdsaP384Sha384);
    assert_eq!(verdict.files_verified, 5);
}

/// OpenSSL (so model-signing) emits ECDSA signatures with a "high" s half the time; they are
/// valid and must verify (this fixture is model.p256.sig with s replaced by n - s).
#[test]
fn high_s_ecdsa_signature_verifies() {
    let s = scratch();
    let verdict = verify_folder(
        &s.model,
        &fixtures().join("model.p256.high_s.sig"),
        &key("p256.pub.pem"),
    )
    .unwrap();
    assert!(verdict.valid, "{:?}", verdict.problems);
}

/// model-signing's bundle carries a key hint = SHA-256 of the public key PEM; ours must agree,
/// or model-signing would call gauntlet's signatures "Key mismatch".
#[test]
fn key_hint_matches_model_signing() {
    for (sig, public) in [
        ("model.p256.sig", "p256.pub.pem"),
        ("model.p384.sig", "p384.pub.pem"),
    ] {
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures().join(sig)).unwrap()).unwrap();
        let hint = bundle["verificationMaterial"]["publicKey"]["hint"]
            .as_str()
            .unwrap();
        // The committed PEM is what openssl wrote; model-signing re-serialises it the same way.
        let pem = key(public);
        assert_eq!(
            hint,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(pem.as_bytes()))
        );

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m/x", b"x");
        let private = key(&public.replace(".pub.", ".key."));
        let ours = dir.path().join("ours.sig");
        sign_folder(
            &dir.path().join("m"),
            &private,
            &ours,
            &SignOptions::default(),
        )
        .unwrap();
        let ours: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ours).unwrap()).unwrap();
        assert_eq!(
            ours["verificationMaterial"]["publicKey"]["hint"]
                .as_str()
                .unwrap(),
            hint
        );
    }
}

#[test]
fn one_byte_flip_is_modified_file() {
    let s = scratch();
    let path = s.model.join("weights/model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    match only_problem(&verdict) {
        SignatureProblem::ModifiedFile { path, .. } => assert_eq!(path, "weights/model.bin"),
        other => panic!("{other:?}"),
    }
    assert_eq!(verdict.files_verified, 4);
}

#[test]
fn renamed_file_is_missing_plus_extra() {
    let s = scratch();
    std::fs::rename(s.model.join("config.json"), s.model.join("config.JSON")).unwrap();
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    assert!(!verdict.valid);
    assert_eq!(
        verdict.problems,
        [
            SignatureProblem::MissingFile {
                path: "config.json".into()
            },
            SignatureProblem::ExtraFile {
                path: "config.JSON".into()
            }
        ]
    );
}

#[test]
fn added_file_is_extra() {
    let s = scratch();
    write(&s.model, "weights/payload.pkl", b"\x80\x04N.");
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    assert_eq!(
        only_problem(&verdict),
        &SignatureProblem::ExtraFile {
            path: "weights/payload.pkl".into()
        }
    );
    assert_eq!(verdict.files_verified, 5);
}

#[test]
fn deleted_file_is_missing() {
    let s = scratch();
    std::fs::remove_file(s.model.join("a/b.txt")).unwrap();
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    assert_eq!(
        only_problem(&verdict),
        &SignatureProblem::MissingFile {
            path: "a/b.txt".into()
        }
    );
}

/// A genuine signature by the same key, but of another folder: the signature checks out and the
/// file comparison catches the swap.
#[test]
fn swapped_signature_fails_on_content() {
    let s = scratch();
    let verdict = verify_folder(
        &s.model,
        &fixtures().join("other_model.p256.sig"),
        &key("p256.pub.pem"),
    )
    .unwrap();
    assert!(!verdict.valid);
    assert_eq!(verdict.model_name.as_deref(), Some("other_model"));
    assert!(verdict.problems.iter().any(|problem| matches!(
        problem,
        SignatureProblem::ModifiedFile { path, .. } if path == "config.json"
    )));
    let extra = verdict
        .problems
        .iter()
        .filter(|problem| matches!(problem, SignatureProblem::ExtraFile { .. }))
        .count();
    assert_eq!(extra, 4, "{:?}", verdict.problems);
}

#[test]
fn wrong_key_is_reported_as_such() {
    let s = scratch();
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("other_p256.pub.pem")).unwrap();
    assert!(matches!(
        only_problem(&verdict),
        SignatureProblem::WrongKey { .. }
    ));
    // A key of another curve is a wrong key too.
    let verdict = verify_folder(&s.model, &s.p256_sig, &key("p384.pub.pem")).unwrap();
    assert!(matches!(
        only_problem(&verdict),
        SignatureProblem::WrongKey { .. }
    ));
    assert!(
        verdict.model_name.is_none(),
        "an unverified payload is not trusted"
    );
}

#[test]
fn tampered_payload_or_signature_is_bad_signature() {
    let s = scratch();
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&s.p256_sig).unwrap()).unwrap();
    // Without the hint, a wrong key can only show as a bad signature.
    bundle["verificationMaterial"]["publicKey"]
        .as_object_mut()
        .unwrap()
        .remove("hint");
    let path = s._root.path().join("nohint.sig");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let verdict = verify_folder(&s.model, &path, &key("other_p256.pub.pem")).unwrap();
    assert_eq!(only_problem(&verdict), &SignatureProblem::BadSignature);
    // ... and with the right key it is still valid (the hint is optional).
    assert!(
        verify_folder(&s.model, &path, &key("p256.pub.pem"))
            .unwrap()
            .valid
    );

    // Re-point the payload at modified digests: the signature no longer covers it.
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = engine
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let mut forged = String::from_utf8(payload).unwrap();
    forged = forged.replacen("\"model\"", "\"evil\"", 1);
    bundle["dsseEnvelope"]["payload"] = engine.encode(forged).into();
    std::fs::write(&path, bundle.to_string()).unwrap();
    let verdict = verify_folder(&s.model, &path, &key("p256.pub.pem")).unwrap();
    assert_eq!(only_problem(&verdict), &SignatureProblem::BadSignature);
}

#[test]
fn garbage_signature_file_is_malformed_not_a_crash() {
    let s = scratch();
    let path = s._root.path().join("garbage.sig");
    for content in [
        &b"\x00\xff not json"[..],
        b"{}",
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{},"dsseEnvelope":{"payload":"!!","payloadType":"application/vnd.in-toto+json","signatures":[]}}"#,
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}}"#,
    ] {
        std::fs::write(&path, content).unwrap();
        let verdict = verify_folder(&s.model, &path, &key("p256.pub.pem")).unwrap();
        assert!(matches!(
            only_problem(&verdict),
            SignatureProblem::MalformedSignature { .. }
        ));
    }
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&s.p256_sig).unwrap()).unwrap();
    bundle["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.2+json".into();
    std::fs::write(&path, bundle.to_string()).unwrap();
    let verdict = verify_folder(&s.model, &path, &key("p256.pub.pem")).unwrap();
    assert!(matches!(
        only_problem(&verdict),
        SignatureProblem::UnsupportedFormat { .. }
    ));
}

#[test]
fn unreadable_inputs_and_bad_keys_are_errors() {
    let s = scratch();
    let missing = s._root.path().join("missing.sig");
    let error = verify_folder(&s.model, &missing, &key("p256.pub.pem")).unwrap_err();
    assert!(error.to_string().contains("missing.sig"), "{error}");
    assert!(matches!(
        verify_folder(&s.model, &s.p256_sig, "not a key"),
        Err(SigningError::InvalidPublicKey { .. })
    ));
    assert!(matches!(
        verify_folder(&s.model, &s.p256_sig, &key("p256.key.pem")),
        Err(SigningError::InvalidPublicKey { .. })
    ));
    assert!(matches!(
        sign_folder(
            &s.model,
            &key("p256.pub.pem"),
            &missing,
            &SignOptions::default()
        ),
        Err(SigningError::InvalidPrivateKey { .. })
    ));
}

fn write(dir: &Path, relative: &str, content: &[u8]) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// gauntlet's own signatures with every key kind, and the bundle layers model-signing checks.
#[test]
fn gauntlet_sign_then_verify_round_trip_all_key_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    write(&model, "w.bin", &[7_u8; 3000]);
    write(&model, "sub/c.json", b"{}");
    for (private, algorithm) in [
        (key("p256.key.pem"), KeyAlgorithm::EcdsaP256Sha256),
        (key("p384.key.pem"), KeyAlgorithm::EcdsaP384Sha384),
        (key("ed25519.key.pem"), KeyAlgorithm::Ed25519),
    ] {
        let sig = dir.path().join("m.sig");
        let signed = sign_folder(&model, &private, &sig, &SignOptions::default()).unwrap();
        assert_eq!(signed.file_count, 2);
        assert_eq!(signed.algorithm, algorithm);
        let public = public_key_pem(&private).unwrap();
        let committed = match algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => "p256.pub.pem",
            KeyAlgorithm::EcdsaP384Sha384 => "p384.pub.pem",
            _ => "ed25519.pub.pem",
        };
        assert_eq!(
            public,
            key(committed),
            "derived public key PEM equals openssl's"
        );
        assert_eq!(
            signed.signer_fingerprint,
            public_key_fingerprint(&public).unwrap()
        );

        let verdict = verify_folder(&model, &sig, &public).unwrap();
        assert!(verdict.valid, "{algorithm}: {:?}", verdict.problems);
        assert_eq!(
            verdict.root_digest.as_deref(),
            Some(signed.root_digest.as_str())
        );

        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
        assert_eq!(bundle["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(bundle["dsseEnvelope"]["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(
            bundle["verificationMaterial"]["tlogEntries"],
            serde_json::json!([])
        );
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(statement["predicateType"], MODEL_SIGNING_PREDICATE_TYPE);
        assert_eq!(statement["subject"][0]["name"], "m");
        let names: Vec<&str> = statement["predicate"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sub/c.json", "w.bin"]);
        // Subject digest = SHA-256 over the raw per-file digests, in resource order.
        let mut raw = Vec::new();
        for resource in statement["predicate"]["resources"].as_array().unwrap() {
            assert_eq!(resource["algorithm"], "sha256");
            raw.extend(hex::decode(resource["digest"].as_str().unwrap()).unwrap());
        }
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw))
        );
    }
}

/// The signature inside the folder and git files are left out and recorded as ignored; a
/// later `.git` change does not invalidate, a change to a signed file does.
#[test]
fn signature_inside_folder_and_git_paths_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    write(&model, "w.bin", b"weights");
    write(&model, ".git/HEAD", b"ref: main");
    write(&model, ".gitignore", b"*.tmp");
    write(&model, "sub/.gitignore", b"not at the top: signed");
    let sig = model.join("model.sig");
    let private = key("p256.key.pem");
    let signed = sign_folder(&model, &private, &sig, &SignOptions::default()).unwrap();
    assert_eq!(signed.file_count, 2, "w.bin and sub/.gitignore");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    use base64::Engine as _;
    let statement: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        statement["predicate"]["serialization"]["ignore_paths"],
        serde_json::json!([
            ".git",
            ".gitattributes",
            ".github",
            ".gitignore",
            "model.sig"
        ])
    );

    write(&model, ".git/HEAD", b"ref: other");
    let public = key("p256.pub.pem");
    assert!(verify_folder(&model, &sig, &public).unwrap().valid);
    write(&model, "sub/.gitignore", b"changed");
    let verdict = verify_folder(&model, &sig, &public).unwrap();
    assert!(matches!(
        only_problem(&verdict),
        SignatureProblem::ModifiedFile { path, .. } if path == "sub/.gitignore"
    ));

    // Extra verify-time ignores hide an added file.
    write(&model, "sub/.gitignore", b"not at the top: signed");
    write(&model, "notes/scratch.txt", b"x");
    assert!(!verify_folder(&model, &sig, &public).unwrap().valid);
    let options = VerifyOptions {
        ignore_paths: vec!["notes".into()],
        ..VerifyOptions::default()
    };
    assert!(
        verify_folder_with(&model, &sig, &public, &options)
            .unwrap()
            .valid
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused_when_signing_and_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    write(&model, "w.bin", b"weights");
    let sig = dir.path().join("m.sig");
    let private = key("p256.key.pem");
    sign_folder(&model, &private, &sig, &SignOptions::default()).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", model.join("link")).unwrap();
    let verdict = verify_folder(&model, &sig, &key("p256.pub.pem")).unwrap();
    assert!(matches!(
        only_problem(&verdict),
        SignatureProblem::NotRegularFile { path, .. } if path == "link"
    ));
    assert!(matches!(
        sign_folder(&model, &private, &sig, &SignOptions::default()),
        Err(SigningError::NotRegularFile { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as a signature file: a verdict (never valid), never a panic.
    #[test]
    fn arbitrary_signature_file_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m/w.bin", b"w");
        let sig = dir.path().join("fuzz.sig");
        std::fs::write(&sig, &bytes).unwrap();
        let verdict = verify_folder(&dir.path().join("m"), &sig, &key("p256.pub.pem")).unwrap();
        proptest::prop_assert!(!verdict.valid);
    }

    /// One corrupted byte anywhere in a real bundle: never a panic, and never valid unless
    /// the byte sits somewhere the format does not cover (an unknown field name, the key id).
    #[test]
    fn corrupted_real_bundle_never_panics(position in 0_usize..4000, byte in proptest::num::u8::ANY) {
        let s = scratch();
        let mut bytes = std::fs::read(&s.p256_sig).unwrap();
        let index = position % bytes.len();
        bytes[index] = byte;
        std::fs::write(&s.p256_sig, &bytes).unwrap();
        let _ = verify_folder(&s.model, &s.p256_sig, &key("p256.pub.pem")).unwrap();
    }
}
