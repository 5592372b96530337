#![no_main]
//! See `bioedge_fuzz::cls`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("cls", data);
});
