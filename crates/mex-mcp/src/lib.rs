//! # mex-mcp: mex as a Model Context Protocol server
//!
//! Every callable operation (an engine with an installed, certified
//! implementation) becomes one MCP tool, named by the operation with `_` for
//! `.` (`physics.evaluate_formula` is `physics_evaluate_formula`). A call's
//! arguments are `{"params": {…}, "inputs": [handle | artifact id |
//! "sha256:<hex>", …], "capabilities"?: […], "budget"?: {…},
//! "determinism"?: "D0".."D3", "evidence_policy"?: {…}, "op_id"?: uuid}`;
//! the server resolves inputs from the store, fills in the rest (a fresh op
//! id, the operation's required capabilities, the engine's default budget)
//! and runs the PlannedOperation through [`MexRuntime::execute_with_cancel`]
//! on a blocking thread: the same gates, recorder, Problems and replay rules
//! as `mex run`. The envelope is parsed by its own front door, so the 1 MiB
//! document cap, bounded integers and strict fields apply, and a refusal is
//! recorded like the CLI's. Before rmcp parses anything, the raw bytes of
//! every incoming JSON-RPC message (stdio line or HTTP body) go through the
//! envelope's strict JSON reader (duplicate keys, numbers beyond
//! ±(2^53−1), nesting, memory): a refused `tools/call` ends in a recorded
//! `isError` G-SCHEMA result, anything else refused in a recorded JSON-RPC
//! error (see the `guard` module).
//!
//! - `inputSchema` is the operation's params schema plus the handle schema;
//!   `outputSchema` is the EngineResult schema and `structuredContent` the
//!   EngineResult. Annotations come from the registry: D3 is idempotent; no
//!   network, device or secret capability is not open-world; writing only
//!   artifacts is not destructive.
//! - `mex_put_artifact` stores content (at most [`MAX_PUT_BYTES`]) and
//!   returns its handle; `mex_validate` runs admission only.
//! - Outputs come back as `resource_link`s to `mex://artifacts/sha256/<digest>`
//!   (small JSON outputs are also inlined); `resources/read` serves them
//!   verified and size-capped, `resources/list` pages through the store.
//!   Sidecar manifests (`mex://artifacts/manifest/<id>`) and an operation's
//!   recorder events (`mex://ops/<op id>/events`) are resources too.
//! - A denial or failure is a tool result with `isError: true` whose text
//!   names the gate or code, the JSON pointer and what to do; the denials and
//!   errors are in `_meta` (`mex/denials`, `mex/errors`). Only a malformed
//!   request or an unknown tool is a protocol error.
//! - While a call runs, a client that sent a progress token gets a progress
//!   notification every [`Options::progress_every`]; a client's
//!   cancellation cancels the run ([`mex_runtime::CancelToken`]): a
//!   sandboxed process group is killed and the record says
//!   `RUNTIME.CANCELLED`.
//! - Consent: with [`Options::consent`] set and a client that declared the
//!   elicitation capability, an operation denied only for a missing or
//!   expired consent the policy allows asks the human, writes an expiring
//!   consent record into the trusted policy, records it, rebuilds the
//!   runtime and runs again (see the `consent` module). Otherwise the G-CAP
//!   denial says how to add a consent record to the trusted policy.
//!
//! Transports: [`serve_stdio`] (what desktop clients spawn) and
//! [`serve_http`] (streamable HTTP behind a bearer token). This is the only
//! crate of the workspace with an async runtime (tokio); the runtime itself
//! stays synchronous.

mod consent;
mod guard;
mod http;
mod resources;
mod stdio;
mod tools;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mex_artifacts::PutOptions;
use mex_envelope::{
    ArtifactHandle, ArtifactKind, Capability, Classification, DenialSeverity, EngineId,
    EngineResult, ErrorCode, GateDenial, GateId, MediaType, PlannedOperation, ResultStatus,
    Sha256Digest,
};
use mex_recorder::EventDraft;
use mex_runtime::{CancelToken, MexRuntime};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequest,
    ElicitResult, ElicitationAction, Implementation, InputRequest, InputRequiredResult,
    InputResponses, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use consent::{ConsentOptions, Rebuild};
