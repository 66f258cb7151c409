//! `mex demo`: a newcomer's first run. Ingests the example inputs under
//! `examples/demo/`, certifies the shipped engines when they are not yet
//! certified, and runs example operations through the real runtime: the
//! engine's successes, one denial per global gate, a budget overrun and an
//! engine-level failure. Every row states its expected outcome; the demo
//! exits non-zero if any row differs, so it doubles as a smoke test.

use std::path::{Path, PathBuf};

use mex_artifacts::{BundleOptions, PutOptions};
use mex_envelope::{ArtifactHandle, ArtifactKind, Classification, EngineResult, ResultStatus};
use serde_json::{Value, json};

use crate::home::Home;
use crate::out::outln;
use crate::{CliError, exit};

fn inputs_dir() -> PathBuf {
    let local = PathBuf::from("examples/demo");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo")
}

struct Row {
    name: &'static str,
    expect: (&'static str, &'static str),
    result: EngineResult,
}

/// Every denial and error code of a result.
fn codes(r: &EngineResult) -> Vec<String> {
    r.denials
        .iter()
        .filter(|d| d.severity == mex_envelope::DenialSeverity::Deny)
        .map(|d| d.code.to_string())
        .chain(r.errors.iter().map(|e| e.code.to_string()))
        .collect()
}

fn outcome(r: &EngineResult) -> (String, String) {
    let code = r
        .denials
        .iter()
        .find(|d| d.severity == mex_envelope::DenialSeverity::Deny)
        .map(|d| d.code.to_string())
        .or_else(|| r.errors.first().map(|e| e.code.to_string()))
        .unwrap_or_else(|| "-".into());
    (r.status.as_str().to_owned(), code)
}

