//! # mex-engine-physics: `engine.physics`, dimensional analysis with units
//!
//! Owns the in-process implementation `mex-engine-physics` of the registry's
//! `engine.physics` (determinism D3) and its three operations:
//!
//! | operation | params | output (one artifact, `application/json`, canonical RFC 8785) |
//! |---|---|---|
//! | `physics.evaluate_formula` | `expr_ref` (text/plain, one formula), `vars_ref` (application/json: `{"F": {"value": 10, "unit": "N"}, ...}`), `output_unit` | `dataset_slice`: `{expression, output_unit, variables, result, value, unit, exact}` |
//! | `physics.check_units` | `expr_ref` (text/plain, one expression per line, `#` comments), optional `unit_policy_ref` (`{"expected_unit": "Pa"}`) | `report`: every expression with `consistent`, its result or the mismatch |
//! | `physics.convert_units` | `doc_ref` (JSON quantities like `vars_ref`, or CSV `name,value,unit`), `target_system` (`metric`/`imperial`), `report_format` (`json`; `pdf` is refused) | `dataset_slice`: every quantity converted |
//!
//! Failure codes (the registry's catalogue): `PHYS_UNIT_MISMATCH` (quantities
//! of incompatible dimensions were combined, or the result cannot be
//! expressed in the asked unit), `PHYS_PARSE_ERROR` (an expression, a
//! variable file or a document does not parse), `PHYS_EVAL_ERROR` (unknown
//! variable, division by zero, cancelled, unsupported report format).
//! `check_units` *reports* mismatches (that is its job) and fails only when
//! an expression does not parse.
//!
//! It does not own admission, budgets, storage or provenance: it reads its
//! verified inputs and writes its outputs only through the runtime's
//! [`ExecutionContext`], and it is only ever called by the runtime.
//!
//! ## Units library: fend-core
//!
//! Arithmetic with units is delegated to [fend-core] (MIT, maintained since
//! 2019, no dependencies, arbitrary-precision rationals, several hundred
//! units including temperature offsets, `lbf`, `psi`, `kWh`), rather than
//! hand-written unit tables. Alternatives considered:
//!
//! * `uom`: type-safe but compile-time only; units written by a planner at
//!   run time (`"m^2"`, `"kW*h"`) cannot be parsed into its types.
//! * `dimensioned`: the same compile-time limitation.
//! * `rink-core`: runtime units and very complete, but it loads a units
//!   database (GNU units format) and currency data at startup; heavier and
//!   with more moving parts for a D3 engine.
//!
//! fend-core is D3-friendly: with a default `Context` it has no clock, no
//! random source and no exchange-rate handler (`today`, `roll d6` and
//! currencies fail), so identical inputs give identical bytes for a pinned
//! fend-core version, which is recorded in provenance (`environment.fend-core`).
//! Evaluation polls the run's cancellation flag through fend's `Interrupt`,
//! so a pathological expression stops at the wall-time deadline.
//! Variables are substituted textually as parenthesized quantities
//! (`F / A` becomes `(10 N) / (2 m^2)`), so a variable shadows a unit of the
//! same name (`F`, `A` are variables here, not farad and ampere). fend's own
//! assignments are not used: it binds lazily, so `m = 2.5 kg` would change
//! the meaning of `m/s^2` in another variable. Names, values and units are
//! validated first, and `;` is refused in expressions, so a file cannot
//! smuggle in extra statements.
//! The only table in this crate is the *choice* of target units per system
//! for `convert_units` (e.g. length -> `m` or `ft`); every conversion factor
//! comes from fend.
//!
//! [fend-core]: https://crates.io/crates/fend-core

use std::collections::BTreeMap;
use std::time::Instant;

use mex_envelope::{ArtifactKind, EngineId};
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};
use serde_json::{Value, json};

/// The engine id this crate implements.
pub const ENGINE_ID: &str = "engine.physics";
/// The implementation id declared in the registry.
pub const IMPLEMENTATION_ID: &str = "mex-engine-physics";
/// Longest expression file accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Most variables or quantities accepted in one input.
pub const MAX_QUANTITIES: usize = 256;

