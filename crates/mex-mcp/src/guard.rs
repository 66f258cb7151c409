//! The strict front door of every incoming JSON-RPC message.
//!
//! rmcp reads messages with plain `serde_json`, which keeps the last copy of
//! a duplicate member and turns `18446744073709551616` into a float. Before
//! rmcp sees a message, its raw bytes go through the envelope's strict reader
//! ([`mex_envelope::json::from_slice_within`]): duplicate member names at any
//! depth, numbers beyond ±(2^53−1), nesting past 128 levels and documents
//! that would take too much memory are refused with the reader's pointer and
//! line/column, and every refusal is recorded (`gate_denied`, G-SCHEMA
//! `G-SCHEMA.ENVELOPE_INVALID`, like a refused envelope from `mex run`).
//!
//! How a refused message is answered:
//! - a `tools/call` naming a known tool is **rewritten**: the same id and
//!   tool name, with arguments that only carry a one-time token
//!   ([`REFUSAL_KEY`]); the tool handler trades the token for the refusal,
//!   records it under the op id the arguments claimed (else a fresh id) and
//!   answers a tool result with `isError: true` naming the gate, the code and
//!   the pointer (relative to the arguments), the denial in `_meta`. Tokens
//!   are random and single-use, so a client cannot forge one.
//! - any other request gets a JSON-RPC error (`-32600`, or `-32700` when the
//!   bytes are not JSON) with the same id when one could be found, the
//!   denial in `error.data["mex/denials"]`; a refused notification or
//!   response is dropped (JSON-RPC answers neither). Both are recorded.
//!
//! The id, method, tool name and claimed op id of a refused message are
//! found by [`scan`], which walks the bytes once without recursion and keeps
//! no more than four levels of keys, so it is safe on any input.

use std::collections::HashMap;
use std::sync::PoisonError;

use mex_envelope::json::{self, JsonError};
use mex_envelope::{DenialSeverity, ErrorCode, GateDenial, GateId};
use mex_recorder::EventDraft;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Inner, MAX_MESSAGE_BYTES};

/// The one argument of a rewritten refused `tools/call`.
pub const REFUSAL_KEY: &str = "$mex_refused";
/// Memory the strict reader may spend on one message.
const MESSAGE_VALUE_BUDGET: usize = 8 * MAX_MESSAGE_BYTES;
/// Pending refusals kept at most (a client that vanished between the
/// rewrite and the call leaves its entry behind).
const MAX_PENDING: usize = 10_000;
/// The code of every refusal here (what `mex run` says for the same bytes).
const CODE: &str = "G-SCHEMA.ENVELOPE_INVALID";

/// What to do with one incoming message.
#[derive(Debug)]
pub enum Verdict {
    /// Hand the bytes to rmcp unchanged.
    Pass,
    /// Hand these bytes to rmcp instead (a refused `tools/call`).
    Rewrite(Vec<u8>),
    /// Answer the peer with this JSON-RPC error (one line, no newline).
    Reply(Vec<u8>),
    /// Drop the message (a refused notification or response).
    Drop,
}

/// A refusal waiting for its tool handler.
#[derive(Debug, Clone)]
pub struct Pending {
    op_id: Uuid,
    denial: GateDenial,
}

/// What [`scan`] found at the top of a message.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// The raw `id` token (a string or a number), when there is exactly one.
    pub id: Option<Value>,
    /// Whether an `id` member is there at all (even an ambiguous one).
    pub id_seen: bool,
    /// `method`, when a short string and given once.
    pub method: Option<String>,
    /// `params._meta`, when it is a small object the strict reader accepts
    /// (kept in a rewritten call: clients put their protocol version there).
    pub meta: Option<Value>,
    /// `params.name`.
    pub name: Option<String>,
    /// `params.arguments.op_id`, when a UUID.
    pub op_id: Option<Uuid>,
}

/// One found member: not seen, seen once (its value), seen more than once.
#[derive(Default)]
enum Slot<'a> {
    #[default]
    None,
    One(Option<&'a [u8]>),
    Many,
}

impl<'a> Slot<'a> {
    fn see(&mut self, value: Option<&'a [u8]>) {
        *self = match self {
            Self::None => Self::One(value),
            _ => Self::Many,
        };
    }
    fn get(&self) -> Option<&'a [u8]> {
        match self {
            Self::One(v) => *v,
            _ => None,
        }
    }
}

struct Frame<'a> {
    object: bool,
    expect_key: bool,
    key: Option<&'a [u8]>,
}

