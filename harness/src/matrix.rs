//! Suites over several models and datasets: `[[model]]`, `[[dataset]]` and `[[matrix]]`.
//!
//! A matrix suite names each model and each dataset, and optionally lists which model meets
//! which data (`[[matrix]] model = "…" dataset = "…"`; without it, every model meets every
//! dataset). Each pair is a *cell*, and a cell is exactly the single-model suite one would get
//! by writing that model and that dataset into `[model]` and `[dataset]`: the same attacks,
//! sanity checks and sections, the suite's `[gate]` with the model's own `[model.gate]` keys on
//! top. So a cell runs through the same plan, work units, journal, shards and merge as any
//! run, and its numbers equal those of the single-model run (tested in
//! `harness/tests/it/matrix.rs`).
//!
//! The expansion works on the TOML table before any typed parsing, so every key a cell's
//! suite does not know is refused by the same `deny_unknown_fields` types as ever, with the
//! cell named in the error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::suite::{Overrides, Suite};

/// A name of a model or dataset in a matrix suite: also part of a folder name under `cells/`,
/// so restricted to what is safe there ([`gauntlet_reports::matrix::name_problem`]).
fn check_name(kind: &str, index: usize, name: &str) -> Result<()> {
    if let Some(problem) = gauntlet_reports::matrix::name_problem(name) {
        bail!("`{kind}` #{index}: name `{name}` {problem} (it names the cell's folder)");
    }
    Ok(())
}

/// The most cells one matrix suite may have: each is a whole run (its own model and data
/// loaded, its own folder), so a suite past this is a typo or an attack on the parser, not a
/// nightly job.
pub const MAX_CELLS: usize = 10_000;

/// The most suite text a matrix may expand to (cells × the suite's length).
const MAX_EXPANDED_BYTES: usize = 64 << 20;

/// One model × dataset pair of a matrix suite, as a validated single-model suite.
pub struct Cell {
    /// `MODEL--DATASET`: the cell's folder under `cells/` and its key in the results.
    pub id: String,
    pub model: String,
    pub dataset: String,
    pub suite: Suite,
}

/// A validated matrix suite: its cells in order (models in suite order, then datasets).
pub struct MatrixSuite {
    pub name: String,
    pub path: Option<PathBuf>,
    pub seed: u64,
    pub cells: Vec<Cell>,
}

impl MatrixSuite {
    /// The output folder (the suite's `report.out`, or `--out`); every cell shares it.
    pub fn out(&self) -> PathBuf {
        PathBuf::from(&self.cells[0].suite.report.out)
    }

    /// The formats of the matrix's own outputs (the suite's `report.formats`).
    pub fn formats(&self) -> &[gauntlet_reports::OutputFormat] {
        &self.cells[0].suite.report.formats
    }
}

/// What a suite file holds: one model and one dataset, or a matrix.
pub enum SuiteFile {
    Single(Box<Suite>),
    Matrix(MatrixSuite),
}

impl SuiteFile {
    /// Read, parse and validate a suite file of either kind.
    pub fn read(path: &Path, overrides: &Overrides) -> Result<SuiteFile> {
        let text = gauntlet_files::read_to_string_bounded(path, gauntlet_files::limits::SUITE)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("invalid suite file `{}`", path.display()))?;
        if is_matrix(&table) {
            MatrixSuite::from_table(table, text.len(), Some(path), base, overrides)
                .with_context(|| format!("invalid suite file `{}`", path.display()))
                .map(SuiteFile::Matrix)
        } else {
            // The text already read: the file is read and parsed once.
            Suite::from_toml(&text, Some(path), base, overrides)
                .with_context(|| format!("invalid suite file `{}`", path.display()))
                .map(|suite| SuiteFile::Single(Box::new(suite)))
        }
    }
}

/// Whether a suite's table lists several models or datasets (`[[model]]`, `[[dataset]]`) or
/// pairs them (`[[matrix]]`).
pub fn is_matrix(table: &toml::Table) -> bool {
    table.get("model").is_some_and(toml::Value::is_array)
        || table.get("dataset").is_some_and(toml::Value::is_array)
        || table.contains_key("matrix")
}

