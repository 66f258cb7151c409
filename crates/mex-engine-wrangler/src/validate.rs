//! `wrangler.validate_dataset`: every row against a JSON Schema and/or
//! column rules; every violation with row, line and column.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::convert::{parse_decimal, parse_int};
use crate::output::{html_page, json_bytes};
use crate::table::{InputOptions, Row, Table, cell_text, is_null, media_type_of};
use crate::{
    Fail, MAX_EXPECTATIONS_BYTES, Request, WR_DATA_PARSE_ERROR, WR_EXPECTATION_FAILED,
    WR_LIMIT_EXCEEDED, output_cap, param_count, read_small_json,
};

/// Compiled size bound for one regular expression (patterns in column
/// rules and in JSON Schemas).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Values longer than this are cut in violation reports.
const VALUE_PREVIEW_CHARS: usize = 120;
/// The most values tracked for `unique` rules, over all columns.
const MAX_UNIQUE_VALUES: usize = 2_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectations {
    #[serde(default)]
    json_schema: Option<Value>,
    #[serde(default)]
    columns: Vec<ColumnRule>,
    #[serde(default = "yes")]
    allow_extra_columns: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnRule {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<ColType>,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default = "yes")]
    nullable: bool,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min_length: Option<u64>,
    #[serde(default)]
    max_length: Option<u64>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default, rename = "enum")]
    allowed: Option<Vec<String>>,
    #[serde(default)]
    unique: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ColType {
    String,
    Integer,
    Number,
    Boolean,
}

fn yes() -> bool {
    true
}

struct Compiled {
    rule: ColumnRule,
    index: Option<usize>,
    regex: Option<regex::Regex>,
    seen: HashMap<[u8; 16], u64>,
}

struct Report {
    kept: Vec<Value>,
    max: u64,
    count: u64,
}

impl Report {
    fn push(
        &mut self,
        row: Option<&Row>,
        column: Option<&str>,
        rule: &str,
        message: String,
        value: Option<&Value>,
    ) {
        self.count += 1;
        if self.count > self.max {
            return;
        }
        let mut o = Map::new();
        o.insert("row".into(), json!(row.map(|r| r.number)));
        o.insert("line".into(), json!(row.and_then(|r| r.line)));
        o.insert("column".into(), json!(column));
        o.insert("rule".into(), json!(rule));
        o.insert("message".into(), json!(message));
        if let Some(v) = value {
            let text = cell_text(Some(v));
            let preview: String = text.chars().take(VALUE_PREVIEW_CHARS).collect();
            o.insert("value".into(), json!(preview));
        }
        self.kept.push(Value::Object(o));
    }
}

fn parse_expectations(doc: Value) -> Result<Expectations, Fail> {
    let exp: Expectations = serde_path_to_error::deserialize(doc).map_err(|e| {
        Fail::new(
            WR_DATA_PARSE_ERROR,
            format!(
                "expectations {}: {}; the document has `json_schema` (a JSON Schema for each row) and/or `columns` (column rules), see docs/engines/wrangler.md",
                pointer(&e.path().to_string()),
                e.inner()
            ),
        )
    })?;
    if exp.json_schema.is_none() && exp.columns.is_empty() && exp.allow_extra_columns {
        return Err(Fail::new(
            WR_DATA_PARSE_ERROR,
            "expectations /: no rule: give `json_schema`, `columns` or `allow_extra_columns: false`",
        ));
    }
    Ok(exp)
}

/// `a.b[0].c` to `/a/b/0/c`.
fn pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for part in path.split('.') {
        for seg in part.split('[') {
            let seg = seg.trim_end_matches(']');
            if !seg.is_empty() {
                out.push('/');
                out.push_str(seg);
            }
        }
    }
    out
}

fn compile_regex(pattern: &str, at: &str) -> Result<regex::Regex, Fail> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let code = if matches!(e, regex::Error::CompiledTooBig(_)) {
                WR_LIMIT_EXCEEDED
            } else {
                WR_DATA_PARSE_ERROR
            };
            Fail::new(
                code,
                format!("expectations {at}: the pattern cannot be used: {e}; simplify it (patterns run on a linear-time engine: no look-around or back-references, compiled size at most {REGEX_SIZE_LIMIT} bytes)"),
            )
        })
}

