#![no_main]
//! See `bioedge_fuzz::onnx`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("onnx", data);
});
