//! A small, bounded protobuf reader for the parts of ONNX's `ModelProto` that gauntlet compiles:
//! opset imports, the graph's nodes, initializers, inputs and outputs. Every length is checked
//! against the bytes that remain, so a truncated or hostile file is an error naming the message
//! and offset, never a panic or an allocation sized by the file.

use std::fmt;

/// Graphs with more nodes or initializers than this are refused (a bound on what a file can
/// make gauntlet allocate per entry, far above any classifier's graph).
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireError {
    pub what: String,
    pub offset: usize,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.what, self.offset)
    }
}

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8], usize),
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, at: usize, what: impl Into<String>) -> WireError {
        WireError {
            what: what.into(),
            offset: self.base + at,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.position;
        let mut value = 0u64;
        for index in 0..10u32 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(self.error(
                    start,
                    "a varint runs past the end of its message (truncated file?)",
                ));
            };
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(start, "a varint is longer than 10 bytes"))
    }

    fn take(&mut self, count: u64) -> Result<(&'a [u8], usize), WireError> {
        let start = self.position;
        let end = usize::try_from(count)
            .ok()
            .and_then(|count| start.checked_add(count))
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                self.error(
                    start,
                    format!(
                        "a field claims {count} bytes but only {} remain in its message (truncated file?)",
                        self.bytes.len() - start
                    ),
                )
            })?;
        self.position = end;
        Ok((&self.bytes[start..end], self.base + start))
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, WireError> {
        if self.position >= self.bytes.len() {
            return Ok(None);
        }
        let tag_at = self.position;
        let tag = self.varint()?;
        let number = tag >> 3;
        let value = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let (b, _) = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Wire::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = self.varint()?;
                let (b, at) = self.take(len)?;
                Wire::Bytes(b, at)
            }
            5 => {
                let (b, _) = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Wire::Fixed32(u32::from_le_bytes(a))
            }
            other => {
                return Err(self.error(
                    tag_at,
                    format!("wire type {other} is not protobuf ONNX writes"),
                ))
            }
        };
        Ok(Some((number, value)))
    }
}

fn fields<'a>(
    bytes: &'a [u8],
    base: usize,
    mut visit: impl FnMut(u64, Wire<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut reader = Reader {
        bytes,
        position: 0,
        base,
    };
    while let Some((number, value)) = reader.next()? {
        visit(number, value)?;
    }
    Ok(())
}

fn bytes_of<'a>(value: Wire<'a>, what: &str, at: usize) -> Result<(&'a [u8], usize), WireError> {
    match value {
        Wire::Bytes(bytes, base) => Ok((bytes, base)),
        _ => Err(WireError {
            what: format!("{what} is not length-delimited"),
            offset: at,
        }),
    }
}

fn string(value: Wire<'_>, what: &str, at: usize) -> Result<String, WireError> {
    let (bytes, base) = bytes_of(value, what, at)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError {
        what: format!("{what} is not UTF-8"),
        offset: base,
    })
}

/// Repeated int64 fields, packed or not.
fn push_ints(out: &mut Vec<i64>, value: Wire<'_>, what: &str) -> Result<(), WireError> {
    match value {
        Wire::Varint(v) => out.push(v as i64),
        Wire::Bytes(bytes, base) => {
            let mut reader = Reader {
                bytes,
                position: 0,
                base,
            };
            while reader.position < bytes.len() {
                out.push(reader.varint()? as i64);
            }
        }
        _ => {
            return Err(WireError {
                what: format!("{what} has the wrong wire type"),
                offset: 0,
            })
        }
    }
    if out.len() > MAX_ENTRIES {
        return Err(WireError {
            what: format!("{what} has more than {MAX_ENTRIES} entries"),
            offset: 0,
        });
    }
    Ok(())
}

