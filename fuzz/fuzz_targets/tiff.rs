#![no_main]
//! See `bioedge_fuzz::tiff`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("tiff", data);
});
