//! Loading the suite's model and dataset, checked against each other before any attack runs.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use gauntlet_datasets::{Dataset, DatasetFormat, InMemoryDataset, StreamedDataset};
use gauntlet_models::describe::StoredFormat;
use gauntlet_models::spec::ModelCost;
use gauntlet_models::{Model, ModelSpec, Network};
use gauntlet_reports::{DatasetInfo, ModelInfo, Provenance};
use sha2::{Digest, Sha256};

use crate::device::{device_name, open_device, parse_device};
use crate::suite::{DatasetSection, DatasetSources, Source, Suite};

/// The bundled demo model: a small CNN trained by `gauntlet train` on Fashion-MNIST
/// (see models/assets/TRAINING.md for the command that made it).
pub mod embedded {
    pub const MODEL_NAME: &str = "fashion-mnist-small-cnn";
    pub const SPEC: &str = include_str!("../../models/assets/fashion-mnist-small-cnn.toml");
    pub const WEIGHTS: &[u8] =
        include_bytes!("../../models/assets/fashion-mnist-small-cnn.safetensors");
}

/// Everything a run needs, loaded and cross-checked.
pub struct Loaded {
    pub device: Device,
    pub device_name: String,
    /// The model, behind the trait: the runner needs nothing of the concrete type.
    pub model: Box<dyn Model>,
    pub model_info: ModelInfo,
    pub dataset: Box<dyn Dataset>,
    pub dataset_info: DatasetInfo,
    /// Class names used in reports: the suite's, else the model spec's, else the dataset's
    /// (padded with class indices up to the model's outputs).
    pub class_names: Vec<String>,
    /// Classes present in the whole dataset, and in the evaluated (limited) part of it.
    pub classes_in_dataset: usize,
    /// What was verified about the model before loading.
    pub provenance: Option<gauntlet_reports::Provenance>,
    pub classes_evaluated: usize,
    pub load_seconds: f64,
    /// The run's peak-memory estimate (docs/limits.md), within the suite's `max_memory_mib`.
    pub memory: gauntlet_models::spec::MemoryEstimate,
    /// The clean data each `[[detector]]` is fitted on (`None` when the suite has none).
    pub fit_data: Option<crate::detector::FitData>,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The bytes of an asset compiled into the binary, for the suite key that names it
/// (`model.weights`, `model.spec`, `dataset.path`). An embedded dataset's bytes are its IDX
/// encoding.
pub fn embedded_bytes(key: &str, name: &str) -> Result<Vec<u8>> {
    match key {
        "model.weights" if name == embedded::MODEL_NAME => Ok(embedded::WEIGHTS.to_vec()),
        "model.spec" if name == embedded::MODEL_NAME => Ok(embedded::SPEC.as_bytes().to_vec()),
        "model.weights" | "model.spec" => bail!(
            "there is no embedded model called `{name}`; the embedded model is `{}`",
            embedded::MODEL_NAME
        ),
        _ => {
            let dataset = gauntlet_datasets::embedded(name).with_context(|| {
                format!(
                    "there is no embedded dataset `{name}`; embedded datasets: {}",
                    gauntlet_datasets::EMBEDDED_NAMES.join(", ")
                )
            })??;
            let (images, labels) = gauntlet_datasets::encode_idx(&dataset)?;
            Ok([images, labels].concat())
        }
    }
}

fn read_source(source: &Source, key: &str, limit: gauntlet_files::Limit) -> Result<Vec<u8>> {
    match source {
        Source::File(path) => gauntlet_files::read_bounded(path, limit)
            .with_context(|| format!("cannot read `{key}`")),
        Source::Embedded(name) => embedded_bytes(key, name),
    }
}

/// The suite's model, verified and loaded, with what the memory check and class names need.
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    /// What the model costs: its spec's cost, or for a TorchScript model (no spec) its
    /// parameters and input size only (libtorch's activations are not estimated).
    pub cost: ModelCost,
    /// The spec's class names, when the model has a spec that names them.
    pub class_names: Option<Vec<String>>,
    pub info: ModelInfo,
    pub provenance: Provenance,
}

