#![no_main]
//! See `bioedge_fuzz::mol_csv`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("mol_csv", data);
});