/// Named entries of `[[kind]]` (or one `[kind]` table, named by its optional `name`, default
/// `kind`), in suite order.
fn named_entries(table: &mut toml::Table, kind: &str) -> Result<Vec<(String, toml::Table)>> {
    let raw = table
        .remove(kind)
        .with_context(|| format!("a matrix suite needs `[[{kind}]]` entries"))?;
    let entries = match raw {
        toml::Value::Array(items) => items,
        single @ toml::Value::Table(_) => vec![single],
        other => bail!(
            "`{kind}` must be a table or an array of tables, got a {}",
            other.type_str()
        ),
    };
    if entries.is_empty() {
        bail!("`{kind}` lists no entries");
    }
    let several = entries.len() > 1;
    let mut seen = BTreeSet::new();
    let mut named = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let toml::Value::Table(mut entry) = entry else {
            bail!("`{kind}` #{index} must be a table");
        };
        let name = match entry.remove("name") {
            Some(toml::Value::String(name)) => name,
            Some(other) => bail!(
                "`{kind}` #{index}: `name` must be a string, got a {}",
                other.type_str()
            ),
            None if several => {
                bail!("`{kind}` #{index} has no `name`: every entry of a list of {kind}s is named")
            }
            None => kind.to_string(),
        };
        check_name(kind, index, &name)?;
        // Names differing only in case would share a folder on macOS and Windows.
        if !seen.insert(name.to_ascii_lowercase()) {
            bail!("`{kind}` #{index}: the name `{name}` is used twice (names ignore case)");
        }
        named.push((name, entry));
    }
    Ok(named)
}

