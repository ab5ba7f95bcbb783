//! ONNX models (`torch.onnx.export` of MLPs, CNNs and ResNets, opsets 13–21), compiled into
//! gauntlet's own [`Network`].
//!
//! The graph is not interpreted op by op: it is translated once into a `sequential`
//! [`ModelSpec`] (residual `Add`s of two branches that fork from one value become `residual`
//! layers) plus a table of weights named by that spec, and then built like any spec'd network.
//! So an ONNX model runs on the same layers with exact gradients (our own pooling backward,
//! ReLU's zero gradient at 0), on the native CPU path, and passes the same finite-difference
//! checks; `gauntlet spec --from model.onnx` prints the spec it compiled to.
//!
//! Everything that does not map is refused at load time: every unsupported op is listed with
//! the nodes that use it, and unsupported forms of supported ops (per-dimension strides,
//! `ceil_mode`, a transposed input) name the node and attribute. The file is scanned first
//! (custom domains, external-data paths), and external data is read only from inside the
//! model's folder, never through a symbolic link.

mod proto;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use candle_core::Device;

use crate::spec::{layer_prefix, LayerSection};
use crate::{Architecture, LayerSpec, ModelError, ModelFormat, ModelSpec, Network, Pair};
use proto::{data_type, Node, TensorProto};

/// The default-domain opsets gauntlet compiles (what `torch.onnx.export` writes today).
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The ops gauntlet maps onto its layers.
const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Constant",
    "Softmax",
    "LogSoftmax",
];

fn onnx_error(reason: impl Into<String>) -> ModelError {
    ModelError::Onnx {
        reason: reason.into(),
    }
}

/// An ONNX model compiled to a spec and its weights.
#[derive(Debug, Clone)]
pub struct CompiledOnnx {
    pub spec: ModelSpec,
    /// The weights as safetensors bytes, named as `spec` names them.
    pub safetensors: Vec<u8>,
    /// What was dropped on the way (a final `Softmax`), for the user.
    pub notes: Vec<String>,
    /// The opset of the default domain.
    pub opset: i64,
}

/// Whether `bytes` look like an ONNX model (the scanner's content detection).
pub fn looks_like(bytes: &[u8]) -> bool {
    gauntlet_artifact::scan::identify(bytes) == gauntlet_artifact::scan::FileKind::Onnx
}

impl Network {
    /// Reads, scans and compiles an ONNX file (external data is looked up next to it).
    pub fn from_onnx_file(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let bytes = gauntlet_files::read_bounded(path, gauntlet_files::limits::WEIGHTS)?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let name = path.display().to_string();
        let compiled = compile_onnx(&bytes, &name, Some(folder)).map_err(|source| {
            ModelError::WeightsFile {
                path: path.to_path_buf(),
                source: Box::new(source),
            }
        })?;
        Self::from_compiled_onnx(&compiled, device)
            .map(|network| network.with_source(name))
            .map_err(|source| ModelError::WeightsFile {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    }

    /// Compiles ONNX bytes with no external data allowed.
    pub fn from_onnx_bytes(bytes: &[u8], name: &str, device: &Device) -> Result<Self, ModelError> {
        let compiled = compile_onnx(bytes, name, None)?;
        Self::from_compiled_onnx(&compiled, device)
    }

    /// Builds the network of an already compiled model.
    pub fn from_compiled_onnx(
        compiled: &CompiledOnnx,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(
            Network::from_spec_and_safetensors(&compiled.spec, &compiled.safetensors, device)?
                .with_format(ModelFormat::Onnx),
        )
    }
}

/// Scans and compiles ONNX `bytes`; `folder` is where external data may be read from (none
/// when `None`).
pub fn compile_onnx(
    bytes: &[u8],
    name: &str,
    folder: Option<&Path>,
) -> Result<CompiledOnnx, ModelError> {
    let location = gauntlet_artifact::Location {
        file: name.to_string(),
        ..Default::default()
    };
    let refused: Vec<String> = gauntlet_artifact::scan::scan_bytes_in(bytes, &location, true)
        .into_iter()
        .filter(|finding| finding.severity >= gauntlet_artifact::Severity::High)
        .map(|finding| {
            format!(
                "{} [{}]: {}",
                finding.severity, finding.rule, finding.message
            )
        })
        .collect();
    if !refused.is_empty() {
        return Err(onnx_error(format!(
            "the scanner refused the file before loading: {}",
            refused.join("; ")
        )));
    }
    let model = proto::parse_model(bytes)
        .map_err(|error| onnx_error(format!("malformed protobuf: {error}")))?;
    let opset = model
        .opsets
        .iter()
        .find(|(domain, _)| domain.is_empty() || domain == "ai.onnx")
        .map(|(_, version)| *version)
        .ok_or_else(|| onnx_error("the model imports no default-domain (ai.onnx) opset"))?;
    if !SUPPORTED_OPSETS.contains(&opset) {
        return Err(onnx_error(format!(
            "opset {opset} is outside the opsets gauntlet compiles ({}–{}); re-export with \
             `torch.onnx.export(..., opset_version=17)`",
            SUPPORTED_OPSETS.start(),
            SUPPORTED_OPSETS.end()
        )));
    }
    report_unsupported(&model.graph.nodes)?;
    let mut compiler = Compiler::new(&model.graph, folder)?;
    let mut compiled = compiler.compile()?;
    compiled.opset = opset;
    Ok(compiled)
}

/// Lists every op (and op form) outside what gauntlet maps, with the nodes that use it.
fn report_unsupported(nodes: &[Node]) -> Result<(), ModelError> {
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        let custom_domain = !(node.domain.is_empty() || node.domain == "ai.onnx");
        if custom_domain || !SUPPORTED_OPS.contains(&node.op_type.as_str()) {
            let op = if custom_domain {
                format!("{}::{}", node.domain, node.op_type)
            } else {
                node.op_type.clone()
            };
            unsupported.entry(op).or_default().push(node.label());
        }
    }
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(ModelError::UnsupportedOnnx {
        unsupported: unsupported
            .into_iter()
            .map(|(op, nodes)| format!("`{op}` in {} node(s): {}", nodes.len(), nodes.join(", ")))
            .collect(),
    })
}

/// A constant (initializer or `Constant` output) as host values.
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<usize>,
    floats: Vec<f32>,
    /// For integer tensors (shapes of `Reshape`).
    ints: Option<Vec<i64>>,
}

