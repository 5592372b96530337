#![no_main]
//! See `bioedge_fuzz::gmt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("gmt", data);
});