/// Verify the model (pinned SHA-256, manifest, signature, static scan), then load it.
pub fn load_model(suite: &Suite, device: &Device) -> Result<LoadedModel> {
    let weights = read_source(
        &suite.model_weights,
        "model.weights",
        gauntlet_files::limits::WEIGHTS,
    )?;
    let sha256 = sha256_hex(&weights);
    let provenance = crate::provenance::verify(suite, &weights, &sha256)?;
    // A suite without `model.spec` names the weights file for both (suite.rs): an ONNX model
    // or a TorchScript archive.
    let self_describing =
        matches!(&suite.model_weights, Source::File(_)) && suite.model_spec == suite.model_weights;
    if self_describing && StoredFormat::detect(&weights) == Some(StoredFormat::TorchScript) {
        let (model, cost) = crate::torchscript::load(suite, &weights, device)?;
        let info = model_info(suite, model.as_ref(), sha256);
        return Ok(LoadedModel {
            model,
            cost,
            class_names: None,
            info,
            provenance,
        });
    }
    let network = if self_describing {
        crate::inspect::self_describing_model(&weights, &suite.model_weights, device)?
    } else {
        spec_model(suite, &weights, device)?
    }
    .with_native_kernels(!suite.candle_kernels)
    .with_source(suite.model_weights.display());
    if let Some(shape) = &suite.model_input_shape {
        if shape.as_slice() != network.input_shape() {
            bail!(
                "`model.input_shape` = {shape:?}, but model `{}` declares {:?} (only a \
                 TorchScript model needs `input_shape`)",
                suite.model_weights.display(),
                network.input_shape()
            );
        }
    }
    let info = model_info(suite, &network, sha256);
    Ok(LoadedModel {
        cost: network.spec().cost()?,
        class_names: network.spec().class_names().map(<[String]>::to_vec),
        model: Box::new(network),
        info,
        provenance,
    })
}

/// A spec'd model: the spec file plus safetensors or a PyTorch checkpoint.
fn spec_model(suite: &Suite, weights: &[u8], device: &Device) -> Result<Network> {
    let spec_text = read_source(
        &suite.model_spec,
        "model.spec",
        gauntlet_files::limits::MODEL_SPEC,
    )?;
    let spec_text = String::from_utf8(spec_text).with_context(|| {
        format!(
            "model spec `{}` is not UTF-8 text",
            suite.model_spec.display()
        )
    })?;
    let spec = ModelSpec::from_toml_str(&spec_text)
        .with_context(|| format!("invalid model spec `{}`", suite.model_spec.display()))?;
    // Before a single tensor is built: the model and a batch must fit the suite's memory cap.
    let cost = spec
        .cost()
        .with_context(|| format!("invalid model spec `{}`", suite.model_spec.display()))?;
    crate::budget::check_suite_memory(suite, &cost, 0)
        .with_context(|| format!("refusing model spec `{}`", suite.model_spec.display()))?;
    Network::from_spec_and_weight_bytes(&spec, weights, &suite.model_weights.display(), device)
        .with_context(|| {
            format!(
                "cannot load model weights `{}`",
                suite.model_weights.display()
            )
        })
}

