//! Bring your own model: one residual CNN trained by real PyTorch (`fixtures/byom/
//! make_fixtures.py`) and saved as safetensors, a zip checkpoint, a legacy checkpoint, a nested
//! DataParallel checkpoint with f16, strided and shared storages, and two ONNX exports (the
//! TorchScript-based exporter at opset 13 and the dynamo exporter at opset 18) gives PyTorch's
//! logits in every format (max abs difference ≤ 1e-4), and every ONNX model's input gradient
//! matches finite differences. Hostile and malformed files are refused before anything runs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gauntlet_models::testing::assert_gradient_matches_finite_differences;
use gauntlet_models::{KernelPath, Loss, Model, ModelError, ModelFormat, ModelSpec, Network};

use crate::to_vec;

/// The largest absolute logit difference allowed against PyTorch (the issue's bar).
const LOGIT_TOLERANCE: f64 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/byom")
}

struct Io {
    inputs: Tensor,
    labels: Tensor,
    logits: Tensor,
    mlp_logits: Tensor,
}

fn io() -> Io {
    let bytes = fs_err::read(dir().join("cnn.io.safetensors")).unwrap();
    let mut io = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut take = |key: &str| io.remove(key).unwrap();
    Io {
        inputs: take("inputs"),
        labels: take("labels").to_dtype(DType::U32).unwrap(),
        logits: take("logits"),
        mlp_logits: take("mlp_logits"),
    }
}

fn spec_checkpoint(file: &str) -> Network {
    Network::load(&dir().join("cnn.toml"), &dir().join(file), &Device::Cpu)
        .unwrap_or_else(|error| panic!("{file}: {:?}", anyhow_chain(&error)))
}

fn onnx(file: &str) -> Network {
    Network::from_onnx_file(&dir().join(file), &Device::Cpu)
        .unwrap_or_else(|error| panic!("{file}: {}", anyhow_chain(&error)))
}

fn anyhow_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn assert_logits(network: &Network, expected: &Tensor, what: &str) {
    let io = io();
    for native in [true, false] {
        let network = network.with_native_kernels(native);
        let logits = network.forward(&io.inputs).unwrap();
        let worst = max_abs_difference(&logits, expected);
        assert!(
            worst <= LOGIT_TOLERANCE,
            "{what} (native kernels {native}): max |gauntlet − PyTorch| logit = {worst:e}"
        );
    }
}

#[test]
fn every_format_gives_pytorchs_logits() {
    let io = io();
    let cases = [
        ("cnn.safetensors", ModelFormat::GauntletSpec),
        ("cnn.zip.pt", ModelFormat::TorchCheckpoint),
        ("cnn.legacy.pt", ModelFormat::TorchCheckpoint),
    ];
    for (file, format) in cases {
        let network = spec_checkpoint(file);
        assert_eq!(network.info().format, format, "{file}");
        assert_logits(&network, &io.logits, file);
    }
    for file in ["cnn.onnx", "cnn.dynamo.onnx"] {
        let network = onnx(file);
        assert_eq!(network.info().format, ModelFormat::Onnx);
        assert_eq!(network.input_shape(), [1, 8, 8]);
        assert_eq!(network.num_classes(), 10);
        assert_eq!(network.kernel_path(), KernelPath::Native, "{file}");
        assert_logits(&network, &io.logits, file);
    }
    assert_logits(&onnx("mlp.onnx"), &io.mlp_logits, "mlp.onnx");
}