/// What went wrong, with the `PHYS_*` code it is reported under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhysicsError {
    /// Incompatible dimensions (`PHYS_UNIT_MISMATCH`).
    #[error("unit mismatch in {what}: {message}; make both sides the same dimension")]
    UnitMismatch {
        /// Which expression or quantity.
        what: String,
        /// The units library's explanation.
        message: String,
    },
    /// Does not parse (`PHYS_PARSE_ERROR`).
    #[error("cannot parse {what}: {message}")]
    Parse {
        /// Which input.
        what: String,
        /// Why.
        message: String,
    },
    /// Evaluation failed (`PHYS_EVAL_ERROR`).
    #[error("cannot evaluate {what}: {message}")]
    Eval {
        /// Which expression.
        what: String,
        /// Why.
        message: String,
    },
}

impl PhysicsError {
    /// The registry failure code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnitMismatch { .. } => "PHYS_UNIT_MISMATCH",
            Self::Parse { .. } => "PHYS_PARSE_ERROR",
            Self::Eval { .. } => "PHYS_EVAL_ERROR",
        }
    }

    fn parse(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Parse {
            what: what.into(),
            message: message.into(),
        }
    }

    fn eval(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Eval {
            what: what.into(),
            message: message.into(),
        }
    }
}

impl From<PhysicsError> for EngineFailure {
    fn from(e: PhysicsError) -> Self {
        EngineFailure::new(e.code(), e.to_string())
    }
}

/// The `engine.physics` implementation. Register it with
/// `MexRuntime::builder().engine(Arc::new(PhysicsEngine::new()?))`.
#[derive(Debug, Clone)]
pub struct PhysicsEngine {
    id: EngineId,
}

impl PhysicsEngine {
    /// The engine. Fails only if [`ENGINE_ID`] were not a valid engine id
    /// (a unit test proves it is); there is no panicking constructor.
    pub fn new() -> Result<Self, mex_envelope::EnvelopeError> {
        Ok(Self {
            id: ENGINE_ID.parse()?,
        })
    }
}

impl Engine for PhysicsEngine {
    fn engine_id(&self) -> EngineId {
        self.id.clone()
    }

    fn implementation_id(&self) -> &str {
        IMPLEMENTATION_ID
    }

    fn implementation_version(&self) -> semver::Version {
        semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(semver::Version::new(0, 0, 0))
    }

    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        ctx.record_environment("fend-core", &fend_core::get_version());
        let deadline = Deadline(ctx.deadline());
        let (kind, doc) = match ctx.operation().as_str() {
            "physics.evaluate_formula" => {
                let expr = read_text(ctx, "expr_ref")?;
                let vars = read_text(ctx, "vars_ref")?;
                let unit = ctx
                    .params()
                    .get("output_unit")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (
                    ArtifactKind::DatasetSlice,
                    evaluate_formula(&expr, &vars, unit, &deadline)?,
                )
            }
            "physics.check_units" => {
                let expr = read_text(ctx, "expr_ref")?;
                let policy = match ctx.params().get("unit_policy_ref") {
                    Some(_) => Some(read_text(ctx, "unit_policy_ref")?),
                    None => None,
                };
                (
                    ArtifactKind::Report,
                    check_units(&expr, policy.as_deref(), &deadline)?,
                )
            }
            "physics.convert_units" => {
                let doc = read_text(ctx, "doc_ref")?;
                let param = |k: &str| {
                    ctx.params()
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                if param("report_format") != "json" {
                    return Err(PhysicsError::eval(
                        "params.report_format",
                        "mex-engine-physics 0.1 writes json reports only; ask for \"json\"",
                    )
                    .into());
                }
                let system = match param("target_system").as_str() {
                    "imperial" => System::Imperial,
                    _ => System::Metric,
                };
                (
                    ArtifactKind::DatasetSlice,
                    convert_units(&doc, system, &deadline)?,
                )
            }
            other => {
                return Err(EngineFailure::new(
                    "PHYS_EVAL_ERROR",
                    format!("engine.physics has no operation {other}"),
                ));
            }
        };
        let bytes = mex_envelope::canonical::to_vec(&doc)
            .map_err(|e| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string()))?;
        ctx.write_output(kind, "application/json".parse().ok(), &bytes)
            .map_err(|e| EngineFailure::new("PHYS_EVAL_ERROR", e.to_string()))?;
        Ok(ctx.complete())
    }
}

