//! Matrix suites (`[[model]]` × `[[dataset]]`) through the real binary: each cell equals the
//! single-model run of the same model and data, gates are per model, the exit code is the
//! worst cell's, and the shards of a matrix run merge into the unsharded matrix.

use std::path::{Path, PathBuf};

use crate::common::{gauntlet, stderr, stdout};
use crate::shards::{assert_same_results, results_without_timings};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The PyTorch-trained small CNN (87.5 % on its 16 fixture images) and the repository's copy
/// of the bundled Fashion-MNIST test images.
fn pytorch_model() -> String {
    format!(
        "spec = \"{}\"\nweights = \"{}\"\n",
        repo("models/tests/fixtures/pytorch/small_cnn.toml").display(),
        repo("models/tests/fixtures/pytorch/small_cnn.safetensors").display()
    )
}

fn files_dataset() -> String {
    format!(
        "format = \"idx\"\nimages = \"{}\"\nlabels = \"{}\"\nlimit = 30\n",
        repo("datasets/data/fashion-mnist-test-1k/t10k-images-idx3-ubyte.gz").display(),
        repo("datasets/data/fashion-mnist-test-1k/t10k-labels-idx1-ubyte.gz").display()
    )
}

/// What every cell shares: attacks, sanity settings, the suite-wide gate.
const COMMON: &str = r#"
[[attack]]
name = "fgsm"
epsilons = [0.05, 0.1]

[[attack]]
name = "pgd"
epsilons = [0.05]
steps = 3

[sanity]
full_budget_samples = 16
full_budget_steps = 5

[gate]
min_clean_accuracy = 0.5
"#;

/// Two models × two datasets; the PyTorch model's own gate asks for 99 % clean accuracy, which
/// it does not reach, so its cells fail and the bundled model's pass.
fn matrix_suite() -> String {
    format!(
        r#"version = 1
name = "matrix"
seed = 3

[[model]]
name = "shipped"
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"

[[model]]
name = "pytorch"
{}
[model.gate]
min_clean_accuracy = 0.99

[[dataset]]
name = "head"
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 40

[[dataset]]
name = "files"
{}
{COMMON}"#,
        pytorch_model(),
        files_dataset()
    )
}

