#![no_main]
//! See `bioedge_fuzz::table`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("table", data);
});