fn read_text(ctx: &ExecutionContext<'_>, param: &str) -> Result<String, EngineFailure> {
    let bytes = ctx
        .read_param_input(param)
        .map_err(|e| EngineFailure::new("PHYS_PARSE_ERROR", e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| {
        PhysicsError::parse(format!("params.{param}"), "the input is not UTF-8 text").into()
    })
}

/// Stops fend at the run's deadline.
struct Deadline(Instant);

impl fend_core::Interrupt for Deadline {
    fn should_interrupt(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// A validated quantity: a decimal number and a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quantity {
    value: String,
    unit: String,
}

impl Quantity {
    fn fend(&self) -> String {
        if self.unit.is_empty() {
            format!("({})", self.value)
        } else {
            format!("({} {})", self.value, self.unit)
        }
    }
}

fn is_unit_text(u: &str) -> bool {
    u.chars().count() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.*/^()°µΩ· -".contains(c))
}

fn is_name(n: &str) -> bool {
    let mut chars = n.chars();
    n.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quantity(what: &str, v: &Value) -> Result<Quantity, PhysicsError> {
    let value = match v.get("value") {
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(PhysicsError::parse(
                what,
                "expected {\"value\": <number>, \"unit\": \"<unit>\"}",
            ));
        }
    };
    let unit = match v.get("unit") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(u)) if is_unit_text(u) => u.trim().to_owned(),
        Some(_) => {
            return Err(PhysicsError::parse(
                what,
                "unit must be a string of at most 64 letters, digits and _ . * / ^ ( ) ° µ Ω · - or space",
            ));
        }
    };
    Ok(Quantity { value, unit })
}

fn quantities(what: &str, text: &str) -> Result<BTreeMap<String, Quantity>, PhysicsError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| PhysicsError::parse(what, e.to_string()))?;
    let Value::Object(map) = doc else {
        return Err(PhysicsError::parse(
            what,
            "expected an object of name -> {\"value\", \"unit\"}",
        ));
    };
    if map.len() > MAX_QUANTITIES {
        return Err(PhysicsError::parse(
            what,
            format!("at most {MAX_QUANTITIES} quantities"),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, v) in &map {
        if !is_name(name) {
            return Err(PhysicsError::parse(
                format!("{what}/{name}"),
                "names start with a letter and use letters, digits and _ (at most 32)",
            ));
        }
        out.insert(name.clone(), quantity(&format!("{what}/{name}"), v)?);
    }
    Ok(out)
}

fn check_expression(what: &str, expr: &str) -> Result<String, PhysicsError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(PhysicsError::parse(what, "the expression is empty"));
    }
    if expr.len() > MAX_EXPRESSION_BYTES {
        return Err(PhysicsError::parse(
            what,
            format!("longer than {MAX_EXPRESSION_BYTES} bytes"),
        ));
    }
    if expr.contains([';', '\n', '\r']) {
        return Err(PhysicsError::parse(
            what,
            "one expression only: no `;` and no line breaks",
        ));
    }
    Ok(expr.to_owned())
}

/// Run one fend program; classify its error.
fn run(what: &str, program: &str, deadline: &Deadline) -> Result<Outcome, PhysicsError> {
    let mut context = fend_core::Context::new();
    match fend_core::evaluate_with_interrupt(program, &mut context, deadline) {
        Ok(r) => Ok(Outcome::from_fend(r.get_main_result())),
        Err(message) => Err(classify(what, message)),
    }
}

fn classify(what: &str, message: String) -> PhysicsError {
    let m = message.to_lowercase();
    let what = what.to_owned();
    if m.contains("incompatible") || m.contains("cannot convert") {
        PhysicsError::UnitMismatch { what, message }
    } else if m.contains("unknown identifier")
        || m.contains("division by zero")
        || m.contains("interrupt")
        || m.contains("not available")
        || m.contains("unable to")
    {
        PhysicsError::Eval { what, message }
    } else if m.contains("expect")
        || m.contains("found")
        || m.contains("invalid")
        || m.contains("missing")
        || m.contains("parse")
    {
        PhysicsError::Parse { what, message }
    } else {
        PhysicsError::Eval { what, message }
    }
}