/// The single-model suite of the cell `pytorch--files`, gate included.
fn single_suite() -> String {
    format!(
        "version = 1\nname = \"matrix\"\nseed = 3\n\n[model]\n{}\n[dataset]\n{}\n{}",
        pytorch_model(),
        files_dataset(),
        COMMON.replace("min_clean_accuracy = 0.5", "min_clean_accuracy = 0.99")
    )
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The cell `cell` is the single-model run `single`: every field of `results.json` but the
/// timings and the suite file's path, the plan (but that path) and every per-sample record.
fn assert_cell_is_the_run(single: &Path, cell: &Path) {
    let mut want = results_without_timings(single);
    let mut got = results_without_timings(cell);
    assert_eq!(
        want.remove("suite").unwrap()["name"],
        got.remove("suite").unwrap()["name"]
    );
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (key, value) in &want {
        assert_eq!(&got[key], value, "results.json field `{key}` differs");
    }
    let (mut plan_a, _, records_a) =
        gauntlet_results::samples_file::read(&single.join("samples.parquet")).unwrap();
    let (plan_b, _, records_b) =
        gauntlet_results::samples_file::read(&cell.join("samples.parquet")).unwrap();
    plan_a.suite.path.clone_from(&plan_b.suite.path);
    assert_eq!(plan_a, plan_b);
    assert!(records_a == records_b, "the per-sample records differ");
}

#[test]
fn each_cell_is_the_single_model_run_and_gates_are_per_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), matrix_suite()).unwrap();
    std::fs::write(dir.path().join("single.toml"), single_suite()).unwrap();

    let matrix = gauntlet(dir.path(), &["run", "-q", "matrix.toml", "--out", "m"]);
    assert_eq!(matrix.status.code(), Some(1), "{}", stderr(&matrix));
    let single = gauntlet(dir.path(), &["run", "-q", "single.toml", "--out", "s"]);
    assert_eq!(single.status.code(), Some(1), "{}", stderr(&single));

    let out = dir.path().join("m");
    let top = json(&out.join("results.json"));
    let cells = top["cells"].as_array().unwrap();
    let ids: Vec<&str> = cells.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "shipped--head",
            "shipped--files",
            "pytorch--head",
            "pytorch--files"
        ]
    );
    for cell in cells {
        let id = cell["id"].as_str().unwrap();
        let own = json(&out.join("cells").join(id).join("results.json"));
        assert_eq!(
            cell["report"], own,
            "the matrix holds cell `{id}`'s report whole"
        );
        let clean = own["clean"]["accuracy"]["value"].as_f64().unwrap();
        let gate = &own["gates"][0];
        assert_eq!(gate["gate"], "min_clean_accuracy");
        let threshold = if id.starts_with("pytorch") { 0.99 } else { 0.5 };
        assert_eq!(gate["threshold"].as_f64().unwrap(), threshold, "{id}");
        assert_eq!(
            cell["passed"].as_bool().unwrap(),
            clean >= threshold
                && own["gates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|g| g["passed"] == true),
            "{id}: clean {clean}"
        );
    }
    assert_eq!(cells[0]["report"]["dataset"]["samples"], 40);
    assert_eq!(cells[1]["report"]["dataset"]["samples"], 30);
    assert_eq!(
        cells[0]["passed"], true,
        "the bundled model passes its gate"
    );
    assert_eq!(
        cells[3]["passed"], false,
        "the PyTorch model fails its own gate"
    );
    assert_eq!(top["passed"], false);
    assert!(
        stderr(&matrix).contains("cell `pytorch--files`: ")
            && stderr(&matrix).contains("min_clean_accuracy"),
        "{}",
        stderr(&matrix)
    );

    // The cell equals the single-model run of the same model, data and gates.
    assert_cell_is_the_run(&dir.path().join("s"), &out.join("cells/pytorch--files"));

    // The top-level renderings cover every cell.
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    for id in ids {
        assert!(junit.contains(&format!("matrix.{id}.gates")), "{junit}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("cells/pytorch--files/report.html") && html.contains("FAILED"));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.starts_with("cell_model,cell_dataset,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("pytorch,head,")), "{csv}");
    assert!(
        stdout(&matrix).contains("pytorch--files"),
        "{}",
        stdout(&matrix)
    );

    // `gauntlet report` re-renders a matrix's results.json as a matrix.
    let again = gauntlet(dir.path(), &["report", "m/results.json", "--out", "again"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("again/report.html")).unwrap(),
        html,
        "the same page from the same results"
    );
    // Running into the same folder again is refused, as for any run.
    let twice = gauntlet(dir.path(), &["run", "-q", "matrix.toml", "--out", "m"]);
    assert_eq!(twice.status.code(), Some(2), "{}", stderr(&twice));
    assert!(stderr(&twice).contains("--overwrite"), "{}", stderr(&twice));
}

