#![no_main]
//! See `bioedge_fuzz::planetoid`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("planetoid", data);
});