/// A result as fend printed it, split into value and unit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    text: String,
    value: String,
    unit: String,
    exact: bool,
}

impl Outcome {
    fn from_fend(main: &str) -> Self {
        let (exact, text) = match main.strip_prefix("approx. ") {
            Some(rest) => (false, rest.to_owned()),
            None => (true, main.to_owned()),
        };
        let (value, unit) = match text.split_once(' ') {
            Some((v, u)) => (v.to_owned(), u.to_owned()),
            None => (text.clone(), String::new()),
        };
        Self {
            text,
            value,
            unit,
            exact,
        }
    }
}

/// Replace every identifier that names a variable by its parenthesized
/// quantity. Textual substitution, not fend assignments: fend binds
/// variables lazily, so `m = 2.5 kg` would silently change the meaning of
/// `m/s^2` inside another variable.
fn substitute(expr: &str, vars: &BTreeMap<String, Quantity>) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut ident = String::new();
    let flush = |ident: &mut String, out: &mut String| {
        match vars.get(ident.as_str()) {
            Some(q) => out.push_str(&q.fend()),
            None => out.push_str(ident),
        }
        ident.clear();
    };
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            if ident.is_empty() && c.is_ascii_digit() {
                out.push(c);
            } else {
                ident.push(c);
            }
        } else {
            flush(&mut ident, &mut out);
            out.push(c);
        }
    }
    flush(&mut ident, &mut out);
    out
}

fn evaluate_formula(
    expr: &str,
    vars: &str,
    output_unit: &str,
    deadline: &Deadline,
) -> Result<Value, PhysicsError> {
    let expr = check_expression("expr_ref", expr)?;
    let vars = quantities("vars_ref", vars)?;
    if !is_unit_text(output_unit) || output_unit.trim().is_empty() {
        return Err(PhysicsError::parse(
            "params.output_unit",
            "not a unit this engine accepts",
        ));
    }
    let program = format!("({}) to {}", substitute(&expr, &vars), output_unit.trim());
    let out = run("expr_ref", &program, deadline)?;
    let variables: BTreeMap<&String, Value> = vars
        .iter()
        .map(|(n, q)| (n, json!({"value": q.value, "unit": q.unit})))
        .collect();
    Ok(json!({
        "operation": "physics.evaluate_formula",
        "expression": expr,
        "variables": variables,
        "output_unit": output_unit.trim(),
        "result": out.text,
        "value": out.value,
        "unit": out.unit,
        "exact": out.exact,
    }))
}

fn check_units(
    text: &str,
    policy: Option<&str>,
    deadline: &Deadline,
) -> Result<Value, PhysicsError> {
    let expected = match policy {
        None => None,
        Some(p) => {
            let v: Value = serde_json::from_str(p)
                .map_err(|e| PhysicsError::parse("unit_policy_ref", e.to_string()))?;
            match v.get("expected_unit") {
                None | Some(Value::Null) => None,
                Some(Value::String(u)) if is_unit_text(u) && !u.trim().is_empty() => {
                    Some(u.trim().to_owned())
                }
                Some(_) => {
                    return Err(PhysicsError::parse(
                        "unit_policy_ref/expected_unit",
                        "expected a unit string",
                    ));
                }
            }
        }
    };
    let mut rows = Vec::new();
    let mut mismatches = 0u64;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let what = format!("expr_ref line {}", i + 1);
        let expr = check_expression(&what, line)?;
        let program = match &expected {
            Some(u) => format!("({expr}) to {u}"),
            None => format!("({expr})"),
        };
        match run(&what, &program, deadline) {
            Ok(out) => rows.push(json!({
                "line": i + 1, "expression": expr, "consistent": true, "result": out.text,
            })),
            Err(PhysicsError::UnitMismatch { message, .. }) => {
                mismatches += 1;
                rows.push(json!({
                    "line": i + 1, "expression": expr, "consistent": false,
                    "code": "PHYS_UNIT_MISMATCH", "message": message,
                }));
            }
            Err(e) => return Err(e),
        }
    }
    if rows.is_empty() {
        return Err(PhysicsError::parse(
            "expr_ref",
            "no expression found (one per line; `#` starts a comment)",
        ));
    }
    Ok(json!({
        "operation": "physics.check_units",
        "expected_unit": expected,
        "checked": rows.len(),
        "mismatches": mismatches,
        "expressions": rows,
    }))
}

