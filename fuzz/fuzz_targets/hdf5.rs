#![no_main]
//! See `bioedge_fuzz::hdf5`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bioedge_fuzz::run("hdf5", data);
});