/// The weights of one compiled layer, by suffix (`weight`, `bias`, `running_mean`, …).
type LayerWeights = Vec<(&'static str, Vec<usize>, Vec<f32>)>;

struct Compiler<'g> {
    nodes: &'g [Node],
    constants: HashMap<String, Constant>,
    /// Node indices consuming each value as a dynamic input.
    consumers: HashMap<String, Vec<usize>>,
    input: String,
    input_shape: Vec<usize>,
    output: String,
    declared_output: Option<Vec<Option<i64>>>,
    /// Weights by the layer's unique local name.
    weights: HashMap<String, LayerWeights>,
    used_names: std::collections::HashSet<String>,
    notes: Vec<String>,
    done: Vec<bool>,
}

fn node_error(node: &Node, reason: impl std::fmt::Display) -> ModelError {
    onnx_error(format!(
        "node `{}` ({}): {reason}",
        node.label(),
        node.op_type
    ))
}

impl<'g> Compiler<'g> {
    fn new(graph: &'g proto::Graph, folder: Option<&Path>) -> Result<Self, ModelError> {
        let mut constants = HashMap::new();
        for tensor in &graph.initializers {
            let constant = decode_tensor(tensor, folder)?;
            constants.insert(tensor.name.clone(), constant);
        }
        for node in &graph.nodes {
            if node.op_type == "Constant" {
                let output = node
                    .outputs
                    .first()
                    .ok_or_else(|| node_error(node, "no output"))?;
                let constant = constant_node(node, folder)?;
                constants.insert(output.clone(), constant);
            }
        }
        let inputs: Vec<_> = graph
            .inputs
            .iter()
            .filter(|info| !constants.contains_key(&info.name))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(onnx_error(format!(
                "gauntlet runs graphs with one input (the image batch); this one has {}: {}",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if input.elem_type.is_some_and(|t| t != data_type::FLOAT) {
            return Err(onnx_error(format!(
                "input `{}` has element type {:?}; gauntlet feeds float32 images",
                input.name, input.elem_type
            )));
        }
        let shape = input
            .shape
            .as_ref()
            .ok_or_else(|| onnx_error(format!("input `{}` declares no shape", input.name)))?;
        let input_shape: Vec<usize> = shape
            .iter()
            .skip(1)
            .map(|dim| match dim {
                Some(size) if *size > 0 => usize::try_from(*size).ok(),
                _ => None,
            })
            .collect::<Option<_>>()
            .filter(|dims: &Vec<usize>| !dims.is_empty())
            .ok_or_else(|| {
                onnx_error(format!(
                    "input `{}` has shape {shape:?}; gauntlet needs [batch, …] with fixed \
                     per-sample sizes",
                    input.name
                ))
            })?;
        let [output] = graph.outputs.as_slice() else {
            return Err(onnx_error(format!(
                "gauntlet runs graphs with one output (the logits); this one has {}",
                graph.outputs.len()
            )));
        };
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            if node.op_type == "Constant" {
                continue;
            }
            for value in &node.inputs {
                if !value.is_empty() && !constants.contains_key(value) {
                    let entry = consumers.entry(value.clone()).or_default();
                    if !entry.contains(&index) {
                        entry.push(index);
                    }
                }
            }
        }
        Ok(Self {
            nodes: &graph.nodes,
            constants,
            consumers,
            input: input.name.clone(),
            input_shape,
            output: output.name.clone(),
            declared_output: output.shape.clone(),
            weights: HashMap::new(),
            used_names: Default::default(),
            notes: Vec::new(),
            done: vec![false; graph.nodes.len()],
        })
    }

    fn compile(&mut self) -> Result<CompiledOnnx, ModelError> {
        let input = self.input.clone();
        let shape = self.input_shape.clone();
        let (layers, end, shape, join) = self.walk(&input, None, shape)?;
        if let Some(join) = join {
            return Err(node_error(
                &self.nodes[join],
                "adds two values that do not fork from one value (not a residual block)",
            ));
        }
        if end != self.output {
            return Err(onnx_error(format!(
                "the graph's output `{}` is not reached from its input",
                self.output
            )));
        }
        for (index, node) in self.nodes.iter().enumerate() {
            if !self.done[index] && node.op_type != "Constant" {
                return Err(node_error(
                    node,
                    "is not on the path from the input to the output (a second branch or \
                     output gauntlet cannot run)",
                ));
            }
        }
        let [classes] = shape.as_slice() else {
            return Err(onnx_error(format!(
                "the graph's output has per-sample shape {shape:?}; gauntlet needs logits [classes]"
            )));
        };
        if let Some(declared) = &self.declared_output {
            let declared_classes = declared.get(1).copied().flatten();
            if declared.len() != 2 || declared_classes.is_some_and(|d| d != *classes as i64) {
                return Err(onnx_error(format!(
                    "shape-inconsistent graph: the output `{}` declares shape {declared:?} but \
                     the layers give [batch, {classes}]",
                    self.output
                )));
            }
        }
        let spec = ModelSpec {
            architecture: Architecture::Sequential,
            input_shape: self.input_shape.clone(),
            num_classes: *classes,
            class_names: None,
            mean: None,
            std: None,
            hidden: None,
            layers: Some(layers),
        };
        spec.validate()?;
        let mut named = Vec::new();
        self.collect_weights(
            spec.layers.as_deref().unwrap_or_default(),
            "",
            LayerSection::Top,
            &mut named,
        )?;
        let safetensors = to_safetensors(named)?;
        Ok(CompiledOnnx {
            spec,
            safetensors,
            notes: std::mem::take(&mut self.notes),
            opset: 0,
        })
    }

    /// Full tensor names for every weighted layer, by walking the spec as the network will.
    fn collect_weights(
        &mut self,
        layers: &[LayerSpec],
        parent: &str,
        section: LayerSection,
        out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<(), ModelError> {
        for (index, layer) in layers.iter().enumerate() {
            let prefix = layer_prefix(parent, section, index, layer.name());
            if let LayerSpec::Residual { body, shortcut, .. } = layer {
                self.collect_weights(body, &prefix, LayerSection::Body, out)?;
                self.collect_weights(shortcut, &prefix, LayerSection::Shortcut, out)?;
                continue;
            }
            if let Some(weights) = layer.name().and_then(|name| self.weights.remove(name)) {
                for (suffix, shape, values) in weights {
                    out.push((format!("{prefix}.{suffix}"), shape, values));
                }
            }
        }
        Ok(())
    }

    fn is_join(&self, index: usize) -> bool {
        let node = &self.nodes[index];
        node.op_type == "Add"
            && node.inputs.len() == 2
            && node.inputs.iter().all(|v| !self.constants.contains_key(v))
    }

    /// The dynamic consumers of `value`.
    fn consumers_of(&self, value: &str) -> Vec<usize> {
        self.consumers.get(value).cloned().unwrap_or_default()
    }

    /// Translates the chain starting at `value` (with `first` as its first node, when a fork
    /// chose it) until the graph's output or a residual join. Returns the layers, the last
    /// value, its per-sample shape and the join node reached, if any.
    #[allow(clippy::type_complexity)]
    fn walk(
        &mut self,
        value: &str,
        first: Option<usize>,
        shape: Vec<usize>,
    ) -> Result<(Vec<LayerSpec>, String, Vec<usize>, Option<usize>), ModelError> {
        let mut layers = Vec::new();
        let mut value = value.to_string();
        let mut shape = shape;
        let mut forced = first;
        loop {
            let next = match forced.take() {
                Some(next) => next,
                None => {
                    let consumers = self.consumers_of(&value);
                    if value == self.output && consumers.is_empty() {
                        return Ok((layers, value, shape, None));
                    }
                    match consumers.as_slice() {
                        [] => {
                            return Err(onnx_error(format!(
                            "value `{value}` is computed but used by nothing and is not the output"
                        )))
                        }
                        [one] => *one,
                        [a, b] => {
                            let (block, out, out_shape) = self.fork(&value, *a, *b, &shape)?;
                            layers.push(block);
                            value = out;
                            shape = out_shape;
                            continue;
                        }
                        many => {
                            return Err(onnx_error(format!(
                                "value `{value}` feeds {} nodes; gauntlet runs chains and \
                                 two-branch residual blocks only",
                                many.len()
                            )))
                        }
                    }
                }
            };
            if self.is_join(next) {
                return Ok((layers, value, shape, Some(next)));
            }
            let (layer, out, out_shape) = self.translate(next, &value, &shape)?;
            layers.extend(layer);
            value = out;
            shape = out_shape;
        }
    }

    /// A residual block: two branches from `value` that meet in one `Add`.
    fn fork(
        &mut self,
        value: &str,
        a: usize,
        b: usize,
        shape: &[usize],
    ) -> Result<(LayerSpec, String, Vec<usize>), ModelError> {
        let branch = |this: &mut Self, start: usize| {
            if this.is_join(start) {
                Ok((Vec::new(), value.to_string(), shape.to_vec(), Some(start)))
            } else {
                this.walk(value, Some(start), shape.to_vec())
            }
        };
        let (layers_a, end_a, shape_a, join_a) = branch(self, a)?;
        let (layers_b, end_b, shape_b, join_b) = branch(self, b)?;
        let join = match (join_a, join_b) {
            (Some(x), Some(y)) if x == y => x,
            _ => {
                return Err(onnx_error(format!(
                    "value `{value}` forks into two branches that do not meet in one `Add` \
                     (gauntlet runs two-branch residual blocks only)"
                )))
            }
        };
        let node = &self.nodes[join];
        let mut ends = [end_a.as_str(), end_b.as_str()];
        ends.sort_unstable();
        let mut inputs = [node.inputs[0].as_str(), node.inputs[1].as_str()];
        inputs.sort_unstable();
        if ends != inputs {
            return Err(node_error(node, "joins values other than its two branches"));
        }
        if shape_a != shape_b {
            return Err(node_error(
                node,
                format!(
                    "shape-inconsistent graph: adds per-sample shapes {shape_a:?} and {shape_b:?}"
                ),
            ));
        }
        self.done[join] = true;
        let output = node
            .outputs
            .first()
            .cloned()
            .ok_or_else(|| node_error(node, "no output"))?;
        // The longer branch is the body, the other the shortcut (often the identity).
        let (body, shortcut) = if layers_a.len() >= layers_b.len() {
            (layers_a, layers_b)
        } else {
            (layers_b, layers_a)
        };
        if body.is_empty() {
            return Err(node_error(node, "adds a value to itself"));
        }
        let name = self.unique_name(&format!("block{join}"));
        self.used_names.insert(name.clone());
        Ok((
            LayerSpec::Residual {
                name: Some(name),
                activation: None,
                body,
                shortcut,
            },
            output,
            shape_a,
        ))
    }

    fn unique_name(&self, wanted: &str) -> String {
        let mut name: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name = name
            .split('.')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        if name.is_empty() {
            name = "layer".to_string();
        }
        let base = name.clone();
        let mut counter = 1;
        while self.used_names.contains(&name) || self.weights.contains_key(&name) {
            name = format!("{base}_{counter}");
            counter += 1;
        }
        name
    }

    /// A name for a weighted layer: from its weight initializer (`conv1.weight` → `conv1`),
    /// else from the node.
    fn layer_name(&mut self, node: &Node, weight: &str, weights: LayerWeights) -> String {
        let wanted = weight
            .strip_suffix(".weight")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}_{}", node.op_type.to_lowercase(), node.label()));
        let name = self.unique_name(&wanted);
        self.used_names.insert(name.clone());
        self.weights.insert(name.clone(), weights);
        name
    }

    fn constant(&self, node: &Node, index: usize, what: &str) -> Result<&Constant, ModelError> {
        let name = node
            .inputs
            .get(index)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| node_error(node, format!("has no {what} input")))?;
        self.constants.get(name).ok_or_else(|| {
            node_error(
                node,
                format!(
                    "its {what} `{name}` is computed, not a constant; gauntlet needs fixed weights"
                ),
            )
        })
    }

    fn single_output(&self, node: &Node) -> Result<String, ModelError> {
        let first = node
            .outputs
            .first()
            .cloned()
            .ok_or_else(|| node_error(node, "has no output"))?;
        for extra in node.outputs.iter().skip(1) {
            if !extra.is_empty() && self.consumers.contains_key(extra) || *extra == self.output {
                return Err(node_error(
                    node,
                    format!(
                        "its second output `{extra}` is used; gauntlet supports only the first"
                    ),
                ));
            }
        }
        Ok(first)
    }

    /// One node (plus a bias `Add` after a `MatMul`) as zero or one layer.
    fn translate(
        &mut self,
        index: usize,
        value: &str,
        shape: &[usize],
    ) -> Result<(Option<LayerSpec>, String, Vec<usize>), ModelError> {
        let node = &self.nodes[index];
        if node.inputs.first().map(String::as_str) != Some(value) {
            return Err(node_error(
                node,
                format!("takes `{value}` as an input other than its first (data) input"),
            ));
        }
        self.done[index] = true;
        let output = self.single_output(node)?;
        let layer = match node.op_type.as_str() {
            "Identity" | "Dropout" => None,
            "Relu" => Some(LayerSpec::Relu { name: None }),
            "Sigmoid" => Some(LayerSpec::Sigmoid { name: None }),
            "Tanh" => Some(LayerSpec::Tanh { name: None }),
            "Gelu" => {
                let approximate = node
                    .attribute("approximate")
                    .and_then(|a| a.s.clone())
                    .unwrap_or_else(|| b"none".to_vec());
                if approximate != b"none" {
                    return Err(node_error(node, "tanh-approximated GELU is not supported"));
                }
                Some(LayerSpec::Gelu { name: None })
            }
            "Softmax" | "LogSoftmax" => {
                let axis = node.int("axis", -1);
                let last = shape.len() as i64;
                if output != self.output || !self.consumers_of(&output).is_empty() {
                    return Err(node_error(
                        node,
                        "a softmax inside the network is not supported (only as the last op)",
                    ));
                }
                if shape.len() != 1 || !(axis == -1 || axis == last) {
                    return Err(node_error(
                        node,
                        format!("softmax over axis {axis} of the logits"),
                    ));
                }
                self.notes.push(format!(
                    "the final `{}` (node `{}`) was dropped: gauntlet attacks the logits, which \
                     give the same predictions and the same cross-entropy gradient",
                    node.op_type,
                    node.label()
                ));
                None
            }
            "Flatten" => {
                let axis = node.int("axis", 1);
                if axis != 1 {
                    return Err(node_error(
                        node,
                        format!("axis = {axis}; only axis = 1 (keep the batch) is supported"),
                    ));
                }
                Some(LayerSpec::Flatten { name: None })
            }
            "Reshape" => {
                let target = self.constant(node, 1, "shape")?;
                let target = target.ints.clone().unwrap_or_default();
                let total: usize = shape.iter().product();
                let flattens = target.len() == 2
                    && (target[0] == -1 && target[1] == total as i64
                        || target[0] >= 0 && (target[1] == -1 || target[1] == total as i64));
                if flattens {
                    if shape.len() == 1 {
                        None
                    } else {
                        Some(LayerSpec::Flatten { name: None })
                    }
                } else {
                    return Err(node_error(
                        node,
                        format!(
                            "reshapes per-sample shape {shape:?} to {target:?}; only flattening \
                             to [batch, {total}] is supported"
                        ),
                    ));
                }
            }
            "GlobalAveragePool" => Some(LayerSpec::AdaptiveAvgPool2d {
                name: None,
                output_size: Pair::square(1),
            }),
            "MaxPool" | "AveragePool" => Some(self.pool(node)?),
            "Conv" => Some(self.conv(node, shape)?),
            "Gemm" => Some(self.gemm(node, shape)?),
            "BatchNormalization" => Some(self.batch_norm(node, shape)?),
            "MatMul" => {
                let (layer, out) = self.matmul(node, shape)?;
                let shape_out = layer
                    .output_shape(shape)
                    .map_err(|reason| node_error(&self.nodes[index], reason))?;
                return Ok((Some(layer), out, shape_out));
            }
            "Add" => {
                return Err(node_error(
                    node,
                    "adds a constant that does not follow a MatMul (not a bias)",
                ))
            }
            other => return Err(node_error(node, format!("`{other}` is not supported"))),
        };
        let out_shape = match &layer {
            Some(layer) => layer.output_shape(shape).map_err(|reason| {
                node_error(node, format!("shape-inconsistent graph: {reason}"))
            })?,
            None => shape.to_vec(),
        };
        Ok((layer, output, out_shape))
    }

    fn conv(&mut self, node: &Node, shape: &[usize]) -> Result<LayerSpec, ModelError> {
        let weight = self.constant(node, 1, "weight")?.clone();
        let bias = match node.inputs.get(2).filter(|n| !n.is_empty()) {
            Some(_) => Some(self.constant(node, 2, "bias")?.clone()),
            None => None,
        };
        let [out_channels, in_per_group, kh, kw] = weight.dims.as_slice() else {
            return Err(node_error(
                node,
                format!(
                    "weight has shape {:?}; gauntlet runs 2-D convolutions",
                    weight.dims
                ),
            ));
        };
        let groups = usize::try_from(node.int("group", 1)).unwrap_or(0);
        if let Some(kernel) = node.ints("kernel_shape") {
            if kernel != [*kh as i64, *kw as i64] {
                return Err(node_error(
                    node,
                    format!(
                        "kernel_shape {kernel:?} disagrees with the weight's {:?}",
                        weight.dims
                    ),
                ));
            }
        }
        check_auto_pad(node)?;
        let stride = square(node, "strides", 1)?;
        let dilation = square(node, "dilations", 1)?;
        let padding = symmetric_pads(node, true)?;
        let in_channels = in_per_group * groups.max(1);
        if shape.first() != Some(&in_channels) {
            return Err(node_error(
                node,
                format!("shape-inconsistent graph: the weight expects {in_channels} input channels, the input has shape {shape:?}"),
            ));
        }
        let mut weights: LayerWeights =
            vec![("weight", weight.dims.clone(), weight.floats.clone())];
        if let Some(bias) = &bias {
            if bias.floats.len() != *out_channels {
                return Err(node_error(
                    node,
                    format!(
                        "bias has {} values for {out_channels} channels",
                        bias.floats.len()
                    ),
                ));
            }
            weights.push(("bias", vec![*out_channels], bias.floats.clone()));
        }
        let name = self.layer_name(node, &node.inputs[1], weights);
        Ok(LayerSpec::Conv2d {
            name: Some(name),
            in_channels,
            out_channels: *out_channels,
            kernel_size: Pair {
                height: *kh,
                width: *kw,
            },
            stride,
            padding,
            dilation,
            groups,
            bias: bias.is_some(),
        })
    }

    fn gemm(&mut self, node: &Node, shape: &[usize]) -> Result<LayerSpec, ModelError> {
        if node.int("transA", 0) != 0 {
            return Err(node_error(
                node,
                "transA = 1 (a transposed batch) is not supported",
            ));
        }
        let alpha = node.float("alpha", 1.0);
        let beta = node.float("beta", 1.0);
        let b = self.constant(node, 1, "weight")?.clone();
        let [rows, cols] = b.dims.as_slice() else {
            return Err(node_error(
                node,
                format!("weight has shape {:?}, expected 2-D", b.dims),
            ));
        };
        let (out_features, in_features, mut weight) = if node.int("transB", 0) != 0 {
            (*rows, *cols, b.floats.clone())
        } else {
            (*cols, *rows, transpose(&b.floats, *rows, *cols))
        };
        if shape != [in_features] {
            return Err(node_error(
                node,
                format!("shape-inconsistent graph: expects per-sample shape [{in_features}], its input has {shape:?}"),
            ));
        }
        if alpha != 1.0 {
            weight.iter_mut().for_each(|w| *w *= alpha);
        }
        let mut weights: LayerWeights = vec![("weight", vec![out_features, in_features], weight)];
        let has_bias = node.inputs.get(2).is_some_and(|n| !n.is_empty());
        if has_bias {
            let c = self.constant(node, 2, "bias")?;
            let mut bias = broadcast_bias(node, c, out_features)?;
            if beta != 1.0 {
                bias.iter_mut().for_each(|v| *v *= beta);
            }
            weights.push(("bias", vec![out_features], bias));
        }
        let name = self.layer_name(node, &node.inputs[1], weights);
        Ok(LayerSpec::Linear {
            name: Some(name),
            in_features,
            out_features,
            bias: has_bias,
        })
    }

    /// `MatMul(x, W)` with `W` `[in, out]`, and a following `Add(·, b)` as its bias.
    fn matmul(&mut self, node: &Node, shape: &[usize]) -> Result<(LayerSpec, String), ModelError> {
        let w = self.constant(node, 1, "weight")?.clone();
        let [in_features, out_features] = w.dims.as_slice() else {
            return Err(node_error(
                node,
                format!("weight has shape {:?}, expected 2-D", w.dims),
            ));
        };
        if shape != [*in_features] {
            return Err(node_error(
                node,
                format!("shape-inconsistent graph: expects per-sample shape [{in_features}], its input has {shape:?}"),
            ));
        }
        let output = self.single_output(node)?;
        let mut weights: LayerWeights = vec![(
            "weight",
            vec![*out_features, *in_features],
            transpose(&w.floats, *in_features, *out_features),
        )];
        let mut end = output.clone();
        let consumers = self.consumers_of(&output);
        let mut has_bias = false;
        if let [next] = consumers.as_slice() {
            let add = &self.nodes[*next];
            if add.op_type == "Add" && !self.is_join(*next) {
                let constant_at = usize::from(add.inputs.first() == Some(&output));
                let c = self.constant(add, constant_at, "bias")?;
                let bias = broadcast_bias(add, c, *out_features)?;
                weights.push(("bias", vec![*out_features], bias));
                has_bias = true;
                self.done[*next] = true;
                end = self.single_output(add)?;
            }
        }
        let name = self.layer_name(node, &node.inputs[1], weights);
        Ok((
            LayerSpec::Linear {
                name: Some(name),
                in_features: *in_features,
                out_features: *out_features,
                bias: has_bias,
            },
            end,
        ))
    }

    fn batch_norm(&mut self, node: &Node, shape: &[usize]) -> Result<LayerSpec, ModelError> {
        if node.int("training_mode", 0) != 0 {
            return Err(node_error(
                node,
                "training_mode = 1 is not an inference graph",
            ));
        }
        let eps = f64::from(node.float("epsilon", 1e-5));
        let momentum = 1.0 - f64::from(node.float("momentum", 0.9));
        let channels = shape.first().copied().unwrap_or(0);
        let mut weights: LayerWeights = Vec::new();
        for (at, suffix) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let c = self.constant(node, at, suffix)?;
            if c.floats.len() != channels {
                return Err(node_error(
                    node,
                    format!(
                        "shape-inconsistent graph: {suffix} has {} values for {channels} channels",
                        c.floats.len()
                    ),
                ));
            }
            weights.push((suffix, vec![channels], c.floats.clone()));
        }
        let name = self.layer_name(node, &node.inputs[1], weights);
        Ok(match shape.len() {
            3 => LayerSpec::BatchNorm2d {
                name: Some(name),
                num_features: channels,
                eps,
                momentum: momentum.clamp(0.0, 1.0),
            },
            1 | 2 => LayerSpec::BatchNorm1d {
                name: Some(name),
                num_features: channels,
                eps,
                momentum: momentum.clamp(0.0, 1.0),
            },
            _ => {
                return Err(node_error(
                    node,
                    format!("batch norm over per-sample shape {shape:?}"),
                ))
            }
        })
    }

