#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::service_declarative_file(data));
