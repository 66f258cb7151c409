//! engine.dba at handler level: each operation on a request laid out like
//! the jail (inputs as files, an output directory), including hostile
//! inputs that must end in a typed failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::PathBuf;

use mex_engine_sdk::{Fail, Request};
use serde_json::{Value, json};

struct Jail {
    dir: tempfile::TempDir,
    inputs: Vec<Value>,
    n: u32,
}

impl Jail {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        Self {
            dir,
            inputs: Vec::new(),
            n: 0,
        }
    }

    /// Add an input; its artifact id.
    fn input(&mut self, bytes: &[u8], media: &str) -> String {
        self.n += 1;
        let id = format!("7d3c1f0e-0000-4000-8000-{:012x}", self.n);
        let path = self.dir.path().join("in").join(&id);
        std::fs::write(&path, bytes).unwrap();
        self.inputs.push(json!({
            "artifact_id": id,
            "path": path.display().to_string(),
            "kind": "file",
            "media_type": media,
            "content_hash": "0000000000000000000000000000000000000000000000000000000000000000",
            "size_bytes": bytes.len()
        }));
        id
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn run(&self, op: &str, params: Value) -> (Result<(), Fail>, Request) {
        self.run_budget(
            op,
            params,
            json!({"wall_time_ms": 5000, "cpu_time_ms": 2000}),
        )
    }

    fn run_budget(&self, op: &str, params: Value, budget: Value) -> (Result<(), Fail>, Request) {
        // A fresh output directory per run.
        let _ = std::fs::remove_dir_all(self.out());
        std::fs::create_dir(self.out()).unwrap();
        let doc = json!({
            "protocol": "mex-engine-1",
            "op_id": "7d3c1f0e-0000-4000-8000-000000000999",
            "engine_id": "engine.dba",
            "implementation_id": "mex-engine-dba",
            "implementation_version": "0.1.0",
            "operation": op,
            "params": params,
            "inputs": self.inputs,
            "budget": budget,
            "determinism": "D3",
            "output_dir": self.out().display().to_string()
        });
        let mut req = Request::from_slice(doc.to_string().as_bytes()).unwrap();
        let r = mex_engine_dba::handle(&mut req);
        (r, req)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.out().join(file)).unwrap()
    }
}

fn code(r: Result<(), Fail>) -> String {
    let f = r.expect_err("expected a failure");
    assert!(!f.message.is_empty());
    f.code
}

fn load_csv(j: &mut Jail, csv: &[u8]) -> (Result<(), Fail>, Request) {
    let id = j.input(csv, "text/csv");
    j.run(
        "dba.load_dataset",
        json!({"dataset_ref": id, "table": "t", "mode": "replace", "output": "sqlite"}),
    )
}

/// Load CSV, return the dataset bytes.
fn dataset(j: &mut Jail, csv: &[u8]) -> Vec<u8> {
    let (r, _) = load_csv(j, csv);
    r.unwrap();
    j.read("dataset.sqlite")
}

fn query(j: &mut Jail, db: Option<&[u8]>, sql: &str, output: &str) -> (Result<(), Fail>, Request) {
    let sql_id = j.input(sql.as_bytes(), "application/sql");
    let mut params = json!({"sql_ref": sql_id, "output": output});
    if let Some(db) = db {
        params["dataset_ref"] = json!(j.input(db, "application/vnd.sqlite3"));
    }
    j.run("dba.query_sql", params)
}

fn result_csv(j: &Jail) -> String {
    String::from_utf8(j.read("result.csv")).unwrap()
}

#[test]
fn fts5_is_compiled_in() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE VIRTUAL TABLE f USING fts5(x)")
        .unwrap();
}

#[test]
fn load_infers_types_and_the_bytes_are_deterministic() {
    let csv = b"id,name,score\n3,carol,7.5\n1,alice,9\n2,\"bob, jr\",\n";
    let mut a = Jail::new();
    let first = dataset(&mut a, csv);
    let mut b = Jail::new();
    let second = dataset(&mut b, csv);
    assert_eq!(
        first, second,
        "two loads of the same input must be byte-identical"
    );
    // Only the artifact is left in the output directory.
    let names: Vec<_> = std::fs::read_dir(a.out())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("dataset.sqlite")]);
    let (r, _) = query(
        &mut a,
        Some(&first),
        "SELECT name, typeof(id), typeof(score), score FROM t ORDER BY id",
        "csv",
    );
    r.unwrap();
    assert_eq!(
        result_csv(&a),
        "name,typeof(id),typeof(score),score\nalice,integer,real,9.0\n\"bob, jr\",integer,null,\ncarol,integer,real,7.5\n"
    );
}

