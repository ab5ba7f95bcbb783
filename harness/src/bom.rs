//! `gauntlet bom SUITE`: a CycloneDX 1.6 bill of materials of a suite's models and datasets.
//!
//! Most teams have never inventoried which model files and data sets their evaluation depends
//! on. This lists each with its SHA-256, format and source path, in the JSON form of
//! CycloneDX 1.6 (`machine-learning-model` and `data` components), deterministic for the same
//! files so it can be diffed and committed.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::suite::{Source, Suite};

/// One file of the inventory.
struct Item {
    key: &'static str,
    source: Source,
    sha256: String,
    size: u64,
}

fn hash_source(key: &'static str, source: &Source) -> Result<Item> {
    let (sha256, size) = match source {
        Source::File(path) => {
            // Streamed through the reading layer: a device or FIFO is refused, not hashed
            // forever, and the size is the count of bytes hashed.
            let digest = gauntlet_artifact::hashing::sha256_file(path)
                .with_context(|| format!("cannot hash `{key}`"))?;
            (digest.sha256_hex(), digest.size)
        }
        Source::Embedded(name) => {
            let bytes = crate::load::embedded_bytes(key, name)?;
            (hex::encode(Sha256::digest(&bytes)), bytes.len() as u64)
        }
    };
    Ok(Item {
        key,
        source: source.clone(),
        sha256,
        size,
    })
}

fn component_hashes(item: &Item) -> Value {
    json!([{ "alg": "SHA-256", "content": item.sha256 }])
}

fn file_properties(item: &Item) -> Value {
    json!([
        { "name": "gauntlet:suite_key", "value": item.key },
        { "name": "gauntlet:source", "value": item.source.display() },
        { "name": "gauntlet:size_bytes", "value": item.size.to_string() },
    ])
}

