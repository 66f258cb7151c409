//! Property tests: any payload is stored in a form whose hash survives the
//! JSON round trip, and a planted secret never survives redaction.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_recorder::{Event, EventDraft, EventKind, EventQuery, FlightRecorder, MemoryRecorder};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9 _\\-é€😀]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Where to hide the secret in a payload.
#[derive(Debug, Clone, Copy)]
enum Hide {
    Marked,
    UnderKey(&'static str),
}

fn plant(payload: Value, secret: &str, hide: Hide, depth: usize) -> Value {
    let hidden = match hide {
        Hide::Marked => ("value".to_owned(), json!({"$secret": secret})),
        Hide::UnderKey(k) => (k.to_owned(), json!(secret)),
    };
    let mut wrapper = Map::new();
    wrapper.insert("data".to_owned(), payload);
    let mut inner = Map::new();
    inner.insert(hidden.0, hidden.1);
    let mut nested = Value::Object(inner);
    for _ in 0..depth {
        nested = json!([{"level": nested}]);
    }
    wrapper.insert("deep".to_owned(), nested);
    Value::Object(wrapper)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn stored_events_rehash_after_a_json_round_trip(payload in json_value()) {
        let rec = MemoryRecorder::new();
        let e = rec.append(EventDraft::new(EventKind::OpReceived).with_op_id(Uuid::nil()).with_payload(payload)).unwrap();
        prop_assert!(e.hash_is_valid());
        let line = e.to_canonical_json().unwrap();
        let back: Event = serde_json::from_slice(&line).unwrap();
        prop_assert!(back.hash_is_valid(), "hash changed through JSON: {}", String::from_utf8_lossy(&line));
        prop_assert_eq!(back.hash, e.hash);
        prop_assert!(rec.verify().unwrap().is_ok());
    }

    #[test]
    fn planted_secrets_never_survive(
        payload in json_value(),
        secret in "[A-Za-z0-9]{12,24}",
        which in 0usize..6,
        depth in 0usize..5,
    ) {
        let hide = [
            Hide::Marked,
            Hide::UnderKey("password"),
            Hide::UnderKey("api_key"),
            Hide::UnderKey("X-Auth-Token"),
            Hide::UnderKey("clientSecret"),
            Hide::UnderKey("credentials"),
        ][which];
        let secret = format!("S3cret{secret}");
        let rec = MemoryRecorder::new();
        rec.append(EventDraft::new(EventKind::OpReceived).with_op_id(Uuid::nil()).with_payload(plant(payload, &secret, hide, depth))).unwrap();
        let text = serde_json::to_string(&rec.events(&EventQuery::all()).unwrap()).unwrap();
        prop_assert!(!text.contains(&secret), "{hide:?} leaked: {text}");
    }
}
