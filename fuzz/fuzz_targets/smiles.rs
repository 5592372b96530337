#![no_main]
//! See `bioedge_fuzz::smiles`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("smiles", data);
});