#[test]
fn a_matrix_run_sharded_and_merged_equals_it_unsharded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), matrix_suite()).unwrap();
    let whole = gauntlet(
        dir.path(),
        &[
            "run",
            "-q",
            "matrix.toml",
            "--out",
            "whole",
            "--unit-samples",
            "16",
        ],
    );
    assert_eq!(whole.status.code(), Some(1), "{}", stderr(&whole));
    for index in 0..2 {
        let shard = format!("{index}/2");
        let out = format!("shard-{index}");
        let run = gauntlet(
            dir.path(),
            &[
                "run",
                "-q",
                "matrix.toml",
                "--out",
                &out,
                "--unit-samples",
                "16",
                "--shard",
                &shard,
            ],
        );
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        assert!(dir.path().join(&out).join("matrix.json").is_file());
    }
    // A shard killed before it listed its cells resumes from its journals: remove what a
    // finished shard writes last, run the same command again, and nothing runs twice.
    std::fs::remove_file(dir.path().join("shard-1/matrix.json")).unwrap();
    std::fs::remove_file(dir.path().join("shard-1/cells/pytorch--files/shard.json")).unwrap();
    let again = gauntlet(
        dir.path(),
        &[
            "run",
            "matrix.toml",
            "--out",
            "shard-1",
            "--unit-samples",
            "16",
            "--shard",
            "1/2",
        ],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("resuming from the journal"),
        "{}",
        stderr(&again)
    );
    // A shard missing from the merge is named.
    let partial = gauntlet(dir.path(), &["merge", "shard-0", "--out", "partial"]);
    assert_eq!(partial.status.code(), Some(2), "{}", stderr(&partial));
    let merged = gauntlet(
        dir.path(),
        &["merge", "shard-0", "shard-1", "--out", "merged"],
    );
    assert_eq!(merged.status.code(), Some(1), "{}", stderr(&merged));
    let top = json(&dir.path().join("whole/results.json"));
    let merged_top = json(&dir.path().join("merged/results.json"));
    assert_eq!(top["passed"], merged_top["passed"]);
    for cell in top["cells"].as_array().unwrap() {
        let id = cell["id"].as_str().unwrap();
        assert_same_results(
            &dir.path().join("whole/cells").join(id),
            &dir.path().join("merged/cells").join(id),
        );
    }
}