#[test]
fn checkpoint_formats_hold_the_same_weights_as_safetensors() {
    let reference = spec_checkpoint("cnn.safetensors")
        .to_safetensors_bytes()
        .unwrap();
    for file in ["cnn.zip.pt", "cnn.legacy.pt"] {
        let bytes = spec_checkpoint(file).to_safetensors_bytes().unwrap();
        assert_eq!(bytes, reference, "{file}: every tensor bit-identical");
    }
    // The nested file stores the first conv in f16 (so its logits are not PyTorch's f32 ones):
    // that tensor is within f16 rounding, everything else is bit-identical.
    let nested = spec_checkpoint("cnn.nested.pth");
    let reference = spec_checkpoint("cnn.safetensors");
    let names = reference.tensor_names();
    let ours = candle_core::safetensors::load_buffer(
        &nested.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let theirs = candle_core::safetensors::load_buffer(
        &reference.to_safetensors_bytes().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    for name in names {
        let difference = max_abs_difference(&ours[&name], &theirs[&name]);
        let bound = if name == "0.weight" { 1e-3 } else { 0.0 };
        assert!(difference <= bound, "{name}: {difference}");
    }
}

#[test]
fn every_onnx_model_has_finite_difference_input_gradients() {
    let io = io();
    let inputs = io
        .inputs
        .narrow(0, 0, 4)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let labels = io.labels.narrow(0, 0, 4).unwrap();
    for file in ["cnn.onnx", "cnn.dynamo.onnx", "mlp.onnx"] {
        let network = onnx(file).to_dtype(DType::F64).unwrap();
        for loss in [Loss::CrossEntropy, Loss::CwMargin] {
            assert_gradient_matches_finite_differences(&network, &inputs, &labels, loss, 1e-5);
        }
    }
}

#[test]
fn a_checkpoint_that_calls_os_system_is_refused_by_the_scanner() {
    let error = Network::load(
        &dir().join("cnn.toml"),
        &dir().join("evil.pt"),
        &Device::Cpu,
    )
    .unwrap_err();
    let text = anyhow_chain(&error);
    assert!(text.contains("refused by the scanner"), "{text}");
    assert!(text.contains("system"), "{text}");
}

#[test]
fn the_compiled_spec_round_trips_and_names_pytorchs_layers() {
    let bytes = fs_err::read(dir().join("mlp.onnx")).unwrap();
    let compiled = gauntlet_models::onnx::compile_onnx(&bytes, "mlp.onnx", None).unwrap();
    assert_eq!(compiled.opset, 17);
    let toml = compiled.spec.to_toml_string().unwrap();
    assert_eq!(ModelSpec::from_toml_str(&toml).unwrap(), compiled.spec);
    // The exporter keeps the state-dict names of the Linear layers.
    assert!(toml.contains("name = \"1\""), "{toml}");
    assert!(toml.contains("name = \"3\""), "{toml}");
}

#[test]
fn truncated_onnx_is_a_clear_error() {
    let bytes = fs_err::read(dir().join("cnn.onnx")).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 3] {
        let error = Network::from_onnx_bytes(&bytes[..cut], "cut.onnx", &Device::Cpu).unwrap_err();
        assert!(
            matches!(error, ModelError::Onnx { .. }),
            "cut at {cut}: {}",
            anyhow_chain(&error)
        );
    }
}

#[test]
fn truncated_checkpoints_are_clear_errors() {
    for file in ["cnn.zip.pt", "cnn.legacy.pt"] {
        let bytes = fs_err::read(dir().join(file)).unwrap();
        let spec = ModelSpec::from_file(&dir().join("cnn.toml")).unwrap();
        for cut in [bytes.len() / 3, bytes.len() - 40] {
            let result =
                Network::from_spec_and_weight_bytes(&spec, &bytes[..cut], file, &Device::Cpu);
            assert!(result.is_err(), "{file} cut at {cut} loaded");
        }
    }
}

/// A minimal protobuf writer for hand-made ONNX graphs (hostile and edge cases).
mod pb {
    pub fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    pub fn int(number: u64, value: i64, out: &mut Vec<u8>) {
        varint(number << 3, out);
        varint(value as u64, out);
    }
    pub fn bytes(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint((number << 3) | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }
    pub fn tensor(name: &str, dims: &[i64], values: &[f32]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            int(1, d, &mut t);
        }
        int(2, 1, &mut t);
        bytes(8, name.as_bytes(), &mut t);
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes(9, &raw, &mut t);
        t
    }
    pub fn external_tensor(name: &str, dims: &[i64], location: &str) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            int(1, d, &mut t);
        }
        int(2, 1, &mut t);
        bytes(8, name.as_bytes(), &mut t);
        let mut entry = Vec::new();
        bytes(1, b"location", &mut entry);
        bytes(2, location.as_bytes(), &mut entry);
        bytes(13, &entry, &mut t);
        int(14, 1, &mut t);
        t
    }
    pub fn attr_int(name: &str, value: i64) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(1, name.as_bytes(), &mut a);
        int(3, value, &mut a);
        int(20, 2, &mut a);
        a
    }
    pub fn node(
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            bytes(1, i.as_bytes(), &mut n);
        }
        for o in outputs {
            bytes(2, o.as_bytes(), &mut n);
        }
        bytes(3, name.as_bytes(), &mut n);
        bytes(4, op.as_bytes(), &mut n);
        for a in attrs {
            bytes(5, a, &mut n);
        }
        n
    }
    pub fn value_info(name: &str, dims: &[i64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for &d in dims {
            let mut dim = Vec::new();
            int(1, d, &mut dim);
            bytes(1, &dim, &mut shape);
        }
        let mut tensor_type = Vec::new();
        int(1, 1, &mut tensor_type);
        bytes(2, &shape, &mut tensor_type);
        let mut type_proto = Vec::new();
        bytes(1, &tensor_type, &mut type_proto);
        let mut v = Vec::new();
        bytes(1, name.as_bytes(), &mut v);
        bytes(2, &type_proto, &mut v);
        v
    }
    pub fn model(
        opset: i64,
        nodes: &[Vec<u8>],
        initializers: &[Vec<u8>],
        input: &[i64],
        output: &[i64],
    ) -> Vec<u8> {
        let mut g = Vec::new();
        for n in nodes {
            bytes(1, n, &mut g);
        }
        bytes(2, b"graph", &mut g);
        for t in initializers {
            bytes(5, t, &mut g);
        }
        bytes(11, &value_info("x", input), &mut g);
        bytes(12, &value_info("y", output), &mut g);
        let mut m = Vec::new();
        int(1, 8, &mut m);
        let mut opset_id = Vec::new();
        bytes(1, b"", &mut opset_id);
        int(2, opset, &mut opset_id);
        bytes(8, &opset_id, &mut m);
        bytes(7, &g, &mut m);
        m
    }
}

