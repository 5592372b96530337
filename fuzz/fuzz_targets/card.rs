#![no_main]
//! See `bioedge_fuzz::card`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("card", data);
});