#[test]
fn declared_columns_are_enforced_with_row_and_column() {
    let mut j = Jail::new();
    let id = j.input(b"a,b\n1,x\nnope,y\n", "text/csv");
    let (r, _) = j.run(
        "dba.load_dataset",
        json!({"dataset_ref": id, "table": "t", "mode": "replace", "output": "sqlite",
               "columns": [{"name": "a", "type": "integer"}, {"name": "b", "type": "text"}]}),
    );
    let f = r.unwrap_err();
    assert_eq!(f.code, "DBA_LOAD_ERROR");
    assert!(
        f.message.contains("row 2") && f.message.contains("\"a\""),
        "{}",
        f.message
    );
}

#[test]
fn json_lines_load_with_key_union() {
    let mut j = Jail::new();
    let id = j.input(
        b"{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"c\":true}\n",
        "application/x-ndjson",
    );
    let (r, _) = j.run(
        "dba.load_dataset",
        json!({"dataset_ref": id, "table": "t", "mode": "replace", "output": "sqlite"}),
    );
    r.unwrap();
    let db = j.read("dataset.sqlite");
    let (r, _) = query(
        &mut j,
        Some(&db),
        "SELECT a, b, c FROM t ORDER BY a",
        "json",
    );
    r.unwrap();
    assert_eq!(
        String::from_utf8(j.read("result.json")).unwrap(),
        r#"{"columns":["a","b","c"],"rows":[[1,"x",null],[2,null,1]]}"#
    );
}

#[test]
fn append_to_a_base_dataset() {
    let mut j = Jail::new();
    let base = dataset(&mut j, b"k\n1\n");
    let base_id = j.input(&base, "application/vnd.sqlite3");
    let more = j.input(b"k\n2\n", "text/csv");
    let (r, _) = j.run(
        "dba.load_dataset",
        json!({"dataset_ref": more, "base_ref": base_id, "table": "t", "mode": "append", "output": "sqlite"}),
    );
    r.unwrap();
    let db = j.read("dataset.sqlite");
    query(&mut j, Some(&db), "SELECT count(*) AS n FROM t", "csv")
        .0
        .unwrap();
    assert_eq!(result_csv(&j), "n\n2\n");
}

#[test]
fn malformed_csv_is_a_load_error() {
    let mut j = Jail::new();
    assert_eq!(code(load_csv(&mut j, b"a,b\n1,2\n3\n").0), "DBA_LOAD_ERROR");
    assert_eq!(code(load_csv(&mut j, b"a,a\n1,2\n").0), "DBA_LOAD_ERROR");
    assert_eq!(
        code(load_csv(&mut j, b"a,b\n\xff\xfe,1\n").0),
        "DBA_LOAD_ERROR"
    );
}

#[test]
fn a_huge_field_is_refused_before_parsing_or_at_the_field_limit() {
    let mut j = Jail::new();
    // 2 MiB field: past the field limit.
    let mut csv = b"a\n\"".to_vec();
    csv.extend(std::iter::repeat_n(b'x', 2 << 20));
    csv.extend(b"\"\n");
    assert_eq!(code(load_csv(&mut j, &csv).0), "DBA_LIMIT_EXCEEDED");
    // 100 MB field: past the input limit, refused from its size.
    let mut big = b"a\n\"".to_vec();
    big.resize(100_000_000, b'x');
    big.extend(b"\"\n");
    assert_eq!(code(load_csv(&mut j, &big).0), "DBA_LIMIT_EXCEEDED");
}

#[test]
fn a_query_that_never_ends_is_stopped() {
    let mut j = Jail::new();
    let sql = j.clone_input(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c",
    );
    let (r, _) = j.run_budget(
        "dba.query_sql",
        json!({"sql_ref": sql, "output": "csv"}),
        json!({"wall_time_ms": 1000, "cpu_time_ms": 1000}),
    );
    assert_eq!(code(r), "DBA_LIMIT_EXCEEDED");
}

