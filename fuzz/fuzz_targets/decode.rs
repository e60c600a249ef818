//! Fuzzes the frame decoder through `secure_link::fuzzing::check_decoder`,
//! which asserts the decoder's contract (no panic, no payload over the
//! maximum, bounded reservation, valid frames decode exactly).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    secure_link::fuzzing::check_decoder(data);
});