/// A target unit system for `convert_units`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Metric,
    Imperial,
}

/// Target units tried in order; the first the quantity converts to wins.
/// Only the *choice* of unit lives here; fend does every conversion.
const METRIC: &[&str] = &[
    "m", "kg", "s", "A", "°C", "mol", "cd", "m^2", "m^3", "m/s", "m/s^2", "N", "Pa", "J", "W",
    "Hz", "C", "V", "ohm", "kg/m^3",
];
const IMPERIAL: &[&str] = &[
    "ft", "lb", "s", "A", "°F", "mol", "cd", "ft^2", "ft^3", "ft/s", "ft/s^2", "lbf", "psi", "BTU",
    "hp", "Hz", "C", "V", "ohm", "lb/ft^3",
];

fn document_quantities(text: &str) -> Result<Vec<(String, Quantity)>, PhysicsError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(quantities("doc_ref", text)?.into_iter().collect());
    }
    // CSV: a `name,value,unit` header, then one quantity per row.
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols != ["name", "value", "unit"] {
        return Err(PhysicsError::parse(
            "doc_ref",
            "expected a JSON object of quantities or CSV with the header `name,value,unit`",
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let what = format!("doc_ref row {}", i + 2);
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, value, unit] = cells.as_slice() else {
            return Err(PhysicsError::parse(
                what,
                "expected 3 cells: name,value,unit",
            ));
        };
        let number: serde_json::Number = value
            .parse()
            .map_err(|_| PhysicsError::parse(&what, format!("{value} is not a number")))?;
        if !is_name(name) {
            return Err(PhysicsError::parse(&what, "invalid name"));
        }
        let q = quantity(&what, &json!({"value": number, "unit": unit}))?;
        out.push(((*name).to_owned(), q));
        if out.len() > MAX_QUANTITIES {
            return Err(PhysicsError::parse(
                "doc_ref",
                format!("at most {MAX_QUANTITIES} quantities"),
            ));
        }
    }
    Ok(out)
}