    fn pool(&self, node: &Node) -> Result<LayerSpec, ModelError> {
        check_auto_pad(node)?;
        if node.int("ceil_mode", 0) != 0 {
            return Err(node_error(
                node,
                "ceil_mode = 1 is not supported (gauntlet pools in floor mode)",
            ));
        }
        let kernel = node
            .ints("kernel_shape")
            .ok_or_else(|| node_error(node, "has no kernel_shape"))?;
        let kernel = pair(node, "kernel_shape", kernel)?;
        let stride = match node.ints("strides") {
            Some(strides) => pair(node, "strides", strides)?,
            None => Pair::square(1),
        };
        let pads = symmetric_pad_pair(node)?;
        if node.op_type == "MaxPool" {
            let dilation = match node.ints("dilations") {
                Some(d) => pair(node, "dilations", d)?,
                None => Pair::square(1),
            };
            Ok(LayerSpec::MaxPool2d {
                name: None,
                kernel_size: kernel,
                stride: Some(stride),
                padding: pads,
                dilation,
            })
        } else {
            if pads != Pair::square(0) && node.int("count_include_pad", 0) == 0 {
                return Err(node_error(
                    node,
                    "padded average pooling with count_include_pad = 0 is not supported \
                     (gauntlet counts the padding, as PyTorch's default)",
                ));
            }
            Ok(LayerSpec::AvgPool2d {
                name: None,
                kernel_size: kernel,
                stride: Some(stride),
                padding: pads,
            })
        }
    }
}

