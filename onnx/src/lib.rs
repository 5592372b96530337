pub mod pb { include!(concat!(env!("OUT_DIR"), "/onnx.rs")); }