pub use http::{HttpAuth, MIN_TOKEN_LEN, PATH as HTTP_PATH, serve_http};
pub use tools::{PUT_ARTIFACT, VALIDATE, tool_name};

/// Largest artifact `mex_put_artifact` accepts (decoded bytes).
pub const MAX_PUT_BYTES: usize = 768 * 1024;
/// Largest JSON-RPC message accepted (stdio line, HTTP body). Larger than
/// the envelope's 1 MiB cap, so an oversized operation reaches the envelope
/// parser and gets its recorded refusal; anything beyond is dropped by the
/// transport.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Outputs up to this size with a JSON media type are also inlined as text.
const INLINE_JSON_BYTES: u64 = 16 * 1024;

/// What went wrong starting or running a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpServerError {
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The transport failed.
    #[error("the MCP transport failed: {0}")]
    Transport(String),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or another address")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// HTTP without a token outside loopback, or a malformed token.
    #[error("{0}")]
    Auth(String),
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Engines whose operations are offered (installed and certified).
    pub callable: BTreeSet<EngineId>,
    /// Largest resource `resources/read` serves.
    pub max_read_bytes: u64,
    /// Resources per `resources/list` page.
    pub page_size: usize,
    /// Interval of progress notifications while a call runs.
    pub progress_every: Duration,
    /// Where the trusted policy is (named in consent denials, written by
    /// consent through elicitation).
    pub policy_path: String,
    /// Consent through elicitation; `None`: never ask, deny with a hint.
    pub consent: Option<ConsentOptions>,
}

impl Options {
    /// Defaults: 4 MiB reads, pages of 100, progress every second.
    pub fn new(callable: BTreeSet<EngineId>, policy_path: impl Into<String>) -> Self {
        Self {
            callable,
            max_read_bytes: 4 * 1024 * 1024,
            page_size: 100,
            progress_every: Duration::from_secs(1),
            policy_path: policy_path.into(),
            consent: None,
        }
    }
}

struct Inner {
    /// The runtime in force; replaced when a consent changes the policy.
    runtime: RwLock<Arc<MexRuntime>>,
    catalog: tools::Catalog,
    options: Options,
    /// Digests this server produced or stored, for fast resource reads.
    known: Mutex<HashMap<Sha256Digest, ArtifactHandle>>,
    /// Refused `tools/call`s waiting for their handler (see `guard`).
    pending: Mutex<guard::PendingMap>,
    /// Consent questions sent as `InputRequiredResult`, by request state.
    asked: Mutex<HashMap<String, consent::Ask>>,
}

/// One run of an operation tool.
enum Executed {
    /// The arguments were refused (recorded); no envelope was built.
    Refused(CallToolResult),
    /// The runtime answered.
    Ran {
        result: Box<EngineResult>,
        requested: Vec<Capability>,
    },
}

/// How a consent question can reach the human.
enum Route {
    /// A server → client `elicitation/create` request.
    Request,
    /// An `InputRequiredResult` (protocol 2026-07-28 and later).
    InputRequired,
}

fn with_note(mut r: CallToolResult, note: String) -> CallToolResult {
    r.content.push(ContentBlock::text(note));
    r
}

/// The MCP server over one shared runtime. Cheap to clone (one per HTTP
/// session); every clone shares the runtime, the catalog and the known
/// digests.
#[derive(Clone)]
pub struct MexServer {
    inner: Arc<Inner>,
}

/// Clip untrusted text for messages.
pub(crate) fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

fn text_result(text: String, structured: Option<Value>, error: bool) -> CallToolResult {
    let mut r = CallToolResult::default();
    r.content = vec![ContentBlock::text(text)];
    r.structured_content = structured;
    r.is_error = Some(error);
    r
}

