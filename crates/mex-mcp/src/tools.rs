//! The tool catalog: one MCP tool per callable operation, and the turning of
//! a tool call's arguments into a PlannedOperation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mex_artifacts::ArtifactStore;
use mex_envelope::{DeterminismLevel, EngineId, OperationName, Sha256Digest};
use mex_registry::{Engine, Operation, Registry};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Names of the two built-in tools.
pub const PUT_ARTIFACT: &str = "mex_put_artifact";
/// See [`PUT_ARTIFACT`].
pub const VALIDATE: &str = "mex_validate";

/// Whether `name` is one of the built-in tools.
pub fn is_builtin(name: &str) -> bool {
    name == PUT_ARTIFACT || name == VALIDATE
}

/// Argument keys a tool call may carry (everything else is refused).
const ARG_KEYS: [&str; 7] = [
    "params",
    "inputs",
    "capabilities",
    "budget",
    "determinism",
    "evidence_policy",
    "op_id",
];

/// One callable operation.
#[derive(Debug, Clone)]
pub struct OperationTool {
    /// The engine.
    pub engine: EngineId,
    /// The operation.
    pub operation: OperationName,
}

/// Every tool this server offers, by name.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Operation tools by tool name.
    pub operations: BTreeMap<String, OperationTool>,
    /// All tools (operations, then the built-ins), in a stable order.
    pub tools: Vec<Tool>,
}

/// The MCP tool name of an operation: `.` becomes `_` (the major LLM APIs
/// refuse dots in tool names).
pub fn tool_name(operation: &OperationName) -> String {
    operation.as_str().replace('.', "_")
}

fn object(value: Value) -> Arc<JsonObject> {
    Arc::new(match value {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

/// The published schema of a wire type, as a JSON value.
fn envelope_schema(name: &str) -> Value {
    mex_envelope::schema::all()
        .into_iter()
        .find(|s| s.name == name)
        .and_then(|s| serde_json::to_value(s.schema).ok())
        .unwrap_or_else(|| json!({"type": "object"}))
}

/// The EngineResult schema, the `outputSchema` of every operation tool.
pub fn engine_result_schema() -> Arc<JsonObject> {
    let mut schema = envelope_schema("engine-result");
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
    }
    object(schema)
}

/// Strip the keys a nested schema must not carry.
fn embedded(mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("$id");
    }
    schema
}

fn input_schema(op: &Operation, defs: &Value) -> Value {
    let optional: Vec<String> = op
        .optional_capabilities
        .iter()
        .map(ToString::to_string)
        .collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["params"],
        "properties": {
            "params": embedded(op.params_schema.clone()),
            "inputs": {
                "description": "The input artifacts the params refer to: full ArtifactHandles, artifact ids, or \"sha256:<hex>\" digests (resolved from the store), or entity references.",
                "type": "array",
                "maxItems": 256,
                "items": {"anyOf": [
                    {"$ref": "#/$defs/Input"},
                    {"type": "string", "description": "an artifact id (UUID) or \"sha256:<64 hex>\""}
                ]}
            },
            "capabilities": {
                "description": format!("Optional capabilities to request on top of the operation's required ones (this operation allows: {optional:?}). The trusted policy still decides."),
                "type": "array",
                "maxItems": 64,
                "items": {"type": "string"}
            },
            "budget": {"$ref": "#/$defs/BudgetSpec", "description": "Budget; omitted fields take the engine's defaults."},
            "determinism": {"$ref": "#/$defs/DeterminismLevel", "description": "Requested determinism (default: the operation's level)."},
            "evidence_policy": {"$ref": "#/$defs/EvidencePolicy"},
            "op_id": {"type": "string", "format": "uuid", "description": "Operation id (default: a fresh one). A used id is refused as a replay."}
        },
        "$defs": defs,
    })
}

