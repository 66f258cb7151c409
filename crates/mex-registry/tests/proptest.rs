//! Property tests: the loader never panics, whatever it is fed, and always
//! answers with either a registry or located problems.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;

use mex_registry::{Registry, RegistryError};
use proptest::prelude::*;
use serde_json::Value;

fn base_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken")
}

fn check(text: &str) {
    match Registry::from_str(text, base_dir()) {
        Ok(_) => {}
        Err(RegistryError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(p.line >= 1 && p.column >= 1);
            }
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        // Strings that look like the registry's vocabulary as well as noise.
        prop_oneof![
            Just("engine.demo".to_owned()),
            Just("demo.run".to_owned()),
            Just("D2".to_owned()),
            Just("1.0".to_owned()),
            Just("fs.read:inputs".to_owned()),
            Just("G-SAFETY.SANDBOX".to_owned()),
            Just("../x".to_owned()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("registry_version".to_owned()),
        Just("engines".to_owned()),
        Just("engine_id".to_owned()),
        Just("operations".to_owned()),
        Just("params_schema".to_owned()),
        Just("inline".to_owned()),
        Just("file".to_owned()),
        Just("name".to_owned()),
        "[a-z_$]{1,10}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn never_panics_on_json_values(v in json_value()) {
        check(&serde_json::to_string_pretty(&v).unwrap());
    }

    /// Mutations of a valid registry: one value replaced anywhere.
    #[test]
    fn never_panics_on_mutated_registries(path_seed in any::<u64>(), v in json_value()) {
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid-minimal.json"),
        ).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        // Walk down pseudo-randomly to pick a pointer, then replace that value.
        let mut pointer = String::new();
        let mut node = &doc;
        let mut seed = path_seed;
        while seed % 4 != 0 {
            let next = match node {
                Value::Object(m) if !m.is_empty() => m
                    .iter()
                    .nth((seed as usize / 4) % m.len())
                    .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)),
                Value::Array(a) if !a.is_empty() => {
                    let i = (seed as usize / 4) % a.len();
                    Some((i.to_string(), &a[i]))
                }
                _ => None,
            };
            let Some((token, child)) = next else { break };
            pointer.push('/');
            pointer.push_str(&token);
            node = child;
            seed /= 7;
        }
        *doc.pointer_mut(&pointer).unwrap() = v;
        check(&serde_json::to_string_pretty(&doc).unwrap());
    }
}