/// Flatten → MatMul + Add → Relu → Gemm(transB): W1 is [in, out] for MatMul, W2 [out, in].
fn hand_mlp(opset: i64) -> Vec<u8> {
    let w1: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 7.0).collect(); // [4, 3]
    let b1 = [0.1f32, -0.2, 0.3];
    let w2: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) / 3.0).collect(); // [2, 3]
    let b2 = [0.5f32, -0.5];
    pb::model(
        opset,
        &[
            pb::node("Flatten", "flat", &["x"], &["f"], &[]),
            pb::node("MatMul", "mm", &["f", "w1"], &["m"], &[]),
            pb::node("Add", "bias", &["m", "b1"], &["a"], &[]),
            pb::node("Relu", "relu", &["a"], &["r"], &[]),
            pb::node(
                "Gemm",
                "fc",
                &["r", "w2", "b2"],
                &["y"],
                &[pb::attr_int("transB", 1)],
            ),
        ],
        &[
            pb::tensor("w1", &[4, 3], &w1),
            pb::tensor("b1", &[3], &b1),
            pb::tensor("w2", &[2, 3], &w2),
            pb::tensor("b2", &[2], &b2),
        ],
        &[1, 4],
        &[1, 2],
    )
}

#[test]
fn a_hand_made_mlp_computes_its_closed_form() {
    let network = Network::from_onnx_bytes(&hand_mlp(13), "mlp.onnx", &Device::Cpu).unwrap();
    let x = [0.2f32, 0.9, 0.4, 0.0];
    let w1: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 7.0).collect();
    let b1 = [0.1f32, -0.2, 0.3];
    let w2: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) / 3.0).collect();
    let b2 = [0.5f32, -0.5];
    let hidden: Vec<f32> = (0..3)
        .map(|j| ((0..4).map(|i| x[i] * w1[i * 3 + j]).sum::<f32>() + b1[j]).max(0.0))
        .collect();
    let expected: Vec<f64> = (0..2)
        .map(|k| f64::from((0..3).map(|j| hidden[j] * w2[k * 3 + j]).sum::<f32>() + b2[k]))
        .collect();
    let logits = network
        .forward(&Tensor::new(&[x], &Device::Cpu).unwrap())
        .unwrap();
    let got = to_vec(&logits);
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
    }
}

#[test]
fn opsets_outside_13_to_21_are_refused() {
    for opset in [9, 22] {
        let error = Network::from_onnx_bytes(&hand_mlp(opset), "m.onnx", &Device::Cpu).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(&format!("opset {opset}")), "{text}");
    }
}