fn describe(engine: &Engine, op: &Operation) -> String {
    let refs: Vec<String> = op
        .artifact_params
        .iter()
        .map(|p| {
            let types: Vec<&str> = p.media_types.iter().map(|m| m.as_str()).collect();
            if types.is_empty() {
                format!("`{}`", p.param)
            } else {
                format!("`{}` ({})", p.param, types.join(", "))
            }
        })
        .collect();
    let codes: Vec<&str> = op.failure_codes.iter().map(|c| c.as_str()).collect();
    let b = &engine.default_budget;
    let m = &engine.max_budget;
    let mut text = format!(
        "{} {} (engine {}: {})\nDeterminism {}.",
        op.name,
        op.description,
        engine.id,
        engine.description,
        op.determinism.as_str()
    );
    if !refs.is_empty() {
        text.push_str(&format!(
            " Params naming input artifacts (give the artifact id in params and the artifact in `inputs`; put new content with `mex_put_artifact` first): {}.",
            refs.join(", ")
        ));
    }
    text.push_str(&format!(
        " Default budget: {} ms wall time, {} output bytes; at most {} ms, {} bytes.",
        b.wall_time_ms, b.output_bytes, m.wall_time_ms, m.output_bytes
    ));
    if !codes.is_empty() {
        text.push_str(&format!(" Failure codes: {}.", codes.join(", ")));
    }
    text.push_str(" Outputs come back as mex://artifacts/sha256/<digest> resource links; structuredContent is the EngineResult.");
    text
}

fn annotations(op: &Operation) -> ToolAnnotations {
    let caps = || {
        op.required_capabilities
            .iter()
            .chain(&op.optional_capabilities)
            .map(ToString::to_string)
    };
    let open_world = caps()
        .any(|c| c.starts_with("net.") || c.starts_with("device.") || c.starts_with("secrets."));
    let destructive = op
        .required_capabilities
        .iter()
        .map(ToString::to_string)
        .any(|c| c.starts_with("fs.write:") && c != "fs.write:artifacts");
    ToolAnnotations::from_raw(
        Some(format!("{} ({})", op.name, op.description)),
        Some(false),
        Some(destructive),
        Some(op.determinism == DeterminismLevel::D3),
        Some(open_world),
    )
}

fn tool(name: String, title: String, description: String, input: Value) -> Tool {
    let mut tool = Tool::default();
    tool.name = name.into();
    tool.title = Some(title);
    tool.description = Some(description.into());
    tool.input_schema = object(input);
    tool
}