/// Find the id, method, tool name and claimed op id of a message without
/// parsing it (see the module docs). Truncated or malformed input yields
/// what was found before the damage.
pub fn scan(bytes: &[u8]) -> Scan {
    const KEEP: usize = 4;
    let mut frames: Vec<Frame<'_>> = Vec::with_capacity(KEEP);
    let mut deeper = 0usize;
    let (mut id, mut method, mut name, mut op_id) =
        (Slot::None, Slot::None, Slot::None, Slot::None);
    // The span of `params._meta` (start, end once closed).
    let mut meta: Option<(usize, Option<usize>)> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // The span of the token starting at i, and where it ends.
        let (token, end) = match b {
            b' ' | b'\t' | b'\r' | b'\n' | b':' => {
                i += 1;
                continue;
            }
            b',' => {
                if deeper == 0
                    && let Some(f) = frames.last_mut()
                    && f.object
                {
                    f.expect_key = true;
                }
                i += 1;
                continue;
            }
            b'}' | b']' => {
                if deeper > 0 {
                    deeper -= 1;
                } else {
                    if frames.len() == 3
                        && let Some((start, None)) = meta
                    {
                        meta = Some((start, Some(i + 1)));
                    }
                    frames.pop();
                }
                i += 1;
                continue;
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(bytes.len());
                (&bytes[i..end], end)
            }
            b'{' | b'[' => (&bytes[i..=i], i + 1),
            _ => {
                let mut j = i;
                while j < bytes.len() && !b",}] \t\r\n:".contains(&bytes[j]) {
                    j += 1;
                }
                (&bytes[i..j.max(i + 1)], j.max(i + 1))
            }
        };
        i = end;
        if deeper > 0 {
            if matches!(b, b'{' | b'[') {
                deeper += 1;
            }
            continue;
        }
        if let Some(f) = frames.last_mut()
            && f.object
            && f.expect_key
        {
            f.key = Some(token);
            f.expect_key = false;
            continue;
        }
        // A value: where is it?
        let path: Option<Vec<&[u8]>> = frames
            .iter()
            .map(|f| if f.object { f.key } else { None })
            .collect();
        let scalar = (!matches!(b, b'{' | b'[')).then_some(token);
        match path.as_deref() {
            Some([b"\"id\""]) => id.see(scalar),
            Some([b"\"method\""]) => method.see(scalar),
            Some([b"\"params\"", b"\"name\""]) => name.see(scalar),
            Some([b"\"params\"", b"\"arguments\"", b"\"op_id\""]) => op_id.see(scalar),
            Some([b"\"params\"", b"\"_meta\""]) if b == b'{' && meta.is_none() => {
                meta = Some((i - 1, None));
            }
            _ => {}
        }
        if matches!(b, b'{' | b'[') {
            if frames.len() < KEEP {
                frames.push(Frame {
                    object: b == b'{',
                    expect_key: b == b'{',
                    key: None,
                });
            } else {
                deeper = 1;
            }
        }
    }
    let text = |slot: &Slot<'_>| -> Option<String> {
        slot.get()
            .filter(|t| t.len() <= 256)
            .and_then(|t| serde_json::from_slice::<String>(t).ok())
    };
    Scan {
        id: id.get().filter(|t| t.len() <= 256).and_then(|t| {
            json::from_slice(t)
                .ok()
                .filter(|v: &Value| v.is_string() || v.is_i64() || v.is_u64())
        }),
        id_seen: !matches!(id, Slot::None),
        meta: meta
            .and_then(|(start, end)| bytes.get(start..end?))
            .filter(|m| m.len() <= 64 * 1024)
            .and_then(|m| json::from_slice_within(m, 1 << 20).ok()),
        method: text(&method),
        name: text(&name),
        op_id: text(&op_id).and_then(|s| Uuid::try_parse(&s).ok()),
    }
}

/// The JSON-RPC error code, the pointer and the message of a refusal.
fn describe(e: &JsonError) -> (i64, String, String) {
    let rpc = if matches!(
        e,
        JsonError::Syntax { .. } | JsonError::ByteOrderMark { .. }
    ) {
        -32700
    } else {
        -32600
    };
    (
        rpc,
        e.pointer().unwrap_or("").to_owned(),
        format!("the JSON-RPC message was refused by the strict JSON reader: {e}"),
    )
}

fn denial(pointer: String, message: String) -> GateDenial {
    GateDenial {
        gate: GateId::from_static(mex_registry::GATE_SCHEMA),
        code: ErrorCode::from_static(CODE),
        rule: "mcp.message.strict_json".into(),
        message,
        pointer: Some(pointer),
        details: None,
        severity: DenialSeverity::Deny,
    }
}

/// The text of a refusal, as tool results and JSON-RPC errors say it.
pub fn refusal_text(d: &GateDenial, recorded: bool) -> String {
    let pointer = d
        .pointer
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    format!(
        "denied by {} [{}] at {pointer}: {}{}",
        d.gate,
        d.code,
        d.message,
        if recorded {
            ""
        } else {
            " (the refusal could not be recorded)"
        }
    )
}

impl Inner {
    /// Check one incoming message (see the module docs).
    pub(crate) fn guard(&self, bytes: &[u8]) -> Verdict {
        match json::from_slice_within(bytes, MESSAGE_VALUE_BUDGET) {
            Ok(_) => Verdict::Pass,
            Err(e) => {
                let (rpc, pointer, message) = describe(&e);
                self.refuse(bytes, rpc, pointer, message)
            }
        }
    }

