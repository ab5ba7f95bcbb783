//! The CI examples (examples/ci/) against their published schemas: SchemaStore's
//! github-workflow schema (vendored by check-jsonschema) and the Kubernetes API schemas
//! (kubernetes-validate), both from PyPI. `.ci/run` installs them (examples/ci/validate.sh);
//! where they are not installed (GAUNTLET_SCHEMA_VENV, default $TMPDIR/gauntlet-ci-schemas)
//! this test says so and checks nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci")
}

fn venv() -> PathBuf {
    std::env::var_os("GAUNTLET_SCHEMA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("gauntlet-ci-schemas"))
}

/// Whether `tool` accepts `file` (its exit status).
fn accepts(tool: &Path, args: &[&str], file: &Path) -> bool {
    Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .expect("the validator runs")
        .status
        .success()
}

#[test]
fn the_ci_examples_match_their_published_schemas() {
    let bin = venv().join("bin");
    let (workflows, kubernetes) = (
        bin.join("check-jsonschema"),
        bin.join("kubernetes-validate"),
    );
    if !workflows.is_file() || !kubernetes.is_file() {
        eprintln!(
            "skipped: check-jsonschema and kubernetes-validate are not installed in `{}` \
             (examples/ci/validate.sh installs them from PyPI)",
            venv().display()
        );
        return;
    }
    let workflow_args = ["--builtin-schema", "vendor.github-workflows"];
    let kubernetes_args = ["--strict", "--kubernetes-version", "1.33.0"];
    let workflow = examples().join("github-actions.yml");
    let manifest = examples().join("kubernetes-indexed-job.yaml");
    assert!(accepts(&workflows, &workflow_args, &workflow));
    assert!(accepts(&kubernetes, &kubernetes_args, &manifest));
    // The validators do reject: one misspelt key in each is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = |source: &Path, from: &str, to: &str, name: &str| {
        let text = std::fs::read_to_string(source).unwrap();
        assert!(text.contains(from), "{from}");
        let path = dir.path().join(name);
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        path
    };
    let bad_workflow = broken(&workflow, "runs-on:", "runs_on:", "workflow.yml");
    assert!(!accepts(&workflows, &workflow_args, &bad_workflow));
    let bad_manifest = broken(&manifest, "parallelism:", "paralelism:", "job.yaml");
    assert!(!accepts(&kubernetes, &kubernetes_args, &bad_manifest));
}

#[test]
fn the_examples_agree_on_the_shard_count() {
    // The workflow's matrix and SHARDS, and the Job's completions and auto/N, must agree, or a
    // merge would report missing shards.
    let workflow = std::fs::read_to_string(examples().join("github-actions.yml")).unwrap();
    assert!(workflow.contains("SHARDS: 4"));
    assert!(workflow.contains("index: [0, 1, 2, 3]"));
    let manifest = std::fs::read_to_string(examples().join("kubernetes-indexed-job.yaml")).unwrap();
    assert!(manifest.contains("completions: 8"));
    assert!(manifest.contains("--shard auto/8"));
    assert!(manifest.contains("-eq 8"));
}