/// A UUID (version 4 layout) derived from the inventory's hashes, so the same files give the
/// same serial number.
fn serial_number(items: &[Item]) -> String {
    let mut hasher = Sha256::new();
    for item in items {
        hasher.update(item.key.as_bytes());
        hasher.update(item.sha256.as_bytes());
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The bill of materials of `suite` as CycloneDX 1.6 JSON.
pub fn bill_of_materials(suite: &Suite) -> Result<Value> {
    inventory(&suite.name, &[Cell::single(suite)])
}

/// The bill of materials of a matrix suite: every model and every dataset once, each model's
/// model card naming the datasets it meets in the matrix.
pub fn matrix_bill_of_materials(matrix: &crate::matrix::MatrixSuite) -> Result<Value> {
    let cells: Vec<Cell> = matrix
        .cells
        .iter()
        .map(|cell| Cell {
            model: Some(&cell.model),
            dataset: Some(&cell.dataset),
            suite: &cell.suite,
        })
        .collect();
    inventory(&matrix.name, &cells)
}

/// One model × dataset pair to inventory; names are `None` for a single-model suite, whose
/// components keep the plain refs `model`, `model-spec`, `data-N`.
struct Cell<'a> {
    model: Option<&'a str>,
    dataset: Option<&'a str>,
    suite: &'a Suite,
}

impl<'a> Cell<'a> {
    fn single(suite: &'a Suite) -> Self {
        Cell {
            model: None,
            dataset: None,
            suite,
        }
    }
}

/// The files of a cell's dataset, hashed (a folder's files one by one).
fn data_items(suite: &Suite) -> Result<Vec<Item>> {
    let mut data_items = Vec::new();
    for (key, source) in [
        ("dataset.path", &suite.dataset_sources.path),
        ("dataset.images", &suite.dataset_sources.images),
        ("dataset.labels", &suite.dataset_sources.labels),
    ] {
        if let Some(source) = source {
            // A folder (image folder, CIFAR directory) has no single hash: list its files.
            if let Source::File(path) = source {
                if path.is_dir() {
                    let listing = gauntlet_artifact::manifest::list_folder(path, &[])?;
                    for file in listing.files {
                        data_items.push(hash_source(key, &Source::File(file.absolute))?);
                    }
                    continue;
                }
            }
            data_items.push(hash_source(key, source)?);
        }
    }
    Ok(data_items)
}

fn inventory(name: &str, cells: &[Cell]) -> Result<Value> {
    let model_ref = |model: Option<&str>| match model {
        None => "model".to_string(),
        // `:` cannot occur in a name, so no two refs collide (`a` + `-spec` vs `a-spec`).
        Some(model) => format!("model:{model}"),
    };
    let data_ref = |dataset: Option<&str>, i: usize| match dataset {
        None => format!("data-{i}"),
        Some(dataset) => format!("data:{dataset}:{i}"),
    };
    // Each dataset once, in first-met order, with its component refs.
    let mut datasets: Vec<(Option<&str>, &Suite, Vec<Item>)> = Vec::new();
    for cell in cells {
        if !datasets.iter().any(|(d, _, _)| *d == cell.dataset) {
            datasets.push((cell.dataset, cell.suite, data_items(cell.suite)?));
        }
    }
    let mut components = Vec::new();
    let mut all = Vec::new();
    let mut seen_models: Vec<Option<&str>> = Vec::new();
    for cell in cells {
        if seen_models.contains(&cell.model) {
            continue;
        }
        seen_models.push(cell.model);
        let suite = cell.suite;
        let model_weights = hash_source("model.weights", &suite.model_weights)?;
        let model_spec = hash_source("model.spec", &suite.model_spec)?;
        let met: Vec<Option<&str>> = cells
            .iter()
            .filter(|c| c.model == cell.model)
            .map(|c| c.dataset)
            .collect();
        let data_refs: Vec<Value> = datasets
            .iter()
            .filter(|(d, _, _)| met.contains(d))
            .flat_map(|(d, _, items)| {
                (0..items.len()).map(move |i| json!({ "ref": data_ref(*d, i) }))
            })
            .collect();
        let mut properties = file_properties(&model_weights);
        if let (Some(model), Some(list)) = (cell.model, properties.as_array_mut()) {
            list.push(json!({ "name": "gauntlet:model_name", "value": model }));
        }
        components.push(json!({
            "type": "machine-learning-model",
            "bom-ref": model_ref(cell.model),
            "name": model_weights.source.display(),
            "hashes": component_hashes(&model_weights),
            "properties": properties,
            "modelCard": {
                "modelParameters": {
                    "task": "classification",
                    "datasets": data_refs,
                }
            },
            "components": [{
                "type": "file",
                "bom-ref": match cell.model {
                    None => "model-spec".to_string(),
                    Some(model) => format!("model:{model}:spec"),
                },
                "name": model_spec.source.display(),
                "hashes": component_hashes(&model_spec),
                "properties": file_properties(&model_spec),
            }],
        }));
        all.push(model_weights);
        all.push(model_spec);
    }
    for (dataset, suite, items) in datasets {
        for (index, item) in items.iter().enumerate() {
            let mut properties = file_properties(item);
            if let (Some(dataset), Some(list)) = (dataset, properties.as_array_mut()) {
                list.push(json!({ "name": "gauntlet:dataset_name", "value": dataset }));
            }
            components.push(json!({
                "type": "data",
                "bom-ref": data_ref(dataset, index),
                "name": item.source.display(),
                "hashes": component_hashes(item),
                "properties": properties,
                "data": [{
                    "type": "dataset",
                    "name": item.source.display(),
                    "contents": { "properties": [
                        { "name": "gauntlet:format", "value": suite.dataset.format.to_string() }
                    ]},
                }],
            }));
        }
        all.extend(items);
    }
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(&all),
        "version": 1,
        "metadata": {
            "tools": { "components": [{
                "type": "application",
                "name": "gauntlet",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "application",
                "bom-ref": "suite",
                "name": name,
            },
        },
        "components": components,
    }))
}