impl Catalog {
    /// Build the catalog from the registry: one tool per operation of every
    /// engine in `callable` (installed and certified), then the built-ins.
    pub fn build(registry: &Registry, callable: &BTreeSet<EngineId>) -> Self {
        let po = envelope_schema("planned-operation");
        let defs = po.get("$defs").cloned().unwrap_or_else(|| json!({}));
        let mut catalog = Catalog::default();
        for engine in registry.engines() {
            if !callable.contains(&engine.id) {
                continue;
            }
            for op in engine.operations.values() {
                let name = tool_name(&op.name);
                if catalog.operations.contains_key(&name) {
                    tracing::warn!(
                        "two operations map to the tool name {name}; the second ({}) is not offered",
                        op.name
                    );
                    continue;
                }
                let mut t = tool(
                    name.clone(),
                    op.name.to_string(),
                    describe(engine, op),
                    input_schema(op, &defs),
                );
                t.output_schema = Some(engine_result_schema());
                t.annotations = Some(annotations(op));
                catalog.tools.push(t);
                catalog.operations.insert(
                    name,
                    OperationTool {
                        engine: engine.id.clone(),
                        operation: op.name.clone(),
                    },
                );
            }
        }
        let mut put = tool(
            PUT_ARTIFACT.into(),
            "Put an input artifact".into(),
            format!(
                "Store content as an artifact and return its ArtifactHandle (structuredContent), for use in an operation's `inputs` and `*_ref` params. Give `content` (UTF-8 text) or `content_base64`, and its `media_type`. At most {} bytes; larger inputs go through `mex artifacts put`.",
                crate::MAX_PUT_BYTES
            ),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["media_type"],
                "properties": {
                    "content": {"type": "string", "description": "UTF-8 text content"},
                    "content_base64": {"type": "string", "description": "binary content, standard base64"},
                    "media_type": {"type": "string", "description": "e.g. text/plain, application/json"},
                    "name": {"type": "string", "maxLength": 256, "description": "a label for logs"}
                }
            }),
        );
        put.annotations = Some(ToolAnnotations::from_raw(
            Some("Put an input artifact".into()),
            Some(false),
            Some(false),
            Some(true),
            Some(false),
        ));
        catalog.tools.push(put);
        let mut validate = tool(
            VALIDATE.into(),
            "Validate an operation (admission only)".into(),
            "Run every gate on an operation tool's call without executing anything and without using up the op id: `tool` names the operation tool, the other arguments are that tool's. Returns each gate's verdict and findings.".into(),
            json!({
                "type": "object",
                "required": ["tool", "params"],
                "properties": {
                    "tool": {"type": "string", "description": "an operation tool name, e.g. physics_evaluate_formula"},
                    "params": {"type": "object"},
                    "inputs": {"type": "array"},
                    "capabilities": {"type": "array"},
                    "budget": {"type": "object"},
                    "determinism": {"type": "string"},
                    "evidence_policy": {"type": "object"},
                    "op_id": {"type": "string"}
                }
            }),
        );
        validate.annotations = Some(ToolAnnotations::from_raw(
            Some("Validate an operation".into()),
            Some(true),
            Some(false),
            Some(true),
            Some(false),
        ));
        catalog.tools.push(validate);
        catalog
    }
}

/// A refusal of a tool call's arguments before an operation exists: what,
/// where (a JSON pointer into the arguments) and what to do.
#[derive(Debug, Clone)]
pub struct ArgError {
    /// Stable code, `MCP.*`.
    pub code: &'static str,
    /// JSON pointer into the arguments.
    pub pointer: String,
    /// What was wrong and what to do.
    pub message: String,
}

