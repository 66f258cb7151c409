//! The envelope front door: `PlannedOperation::from_json_slice` on arbitrary
//! bytes never panics, and whatever it accepts round-trips: its canonical form
//! parses again to the same operation with the same digest and config hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mex_envelope::PlannedOperation;

fuzz_target!(|data: &[u8]| {
    let Ok(op) = PlannedOperation::from_json_slice(data) else {
        return;
    };
    let canonical = op.canonical_bytes().unwrap_or_else(|e| {
        panic!("accepted operation cannot be canonicalized: {e}");
    });
    let again = PlannedOperation::from_json_slice(&canonical).unwrap_or_else(|e| {
        panic!(
            "the canonical form of an accepted operation is refused: {e}\n{}",
            String::from_utf8_lossy(&canonical)
        )
    });
    assert_eq!(
        again.canonical_bytes().ok(),
        Some(canonical),
        "canonical form is not stable"
    );
    assert_eq!(
        again.config_hash().ok(),
        op.config_hash().ok(),
        "config hash changed"
    );
});
