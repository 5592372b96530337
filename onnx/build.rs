// Generates prost types from the official onnx.proto (copied from the PyPI `onnx` wheel, Apache-2.0).
fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["onnx.proto"], ["proto"]).expect("compile onnx.proto");
    prost_build::Config::new().compile_fds(fds).expect("generate ONNX types");
}