/// Repeated float fields, packed or not.
fn push_floats(out: &mut Vec<f32>, value: Wire<'_>, what: &str) -> Result<(), WireError> {
    match value {
        Wire::Fixed32(bits) => out.push(f32::from_bits(bits)),
        Wire::Bytes(bytes, base) => {
            if bytes.len() % 4 != 0 {
                return Err(WireError {
                    what: format!("packed {what} is not a whole number of floats"),
                    offset: base,
                });
            }
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        _ => {
            return Err(WireError {
                what: format!("{what} has the wrong wire type"),
                offset: 0,
            })
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    /// `(domain, version)`; the default domain is `""` (or `ai.onnx`).
    pub opsets: Vec<(String, i64)>,
    pub graph: Graph,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Attribute {
    pub name: String,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<Vec<u8>>,
    pub t: Option<TensorProto>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    /// Subgraphs (If/Loop bodies): recorded only so the op can be refused.
    pub has_graph: bool,
}

/// ONNX `TensorProto.DataType` values gauntlet reads.
pub(crate) mod data_type {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const BFLOAT16: i32 = 16;
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TensorProto {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i64>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub raw_data: Option<Vec<u8>>,
    /// `external_data` key/value pairs (`location`, `offset`, `length`).
    pub external: Vec<(String, String)>,
    pub data_location_external: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ValueInfo {
    pub name: String,
    pub elem_type: Option<i32>,
    /// `None` per dimension for a symbolic (`dim_param`) or missing size.
    pub shape: Option<Vec<Option<i64>>>,
}

pub(crate) fn parse_model(bytes: &[u8]) -> Result<Model, WireError> {
    let mut model = Model::default();
    let mut graphs = 0;
    fields(bytes, 0, |number, value| {
        match number {
            7 => {
                let (graph, base) = bytes_of(value, "ModelProto.graph", 0)?;
                model.graph = parse_graph(graph, base)?;
                graphs += 1;
            }
            8 => {
                let (opset, base) = bytes_of(value, "ModelProto.opset_import", 0)?;
                let mut domain = String::new();
                let mut version = 0;
                fields(opset, base, |n, v| {
                    match (n, v) {
                        (1, v) => domain = string(v, "OperatorSetIdProto.domain", base)?,
                        (2, Wire::Varint(x)) => version = x as i64,
                        _ => {}
                    }
                    Ok(())
                })?;
                model.opsets.push((domain, version));
            }
            _ => {}
        }
        Ok(())
    })?;
    if graphs != 1 {
        return Err(WireError {
            what: format!(
                "a model has one graph; this file has {graphs} (not an ONNX model, or truncated)"
            ),
            offset: 0,
        });
    }
    Ok(model)
}

fn parse_graph(bytes: &[u8], base: usize) -> Result<Graph, WireError> {
    let mut graph = Graph::default();
    fields(bytes, base, |number, value| {
        match number {
            1 => {
                let (b, at) = bytes_of(value, "GraphProto.node", base)?;
                graph.nodes.push(parse_node(b, at)?);
            }
            5 => {
                let (b, at) = bytes_of(value, "GraphProto.initializer", base)?;
                graph.initializers.push(parse_tensor(b, at)?);
            }
            11 | 12 => {
                let (b, at) = bytes_of(value, "GraphProto.input/output", base)?;
                let info = parse_value_info(b, at)?;
                if number == 11 {
                    graph.inputs.push(info);
                } else {
                    graph.outputs.push(info);
                }
            }
            15 => {
                return Err(WireError {
                    what: "sparse initializers are not supported".to_string(),
                    offset: base,
                })
            }
            _ => {}
        }
        if graph.nodes.len() + graph.initializers.len() > MAX_ENTRIES {
            return Err(WireError {
                what: format!("the graph has more than {MAX_ENTRIES} nodes and initializers"),
                offset: base,
            });
        }
        Ok(())
    })?;
    Ok(graph)
}

fn parse_node(bytes: &[u8], base: usize) -> Result<Node, WireError> {
    let mut node = Node::default();
    fields(bytes, base, |number, value| {
        match number {
            1 => node.inputs.push(string(value, "NodeProto.input", base)?),
            2 => node.outputs.push(string(value, "NodeProto.output", base)?),
            3 => node.name = string(value, "NodeProto.name", base)?,
            4 => node.op_type = string(value, "NodeProto.op_type", base)?,
            7 => node.domain = string(value, "NodeProto.domain", base)?,
            5 => {
                let (b, at) = bytes_of(value, "NodeProto.attribute", base)?;
                node.attributes.push(parse_attribute(b, at)?);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(node)
}

fn parse_attribute(bytes: &[u8], base: usize) -> Result<Attribute, WireError> {
    let mut attribute = Attribute::default();
    fields(bytes, base, |number, value| {
        match (number, value) {
            (1, v) => attribute.name = string(v, "AttributeProto.name", base)?,
            (2, Wire::Fixed32(bits)) => attribute.f = Some(f32::from_bits(bits)),
            (3, Wire::Varint(i)) => attribute.i = Some(i as i64),
            (4, v) => attribute.s = Some(bytes_of(v, "AttributeProto.s", base)?.0.to_vec()),
            (5, v) => {
                let (b, at) = bytes_of(v, "AttributeProto.t", base)?;
                attribute.t = Some(parse_tensor(b, at)?);
            }
            (6 | 11, _) => attribute.has_graph = true,
            (7, v) => push_floats(&mut attribute.floats, v, "AttributeProto.floats")?,
            (8, v) => push_ints(&mut attribute.ints, v, "AttributeProto.ints")?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(attribute)
}

fn parse_tensor(bytes: &[u8], base: usize) -> Result<TensorProto, WireError> {
    let mut tensor = TensorProto::default();
    fields(bytes, base, |number, value| {
        match (number, value) {
            (1, v) => push_ints(&mut tensor.dims, v, "TensorProto.dims")?,
            (2, Wire::Varint(t)) => tensor.data_type = t as i32,
            (4, v) => push_floats(&mut tensor.float_data, v, "TensorProto.float_data")?,
            (5, v) => push_ints(&mut tensor.int32_data, v, "TensorProto.int32_data")?,
            (7, v) => push_ints(&mut tensor.int64_data, v, "TensorProto.int64_data")?,
            (8, v) => tensor.name = string(v, "TensorProto.name", base)?,
            (9, v) => tensor.raw_data = Some(bytes_of(v, "TensorProto.raw_data", base)?.0.to_vec()),
            (10, Wire::Fixed64(bits)) => tensor.double_data.push(f64::from_bits(bits)),
            (10, Wire::Bytes(b, _)) => tensor.double_data.extend(b.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            })),
            (13, v) => {
                let (entry, at) = bytes_of(v, "TensorProto.external_data", base)?;
                let mut key = String::new();
                let mut val = String::new();
                fields(entry, at, |n, w| {
                    match n {
                        1 => key = string(w, "StringStringEntryProto.key", at)?,
                        2 => val = string(w, "StringStringEntryProto.value", at)?,
                        _ => {}
                    }
                    Ok(())
                })?;
                tensor.external.push((key, val));
            }
            (14, Wire::Varint(location)) => tensor.data_location_external = location == 1,
            _ => {}
        }
        Ok(())
    })?;
    Ok(tensor)
}

fn parse_value_info(bytes: &[u8], base: usize) -> Result<ValueInfo, WireError> {
    let mut info = ValueInfo::default();
    fields(bytes, base, |number, value| {
        match number {
            1 => info.name = string(value, "ValueInfoProto.name", base)?,
            2 => {
                // TypeProto.tensor_type (1): elem_type 1, shape 2.
                let (type_proto, at) = bytes_of(value, "ValueInfoProto.type", base)?;
                fields(type_proto, at, |n, v| {
                    if n != 1 {
                        return Ok(());
                    }
                    let (tensor_type, at) = bytes_of(v, "TypeProto.tensor_type", at)?;
                    fields(tensor_type, at, |n, v| {
                        match (n, v) {
                            (1, Wire::Varint(t)) => info.elem_type = Some(t as i32),
                            (2, v) => {
                                let (shape, at) = bytes_of(v, "TypeProto.Tensor.shape", at)?;
                                let mut dims = Vec::new();
                                fields(shape, at, |n, v| {
                                    if n != 1 {
                                        return Ok(());
                                    }
                                    let (dim, at) = bytes_of(v, "TensorShapeProto.dim", at)?;
                                    let mut size = None;
                                    fields(dim, at, |n, v| {
                                        if let (1, Wire::Varint(x)) = (n, v) {
                                            size = Some(x as i64);
                                        }
                                        Ok(())
                                    })?;
                                    dims.push(size);
                                    Ok(())
                                })?;
                                info.shape = Some(dims);
                            }
                            _ => {}
                        }
                        Ok(())
                    })
                })?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(info)
}

impl Node {
    pub(crate) fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.attribute(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub(crate) fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attribute(name).map(|a| a.ints.as_slice())
    }

    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        self.attribute(name).and_then(|a| a.f).unwrap_or(default)
    }

    /// How the node is named in messages: its name, else its first output.
    pub(crate) fn label(&self) -> String {
        if self.name.is_empty() {
            format!(
                "<{} → {}>",
                self.op_type,
                self.outputs.first().map(String::as_str).unwrap_or("?")
            )
        } else {
            self.name.clone()
        }
    }
}