fn convert_units(text: &str, system: System, deadline: &Deadline) -> Result<Value, PhysicsError> {
    let targets = match system {
        System::Metric => METRIC,
        System::Imperial => IMPERIAL,
    };
    let mut rows = Vec::new();
    for (name, q) in document_quantities(text)? {
        let what = format!("doc_ref/{name}");
        // Make sure the quantity itself evaluates before trying targets.
        run(&what, &q.fend(), deadline)?;
        let mut converted = None;
        for unit in targets {
            match run(&what, &format!("{} to {unit}", q.fend()), deadline) {
                Ok(out) => {
                    converted = Some((unit, out));
                    break;
                }
                Err(PhysicsError::UnitMismatch { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let Some((unit, out)) = converted else {
            return Err(PhysicsError::UnitMismatch {
                what,
                message: format!(
                    "{} {} has no {} unit in this engine's target list",
                    q.value,
                    q.unit,
                    match system {
                        System::Metric => "metric",
                        System::Imperial => "imperial",
                    }
                ),
            });
        };
        rows.push(json!({
            "name": name, "from": {"value": q.value, "unit": q.unit},
            "to": out.text, "value": out.value, "unit": unit, "exact": out.exact,
        }));
    }
    Ok(json!({
        "operation": "physics.convert_units",
        "target_system": match system { System::Metric => "metric", System::Imperial => "imperial" },
        "quantities": rows,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;
    use std::time::Duration;

    fn later() -> Deadline {
        Deadline(Instant::now() + Duration::from_secs(30))
    }

    #[test]
    fn the_engine_identifies_itself_as_registered() {
        let e = PhysicsEngine::new().unwrap();
        assert_eq!(e.engine_id().to_string(), ENGINE_ID);
        assert_eq!(e.implementation_id(), IMPLEMENTATION_ID);
        assert_eq!(e.implementation_version(), semver::Version::new(0, 1, 0));
    }

    #[test]
    fn golden_formula_is_exact() {
        let out = evaluate_formula(
            "F / A\n",
            r#"{"F": {"value": 10, "unit": "N"}, "A": {"value": 2, "unit": "m^2"}}"#,
            "Pa",
            &later(),
        )
        .unwrap();
        assert_eq!(out["result"], "5 Pa");
        assert_eq!(out["value"], "5");
        assert_eq!(out["unit"], "Pa");
        assert_eq!(out["exact"], true);
    }

    #[test]
    fn metres_plus_seconds_is_a_unit_mismatch() {
        let err = evaluate_formula(
            "x + t",
            r#"{"x": {"value": 1, "unit": "m"}, "t": {"value": 1, "unit": "s"}}"#,
            "m",
            &later(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "PHYS_UNIT_MISMATCH", "{err}");
    }

    #[test]
    fn wrong_output_unit_is_a_mismatch_and_bad_input_a_parse_error() {
        let vars = r#"{"x": {"value": 3, "unit": "m"}}"#;
        let e = evaluate_formula("x", vars, "s", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_UNIT_MISMATCH");
        let e = evaluate_formula("x +* 2", vars, "m", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR", "{e}");
        let e = evaluate_formula("x; y = 2", vars, "m", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR");
        let e = evaluate_formula("x", "not json", "m", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR");
        let e = evaluate_formula("x", r#"{"x": {"value": 1, "unit": "m; 2"}}"#, "m", &later())
            .unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR");
        let e = evaluate_formula("x + q", vars, "m", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_EVAL_ERROR", "{e}");
        let e = evaluate_formula("x / (x - x)", vars, "m", &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_EVAL_ERROR", "{e}");
    }

    #[test]
    fn no_clock_and_no_randomness() {
        for expr in ["today", "roll d6"] {
            let e = evaluate_formula(expr, "{}", "m", &later()).unwrap_err();
            assert_eq!(e.code(), "PHYS_EVAL_ERROR", "{expr}: {e}");
        }
    }

    #[test]
    fn output_bytes_are_identical_across_runs() {
        let run = || {
            mex_envelope::canonical::to_vec(
                &evaluate_formula(
                    "m * g",
                    r#"{"m": {"value": 2.5, "unit": "kg"}, "g": {"value": 9.81, "unit": "m/s^2"}}"#,
                    "N",
                    &later(),
                )
                .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn check_units_reports_every_mismatch() {
        let out = check_units(
            "# forces\n5 N + 2 kg*m/s^2\n1 m + 1 s\n3 Pa * 2 m^2\n",
            Some(r#"{"expected_unit": "N"}"#),
            &later(),
        )
        .unwrap();
        assert_eq!(out["checked"], 3);
        assert_eq!(out["mismatches"], 1);
        assert_eq!(out["expressions"][1]["line"], 3);
        assert_eq!(out["expressions"][1]["consistent"], false);
        assert_eq!(out["expressions"][2]["result"], "6 N");
        let e = check_units("1 m +", None, &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR", "{e}");
    }

    #[test]
    fn convert_units_json_and_csv() {
        let out = convert_units(
            r#"{"d": {"value": 5, "unit": "km"}, "t": {"value": 20, "unit": "°C"}}"#,
            System::Imperial,
            &later(),
        )
        .unwrap();
        let rows = out["quantities"].as_array().unwrap();
        assert_eq!(rows[0]["unit"], "ft");
        assert_eq!(rows[1]["to"], "68 °F");
        let out = convert_units(
            "name,value,unit\nlen,1,ft\nforce,1,lbf\n",
            System::Metric,
            &later(),
        )
        .unwrap();
        assert_eq!(out["quantities"][0]["to"], "0.3048 m");
        assert_eq!(out["quantities"][1]["unit"], "N");
        let e = convert_units("name,value\n", System::Metric, &later()).unwrap_err();
        assert_eq!(e.code(), "PHYS_PARSE_ERROR");
    }

    #[test]
    fn an_expired_deadline_stops_evaluation() {
        let past = Deadline(Instant::now());
        let e = evaluate_formula("2^2^2^2 * 1 m", "{}", "m", &past);
        assert!(e.is_err());
    }
}
