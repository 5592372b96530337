#![no_main]
//! See `bioedge_fuzz::image`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("image", data);
});
