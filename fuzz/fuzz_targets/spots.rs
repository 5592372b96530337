#![no_main]
//! See `bioedge_fuzz::spots`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("spots", data);
});