#[test]
fn every_unsupported_op_is_listed_with_its_nodes() {
    let bytes = pb::model(
        13,
        &[
            pb::node("LRN", "norm_a", &["x"], &["a"], &[]),
            pb::node("Erf", "erf", &["a"], &["b"], &[]),
            pb::node("LRN", "norm_b", &["b"], &["y"], &[]),
        ],
        &[],
        &[1, 2, 4, 4],
        &[1, 2, 4, 4],
    );
    let error = Network::from_onnx_bytes(&bytes, "m.onnx", &Device::Cpu).unwrap_err();
    let ModelError::UnsupportedOnnx { unsupported } = &error else {
        panic!("{error}");
    };
    assert_eq!(
        unsupported,
        &[
            "`Erf` in 1 node(s): erf".to_string(),
            "`LRN` in 2 node(s): norm_a, norm_b".to_string()
        ]
    );
}

#[test]
fn shape_inconsistent_graphs_name_the_node() {
    let bytes = pb::model(
        13,
        &[pb::node(
            "Gemm",
            "fc",
            &["x", "w", "b"],
            &["y"],
            &[pb::attr_int("transB", 1)],
        )],
        &[
            pb::tensor("w", &[2, 5], &[0.0; 10]),
            pb::tensor("b", &[2], &[0.0; 2]),
        ],
        &[1, 4],
        &[1, 2],
    );
    let error = Network::from_onnx_bytes(&bytes, "m.onnx", &Device::Cpu).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("`fc`") && text.contains("shape-inconsistent"),
        "{text}"
    );
    // The declared output disagrees with what the layers give.
    let bytes = pb::model(
        13,
        &[pb::node(
            "Gemm",
            "fc",
            &["x", "w", "b"],
            &["y"],
            &[pb::attr_int("transB", 1)],
        )],
        &[
            pb::tensor("w", &[2, 4], &[0.0; 8]),
            pb::tensor("b", &[2], &[0.0; 2]),
        ],
        &[1, 4],
        &[1, 3],
    );
    let text = Network::from_onnx_bytes(&bytes, "m.onnx", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(text.contains("shape-inconsistent"), "{text}");
}

fn external_model(location: &str) -> Vec<u8> {
    pb::model(
        13,
        &[pb::node(
            "Gemm",
            "fc",
            &["x", "w", "b"],
            &["y"],
            &[pb::attr_int("transB", 1)],
        )],
        &[
            pb::external_tensor("w", &[2, 4], location),
            pb::tensor("b", &[2], &[0.0; 2]),
        ],
        &[1, 4],
        &[1, 2],
    )
}

#[test]
fn external_data_is_read_only_from_inside_the_models_folder() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    let weights: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    std::fs::write(folder.join("w.bin"), &weights).unwrap();
    std::fs::write(root.path().join("outside.bin"), &weights).unwrap();
    let write = |name: &str, location: &str| {
        let path = folder.join(name);
        std::fs::write(&path, external_model(location)).unwrap();
        path
    };
    // Inside the folder: loads, and the weights are the file's.
    let network = Network::from_onnx_file(&write("ok.onnx", "w.bin"), &Device::Cpu).unwrap();
    let logits = network
        .forward(&Tensor::new(&[[1f32, 0.0, 0.0, 0.0]], &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(to_vec(&logits), vec![0.0, 4.0]);
    // Outside, absolute, and through a symbolic link: refused, nothing read.
    let outside = root.path().join("outside.bin").display().to_string();
    std::os::unix::fs::symlink(root.path().join("outside.bin"), folder.join("link.bin")).unwrap();
    for (name, location) in [
        ("up.onnx", "../outside.bin"),
        ("abs.onnx", outside.as_str()),
        ("link.onnx", "link.bin"),
    ] {
        let error = Network::from_onnx_file(&write(name, location), &Device::Cpu).unwrap_err();
        let text = anyhow_chain(&error);
        assert!(
            text.contains("external") || text.contains("symbolic"),
            "{name}: {text}"
        );
    }
    // Bytes without a folder cannot reach external data at all.
    assert!(Network::from_onnx_bytes(&external_model("w.bin"), "m.onnx", &Device::Cpu).is_err());
}