fn check_auto_pad(node: &Node) -> Result<(), ModelError> {
    match node.attribute("auto_pad").and_then(|a| a.s.as_deref()) {
        None | Some(b"NOTSET") => Ok(()),
        Some(b"VALID") if node.ints("pads").is_none_or(|p| p.iter().all(|&x| x == 0)) => Ok(()),
        Some(other) => Err(node_error(
            node,
            format!(
                "auto_pad = {} is not supported; export with explicit pads",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

fn pair(node: &Node, key: &str, values: &[i64]) -> Result<Pair, ModelError> {
    let [h, w] = values else {
        return Err(node_error(
            node,
            format!("{key} = {values:?}; gauntlet runs 2-D pooling"),
        ));
    };
    let size = |v: i64| {
        usize::try_from(v).map_err(|_| node_error(node, format!("{key} = {values:?} is negative")))
    };
    Ok(Pair {
        height: size(*h)?,
        width: size(*w)?,
    })
}

/// A conv attribute that gauntlet's conv2d takes as one number for both dimensions.
fn square(node: &Node, key: &str, default: usize) -> Result<usize, ModelError> {
    let Some(values) = node.ints(key) else {
        return Ok(default);
    };
    let p = pair(node, key, values)?;
    if !p.is_square() {
        return Err(node_error(
            node,
            format!("per-dimension {key} {values:?} are not supported by gauntlet's conv2d (one value for both dimensions)"),
        ));
    }
    Ok(p.height)
}

/// `pads = [top, left, bottom, right]` as one symmetric pair.
fn symmetric_pad_pair(node: &Node) -> Result<Pair, ModelError> {
    let Some(pads) = node.ints("pads") else {
        return Ok(Pair::square(0));
    };
    let [top, left, bottom, right] = pads else {
        return Err(node_error(
            node,
            format!("pads = {pads:?}; expected four values"),
        ));
    };
    if top != bottom || left != right {
        return Err(node_error(
            node,
            format!("asymmetric pads {pads:?} are not supported (PyTorch pads both sides equally)"),
        ));
    }
    pair(node, "pads", &[*top, *left])
}

fn symmetric_pads(node: &Node, conv: bool) -> Result<usize, ModelError> {
    let pads = symmetric_pad_pair(node)?;
    if conv && !pads.is_square() {
        return Err(node_error(
            node,
            format!("per-dimension padding {pads} is not supported by gauntlet's conv2d"),
        ));
    }
    Ok(pads.height)
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn broadcast_bias(node: &Node, c: &Constant, out: usize) -> Result<Vec<f32>, ModelError> {
    let count: usize = c.dims.iter().product();
    if count == out && c.dims.iter().filter(|&&d| d != 1).count() <= 1 {
        Ok(c.floats.clone())
    } else if count == 1 {
        Ok(vec![c.floats[0]; out])
    } else {
        Err(node_error(
            node,
            format!(
                "shape-inconsistent graph: bias of shape {:?} for {out} outputs",
                c.dims
            ),
        ))
    }
}

fn constant_node(node: &Node, folder: Option<&Path>) -> Result<Constant, ModelError> {
    if let Some(tensor) = node.attribute("value").and_then(|a| a.t.as_ref()) {
        return decode_tensor(tensor, folder);
    }
    if let Some(f) = node.attribute("value_float").and_then(|a| a.f) {
        return Ok(Constant {
            dims: vec![],
            floats: vec![f],
            ints: None,
        });
    }
    if let Some(i) = node.attribute("value_int").and_then(|a| a.i) {
        return Ok(Constant {
            dims: vec![],
            floats: vec![i as f32],
            ints: Some(vec![i]),
        });
    }
    if let Some(attribute) = node.attribute("value_ints") {
        let ints = attribute.ints.clone();
        return Ok(Constant {
            dims: vec![ints.len()],
            floats: ints.iter().map(|&i| i as f32).collect(),
            ints: Some(ints),
        });
    }
    if let Some(attribute) = node.attribute("value_floats") {
        return Ok(Constant {
            dims: vec![attribute.floats.len()],
            floats: attribute.floats.clone(),
            ints: None,
        });
    }
    Err(node_error(
        node,
        "a Constant form gauntlet does not read (sparse or string)",
    ))
}

/// Decodes an initializer (inline or external data) into host values.
fn decode_tensor(tensor: &TensorProto, folder: Option<&Path>) -> Result<Constant, ModelError> {
    let name = &tensor.name;
    let fail = |reason: String| onnx_error(format!("initializer `{name}`: {reason}"));
    let dims = tensor
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| fail(format!("negative dimension in {:?}", tensor.dims)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fail("an element count that overflows".to_string()))?;
    let external;
    let raw: Option<&[u8]> = if tensor.data_location_external || !tensor.external.is_empty() {
        external = read_external(tensor, folder)?;
        Some(&external)
    } else {
        tensor.raw_data.as_deref()
    };
    let expect = |size: usize, raw: &[u8]| -> Result<(), ModelError> {
        if Some(raw.len()) != count.checked_mul(size) {
            return Err(fail(format!(
                "holds {} bytes, but shape {dims:?} needs {}",
                raw.len(),
                count.saturating_mul(size)
            )));
        }
        Ok(())
    };
    let (floats, ints) = match tensor.data_type {
        data_type::FLOAT => match raw {
            Some(raw) => {
                expect(4, raw)?;
                (
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    None,
                )
            }
            None => (tensor.float_data.clone(), None),
        },
        data_type::DOUBLE => match raw {
            Some(raw) => {
                expect(8, raw)?;
                let values = raw.chunks_exact(8).map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                });
                (values.collect(), None)
            }
            None => (tensor.double_data.iter().map(|&v| v as f32).collect(), None),
        },
        data_type::FLOAT16 | data_type::BFLOAT16 => {
            let bits: Vec<u16> = match raw {
                Some(raw) => {
                    expect(2, raw)?;
                    raw.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect()
                }
                None => tensor.int32_data.iter().map(|&v| v as u16).collect(),
            };
            let floats = bits
                .into_iter()
                .map(|b| {
                    if tensor.data_type == data_type::FLOAT16 {
                        half_to_f32(b)
                    } else {
                        f32::from_bits(u32::from(b) << 16)
                    }
                })
                .collect();
            (floats, None)
        }
        data_type::INT64 | data_type::INT32 => {
            let ints: Vec<i64> = match raw {
                Some(raw) if tensor.data_type == data_type::INT64 => {
                    expect(8, raw)?;
                    raw.chunks_exact(8)
                        .map(|c| {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(c);
                            i64::from_le_bytes(a)
                        })
                        .collect()
                }
                Some(raw) => {
                    expect(4, raw)?;
                    raw.chunks_exact(4)
                        .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect()
                }
                None if tensor.data_type == data_type::INT64 => tensor.int64_data.clone(),
                None => tensor.int32_data.clone(),
            };
            (ints.iter().map(|&i| i as f32).collect(), Some(ints))
        }
        other => {
            return Err(fail(format!(
                "element type {other} is not one gauntlet reads"
            )))
        }
    };
    if floats.len() != count {
        return Err(fail(format!(
            "holds {} values, but shape {dims:?} needs {count}",
            floats.len()
        )));
    }
    if let Some((index, value)) = floats.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(fail(format!(
            "non-finite value {value} at flat index {index}"
        )));
    }
    Ok(Constant { dims, floats, ints })
}

/// IEEE half → f32.
fn half_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let value = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(value)
}

/// Reads an initializer's external data: only a relative path inside `folder`, with no `..`
/// and no symbolic link on the way, and `offset`/`length` inside the file.
fn read_external(tensor: &TensorProto, folder: Option<&Path>) -> Result<Vec<u8>, ModelError> {
    let name = &tensor.name;
    let fail = |reason: String| onnx_error(format!("initializer `{name}`: external data {reason}"));
    let Some(folder) = folder else {
        return Err(fail(
            "cannot be read: the model was given as bytes, with no folder".to_string(),
        ));
    };
    let field = |key: &str| {
        tensor
            .external
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let location = field("location").ok_or_else(|| fail("has no `location`".to_string()))?;
    let relative = Path::new(location);
    if location.is_empty()
        || location.contains('\\')
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(fail(format!(
            "location `{location}` is not a plain relative path inside the model's folder"
        )));
    }
    let mut at = folder.to_path_buf();
    for component in relative.components() {
        at.push(component);
        let metadata = std::fs::symlink_metadata(&at)
            .map_err(|e| fail(format!("`{}` cannot be read: {e}", at.display())))?;
        if metadata.file_type().is_symlink() {
            return Err(fail(format!(
                "`{}` is a symbolic link; gauntlet does not follow links out of the model's folder",
                at.display()
            )));
        }
    }
    let bytes = gauntlet_files::read_bounded(&at, gauntlet_files::limits::WEIGHTS)?;
    let parse = |key: &str| -> Result<Option<usize>, ModelError> {
        field(key)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| fail(format!("{key} `{v}` is not a number")))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?.unwrap_or(bytes.len().saturating_sub(offset));
    let end = offset
        .checked_add(length)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            fail(format!(
                "offset {offset} + length {length} runs past the end of `{location}` ({} bytes)",
                bytes.len()
            ))
        })?;
    Ok(bytes[offset..end].to_vec())
}

fn to_safetensors(named: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Vec<u8>, ModelError> {
    use safetensors::tensor::TensorView;
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, bytes) in &buffers {
        let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
            .map_err(|source| ModelError::SafetensorsFormat { source })?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|source| ModelError::SafetensorsFormat { source })
}
