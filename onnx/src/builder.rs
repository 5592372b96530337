//! A small builder for ONNX graphs: named inputs with symbolic dims, f32/i64 initializers, nodes.

use crate::pb::{
    self, AttributeProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto,
};

/// A dimension of a graph input or output: fixed, or symbolic (`dim_param`). Inputs whose sizes
/// must agree share one symbolic name (tract requires it).
#[derive(Debug, Clone)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Fixed(i64),
    /// A symbolic size, named (`dim_param`).
    Sym(String),
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Fixed(v)
    }
}
impl From<usize> for Dim {
    fn from(v: usize) -> Self {
        Dim::Fixed(v as i64)
    }
}
impl From<&str> for Dim {
    fn from(v: &str) -> Self {
        Dim::Sym(v.to_string())
    }
}

/// Element type of a graph input/output.
#[derive(Debug, Clone, Copy)]
pub enum Elem {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
}

impl Elem {
    fn code(self) -> i32 {
        match self {
            Elem::F32 => DataType::Float as i32,
            Elem::I64 => DataType::Int64 as i32,
        }
    }
}

/// An attribute value for [`GraphBuilder::node`].
#[derive(Debug, Clone)]
pub enum Attr {
    /// An integer attribute.
    Int(i64),
    /// A float attribute.
    Float(f32),
    /// A list of integers (e.g. `perm`, `axes`).
    Ints(Vec<i64>),
    /// A string attribute.
    Str(String),
    /// A 1-element f32 tensor (e.g. ConstantOfShape's `value`).
    ScalarTensor(f32),
}

/// Builds one ONNX graph step by step; [`GraphBuilder::finish`] wraps it in a model.
#[derive(Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    counter: usize,
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => dimension::Value::DimValue(*v),
                Dim::Sym(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem.code()),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        let mut b = Self::default();
        b.graph.name = Some(name.into());
        b
    }

    /// Declare a graph input; returns its name.
    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declare a graph output (produce it with [`GraphBuilder::node_to`]).
    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    fn init_raw(&mut self, name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>, len: usize) -> String {
        assert_eq!(dims.iter().product::<usize>(), len, "initializer {name}: shape mismatch");
        let name = self.fresh(name);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// An f32 initializer with the given shape.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        self.init_raw(name, dims, DataType::Float, data.iter().flat_map(|v| v.to_le_bytes()).collect(), data.len())
    }

    /// An i32 initializer with the given shape.
    pub fn init_i32(&mut self, name: &str, dims: &[usize], data: Vec<i32>) -> String {
        self.init_raw(name, dims, DataType::Int32, data.iter().flat_map(|v| v.to_le_bytes()).collect(), data.len())
    }

    /// An i64 initializer with the given shape.
    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: Vec<i64>) -> String {
        self.init_raw(name, dims, DataType::Int64, data.iter().flat_map(|v| v.to_le_bytes()).collect(), data.len())
    }

    /// A scalar f32 constant (rank 0).
    pub fn scalar(&mut self, name: &str, v: f32) -> String {
        self.init_f32(name, &[], vec![v])
    }

    /// Add a node with one output; returns the output name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, &[&out], attrs);
        out
    }

    /// Add a node writing to the given output names (use for graph outputs).
    pub fn node_to(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) {
        let attribute = attrs
            .iter()
            .map(|(k, v)| {
                let mut a = AttributeProto { name: Some(k.to_string()), ..Default::default() };
                match v {
                    Attr::Int(i) => {
                        a.i = Some(*i);
                        a.r#type = Some(AttributeType::Int as i32);
                    }
                    Attr::Float(f) => {
                        a.f = Some(*f);
                        a.r#type = Some(AttributeType::Float as i32);
                    }
                    Attr::Ints(v) => {
                        a.ints = v.clone();
                        a.r#type = Some(AttributeType::Ints as i32);
                    }
                    Attr::Str(s) => {
                        a.s = Some(s.as_bytes().to_vec());
                        a.r#type = Some(AttributeType::String as i32);
                    }
                    Attr::ScalarTensor(v) => {
                        a.t = Some(TensorProto {
                            dims: vec![1],
                            data_type: Some(DataType::Float as i32),
                            raw_data: Some(v.to_le_bytes().to_vec()),
                            ..Default::default()
                        });
                        a.r#type = Some(AttributeType::Tensor as i32);
                    }
                }
                a
            })
            .collect();
        let name = self.fresh(op);
        self.graph.node.push(NodeProto {
            name: Some(name),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
    }

    // Shorthands for common ops.
    /// A node `op(a, b)` without attributes; returns the output name.
    pub fn op2(&mut self, op: &str, a: &str, b: &str) -> String {
        self.node(op, &[a, b], &[])
    }
    /// A node `op(a)` without attributes; returns the output name.
    pub fn op1(&mut self, op: &str, a: &str) -> String {
        self.node(op, &[a], &[])
    }
    /// `Transpose` of `a` with permutation `perm`; returns the output name.
    pub fn transpose(&mut self, a: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[a], &[("perm", Attr::Ints(perm.to_vec()))])
    }

    /// Finish: a model with opset 18, the given producer and metadata.
    pub fn finish(self, producer: &str, metadata: Vec<(String, String)>) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: Some(crate::IR_VERSION),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(crate::OPSET) }],
            producer_name: Some(producer.into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(self.graph),
            metadata_props: metadata.into_iter().map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) }).collect(),
            ..Default::default()
        }
    }
}