#[test]
fn a_cartesian_explosion_is_stopped_by_rows_or_steps() {
    let mut j = Jail::new();
    let db = dataset(&mut j, b"k\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
    let (r, _) = query(
        &mut j,
        Some(&db),
        "SELECT * FROM t a, t b, t c, t d, t e",
        "csv",
    );
    assert_eq!(code(r), "DBA_LIMIT_EXCEEDED");
    let (r, _) = query(
        &mut j,
        Some(&db),
        "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j2",
        "csv",
    );
    assert_eq!(code(r), "DBA_LIMIT_EXCEEDED");
}

#[test]
fn writes_attach_pragma_and_extensions_are_refused() {
    let mut j = Jail::new();
    let db = dataset(&mut j, b"k\n1\n");
    for sql in [
        "INSERT INTO t VALUES (2)",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u(x)",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA writable_schema = 1",
        "PRAGMA table_info(t)",
        "SELECT load_extension('/tmp/evil.so')",
        "BEGIN",
        "SELECT 1; DELETE FROM t",
        "VACUUM INTO '/tmp/copy.db'",
    ] {
        let (r, _) = query(&mut j, Some(&db), sql, "csv");
        assert_eq!(code(r), "DBA_SQL_ERROR", "{sql}");
    }
}

#[test]
fn a_hostile_database_file_is_an_io_error() {
    let mut j = Jail::new();
    let mut good = dataset(&mut j, b"k\n1\n2\n");
    // Corrupt header (page size bytes) and garbage pages.
    good[16] = 0x01;
    good[17] = 0x03;
    let (r, _) = query(&mut j, Some(&good), "SELECT * FROM t", "csv");
    assert_eq!(code(r), "DBA_IO_ERROR");
    let (r, _) = query(&mut j, Some(b"SQLite format 3\0garbage"), "SELECT 1", "csv");
    assert_eq!(code(r), "DBA_IO_ERROR");
    let (r, _) = query(&mut j, Some(b"not a database at all"), "SELECT 1", "csv");
    assert_eq!(code(r), "DBA_IO_ERROR");
}

#[test]
fn canonical_csv_and_json_forms() {
    let mut j = Jail::new();
    let sql = "SELECT NULL AS n, '' AS e, 'a\"b' AS q, 1.0 AS r, 9007199254740993 AS big, x'00ff' AS b, 9e999 AS inf";
    query(&mut j, None, sql, "csv").0.unwrap();
    assert_eq!(
        result_csv(&j),
        "n,e,q,r,big,b,inf\n,\"\",\"a\"\"b\",1.0,9007199254740993,x'00ff',inf\n"
    );
    query(&mut j, None, sql, "json").0.unwrap();
    assert_eq!(
        String::from_utf8(j.read("result.json")).unwrap(),
        r#"{"columns":["n","e","q","r","big","b","inf"],"rows":[[null,"","a\"b",1.0,"9007199254740993",{"blob_hex":"00ff"},"inf"]]}"#
    );
}

#[test]
fn order_by_ref_orders_the_result() {
    let mut j = Jail::new();
    let sql = j.clone_input("SELECT 2 AS x UNION ALL SELECT 1 UNION ALL SELECT 3");
    let order = j.input(b"[\"x\"]", "application/json");
    j.run(
        "dba.query_sql",
        json!({"sql_ref": sql, "order_by_ref": order, "output": "csv"}),
    )
    .0
    .unwrap();
    assert_eq!(result_csv(&j), "x\n1\n2\n3\n");
}

#[test]
fn search_index_is_fts5_and_deterministic() {
    let mut j = Jail::new();
    let db = dataset(
        &mut j,
        b"id,body\n1,the quick brown fox\n2,lazy dogs sleep\n3,a quick nap\n",
    );
    let corpus = j.input(&db, "application/vnd.sqlite3");
    let spec = j.input(br#"{"table":"t","columns":["body"]}"#, "application/json");
    let params = json!({"corpus_ref": corpus, "index_spec_ref": spec, "output": "bundle"});
    j.run("dba.build_search_index", params.clone()).0.unwrap();
    let first = j.read("index.sqlite");
    j.run("dba.build_search_index", params).0.unwrap();
    assert_eq!(first, j.read("index.sqlite"));
    query(
        &mut j,
        Some(&first),
        "SELECT source_rowid FROM search_index WHERE search_index MATCH 'quick' ORDER BY source_rowid",
        "csv",
    )
    .0
    .unwrap();
    assert_eq!(result_csv(&j), "source_rowid\n1\n3\n");
    let bad = j.input(
        br#"{"table":"t","columns":["body"],"extra":1}"#,
        "application/json",
    );
    let corpus2 = j.input(&db, "application/vnd.sqlite3");
    let (r, _) = j.run(
        "dba.build_search_index",
        json!({"corpus_ref": corpus2, "index_spec_ref": bad, "output": "bundle"}),
    );
    assert_eq!(code(r), "DBA_LOAD_ERROR");
}

impl Jail {
    fn clone_input(&mut self, sql: &str) -> String {
        self.input(sql.as_bytes(), "application/sql")
    }
}