fn model_info(suite: &Suite, network: &dyn Model, sha256: String) -> ModelInfo {
    // The report's model record comes from what the model declares about itself.
    let declared = network.info();
    let info = ModelInfo {
        name: match &suite.model_weights {
            Source::Embedded(name) => name.clone(),
            Source::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        architecture: declared
            .architecture
            .unwrap_or_else(|| declared.name.clone()),
        path: declared
            .source
            .unwrap_or_else(|| suite.model_weights.display()),
        sha256,
        // The file format of the weights a spec'd model reads.
        format: match declared.format {
            gauntlet_models::ModelFormat::GauntletSpec => "safetensors".to_string(),
            other => other.to_string(),
        },
        input_shape: declared.input_shape,
        num_classes: declared.num_classes,
        parameters: declared.parameters.unwrap_or(0),
    };
    info
}

fn file_of(source: &Option<Source>, key: &str) -> Result<std::path::PathBuf> {
    match source {
        Some(Source::File(path)) => Ok(path.clone()),
        Some(Source::Embedded(name)) => {
            bail!(
                "`dataset.{key}`: embedded data is named by `path = \"embedded:…\"`, not `{name}`"
            )
        }
        None => bail!("`dataset.{key}` is required for this format"),
    }
}

/// Load the dataset a suite (or `gauntlet train`) names. An image folder is read only up to
/// the section's `limit` (the images past it are never opened); other formats are whole files,
/// limited by the caller.
pub fn load_dataset(section: &DatasetSection, sources: &DatasetSources) -> Result<InMemoryDataset> {
    let names = section.class_names.clone();
    let dataset = match &sources.path {
        Some(Source::Embedded(name)) => match name.as_str() {
            "fashion-mnist-test-1k" => gauntlet_datasets::embedded_fashion_mnist_test()?,
            "uci-digits" => gauntlet_datasets::embedded_uci_digits()?,
            other => bail!(
                "there is no embedded dataset `{other}`; embedded datasets: fashion-mnist-test-1k, uci-digits"
            ),
        },
        _ => match section.format {
            DatasetFormat::Idx => gauntlet_datasets::load_idx(
                &file_of(&sources.images, "images")?,
                &file_of(&sources.labels, "labels")?,
                names.clone(),
            )?,
            DatasetFormat::Npy => gauntlet_datasets::load_npy(
                &file_of(&sources.images, "images")?,
                &file_of(&sources.labels, "labels")?,
                names.clone(),
            )?,
            DatasetFormat::Cifar10 => gauntlet_datasets::load_cifar10_path(&file_of(&sources.path, "path")?)?,
            DatasetFormat::ImageFolder => gauntlet_datasets::load_image_folder_limited(
                &file_of(&sources.path, "path")?,
                section.limit,
            )?,
        },
    };
    if dataset.is_empty() {
        bail!("the dataset holds no samples");
    }
    Ok(dataset)
}

/// Open the dataset a suite names for a run: IDX, CIFAR-10 and `.npy` files stream, each batch
/// read from the file when it is needed (gauntlet-datasets' `StreamedDataset`); image folders
/// and the embedded datasets are held in memory as [`load_dataset`] reads them. The checks,
/// the samples and their order are those of [`load_dataset`].
pub fn open_dataset(section: &DatasetSection, sources: &DatasetSources) -> Result<StreamedDataset> {
    let names = section.class_names.clone();
    let dataset = match (&sources.path, section.format) {
        (Some(Source::Embedded(_)), _) | (_, DatasetFormat::ImageFolder) => {
            StreamedDataset::from(load_dataset(section, sources)?)
        }
        (_, DatasetFormat::Idx) => gauntlet_datasets::open_idx(
            &file_of(&sources.images, "images")?,
            &file_of(&sources.labels, "labels")?,
            names,
        )?,
        (_, DatasetFormat::Npy) => gauntlet_datasets::open_npy(
            &file_of(&sources.images, "images")?,
            &file_of(&sources.labels, "labels")?,
            names,
        )?,
        (_, DatasetFormat::Cifar10) => {
            gauntlet_datasets::open_cifar10_path(&file_of(&sources.path, "path")?)?
        }
    };
    if dataset.is_empty() {
        bail!("the dataset holds no samples");
    }
    Ok(dataset)
}

/// Load everything and check that model and data fit together.
pub fn load(suite: &Suite) -> Result<Loaded> {
    let started = Instant::now();
    let choice = parse_device(&suite.device)?;
    let device = open_device(choice)?;
    let LoadedModel {
        model,
        cost,
        class_names: spec_class_names,
        info: model_info,
        provenance,
    } = load_model(suite, &device)?;
    // `gauntlet check` refuses these from the model's format; this is the same rule applied to
    // what the loaded model itself declares.
    if !model.capabilities().input_gradients {
        if let Some(planned) = suite
            .attacks
            .iter()
            .find(|a| a.entry.needs == gauntlet_attacks::ModelAccess::InputGradients)
        {
            bail!(
                "attack `{}` needs input gradients, but model `{}` provides none",
                planned.label,
                model_info.path
            );
        }
    }
    let full = open_dataset(&suite.dataset, &suite.dataset_sources)?;
    let present = |d: &StreamedDataset| d.class_counts().iter().filter(|&&n| n > 0).count();
    // An image folder was read only up to `limit`, but its loader refuses an empty class
    // folder, so every class it lists is present in the whole folder.
    let classes_in_dataset = match (&suite.dataset.format, &suite.dataset_sources.path) {
        (DatasetFormat::ImageFolder, Some(Source::File(_))) => full.class_names().len(),
        _ => present(&full),
    };
    // The detectors' fitting data: a `fit_dataset`, or the samples past `dataset.limit`,
    // which the run does not evaluate.
    let fit_data = if suite.detectors.is_empty() {
        None
    } else {
        suite
            .detectors
            .check_model(model.as_ref(), &model_info.path)?;
        let rest = match suite.dataset.limit {
            Some(limit) if limit < full.len() => {
                let indices: Vec<usize> = (limit..full.len()).collect();
                Some(full.subset(&indices)?)
            }
            _ => None,
        };
        Some(
            crate::detector::load_fit_data(&suite.detectors, rest.as_ref(), model.input_shape())
                .with_context(|| match &suite.path {
                    Some(path) => format!("invalid suite file `{}`", path.display()),
                    None => "the embedded default suite".to_string(),
                })?,
        )
    };
    let dataset = match suite.dataset.limit {
        Some(limit) => full.limit(limit),
        None => full,
    };
    let classes_evaluated = present(&dataset);
    // The data is open now; with what of it is held in memory (nothing of a streamed file),
    // the whole run must still fit the cap.
    crate::budget::check_suite_memory(suite, &cost, dataset.samples_in_memory())
        .with_context(|| format!("refusing model spec `{}`", suite.model_spec.display()))?;
    let memory = cost.memory(
        gauntlet_models::spec::Usage::Evaluate,
        suite.batch_size,
        dataset.samples_in_memory(),
    );
    let dataset_path = [&suite.dataset_sources.path, &suite.dataset_sources.images]
        .into_iter()
        .flatten()
        .map(Source::display)
        .collect::<Vec<_>>()
        .join(", ");
    if dataset.sample_shape() != model.input_shape() {
        bail!(
            "dataset `{dataset_path}` has samples of shape {:?}, but model `{}` expects {:?}",
            dataset.sample_shape(),
            model_info.path,
            model.input_shape()
        );
    }
    if dataset.class_names().len() > model.num_classes() {
        bail!(
            "dataset `{dataset_path}` has {} classes, but model `{}` has only {} outputs",
            dataset.class_names().len(),
            model_info.path,
            model.num_classes()
        );
    }
    let class_names: Vec<String> = suite
        .dataset
        .class_names
        .clone()
        .or(spec_class_names)
        .unwrap_or_else(|| {
            // Unnamed data (IDX, NPY) names classes up to its largest label; the model may
            // have more outputs than the data has labels.
            let mut names = dataset.class_names().to_vec();
            names.extend((names.len()..model.num_classes()).map(|i| i.to_string()));
            names
        });
    if class_names.len() != model.num_classes() {
        bail!(
            "{} class names given, but model `{}` has {} outputs",
            class_names.len(),
            model_info.path,
            model.num_classes()
        );
    }
    let dataset_info = DatasetInfo {
        name: dataset.name().to_string(),
        path: dataset_path,
        format: suite.dataset.format.to_string(),
        samples: dataset.len(),
        class_names: class_names.clone(),
    };
    Ok(Loaded {
        device,
        device_name: device_name(choice),
        model,
        model_info,
        dataset: Box::new(dataset),
        dataset_info,
        class_names,
        classes_in_dataset,
        classes_evaluated,
        provenance: Some(provenance),
        load_seconds: started.elapsed().as_secs_f64(),
        memory,
        fit_data,
    })
}