    /// A message over [`MAX_MESSAGE_BYTES`]; `head` is its beginning.
    pub(crate) fn refuse_oversized(&self, head: &[u8]) -> Verdict {
        self.refuse(
            head,
            -32600,
            String::new(),
            format!(
                "the JSON-RPC message is over {MAX_MESSAGE_BYTES} bytes, this server's limit; pass large data as artifacts (`mex artifacts put`) and refer to them"
            ),
        )
    }

    fn refuse(&self, bytes: &[u8], rpc: i64, pointer: String, message: String) -> Verdict {
        let found = scan(bytes);
        let op_id = mex_envelope::PlannedOperation::refusal_id(found.op_id);
        let known_tool = found.name.as_deref().is_some_and(|n| {
            self.catalog.operations.contains_key(n) || crate::tools::is_builtin(n)
        });
        if let (Some(id), Some("tools/call"), true) =
            (&found.id, found.method.as_deref(), known_tool)
        {
            // Relative to the arguments, like every other argument refusal.
            let pointer = pointer
                .strip_prefix("/params/arguments")
                .map(str::to_owned)
                .unwrap_or(pointer);
            let token = Uuid::new_v4();
            {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.len() >= MAX_PENDING {
                    pending.clear();
                }
                pending.insert(
                    token,
                    Pending {
                        op_id,
                        denial: denial(pointer, message),
                    },
                );
            }
            let mut params =
                json!({"name": found.name, "arguments": {REFUSAL_KEY: token.to_string()}});
            if let (Some(meta), Some(p)) = (&found.meta, params.as_object_mut()) {
                p.insert("_meta".into(), meta.clone());
            }
            let rewritten = json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": "tools/call",
                "params": params,
            });
            return Verdict::Rewrite(serde_json::to_vec(&rewritten).unwrap_or_default());
        }
        let d = denial(pointer, message);
        let recorded = self
            .runtime()
            .recorder()
            .append(EventDraft::gate_outcome(op_id, &d))
            .is_ok();
        // JSON-RPC answers neither responses nor notifications.
        let response = found.method.is_none() && found.id.is_some();
        let notification = found.method.is_some() && !found.id_seen;
        if response || notification {
            return Verdict::Drop;
        }
        let reply = json!({
            "jsonrpc": "2.0",
            "id": found.id,
            "error": {
                "code": rpc,
                "message": refusal_text(&d, recorded),
                // The id the refusal is recorded under (the one the message
                // claims, else a fresh one), so that it can be looked up.
                "data": {"mex/denials": [d], "mex/op_id": op_id.to_string()},
            },
        });
        Verdict::Reply(serde_json::to_vec(&reply).unwrap_or_default())
    }

    /// Trade a refusal token for its recorded refusal, when it is one.
    pub(crate) fn take_refusal(&self, token: &str) -> Option<(Uuid, GateDenial)> {
        let token = Uuid::try_parse(token).ok()?;
        let p = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&token)?;
        Some((p.op_id, p.denial))
    }
}

/// The pending refusals of a server.
pub type PendingMap = HashMap<Uuid, Pending>;

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn scan_finds_the_top_level_members_only() {
        let s = scan(
            br#"{"jsonrpc":"2.0","params":{"arguments":{"x":{"id":9,"method":"no"},"op_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","a":1,"a":2},"name":"physics_convert_units"},"id":7,"method":"tools/call"}"#,
        );
        assert_eq!(s.id, Some(json!(7)));
        assert_eq!(s.method.as_deref(), Some("tools/call"));
        assert_eq!(s.name.as_deref(), Some("physics_convert_units"));
        assert_eq!(
            s.op_id,
            Some(Uuid::try_parse("1b4e28ba-2fa1-11d2-883f-0016d3cca427").unwrap())
        );
    }

    #[test]
    fn scan_refuses_ambiguous_ids_and_survives_garbage() {
        assert_eq!(scan(br#"{"id":1,"id":2,"method":"ping"}"#).id, None);
        let m = scan(br#"{"params":{"_meta":{"a":{"b":[1,{"c":2}]}},"name":"x"},"id":1}"#);
        assert_eq!(m.meta, Some(json!({"a":{"b":[1,{"c":2}]}})));
        assert_eq!(m.name.as_deref(), Some("x"));
        assert_eq!(
            scan(br#"{"id":"a\"b","method":"ping"}"#).id,
            Some(json!("a\"b"))
        );
        let deep = format!(
            "{{\"id\":3,\"params\":{}{}",
            "[".repeat(100_000),
            "]".repeat(10)
        );
        assert_eq!(scan(deep.as_bytes()).id, Some(json!(3)));
        for junk in [&b"\"\\"[..], b"{{{{{{", b"]]]]}}", b"{\"id\"", b":::,,,"] {
            let _ = scan(junk);
        }
    }
}
