//! Human-readable rendering of results and outcomes.

use std::fmt::Write as _;

use mex_envelope::{EngineResult, ResultStatus};
use mex_gates::GateOutcome;

/// A short summary of an EngineResult.
pub fn result_summary(r: &EngineResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "status    {}{}",
        r.status.as_str(),
        if r.served_from_cache {
            " (served from cache)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "op_id     {}", r.op_id);
    let ms = r.ended_at.unix_millis() - r.started_at.unix_millis();
    let _ = writeln!(
        out,
        "time      {} .. {} ({ms} ms)",
        r.started_at, r.ended_at
    );
    if let Some(p) = &r.provenance {
        let _ = writeln!(
            out,
            "engine    {} {} via {}@{} ({})",
            p.engine_id, p.operation, p.implementation_id, p.implementation_version, p.determinism
        );
    }
    for (label, list) in [("output", &r.outputs), ("evidence", &r.evidence)] {
        for h in list {
            let media = h.media_type.as_ref().map_or("-", |m| m.as_str());
            let _ = writeln!(
                out,
                "{label:<9} {} {} {} bytes sha256 {}",
                h.artifact_id, media, h.size_bytes, h.content_hash
            );
        }
    }
    if let Some(h) = &r.logs_ref {
        let _ = writeln!(out, "logs      {} {} bytes", h.artifact_id, h.size_bytes);
    }
    for d in &r.denials {
        let at = d
            .pointer
            .as_deref()
            .map(|p| format!(" at {p}"))
            .unwrap_or_default();
        let _ = writeln!(out, "denied    [{}] {}{at}: {}", d.code, d.gate, d.message);
    }
    for e in &r.errors {
        let _ = writeln!(out, "error     [{}] {}", e.code, e.message);
    }
    if r.status != ResultStatus::Succeeded {
        let _ = writeln!(
            out,
            "next      mex recorder events --op {}   |   mex problems",
            r.op_id
        );
    }
    out
}

/// Every gate outcome, one line each, denials indented below.
pub fn outcomes(outcomes: &[GateOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let verdict = if o.findings.is_empty() {
            "passed"
        } else if o.denied() {
            "DENIED"
        } else {
            "degraded"
        };
        let _ = writeln!(out, "{:<18} {verdict}", o.gate.as_str());
        for f in &o.findings {
            let at = f
                .pointer
                .as_deref()
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            let _ = writeln!(out, "    [{}]{at}: {}", f.code, f.message);
        }
    }
    out
}