pub(crate) fn run(req: &mut Request) -> Result<(), Fail> {
    let opts = InputOptions::from_params(req.params(), media_type_of(req, "dataset_ref"))?;
    let max = param_count(req, "max_violations", 1000, 100_000)?;
    let fail_on_violation =
        req.params().get("on_violation").and_then(Value::as_str) == Some("fail");
    let html = req.param_str("output")? == "html";
    let cap = output_cap(req);
    let exp = parse_expectations(read_small_json(
        req,
        "expectations_ref",
        MAX_EXPECTATIONS_BYTES,
    )?)?;

    let validator = match &exp.json_schema {
        None => None,
        Some(schema) => Some(
            jsonschema::options()
                .with_pattern_options(
                    jsonschema::PatternOptions::regex()
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT),
                )
                .build(schema)
                .map_err(|e| {
                    Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "expectations /json_schema{}: the schema cannot be used: {e}; fix the schema (patterns run on a linear-time engine: no look-around or back-references; remote $ref is not fetched)",
                            e.schema_path()
                        ),
                    )
                })?,
        ),
    };
    let mut rules = Vec::with_capacity(exp.columns.len());
    for (i, rule) in exp.columns.into_iter().enumerate() {
        let regex = match &rule.pattern {
            Some(p) => Some(compile_regex(p, &format!("/columns/{i}/pattern"))?),
            None => None,
        };
        rules.push(Compiled {
            rule,
            index: None,
            regex,
            seen: HashMap::new(),
        });
    }

    let path = req.input_path("dataset_ref")?;
    let mut table = Table::open(&path, &opts)?;
    let mut report = Report {
        kept: Vec::new(),
        max,
        count: 0,
    };
    let mut rows = 0u64;
    let mut unique_values = 0usize;
    let mut header_checked = false;
    while let Some(row) = table.next_row()? {
        rows += 1;
        if !header_checked {
            header_checked = true;
            check_header(
                &mut rules,
                table.columns(),
                exp.allow_extra_columns,
                opts.format,
                &mut report,
            );
        }
        // JSON sources add columns as they go.
        for r in &mut rules {
            if r.index.is_none() {
                r.index = table.columns().iter().position(|c| *c == r.rule.name);
            }
        }
        if let Some(v) = &validator {
            let mut obj = Map::new();
            for (name, cell) in table.columns().iter().zip(&row.cells) {
                if let Some(c) = cell {
                    obj.insert(name.clone(), c.clone());
                }
            }
            let instance = Value::Object(obj);
            for err in v.iter_errors(&instance) {
                let ptr = err.instance_path().to_string();
                let column = ptr.strip_prefix('/').map(|p| {
                    mex_envelope::pointer::unescape_token(p.split('/').next().unwrap_or(p))
                });
                let value = column.as_deref().and_then(|c| instance.get(c));
                report.push(
                    Some(&row),
                    column.as_deref(),
                    "json_schema",
                    format!("{ptr}: {err}"),
                    value,
                );
            }
        }
        for r in &mut rules {
            let Some(i) = r.index else { continue };
            let cell = row.cells.get(i).and_then(Option::as_ref);
            check_cell(
                r,
                &row,
                cell,
                opts.format == crate::table::Format::Csv,
                &mut report,
                &mut unique_values,
            )?;
        }
    }
    if !header_checked {
        check_header(
            &mut rules,
            table.columns(),
            exp.allow_extra_columns,
            opts.format,
            &mut report,
        );
    }
    if opts.format != crate::table::Format::Csv {
        // Columns a JSON dataset never had.
        for r in &rules {
            if r.rule.required && r.index.is_none() && rows > 0 {
                report.push(
                    None,
                    Some(&r.rule.name),
                    "required",
                    format!("column {:?} appears in no row; it is required", r.rule.name),
                    None,
                );
            }
        }
        if !exp.allow_extra_columns {
            for c in table.columns() {
                if !rules.iter().any(|r| r.rule.name == *c) {
                    report.push(
                        None,
                        Some(c),
                        "extra_column",
                        format!("column {c:?} has no rule and allow_extra_columns is false"),
                        None,
                    );
                }
            }
        }
    }

    let truncated = report.count > report.max;
    if fail_on_violation && report.count > 0 {
        let first = report
            .kept
            .first()
            .map(|v| {
                format!(
                    "row {}, column {}: {}",
                    v["row"],
                    v["column"],
                    v["message"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default();
        return Err(Fail::new(
            WR_EXPECTATION_FAILED,
            format!(
                "{} violation(s) in {rows} row(s); first: {first}; run with on_violation \"report\" for the full list",
                report.count
            ),
        ));
    }
    let doc = json!({
        "engine": crate::ENGINE_ID,
        "operation": "wrangler.validate_dataset",
        "valid": report.count == 0,
        "rows_checked": rows,
        "violation_count": report.count,
        "violations": report.kept,
        "truncated": truncated,
    });
    if html {
        let header: Vec<String> = ["row", "line", "column", "rule", "message", "value"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let rows_html: Vec<Vec<String>> = report
            .kept
            .iter()
            .map(|v| {
                header
                    .iter()
                    .map(|h| match v.get(h) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(x) => x.to_string(),
                    })
                    .collect()
            })
            .collect();
        let bytes = html_page(
            "Dataset validation",
            &[
                ("valid".to_owned(), (report.count == 0).to_string()),
                ("rows checked".to_owned(), rows.to_string()),
                ("violations".to_owned(), report.count.to_string()),
                ("truncated".to_owned(), truncated.to_string()),
            ],
            &header,
            &rows_html,
            &cap,
        )?;
        return req.write_output("report.html", "artifact.document", "text/html", &bytes);
    }
    let bytes = json_bytes(&doc, &cap)?;
    req.write_output(
        "report.json",
        "artifact.document",
        "application/json",
        &bytes,
    )
}

fn check_header(
    rules: &mut [Compiled],
    columns: &[String],
    allow_extra: bool,
    format: crate::table::Format,
    report: &mut Report,
) {
    for r in rules.iter_mut() {
        r.index = columns.iter().position(|c| *c == r.rule.name);
    }
    if format != crate::table::Format::Csv {
        return;
    }
    for r in rules.iter() {
        if r.rule.required && r.index.is_none() {
            report.push(
                None,
                Some(&r.rule.name),
                "required",
                format!("the header has no column {:?}; it is required", r.rule.name),
                None,
            );
        }
    }
    if !allow_extra {
        for c in columns {
            if !rules.iter().any(|r| r.rule.name == *c) {
                report.push(
                    None,
                    Some(c),
                    "extra_column",
                    format!("column {c:?} has no rule and allow_extra_columns is false"),
                    None,
                );
            }
        }
    }
}

fn check_cell(
    r: &mut Compiled,
    row: &Row,
    cell: Option<&Value>,
    csv_text: bool,
    report: &mut Report,
    unique_values: &mut usize,
) -> Result<(), Fail> {
    let name = r.rule.name.as_str();
    if is_null(cell) {
        if !r.rule.nullable {
            report.push(
                Some(row),
                Some(name),
                "nullable",
                "the value is empty or null; the column is not nullable".into(),
                cell,
            );
        }
        return Ok(());
    }
    let Some(v) = cell else { return Ok(()) };
    let text = cell_text(Some(v));
    let number = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if csv_text => parse_decimal(s),
        _ => None,
    };
    if let Some(t) = r.rule.kind {
        let ok = match (t, v) {
            (ColType::String, Value::String(_)) => true,
            (ColType::String, _) => false,
            (ColType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (ColType::Integer, Value::String(s)) => csv_text && parse_int(s).is_some(),
            (ColType::Number, Value::Number(_)) => true,
            (ColType::Number, Value::String(_)) => number.is_some(),
            (ColType::Boolean, Value::Bool(_)) => true,
            (ColType::Boolean, Value::String(s)) => csv_text && (s == "true" || s == "false"),
            _ => false,
        };
        if !ok {
            let t = match t {
                ColType::String => "string",
                ColType::Integer => "integer",
                ColType::Number => "number",
                ColType::Boolean => "boolean",
            };
            report.push(
                Some(row),
                Some(name),
                "type",
                format!("the value is not a {t}"),
                Some(v),
            );
        }
    }
    if r.rule.min.is_some() || r.rule.max.is_some() {
        match number {
            None => report.push(
                Some(row),
                Some(name),
                "min_max",
                "the value is not a number, so min/max cannot hold".into(),
                Some(v),
            ),
            Some(x) => {
                if let Some(min) = r.rule.min
                    && x < min
                {
                    report.push(
                        Some(row),
                        Some(name),
                        "min",
                        format!("{x} is less than the minimum {min}"),
                        Some(v),
                    );
                }
                if let Some(max) = r.rule.max
                    && x > max
                {
                    report.push(
                        Some(row),
                        Some(name),
                        "max",
                        format!("{x} is more than the maximum {max}"),
                        Some(v),
                    );
                }
            }
        }
    }
    let chars = text.chars().count() as u64;
    if let Some(min) = r.rule.min_length
        && chars < min
    {
        report.push(
            Some(row),
            Some(name),
            "min_length",
            format!("{chars} characters, fewer than {min}"),
            Some(v),
        );
    }
    if let Some(max) = r.rule.max_length
        && chars > max
    {
        report.push(
            Some(row),
            Some(name),
            "max_length",
            format!("{chars} characters, more than {max}"),
            Some(v),
        );
    }
    if let Some(re) = &r.regex
        && !re.is_match(&text)
    {
        report.push(
            Some(row),
            Some(name),
            "pattern",
            format!(
                "the value does not match {:?}",
                r.rule.pattern.as_deref().unwrap_or("")
            ),
            Some(v),
        );
    }
    if let Some(allowed) = &r.rule.allowed
        && !allowed.contains(&text)
    {
        report.push(
            Some(row),
            Some(name),
            "enum",
            "the value is not one of the allowed values".into(),
            Some(v),
        );
    }
    if r.rule.unique {
        let d = Sha256::digest(text.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&d[..16]);
        match r.seen.get(&short) {
            Some(first) => report.push(
                Some(row),
                Some(name),
                "unique",
                format!("the value repeats row {first}"),
                Some(v),
            ),
            None => {
                *unique_values += 1;
                if *unique_values > MAX_UNIQUE_VALUES {
                    return Err(Fail::new(
                        WR_LIMIT_EXCEEDED,
                        format!(
                            "row {}: more than {MAX_UNIQUE_VALUES} values to keep for `unique` rules; check uniqueness in engine.dba instead",
                            row.number
                        ),
                    ));
                }
                r.seen.insert(short, row.number);
            }
        }
    }
    Ok(())
}