fn arg_error(
    code: &'static str,
    pointer: impl Into<String>,
    message: impl Into<String>,
) -> ArgError {
    ArgError {
        code,
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// Resolve one `inputs` entry given as a string (artifact id or digest) to
/// its full handle from the store.
fn resolve_input(
    store: &ArtifactStore,
    text: &str,
    pointer: &str,
    named: &[Uuid],
) -> Result<Value, ArgError> {
    if let Some(hex) = text.strip_prefix("sha256:") {
        let digest: Sha256Digest = hex.parse().map_err(|_| {
            arg_error(
                "MCP.INPUT_UNRESOLVED",
                pointer,
                format!(
                    "{:?} is not sha256:<64 lowercase hex digits>",
                    crate::clip(text)
                ),
            )
        })?;
        let handle = crate::resources::find_by_digest_preferring(store, &digest, named).ok_or_else(|| {
            arg_error(
                "MCP.INPUT_UNRESOLVED",
                pointer,
                format!("no artifact in the store has content sha256:{digest}; put it first with mex_put_artifact"),
            )
        })?;
        return serde_json::to_value(handle)
            .map_err(|e| arg_error("MCP.INTERNAL", pointer, e.to_string()));
    }
    let id = Uuid::try_parse(text).map_err(|_| {
        arg_error(
            "MCP.INPUT_UNRESOLVED",
            pointer,
            format!(
                "{:?} is neither an artifact id (UUID), a \"sha256:<hex>\" digest nor an ArtifactHandle object",
                crate::clip(text)
            ),
        )
    })?;
    let handle = store.handle(id).map_err(|e| {
        arg_error(
            "MCP.INPUT_UNRESOLVED",
            pointer,
            format!("artifact {id} cannot be resolved from the store: {e}; put it first with mex_put_artifact"),
        )
    })?;
    serde_json::to_value(handle).map_err(|e| arg_error("MCP.INTERNAL", pointer, e.to_string()))
}

/// Build the PlannedOperation JSON for a call of `tool` with `args`. The
/// result is parsed by the envelope's own front door (size cap, bounded
/// integers, strict fields), so a hostile argument gets the same refusal as
/// the CLI.
pub fn planned_operation(
    registry: &Registry,
    store: &ArtifactStore,
    tool: &OperationTool,
    args: &Map<String, Value>,
) -> Result<Value, ArgError> {
    for key in args.keys() {
        if !ARG_KEYS.contains(&key.as_str()) {
            return Err(arg_error(
                "MCP.UNKNOWN_ARGUMENT",
                format!("/{}", crate::clip(key)),
                format!(
                    "unknown argument {:?}; a tool call takes {ARG_KEYS:?}",
                    crate::clip(key)
                ),
            ));
        }
    }
    let engine = registry
        .engine(&tool.engine)
        .map_err(|e| arg_error("MCP.INTERNAL", "", e.to_string()))?;
    let op = engine
        .operation(&tool.operation)
        .map_err(|e| arg_error("MCP.INTERNAL", "", e.to_string()))?;
    let params = args.get("params").cloned().unwrap_or_else(|| json!({}));
    // Artifact ids the params name (`*_ref` strings and arrays of them): a
    // digest resolves to one of these records when it can.
    let named: Vec<Uuid> = params
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().take(256).collect::<Vec<_>>(),
            other => vec![other],
        })
        .filter_map(|v| v.as_str().and_then(|s| Uuid::try_parse(s).ok()))
        .take(512)
        .collect();
    let mut inputs = Vec::new();
    match args.get("inputs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > 256 {
                return Err(arg_error(
                    "MCP.TOO_MANY_INPUTS",
                    "/inputs",
                    format!("{} inputs given; at most 256", items.len()),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let pointer = format!("/inputs/{i}");
                inputs.push(match item {
                    Value::String(text) => resolve_input(store, text, &pointer, &named)?,
                    other => other.clone(),
                });
            }
        }
        Some(_) => {
            return Err(arg_error(
                "MCP.BAD_ARGUMENT",
                "/inputs",
                "`inputs` must be an array of handles, artifact ids or sha256:<hex> digests",
            ));
        }
    }
    let mut capabilities: Vec<Value> = op
        .required_capabilities
        .iter()
        .map(|c| Value::String(c.to_string()))
        .collect();
    match args.get("capabilities") {
        None | Some(Value::Null) => {}
        Some(Value::Array(extra)) => {
            for c in extra.iter().take(64) {
                if !capabilities.contains(c) {
                    capabilities.push(c.clone());
                }
            }
        }
        Some(_) => {
            return Err(arg_error(
                "MCP.BAD_ARGUMENT",
                "/capabilities",
                "`capabilities` must be an array of capability strings",
            ));
        }
    }
    let op_id = match args.get("op_id") {
        None | Some(Value::Null) => Value::String(Uuid::new_v4().to_string()),
        Some(v) => v.clone(),
    };
    let mut envelope = json!({
        "schema_version": "poe-1.0",
        "op_id": op_id,
        "engine_id": tool.engine.as_str(),
        "engine_version_req": "*",
        "operation": tool.operation.as_str(),
        "inputs": inputs,
        "params": params,
        "capabilities_requested": capabilities,
        "budget": args.get("budget").cloned().unwrap_or_else(|| json!({})),
        "determinism": args.get("determinism").cloned().unwrap_or_else(|| json!(op.determinism.as_str())),
    });
    if let (Some(map), Some(policy)) = (envelope.as_object_mut(), args.get("evidence_policy")) {
        map.insert("evidence_policy".into(), policy.clone());
    }
    Ok(envelope)
}