impl MexServer {
    /// A server offering the callable engines' operations of `runtime`.
    pub fn new(runtime: Arc<MexRuntime>, options: Options) -> Self {
        let catalog = tools::Catalog::build(runtime.registry(), &options.callable);
        Self {
            inner: Arc::new(Inner {
                runtime: RwLock::new(runtime),
                catalog,
                options,
                known: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                asked: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Names of the tools offered, in order.
    pub fn tool_names(&self) -> Vec<String> {
        self.inner
            .catalog
            .tools
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    async fn run_operation(
        &self,
        tool: tools::OperationTool,
        args: Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Executed, McpError> {
        let inner = self.inner.clone();
        let cancel = CancelToken::new();
        let worker_cancel = cancel.clone();
        let mut job =
            tokio::task::spawn_blocking(move || inner.execute(&tool, &args, &worker_cancel));
        let progress = context.meta.get_progress_token();
        let started = Instant::now();
        let mut tick = tokio::time::interval(self.inner.options.progress_every);
        tick.tick().await;
        let mut cancelled = false;
        let outcome = loop {
            tokio::select! {
                done = &mut job => break done,
                () = context.ct.cancelled(), if !cancelled => {
                    // Keep waiting: the run is recorded as cancelled.
                    cancel.cancel();
                    cancelled = true;
                }
                _ = tick.tick() => {
                    if let Some(token) = &progress {
                        let secs = started.elapsed().as_secs_f64();
                        let note = ProgressNotificationParam::new(token.clone(), secs)
                            .with_message(format!("running for {secs:.0} s"));
                        let _ = context.peer.notify_progress(note).await;
                    }
                }
            }
        };
        outcome.map_err(|e| McpError::internal_error(format!("the run's thread failed: {e}"), None))
    }

    /// Run an operation tool; when it is denied only for missing consent
    /// and the client can be asked, ask (see the `consent` module).
    async fn call_operation(
        &self,
        name: String,
        tool: tools::OperationTool,
        args: Map<String, Value>,
        answer: Option<(String, Option<InputResponses>)>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Some((state, responses)) = answer {
            // The answer to a consent question sent as InputRequiredResult.
            let ask = self
                .inner
                .asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&state);
            let Some(ask) = ask.filter(|a| a.tool == name) else {
                return Ok(text_result(
                    "refused [MCP.UNKNOWN_REQUEST_STATE] at /requestState: no consent question of this server is waiting under this request state (answered already, or the server restarted); call the tool again without it".into(),
                    None,
                    true,
                )
                .into());
            };
            let answer = responses
                .as_ref()
                .and_then(|r| r.get(consent::INPUT_KEY))
                .cloned()
                .ok_or_else(|| {
                    "the client answered without a response to the consent question".to_owned()
                })
                .and_then(|v| {
                    serde_json::from_value::<ElicitResult>(v)
                        .map(|r| r.action)
                        .map_err(|e| {
                            format!("the client's answer is not an elicitation result: {e}")
                        })
                });
            return self.answered(tool, args, ask, answer, &context).await;
        }
        let executed = self
            .run_operation(tool.clone(), args.clone(), &context)
            .await?;
        let (result, requested) = match executed {
            Executed::Refused(r) => return Ok(r.into()),
            Executed::Ran { result, requested } => (result, requested),
        };
        let route = self.route(&context);
        let ask = match &route {
            Some(_) if result.status == ResultStatus::Denied => {
                let path = PathBuf::from(&self.inner.options.policy_path);
                let operation = tool.operation.to_string();
                self.blocking(move |_| {
                    consent::ask_for(&name, operation, &result, &requested, &path).ok_or(result)
                })
                .await?
            }
            _ => Err(result),
        };
        let (ask, route) = match (ask, route) {
            (Ok(ask), Some(route)) => (ask, route),
            (Err(result), _) | (Ok(consent::Ask { denied: result, .. }), None) => {
                return Ok(self.inner.answer(&result).into());
            }
        };
        let ttl = self
            .inner
            .options
            .consent
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.ttl);
        let params = consent::request(
            &ask,
            std::path::Path::new(&self.inner.options.policy_path),
            ttl,
        );
        match route {
            Route::InputRequired => {
                let state = Uuid::new_v4().simple().to_string();
                {
                    let mut asked = self
                        .inner
                        .asked
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if asked.len() >= 1000 {
                        asked.clear();
                    }
                    asked.insert(state.clone(), ask);
                }
                let requests = std::collections::BTreeMap::from([(
                    consent::INPUT_KEY.to_owned(),
                    InputRequest::Elicitation(ElicitRequest::new(params)),
                )]);
                Ok(InputRequiredResult::new(Some(requests), Some(state)).into())
            }
            Route::Request => {
                let answer = tokio::select! {
                    r = context.peer.create_elicitation_with_timeout(params, Some(consent::ANSWER_TIMEOUT)) => {
                        r.map(|r| r.action).map_err(|e| format!("the consent question through the client failed: {e}"))
                    }
                    () = context.ct.cancelled() => Err("the client cancelled the call while the consent question was open".to_owned()),
                };
                self.answered(tool, args, ask, answer, &context).await
            }
        }
    }

    /// Whether and how this client can be asked.
    fn route(&self, context: &RequestContext<RoleServer>) -> Option<Route> {
        self.inner.options.consent.as_ref()?;
        let modern = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let capable = context
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.form.is_some() || e.url.is_none());
        match (capable, modern) {
            (false, _) => None,
            (true, true) => Some(Route::InputRequired),
            (true, false) => Some(Route::Request),
        }
    }

    /// Act on the human's answer to a consent question.
    async fn answered(
        &self,
        tool: tools::OperationTool,
        mut args: Map<String, Value>,
        ask: consent::Ask,
        answer: Result<ElicitationAction, String>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let client = context
            .client_info()
            .map(|i| format!("{} {}", i.name, i.version))
            .unwrap_or_else(|| "(unnamed)".into());
        match answer {
            Ok(ElicitationAction::Accept) => {
                let granted = {
                    let ask = ask.clone();
                    self.blocking(move |inner| inner.grant(&ask, &client))
                        .await?
                };
                let note = match granted {
                    Ok(note) => note,
                    Err(e) => {
                        let r = self.inner.answer(&ask.denied);
                        return Ok(with_note(r, format!("the human accepted, but {e}")).into());
                    }
                };
                args.insert("op_id".into(), Value::String(ask.op_id.to_string()));
                let r = match self.run_operation(tool, args, context).await? {
                    Executed::Refused(r) => r,
                    Executed::Ran { result, .. } => self.inner.answer(&result),
                };
                Ok(with_note(r, note).into())
            }
            Ok(action) => {
                let word = match action {
                    ElicitationAction::Decline => "decline",
                    _ => "cancel",
                };
                let recorded = {
                    let ask = ask.clone();
                    self.blocking(move |inner| {
                        consent::record_decline(&ask, word, inner.runtime().recorder().as_ref())
                    })
                    .await?
                };
                let r = self.inner.answer(&ask.denied);
                Ok(with_note(
                    r,
                    format!(
                        "the human declined the consent question through the client ({word}); the policy is unchanged{}",
                        if recorded { "" } else { " (the answer could not be recorded)" }
                    ),
                )
                .into())
            }
            Err(e) => Ok(with_note(self.inner.answer(&ask.denied), e).into()),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, McpError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| McpError::internal_error(format!("a worker thread failed: {e}"), None))
    }
}

impl Inner {
    /// Record a refusal of a call's arguments (no envelope could be built)
    /// and answer it.
    fn refuse_arguments(&self, args: &Map<String, Value>, e: tools::ArgError) -> CallToolResult {
        let op_id = mex_envelope::PlannedOperation::refusal_id(
            args.get("op_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::try_parse(s).ok()),
        );
        let denial = GateDenial {
            gate: GateId::from_static(mex_registry::GATE_SCHEMA),
            code: ErrorCode::from_static(e.code),
            rule: "mcp.arguments".into(),
            message: e.message.clone(),
            pointer: Some(e.pointer.clone()),
            details: None,
            severity: DenialSeverity::Deny,
        };
        let recorded = self
            .runtime()
            .recorder()
            .append(EventDraft::gate_outcome(op_id, &denial))
            .is_ok();
        let mut r = text_result(
            format!(
                "denied by G-SCHEMA [{}] at {}: {}{}",
                e.code,
                if e.pointer.is_empty() {
                    "/"
                } else {
                    &e.pointer
                },
                e.message,
                if recorded {
                    ""
                } else {
                    " (the refusal could not be recorded)"
                }
            ),
            None,
            true,
        );
        r.meta = Some(Map::from_iter([("mex/denials".to_owned(), json!([denial]))]).into());
        r
    }

    /// Record and answer a message refused by the strict reader.
    fn answer_refusal(&self, token: &str) -> Option<CallToolResult> {
        let (op_id, denial) = self.take_refusal(token)?;
        let recorded = self
            .runtime()
            .recorder()
            .append(EventDraft::gate_outcome(op_id, &denial))
            .is_ok();
        let mut r = text_result(guard::refusal_text(&denial, recorded), None, true);
        r.meta = Some(Map::from_iter([("mex/denials".to_owned(), json!([denial]))]).into());
        Some(r)
    }

    /// The runtime in force.
    fn runtime(&self) -> Arc<MexRuntime> {
        self.runtime
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn execute(
        &self,
        tool: &tools::OperationTool,
        args: &Map<String, Value>,
        cancel: &CancelToken,
    ) -> Executed {
        let runtime = self.runtime();
        let envelope =
            match tools::planned_operation(runtime.registry(), runtime.store(), tool, args) {
                Ok(v) => v,
                Err(e) => return Executed::Refused(self.refuse_arguments(args, e)),
            };
        let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
        match PlannedOperation::from_json_slice(&bytes) {
            Ok(op) => {
                let requested = op.capabilities_requested.clone();
                let result = runtime.execute_with_cancel(op, cancel);
                Executed::Ran {
                    result: Box::new(result),
                    requested,
                }
            }
            // Not an operation: the runtime records the refusal.
            Err(_) => Executed::Ran {
                result: Box::new(runtime.execute_json(&bytes)),
                requested: Vec::new(),
            },
        }
    }

    /// Write the consents of `ask`, rebuild the runtime so they are in
    /// force, and say what was granted.
    fn grant(&self, ask: &consent::Ask, client: &str) -> Result<String, String> {
        let Some(options) = &self.options.consent else {
            return Err("this server does not grant consent".into());
        };
        let path = PathBuf::from(&self.options.policy_path);
        let records = consent::grant(
            ask,
            &path,
            options.ttl,
            &format!("a human through the MCP client {client}"),
            self.runtime().recorder().as_ref(),
        )?;
        let runtime = (options.rebuild)().map_err(|e| {
            format!("the consent was written but the runtime could not be rebuilt: {e}; restart the server")
        })?;
        *self.runtime.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(runtime);
        let granted = if records.is_empty() {
            "a consent granted meanwhile covers it".to_owned()
        } else {
            records
                .iter()
                .map(|r| {
                    format!(
                        "{} for {} until {}",
                        r.id,
                        r.capability.0,
                        r.expires_at.to_shortest_rfc3339().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(format!(
            "consent granted by the human through the client: {granted} (written to {}, on the record)",
            self.options.policy_path
        ))
    }

    fn remember(&self, handles: &[ArtifactHandle]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() > 100_000 {
            known.clear();
        }
        for h in handles {
            known.insert(h.content_hash, h.clone());
        }
    }

    fn answer(&self, result: &EngineResult) -> CallToolResult {
        let structured = serde_json::to_value(result).ok();
        let events_uri = format!("{}{}/events", resources::OPS_PREFIX, result.op_id);
        if result.status == ResultStatus::Succeeded {
            self.remember(&result.outputs);
            self.remember(&result.evidence);
            let mut content = vec![ContentBlock::text(format!(
                "succeeded: {} output(s){}; op {} (events: {events_uri})",
                result.outputs.len(),
                if result.served_from_cache {
                    ", served from the D3 cache"
                } else {
                    ""
                },
                result.op_id
            ))];
            for h in result.outputs.iter().chain(&result.evidence) {
                let mut link = Resource::new(resources::content_uri(h), h.artifact_id.to_string())
                    .with_size(h.size_bytes)
                    .with_description(format!(
                        "{:?} artifact {}; manifest: {}{}",
                        h.kind,
                        h.artifact_id,
                        resources::MANIFEST_PREFIX,
                        h.artifact_id
                    ));
                if let Some(m) = &h.media_type {
                    link = link.with_mime_type(m.as_str());
                }
                content.push(ContentBlock::resource_link(link));
            }
            for h in &result.outputs {
                let json_type = h
                    .media_type
                    .as_ref()
                    .is_some_and(|m| m.as_str() == "application/json");
                if json_type
                    && h.size_bytes <= INLINE_JSON_BYTES
                    && let Ok(bytes) = self.runtime().store().read(h)
                    && let Ok(text) = String::from_utf8(bytes)
                {
                    content.push(ContentBlock::text(text));
                }
            }
            let mut r = CallToolResult::default();
            r.content = content;
            r.structured_content = structured;
            r.is_error = Some(false);
            return r;
        }
        let mut lines = vec![format!(
            "{}: op {} (events: {events_uri})",
            result.status.as_str(),
            result.op_id
        )];
        for d in &result.denials {
            lines.push(format!(
                "denied by {} [{}] at {}: {}",
                d.gate,
                d.code,
                d.pointer.as_deref().unwrap_or("/"),
                d.message
            ));
            if d.code.as_str().starts_with("G-CAP.CONSENT") {
                lines.push(format!(
                    "to grant consent: add a consent record for this capability (id, capability, granted_at, expires_at) under `consents` in the trusted policy {}, then restart the server (a client that declares the elicitation capability is asked instead)",
                    self.options.policy_path
                ));
            }
        }
        for e in &result.errors {
            lines.push(format!("[{}] {}", e.code, e.message));
        }
        let mut r = text_result(lines.join("\n"), structured, true);
        r.meta = Some(
            Map::from_iter([
                ("mex/status".to_owned(), json!(result.status)),
                ("mex/denials".to_owned(), json!(result.denials)),
                ("mex/errors".to_owned(), json!(result.errors)),
            ])
            .into(),
        );
        r
    }

    fn put(&self, args: &Map<String, Value>) -> CallToolResult {
        let fail = |pointer: &str, message: String| {
            text_result(
                format!("refused [MCP.PUT_INVALID] at {pointer}: {message}"),
                None,
                true,
            )
        };
        for key in args.keys() {
            if !["content", "content_base64", "media_type", "name"].contains(&key.as_str()) {
                return fail(
                    &format!("/{}", clip(key)),
                    "unknown argument; give content or content_base64, media_type and optionally name".into(),
                );
            }
        }
        let bytes = match (args.get("content"), args.get("content_base64")) {
            (Some(Value::String(text)), None) => text.clone().into_bytes(),
            (None, Some(Value::String(b64))) => {
                if b64.len() > MAX_PUT_BYTES.saturating_mul(4) / 3 + 4 {
                    return fail(
                        "/content_base64",
                        format!(
                            "over {MAX_PUT_BYTES} bytes; put larger inputs with `mex artifacts put`"
                        ),
                    );
                }
                match base64::engine::general_purpose::STANDARD.decode(b64) {
                    Ok(b) => b,
                    Err(e) => return fail("/content_base64", format!("not standard base64: {e}")),
                }
            }
            _ => {
                return fail(
                    "/",
                    "give exactly one of `content` (a string) or `content_base64` (a string)"
                        .into(),
                );
            }
        };
        if bytes.len() > MAX_PUT_BYTES {
            return fail(
                "/content",
                format!(
                    "{} bytes is over this server's limit of {MAX_PUT_BYTES}; put larger inputs with `mex artifacts put`",
                    bytes.len()
                ),
            );
        }
        let media_type: MediaType = match args
            .get("media_type")
            .and_then(Value::as_str)
            .map(str::parse)
        {
            Some(Ok(m)) => m,
            _ => {
                return fail(
                    "/media_type",
                    "a media type such as text/plain or application/json is required".into(),
                );
            }
        };
        let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
        options.media_type = Some(media_type);
        match self.runtime().store().put_bytes(&bytes, &options) {
            Ok(handle) => {
                // Recorded as an import, so `mex artifacts verify` can tell
                // it from a record that appeared behind mex's back.
                let imported = mex_recorder::EventDraft::artifact_written(
                    uuid::Uuid::nil(),
                    handle.content_hash,
                    handle.size_bytes,
                    handle
                        .media_type
                        .as_ref()
                        .map_or("application/octet-stream", |m| m.as_str()),
                );
                if let Err(e) = self.runtime().recorder().append(imported) {
                    return fail(
                        "/",
                        format!("the content was stored but its import could not be recorded: {e}"),
                    );
                }
                self.remember(std::slice::from_ref(&handle));
                let value = serde_json::to_value(&handle).unwrap_or(Value::Null);
                let mut r = text_result(value.to_string(), Some(value), false);
                r.content.push(ContentBlock::resource_link(
                    Resource::new(
                        resources::content_uri(&handle),
                        handle.artifact_id.to_string(),
                    )
                    .with_size(handle.size_bytes),
                ));
                r
            }
            Err(e) => fail("/", format!("the store refused the content: {e}")),
        }
    }

    fn validate(&self, args: &Map<String, Value>) -> CallToolResult {
        let Some(tool) = args
            .get("tool")
            .and_then(Value::as_str)
            .and_then(|t| self.catalog.operations.get(t))
        else {
            return text_result(
                "refused [MCP.UNKNOWN_TOOL] at /tool: name an operation tool from tools/list, e.g. physics_evaluate_formula".into(),
                None,
                true,
            );
        };
        let mut rest = args.clone();
        rest.remove("tool");
        let envelope = match tools::planned_operation(
            self.runtime().registry(),
            self.runtime().store(),
            tool,
            &rest,
        ) {
            Ok(v) => v,
            Err(e) => {
                return text_result(
                    format!(
                        "denied by G-SCHEMA [{}] at {}: {}",
                        e.code, e.pointer, e.message
                    ),
                    None,
                    true,
                );
            }
        };
        let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
        let outcomes = self.runtime().validate_json(&bytes);
        let denied = outcomes.iter().any(|o| o.denied());
        let value: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "gate": o.gate,
                    "verdict": if o.findings.is_empty() { "passed" } else if o.denied() { "denied" } else { "degraded" },
                    "findings": o.findings,
                })
            })
            .collect();
        let mut lines = vec![if denied {
            "denied".to_owned()
        } else {
            "admitted (nothing ran)".to_owned()
        }];
        for o in &outcomes {
            for f in &o.findings {
                lines.push(format!(
                    "{} [{}] at {}: {}",
                    f.gate,
                    f.code,
                    f.pointer.as_deref().unwrap_or("/"),
                    f.message
                ));
            }
        }
        text_result(
            lines.join("\n"),
            Some(json!({"admitted": !denied, "outcomes": value})),
            denied,
        )
    }
}

impl ServerHandler for MexServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("mex", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "mex runs mechanical operations (units, formulas, sandboxed code) under gates, budgets and a hash-chained record. Put inputs with mex_put_artifact, call an operation tool with its params and inputs, read outputs from the mex://artifacts/sha256/<digest> resource links.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            self.inner.catalog.tools.clone(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let mut request = request;
        let args = request.arguments.take().unwrap_or_default();
        if args.len() == 1
            && let Some(Value::String(token)) = args.get(guard::REFUSAL_KEY)
        {
            let token = token.clone();
            if let Some(r) = self
                .blocking(move |inner| inner.answer_refusal(&token))
                .await?
            {
                return Ok(r.into());
            }
        }
        let result = match request.name.as_ref() {
            tools::PUT_ARTIFACT => self.blocking(move |inner| inner.put(&args)).await?,
            tools::VALIDATE => self.blocking(move |inner| inner.validate(&args)).await?,
            name => {
                let Some(tool) = self.inner.catalog.operations.get(name).cloned() else {
                    return Err(McpError::invalid_params(
                        format!(
                            "unknown tool {:?}; tools/list names every tool this server offers",
                            clip(name)
                        ),
                        None,
                    ));
                };
                let name = name.to_owned();
                let answer = request
                    .request_state
                    .take()
                    .map(|state| (state, request.input_responses.take()));
                return self.call_operation(name, tool, args, answer, context).await;
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let cursor = request.and_then(|r| r.cursor);
        let page = self.inner.options.page_size;
        self.blocking(move |inner| {
            resources::list(inner.runtime().store(), cursor.as_deref(), page)
        })
        .await?
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let contents = self
            .blocking(move |inner| {
                resources::read(
                    inner.runtime().store(),
                    inner.runtime().recorder().as_ref(),
                    &uri,
                    inner.options.max_read_bytes,
                    |d| {
                        inner
                            .known
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(d)
                            .cloned()
                    },
                )
            })
            .await??;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// Serve over stdin/stdout until the client closes the stream. Blocks; the
/// async runtime lives only inside this call. Every line from stdin passes
/// the strict front door (`guard`) before rmcp reads it.
pub fn serve_stdio(server: MexServer) -> Result<(), McpServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(McpServerError::Runtime)?;
    rt.block_on(stdio::serve(
        server,
        tokio::io::stdin(),
        tokio::io::stdout(),
    ))
}
