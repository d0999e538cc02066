#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netdb_runtime::fuzzing::recovery(data));