/// `[[matrix]]`: the (model, dataset) pairs, checked against the names; every pair when absent.
fn pairs(
    table: &mut toml::Table,
    models: &[(String, toml::Table)],
    datasets: &[(String, toml::Table)],
) -> Result<Vec<(usize, usize)>> {
    let Some(raw) = table.remove("matrix") else {
        // Checked before the list is built: a few thousand names of each would otherwise ask
        // for millions of cells.
        let count = models.len().saturating_mul(datasets.len());
        if count > MAX_CELLS {
            bail!(
                "{} models × {} datasets make {count} cells, more than {MAX_CELLS}; pair them \
                 with `[[matrix]]` or split the suite",
                models.len(),
                datasets.len()
            );
        }
        return Ok((0..models.len())
            .flat_map(|m| (0..datasets.len()).map(move |d| (m, d)))
            .collect());
    };
    let toml::Value::Array(entries) = raw else {
        bail!("`matrix` must be an array of tables (`[[matrix]]`)");
    };
    if entries.is_empty() {
        bail!("`matrix` lists no pairs");
    }
    if entries.len() > MAX_CELLS {
        bail!(
            "`matrix` lists {} pairs, more than {MAX_CELLS}; split the suite",
            entries.len()
        );
    }
    let find = |list: &[(String, toml::Table)], kind: &str, index: usize, name: &str| {
        list.iter().position(|(n, _)| n == name).with_context(|| {
            format!(
                "`matrix` #{index}: no {kind} is named `{name}`; the suite's {kind}s: {}",
                list.iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let toml::Value::Table(entry) = entry else {
            bail!("`matrix` #{index} must be a table");
        };
        let mut model = None;
        let mut dataset = None;
        for (key, value) in entry {
            let slot = match key.as_str() {
                "model" => &mut model,
                "dataset" => &mut dataset,
                other => {
                    bail!("`matrix` #{index}: unknown key `{other}` (expected `model`, `dataset`)")
                }
            };
            let toml::Value::String(name) = value else {
                bail!("`matrix` #{index}: `{key}` must be a name (a string)");
            };
            *slot = Some(name);
        }
        let model = model.with_context(|| format!("`matrix` #{index} has no `model`"))?;
        let dataset = dataset.with_context(|| format!("`matrix` #{index} has no `dataset`"))?;
        let pair = (
            find(models, "model", index, &model)?,
            find(datasets, "dataset", index, &dataset)?,
        );
        if !seen.insert(pair) {
            bail!("`matrix` #{index}: model `{model}` meets dataset `{dataset}` twice");
        }
        out.push(pair);
    }
    Ok(out)
}

/// `"label@ε"` as `(label, ε)`, so that `pgd@0.1` and `pgd@0.10` are one key; a key that does
/// not parse stays itself (the suite's own check names it later).
fn gate_key(key: &str) -> (String, Option<f32>) {
    match key.rsplit_once('@') {
        Some((label, epsilon)) => match epsilon.parse::<f32>() {
            Ok(epsilon) => (label.to_string(), Some(epsilon)),
            Err(_) => (key.to_string(), None),
        },
        None => (key.to_string(), None),
    }
}

/// The suite's `[gate]` with a model's `[model.gate]` on top: a key the model sets replaces the
/// suite's, and in the `"label@ε"` tables the model's entries replace the suite's one by one
/// (`pgd@0.1` and `pgd@0.10` are the same entry). A number and a table for the same key (one
/// limit for every attack against per-attack ones) do not merge: that is an error, rather than
/// a silent loss of the suite's limits for the other attacks.
fn merged_gate(
    suite: Option<&toml::Value>,
    model: Option<toml::Value>,
) -> Result<Option<toml::Value>> {
    let mut gate = match suite {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table.clone(),
        Some(other) => bail!("`gate` must be a table, got a {}", other.type_str()),
    };
    match model {
        None => {}
        Some(toml::Value::Table(own)) => {
            for (key, value) in own {
                match (gate.get_mut(&key), value) {
                    (Some(toml::Value::Table(base)), toml::Value::Table(over)) => {
                        for (entry, limit) in over {
                            let wanted = gate_key(&entry);
                            base.retain(|existing, _| gate_key(existing) != wanted);
                            base.insert(entry, limit);
                        }
                    }
                    (Some(base), value) if base.is_table() != value.is_table() => bail!(
                        "`gate.{key}`: the model gives a {} where the suite gives a {}; give \
                         the same form (a table of `\"label@ε\"` limits, or one number)",
                        value.type_str(),
                        base.type_str()
                    ),
                    (_, value) => {
                        gate.insert(key, value);
                    }
                }
            }
        }
        Some(other) => bail!("`gate` must be a table, got a {}", other.type_str()),
    }
    Ok((!gate.is_empty()).then_some(toml::Value::Table(gate)))
}

impl MatrixSuite {
    /// `source_len`: the suite text's length, which bounds what each cell's copy of the shared
    /// sections costs.
    fn from_table(
        mut table: toml::Table,
        source_len: usize,
        path: Option<&Path>,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self> {
        let models = named_entries(&mut table, "model")?;
        let datasets = named_entries(&mut table, "dataset")?;
        let pairs = pairs(&mut table, &models, &datasets)?;
        // Every cell copies and plans the shared sections: a long suite with many cells would
        // plan the same attacks tens of thousands of times.
        if pairs.len().saturating_mul(source_len) > MAX_EXPANDED_BYTES {
            bail!(
                "{} cells of a {source_len}-byte suite expand to more than {} MiB of suite text; \
                 split the suite",
                pairs.len(),
                MAX_EXPANDED_BYTES >> 20
            );
        }
        // An entry no pair names would never be validated: its typos would pass unseen.
        for (kind, names, position) in [("model", &models, 0), ("dataset", &datasets, 1)] {
            for (index, (name, _)) in names.iter().enumerate() {
                if !pairs.iter().any(|pair| [pair.0, pair.1][position] == index) {
                    bail!(
                        "{kind} `{name}` meets no {} in `[[matrix]]`; pair it or remove it",
                        if position == 0 { "dataset" } else { "model" }
                    );
                }
            }
        }
        let suite_gate = table.remove("gate");
        let mut cells = Vec::with_capacity(pairs.len());
        for (m, d) in pairs {
            let (model_name, model) = &models[m];
            let (dataset_name, dataset) = &datasets[d];
            let id = gauntlet_reports::matrix::cell_id(model_name, dataset_name);
            let mut model = model.clone();
            let gate = merged_gate(suite_gate.as_ref(), model.remove("gate"))
                .with_context(|| format!("model `{model_name}`"))?;
            let mut cell = table.clone();
            cell.insert("model".into(), toml::Value::Table(model));
            cell.insert("dataset".into(), toml::Value::Table(dataset.clone()));
            if let Some(gate) = gate {
                cell.insert("gate".into(), gate);
            }
            let suite = Suite::from_table(cell, path, base, overrides).with_context(|| {
                format!("model `{model_name}` with dataset `{dataset_name}` (cell `{id}`)")
            })?;
            cells.push(Cell {
                id,
                model: model_name.clone(),
                dataset: dataset_name.clone(),
                suite,
            });
        }
        let first = &cells[0].suite;
        Ok(MatrixSuite {
            name: first.name.clone(),
            path: first.path.clone(),
            seed: first.seed,
            cells,
        })
    }

    /// Parse a matrix suite from text (tests; files go through [`SuiteFile::read`]).
    pub fn from_toml(text: &str, base: &Path, overrides: &Overrides) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        if !is_matrix(&table) {
            bail!("not a matrix suite: it has no `[[model]]`, `[[dataset]]` or `[[matrix]]`");
        }
        Self::from_table(table, text.len(), None, base, overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = r#"
version = 1
name = "matrix"
[[model]]
name = "a"
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"
[model.gate]
min_clean_accuracy = 0.5
min_robust_accuracy = { "fgsm@0.1" = 0.2 }
[[model]]
name = "b"
spec = "embedded:fashion-mnist-small-cnn"
weights = "embedded:fashion-mnist-small-cnn"
[[dataset]]
name = "x"
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 10
[[dataset]]
name = "y"
format = "idx"
path = "embedded:fashion-mnist-test-1k"
limit = 20
[[attack]]
name = "fgsm"
epsilons = [0.1]
[gate]
min_clean_accuracy = 0.9
min_robust_accuracy = { "fgsm@0.1" = 0.1 }
"#;

    fn parse(text: &str) -> Result<MatrixSuite> {
        MatrixSuite::from_toml(text, Path::new("."), &Overrides::default())
    }

    fn gate_threshold(suite: &Suite, name: &str) -> Option<f64> {
        suite
            .gates
            .iter()
            .find(|g| g.name() == name)
            .map(|g| g.threshold())
    }

    #[test]
    fn every_model_meets_every_dataset_without_a_matrix() {
        let matrix = parse(MATRIX).unwrap();
        let ids: Vec<_> = matrix.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a--x", "a--y", "b--x", "b--y"]);
        assert_eq!(matrix.cells[1].suite.dataset.limit, Some(20));
    }

    #[test]
    fn a_models_gate_keys_replace_the_suites() {
        let matrix = parse(MATRIX).unwrap();
        let a = &matrix.cells[0].suite;
        let b = &matrix.cells[2].suite;
        assert_eq!(gate_threshold(a, "min_clean_accuracy"), Some(0.5));
        assert_eq!(gate_threshold(b, "min_clean_accuracy"), Some(0.9));
        let robust = "min_robust_accuracy[fgsm@0.1]";
        assert_eq!(gate_threshold(a, robust).map(|t| t as f32), Some(0.2));
        assert_eq!(gate_threshold(b, robust).map(|t| t as f32), Some(0.1));
    }

    #[test]
    fn the_matrix_picks_pairs_and_names_what_it_lacks() {
        let text = format!(
            "{MATRIX}\n[[matrix]]\nmodel = \"b\"\ndataset = \"x\"\n\
             [[matrix]]\nmodel = \"a\"\ndataset = \"y\"\n"
        );
        let matrix = parse(&text).unwrap();
        let ids: Vec<_> = matrix.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b--x", "a--y"]);
        let text = format!("{MATRIX}\n[[matrix]]\nmodel = \"c\"\ndataset = \"x\"\n");
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(
            message.contains("no model is named `c`") && message.contains("`a`, `b`"),
            "{message}"
        );
        let text = format!("{MATRIX}\n[[matrix]]\nmodel = \"a\"\ndataset = \"x\"\nweight = 1\n");
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(message.contains("unknown key `weight`"), "{message}");
    }

    #[test]
    fn names_are_required_unique_and_folder_safe() {
        let message = format!(
            "{:#}",
            parse(&MATRIX.replacen("name = \"b\"\n", "", 1))
                .err()
                .unwrap()
        );
        assert!(message.contains("`model` #1 has no `name`"), "{message}");
        let message = format!(
            "{:#}",
            parse(&MATRIX.replacen("name = \"b\"", "name = \"a\"", 1))
                .err()
                .unwrap()
        );
        assert!(message.contains("used twice"), "{message}");
        for bad in ["../up", "a/b", "", ".hidden", "a--b", "trailing.", "A"] {
            let text = MATRIX.replacen("name = \"b\"", &format!("name = \"{bad}\""), 1);
            let message = format!("{:#}", parse(&text).err().unwrap());
            assert!(
                message.contains(&format!("name `{bad}`")),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn gate_entries_merge_by_attack_and_epsilon_and_forms_must_agree() {
        // The model's `fgsm@0.10` replaces the suite's `fgsm@0.1`, not beside it.
        let text = MATRIX.replacen(
            "min_robust_accuracy = { \"fgsm@0.1\" = 0.2 }",
            "min_robust_accuracy = { \"fgsm@0.10\" = 0.2 }",
            1,
        );
        let matrix = parse(&text).unwrap();
        let robust: Vec<_> = matrix.cells[0]
            .suite
            .gates
            .iter()
            .filter(|g| g.name().starts_with("min_robust_accuracy"))
            .map(|g| g.threshold() as f32)
            .collect();
        assert_eq!(robust, [0.2]);
        // One drop limit for every attack in the suite, a table for one model: refused.
        let text = MATRIX
            .replacen(
                "min_clean_accuracy = 0.9\n",
                "min_clean_accuracy = 0.9\nmax_robust_accuracy_drop = 0.05\n",
                1,
            )
            .replacen(
                "min_clean_accuracy = 0.5\n",
                "min_clean_accuracy = 0.5\nmax_robust_accuracy_drop = { \"fgsm@0.1\" = 0.01 }\n",
                1,
            );
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(
            message.contains("gate.max_robust_accuracy_drop"),
            "{message}"
        );
    }

    #[test]
    fn a_cross_product_past_the_cell_cap_is_refused_before_it_is_built() {
        let mut text = String::from("version = 1\nname = \"big\"\n");
        for kind in ["model", "dataset"] {
            for i in 0..101 {
                text.push_str(&format!("[[{kind}]]\nname = \"{kind}{i}\"\n"));
            }
        }
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(
            message.contains("make 10201 cells, more than 10000"),
            "{message}"
        );
    }

    #[test]
    fn a_long_suite_with_many_cells_is_refused() {
        // 2 × 2 cells of a suite padded to 20 MiB of comments: 80 MiB once expanded.
        let text = format!("{MATRIX}\n# {}\n", "x".repeat(20 << 20));
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(message.contains("split the suite"), "{message}");
    }

    #[test]
    fn an_entry_no_pair_names_is_refused() {
        let text = format!("{MATRIX}\n[[matrix]]\nmodel = \"a\"\ndataset = \"x\"\n");
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(message.contains("model `b` meets no dataset"), "{message}");
    }

    #[test]
    fn an_unknown_key_names_the_cell_and_the_key() {
        let text = MATRIX.replacen("limit = 20", "limit = 20\nlimt = 3", 1);
        let message = format!("{:#}", parse(&text).err().unwrap());
        assert!(
            message.contains("limt") && message.contains("a--y"),
            "{message}"
        );
    }
}
