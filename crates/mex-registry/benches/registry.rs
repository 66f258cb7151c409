//! Criterion benchmarks: load + compile of the shipped registry, and params
//! validation of one typical operation.
#![allow(
    clippy::unwrap_used,
    missing_docs,
    reason = "benchmarks fail loudly on a broken setup instead of handling it"
)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use mex_registry::Registry;

fn registry_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join("mechanical_engines.json")
}

fn load(c: &mut Criterion) {
    let path = registry_path();
    c.bench_function("load_and_compile_shipped_registry", |b| {
        b.iter(|| Registry::load(black_box(&path)).unwrap())
    });
}

fn validate(c: &mut Criterion) {
    let registry = Registry::load(registry_path()).unwrap();
    let engine = "engine.physics".parse().unwrap();
    let op = "physics.evaluate_formula".parse().unwrap();
    let operation = registry.operation(&engine, &op).unwrap();
    let params = serde_json::json!({
        "expr_ref": "00000000-0000-4000-8000-000000000001",
        "vars_ref": "00000000-0000-4000-8000-000000000002",
        "output_unit": "Pa"
    });
    assert!(operation.params_are_valid(&params));
    c.bench_function("validate_params_physics_evaluate_formula", |b| {
        b.iter(|| operation.validate_params(black_box(&params)).unwrap())
    });
}

criterion_group!(benches, load, validate);
criterion_main!(benches);