/// Run the demo.
pub fn run(home: &Home) -> Result<u8, CliError> {
    outln!(
        "mex demo: home {}, registry {}\n",
        home.root.display(),
        home.registry_path.display()
    );
    // 1. Certify what is not certified yet.
    let certifier = home.certifier();
    // Every engine this binary runs: the shipped builtins and the host
    // engines (kind host_process) the registry declares.
    let (runnable, _) =
        mex_cli::process_engines::engines_with_gates(&home.policy()?, &*home.registry()?);
    let uncertified: Vec<String> = runnable
        .iter()
        .filter(|e| {
            mex_runtime::code_digest(&***e)
                .and_then(|code| {
                    mex_runtime::Certifier::check(
                        &certifier,
                        &e.engine_id(),
                        e.implementation_id(),
                        &e.implementation_version(),
                        &code,
                    )
                })
                .is_err()
        })
        .map(|e| e.engine_id().to_string())
        .collect();
    for id in &uncertified {
        let (code, _) = crate::commands::conformance(home, Some(id))?;
        if code != exit::OK {
            return Err(CliError {
                code: exit::FAILED,
                message: format!("{id} did not pass conformance; see the table above"),
            });
        }
    }
    if uncertified.is_empty() {
        outln!(
            "engines already certified (certificates in {})",
            home.certificates().display()
        );
    }

    // 2. Ingest the example inputs.
    let store = home.store()?;
    let dir = inputs_dir();
    let put = |name: &str, media: &str| -> Result<ArtifactHandle, CliError> {
        let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
        options.exportable = true;
        options.media_type = media.parse().ok();
        let path = dir.join(name);
        let handle = store
            .put_path(&path, &options)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        crate::commands::record_import(home, &handle)?;
        Ok(handle)
    };
    let expr = put("pressure.expr.txt", "text/plain")?;
    let vars = put("pressure.vars.json", "application/json")?;
    let checks = put("checks.expr.txt", "text/plain")?;
    let bad_expr = put("mismatch.expr.txt", "text/plain")?;
    let bad_vars = put("mismatch.vars.json", "application/json")?;
    let script = put("sum.py", "text/x-python")?;
    let escape = put("escape.py", "text/x-python")?;
    let spec = put("sandbox-output-spec.json", "application/json")?;
    outln!("ingested 8 example inputs from {}\n", dir.display());

    let op = |operation: &str, inputs: &[&ArtifactHandle], params: Value| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.physics",
            "engine_version_req": "^0.1",
            "operation": operation,
            "inputs": inputs,
            "params": params,
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
            "budget": {"wall_time_ms": 5000, "output_bytes": 65536},
            "determinism": "D3"
        })
    };
    let pressure = || {
        op(
            "physics.evaluate_formula",
            &[&expr, &vars],
            json!({"expr_ref": expr.artifact_id.to_string(), "vars_ref": vars.artifact_id.to_string(), "output_unit": "Pa"}),
        )
    };

    let mut cases: Vec<(&'static str, (&'static str, &'static str), Value)> = Vec::new();
    cases.push(("pressure F/A in Pa", ("succeeded", "-"), pressure()));
    cases.push((
        "check units of two formulas",
        ("succeeded", "-"),
        op(
            "physics.check_units",
            &[&checks],
            json!({"expr_ref": checks.artifact_id.to_string()}),
        ),
    ));
    cases.push((
        "same pressure again (D3 cache)",
        ("succeeded", "-"),
        pressure(),
    ));
    cases.push((
        "m + s: unit mismatch",
        ("failed", "PHYS_UNIT_MISMATCH"),
        op("physics.evaluate_formula", &[&bad_expr, &bad_vars], json!({"expr_ref": bad_expr.artifact_id.to_string(), "vars_ref": bad_vars.artifact_id.to_string(), "output_unit": "m"})),
    ));
    let mut v = pressure();
    v["params"]["formula_inline"] = json!("F / A");
    cases.push((
        "G-SCHEMA: unknown param",
        ("denied", "G-SCHEMA.PARAMS_INVALID"),
        v,
    ));
    let mut v = pressure();
    v["capabilities_requested"] = json!(["fs.read:inputs", "fs.write:artifacts", "net.http"]);
    cases.push((
        "G-CAP: asks for the network",
        ("denied", "G-CAP.NOT_ALLOWED_BY_OPERATION"),
        v,
    ));
    let mut v = pressure();
    v["inputs"][0]["size_bytes"] = json!(expr.size_bytes + 1);
    cases.push((
        "G-INTEGRITY: right hash, wrong size",
        ("denied", "G-INTEGRITY.SIZE_MISMATCH"),
        v,
    ));
    let mut v = pressure();
    v["budget"]["wall_time_ms"] = json!(86_400_000);
    cases.push((
        "G-BUDGET: a day of wall time",
        ("denied", "G-BUDGET.ABOVE_MAXIMUM"),
        v,
    ));
    let mut v = pressure();
    v["engine_version_req"] = json!("^9");
    cases.push((
        "G-PROVENANCE: no such version",
        ("denied", "G-PROVENANCE.NO_IMPLEMENTATION"),
        v,
    ));
    let mut v = pressure();
    v["determinism"] = json!("D1");
    v["evidence_policy"] = json!({"required": false});
    cases.push((
        "G-DET: D1 without evidence",
        ("denied", "G-DET.EVIDENCE_NOT_REQUIRED"),
        v,
    ));
    let mut v = pressure();
    v["budget"]["output_bytes"] = json!(16);
    cases.push((
        "budget: 16 output bytes",
        ("budget_exceeded", "RUNTIME.OUTPUT_BUDGET_EXCEEDED"),
        v,
    ));

    let python = |script: &ArtifactHandle| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.sandbox",
            "engine_version_req": "^0.1",
            "operation": "sandbox.run_python",
            "inputs": [script, &spec],
            "params": {"script_ref": script.artifact_id.to_string(), "inputs": [], "output_spec_ref": spec.artifact_id.to_string()},
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts", "proc.exec:python3"],
            "budget": {"wall_time_ms": 10000, "cpu_time_ms": 5000, "memory_bytes": 268435456, "output_bytes": 1048576},
            "determinism": "D2"
        })
    };
    cases.push(("python in the sandbox", ("succeeded", "-"), python(&script)));
    cases.push((
        "sandbox: script reads /etc/passwd",
        ("failed", "SBOX_FS_ESCAPE_DETECTED"),
        python(&escape),
    ));
    let mut v = python(&script);
    v["capabilities_requested"] = json!([
        "fs.read:inputs",
        "fs.write:artifacts",
        "proc.exec:python3",
        "proc.exec:curl"
    ]);
    cases.push((
        "G-SAFETY.SANDBOX: exec curl",
        ("denied", "G-SAFETY.SANDBOX.EXEC_DENIED"),
        v,
    ));

    // engine.dba (a host engine): load a CSV; an ATTACH is refused.
    let people = put("people.csv", "text/csv")?;
    let attach = put("attach.sql", "application/sql")?;
    let dba = |operation: &str, input: &ArtifactHandle, params: Value| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.dba",
            "engine_version_req": "^0.1",
            "operation": operation,
            "inputs": [input],
            "params": params,
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
            "budget": {"wall_time_ms": 30000, "output_bytes": 1048576},
            "determinism": "D3"
        })
    };
    cases.push((
        "dba: load people.csv into SQLite",
        ("succeeded", "-"),
        dba(
            "dba.load_dataset",
            &people,
            json!({"dataset_ref": people.artifact_id.to_string(), "table": "people", "mode": "replace", "output": "sqlite"}),
        ),
    ));
    cases.push((
        "dba: SQL that ATTACHes a file",
        ("failed", "DBA_SQL_ERROR"),
        dba(
            "dba.query_sql",
            &attach,
            json!({"sql_ref": attach.artifact_id.to_string(), "output": "csv"}),
        ),
    ));

    // engine.wrangler (host_process): profile people.csv; a CSV whose quote
    // is never closed fails with the line where its record starts.
    let unbalanced = put("unbalanced.csv", "text/csv")?;
    let wrangler = |operation: &str, input: &ArtifactHandle, params: Value| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.wrangler",
            "engine_version_req": "^0.1",
            "operation": operation,
            "inputs": [input],
            "params": params,
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
            "budget": {"wall_time_ms": 30000, "output_bytes": 1048576},
            "determinism": "D2"
        })
    };
    cases.push((
        "wrangler: profile people.csv",
        ("succeeded", "-"),
        wrangler(
            "wrangler.profile_dataset",
            &people,
            json!({"dataset_ref": people.artifact_id.to_string(), "metrics": ["count", "nulls", "distinct", "min", "max"], "output": "json"}),
        ),
    ));
    cases.push((
        "wrangler: CSV quote never closed",
        ("failed", "WR_DATA_PARSE_ERROR"),
        wrangler(
            "wrangler.convert_table",
            &unbalanced,
            json!({"input_ref": unbalanced.artifact_id.to_string(), "target": "jsonl", "output": "dataset"}),
        ),
    ));

    // engine.sovereign (host_process): verify the committed sign/verify
    // vector (no key needed), then the same signature over altered bytes.
    let vectors =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry/vectors/engine.sovereign");
    let sov_put = |name: &str, bytes: Option<&[u8]>| -> Result<ArtifactHandle, CliError> {
        let mut options = PutOptions::new(ArtifactKind::File, Classification::Low);
        options.media_type = "text/plain".parse().ok();
        let path = vectors.join(name);
        let stored = match bytes {
            Some(b) => store.put_bytes(b, &options),
            None => store.put_path(&path, &options),
        };
        let handle = stored.map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        crate::commands::record_import(home, &handle)?;
        Ok(handle)
    };
    let sov_msg = sov_put("golden-verify.message.txt", None)?;
    let sov_sig = sov_put("golden-verify.signature.minisig", None)?;
    let sov_pk = sov_put("golden-verify.pubkey.pub", None)?;
    let sov_altered = sov_put("altered", Some(b"Sovereign data, altered after signing.\n"))?;
    let verify = |message: &ArtifactHandle| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.sovereign",
            "engine_version_req": "^0.1",
            "operation": "sovereign.verify",
            "inputs": [message, &sov_sig, &sov_pk],
            "params": {"input_ref": message.artifact_id.to_string(), "sig_ref": sov_sig.artifact_id.to_string(), "pubkey_ref": sov_pk.artifact_id.to_string(), "output": "json"},
            "capabilities_requested": ["fs.read:inputs", "fs.write:artifacts"],
            "budget": {"wall_time_ms": 30000},
            "determinism": "D2"
        })
    };
    cases.push((
        "sovereign: verify a signature",
        ("succeeded", "-"),
        verify(&sov_msg),
    ));
    cases.push((
        "sovereign: signature over other bytes",
        ("failed", "SOV_VERIFY_FAILED"),
        verify(&sov_altered),
    ));

    // engine.context (host_process): search a directory stored as a
    // bundle; a scope outside the bundle is the engine's typed refusal.
    let tree = inputs_dir().join("context");
    let ctx_bundle = store
        .put_dir(
            &tree,
            &BundleOptions {
                put: PutOptions::new(ArtifactKind::Bundle, Classification::Low),
                normalize_line_endings: false,
            },
        )
        .map_err(|e| CliError::usage(format!("{}: {e}", tree.display())))?;
    crate::commands::record_import(home, &ctx_bundle)?;
    let search = |scopes: Value| -> Value {
        json!({
            "schema_version": "poe-1.0",
            "op_id": uuid::Uuid::new_v4().to_string(),
            "engine_id": "engine.context",
            "engine_version_req": "^0.1",
            "operation": "context.search",
            "inputs": [&ctx_bundle],
            "params": {"query": "needle", "scopes": scopes, "mode": "literal", "output": "json"},
            "capabilities_requested": ["fs.read:workspace"],
            "budget": {"wall_time_ms": 10000, "output_bytes": 1048576},
            "determinism": "D3"
        })
    };
    cases.push((
        "context: search a bundle for a word",
        ("succeeded", "-"),
        search(json!([])),
    ));
    cases.push((
        "context: scope outside the bundle",
        ("failed", "CTX_SCOPE_DENIED"),
        search(json!(["/etc"])),
    ));

    // 3. Run them through the real runtime.
    let runtime = home.runtime()?;
    let mut rows = Vec::new();
    for (name, expect, doc) in cases {
        let bytes = serde_json::to_vec(&doc).map_err(|e| CliError::internal(e.to_string()))?;
        rows.push(Row {
            name,
            expect,
            result: runtime.execute_json(&bytes),
        });
    }

    // 4. Summary.
    outln!(
        "{:<36} {:<16} {:<34} as expected",
        "operation",
        "status",
        "code"
    );
    let mut surprises = 0;
    for row in &rows {
        let (status, code) = outcome(&row.result);
        let all = codes(&row.result);
        let ok = status == row.expect.0
            && if row.expect.1 == "-" {
                all.is_empty()
            } else {
                all.iter().any(|c| c == row.expect.1)
            };
        let code = if ok && row.expect.1 != "-" {
            row.expect.1.to_owned()
        } else {
            code
        };
        surprises += usize::from(!ok);
        let cached = if row.result.served_from_cache {
            " (cache)"
        } else {
            ""
        };
        outln!(
            "{:<36} {:<16} {:<34} {}",
            row.name,
            format!("{status}{cached}"),
            code,
            if ok {
                "yes".to_owned()
            } else {
                format!("NO: expected {} {}", row.expect.0, row.expect.1)
            }
        );
    }
    let first_output = rows
        .first()
        .filter(|r| r.result.status == ResultStatus::Succeeded)
        .and_then(|r| r.result.outputs.first());
    if let Some(out) = first_output
        && let Ok(bytes) = store.read(out)
    {
        outln!(
            "\npressure result ({}):\n{}",
            out.artifact_id,
            String::from_utf8_lossy(&bytes)
        );
    }
    let home_flag = format!("--home {}", home.root.display());
    outln!("\nwhere to look next:");
    outln!(
        "  mex {home_flag} recorder events --op {}   every decision about one operation",
        rows[0].result.op_id
    );
    outln!(
        "  mex {home_flag} problems                       denials and failures, grouped with counts"
    );
    outln!("  mex {home_flag} recorder verify                check the audit chain");
    outln!("  mex {home_flag} artifacts verify               re-hash every stored artifact");
    if surprises > 0 {
        outln!("\n{surprises} operation(s) did not end as expected");
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}
