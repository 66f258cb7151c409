//! Snapshots of the generated JSON Schemas: a change to the wire contract
//! shows up as a reviewed snapshot diff.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

#[test]
fn schemas_snapshot() {
    for named in mex_envelope::schema::all() {
        insta::assert_json_snapshot!(named.name, named.schema);
    }
}