#[test]
fn a_bad_matrix_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!(
                "{}\n[[matrix]]\nmodel = \"onnx\"\ndataset = \"head\"\n",
                matrix_suite()
            ),
            "no model is named `onnx`",
        ),
        (
            matrix_suite().replacen("name = \"pytorch\"", "name = \"../pytorch\"", 1),
            "../pytorch",
        ),
        (
            matrix_suite().replacen("limit = 40", "limit = 40\nlimt = 4", 1),
            "limt",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(dir.path().join("bad.toml"), &text).unwrap();
        for command in ["check", "run"] {
            let output = gauntlet(dir.path(), &[command, "bad.toml"]);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command}: {}",
                stderr(&output)
            );
            assert!(
                stderr(&output).contains(expected),
                "{command}: {}",
                stderr(&output)
            );
        }
    }
    // The bill of materials lists each model and each dataset once, each model's card naming
    // the datasets it meets.
    std::fs::write(dir.path().join("m.toml"), matrix_suite()).unwrap();
    let bom = gauntlet(dir.path(), &["bom", "m.toml"]);
    assert_eq!(bom.status.code(), Some(0), "{}", stderr(&bom));
    let bom: serde_json::Value = serde_json::from_str(&stdout(&bom)).unwrap();
    let components = bom["components"].as_array().unwrap();
    let refs: Vec<&str> = components
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "model:shipped",
            "model:pytorch",
            "data:head:0",
            "data:files:0",
            "data:files:1"
        ]
    );
    let datasets = &components[1]["modelCard"]["modelParameters"]["datasets"];
    assert_eq!(datasets.as_array().unwrap().len(), 3, "{datasets}");
    let check = gauntlet(dir.path(), &["check", "m.toml"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("cell `pytorch--files`"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn a_baseline_compares_each_cell_with_its_own_and_fails_closed_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let suite = matrix_suite().replace(
        "min_clean_accuracy = 0.5\n",
        "min_clean_accuracy = 0.5\nmax_clean_accuracy_drop = 0.02\n",
    );
    std::fs::write(dir.path().join("matrix.toml"), suite).unwrap();
    let refused = gauntlet(dir.path(), &["run", "-q", "matrix.toml", "--out", "n0"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "relative gates need a baseline"
    );
    let first = gauntlet(
        dir.path(),
        &["run", "-q", "matrix.toml", "--out", "n1", "--no-baseline"],
    );
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    // The baseline lacks one cell.
    let mut baseline = json(&dir.path().join("n1/results.json"));
    baseline["cells"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "shipped--files");
    std::fs::write(
        dir.path().join("partial.json"),
        serde_json::to_string(&baseline).unwrap(),
    )
    .unwrap();
    let second = gauntlet(
        dir.path(),
        &[
            "run",
            "-q",
            "matrix.toml",
            "--out",
            "n2",
            "--baseline",
            "partial.json",
        ],
    );
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let top = json(&dir.path().join("n2/results.json"));
    let gate = |id: &str| {
        let cell = top["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone();
        let gates = cell["report"]["gates"].as_array().unwrap().clone();
        (
            cell,
            gates
                .into_iter()
                .find(|g| g["gate"] == "max_clean_accuracy_drop")
                .unwrap(),
        )
    };
    // Same seed, same numbers: no drop, and the comparison is in the cell's results.
    let (cell, same) = gate("shipped--head");
    assert_eq!(same["passed"], true, "{same}");
    assert_eq!(same["actual"].as_f64().unwrap(), 0.0);
    assert!(cell["report"]["baseline"].is_object());
    assert_eq!(cell["passed"], true);
    // No baseline cell: the relative gate fails, saying why.
    let (cell, missing) = gate("shipped--files");
    assert_eq!(missing["passed"], false, "{missing}");
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("no cell `shipped--files`"),
        "{missing}"
    );
    assert_eq!(cell["passed"], false);
    // One run's results are not a matrix's baseline.
    let single = gauntlet(dir.path(), &["run", "-q", "--limit", "8", "--out", "one"]);
    assert!(single.status.code().unwrap() <= 1, "{}", stderr(&single));
    let wrong = gauntlet(
        dir.path(),
        &[
            "run",
            "-q",
            "matrix.toml",
            "--out",
            "n3",
            "--baseline",
            "one/results.json",
        ],
    );
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("not a matrix's"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn a_matrix_never_removes_files_gauntlet_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), matrix_suite()).unwrap();
    let suite = ["--limit", "8", "-q"];
    let run = |args: &[&str]| {
        let mut all = vec!["run", "matrix.toml"];
        all.extend_from_slice(&suite);
        all.extend_from_slice(args);
        gauntlet(dir.path(), &all)
    };
    // A user's folder that happens to hold `cells/NAME/` with images in it.
    let user = dir.path().join("user/cells/hela");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("001.png"), b"not ours").unwrap();
    let refused = run(&["--out", "user", "--overwrite"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(user.join("001.png").is_file());
    // A user's own `matrix.json` (or `shard.json`) is not a journal to replace.
    for name in ["matrix.json", "shard.json"] {
        let folder = dir.path().join(format!("own-{name}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), "{}").unwrap();
        let out = format!("own-{name}");
        let refused = run(&["--out", &out]);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(folder.join(name).is_file(), "{name}");
    }
    // Re-rendering a matrix folder in place would lose its cells: refused.
    let whole = run(&["--out", "m"]);
    assert_eq!(whole.status.code(), Some(1), "{}", stderr(&whole));
    let rerender = gauntlet(
        dir.path(),
        &["report", "m/results.json", "--out", "m", "--overwrite"],
    );
    assert_eq!(rerender.status.code(), Some(2), "{}", stderr(&rerender));
    assert!(dir
        .path()
        .join("m/cells/pytorch--files/samples.parquet")
        .is_file());
    // A single suite's shard is not written into a matrix shard's folder, nor the reverse.
    let shard = run(&["--out", "s", "--shard", "0/2"]);
    assert_eq!(shard.status.code(), Some(0), "{}", stderr(&shard));
    let single = gauntlet(
        dir.path(),
        &["run", "-q", "--limit", "8", "--out", "s", "--shard", "0/2"],
    );
    assert_eq!(single.status.code(), Some(2), "{}", stderr(&single));
    assert!(
        stderr(&single).contains("matrix suite"),
        "{}",
        stderr(&single)
    );
}
