//! The canonical result forms of `dba.query_sql` (D3: the same rows give
//! the same bytes).
//!
//! * CSV: a header line of column names, then one line per row; fields
//!   separated by `,`, lines ended by `\n` (never `\r\n`). A field is quoted
//!   (`"`, with `"` doubled) when it is an empty text or contains `,`, `"`,
//!   `\r` or `\n`. NULL is an empty, unquoted field (so NULL and `""`
//!   differ). Integers in decimal; reals in the shortest form that reads
//!   back to the same `f64`, always with a `.` or an exponent (`1.0`,
//!   `1e300`, `inf`, `-inf`); blobs as `x'` lowercase hex `'`.
//! * JSON: `{"columns":[...],"rows":[[...],...]}`, compact, no spaces, keys
//!   in that order. NULL is `null`; integers within ±(2^53−1) are numbers,
//!   others strings; reals are numbers in the same shortest form
//!   (non-finite ones the strings `"inf"`/`"-inf"`); text is a string;
//!   blobs are `{"blob_hex":"..."}`.

use std::fmt::Write as _;

/// One SQLite value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Self::Null,
            ValueRef::Integer(i) => Self::Integer(i),
            ValueRef::Real(f) => Self::Real(f),
            ValueRef::Text(t) => Self::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Self::Blob(b.to_vec()),
        }
    }
}

/// The canonical text of a real.
pub fn real(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Debug is Rust's shortest round-trip form and keeps a `.0`.
    format!("{f:?}")
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// One canonical CSV field.
pub fn csv_field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => real(*f),
        Value::Blob(b) => format!("x'{}'", hex(b)),
        Value::Text(t) => {
            if t.is_empty() || t.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", t.replace('"', "\"\""))
            } else {
                t.clone()
            }
        }
    }
}

/// The header line plus one row, appended to `out`.
pub fn csv_line(out: &mut String, row: &[Value]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(v));
    }
    out.push('\n');
}

/// The canonical CSV of a result.
pub fn to_csv(columns: &[String], rows: &[Vec<Value>]) -> String {
    let mut out = String::new();
    let header: Vec<Value> = columns.iter().map(|c| Value::Text(c.clone())).collect();
    csv_line(&mut out, &header);
    for r in rows {
        csv_line(&mut out, r);
    }
    out
}

/// One canonical JSON value.
pub fn json_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    const MAX_SAFE: i64 = (1 << 53) - 1;
    match v {
        Value::Null => J::Null,
        Value::Integer(i) if (-MAX_SAFE..=MAX_SAFE).contains(i) => J::from(*i),
        Value::Integer(i) => J::String(i.to_string()),
        Value::Real(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| J::String(real(*f)), J::Number)
        }
        Value::Text(t) => J::String(t.clone()),
        Value::Blob(b) => serde_json::json!({ "blob_hex": hex(b) }),
    }
}

/// The canonical JSON of a result.
pub fn to_json(columns: &[String], rows: &[Vec<Value>]) -> Vec<u8> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::Value::Array(r.iter().map(json_value).collect()))
        .collect();
    // Keys written by hand so their order is fixed whatever serde_json's
    // map type is.
    let mut out = b"{\"columns\":".to_vec();
    out.extend(serde_json::to_vec(columns).unwrap_or_default());
    out.extend(b",\"rows\":");
    out.extend(serde_json::to_vec(&rows).unwrap_or_default());
    out.push(b'}');
    out
}
