//! `dba.query_sql` over 10^5 rows: the statement and the canonical CSV, on
//! a dataset built in memory (the jail and process start are measured by
//! mex-engine-process's own bench).
#![allow(missing_docs, reason = "bench harness")]

use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let sql = "SELECT k % 100 AS bucket, count(*) AS n, sum(v) AS total FROM t GROUP BY bucket ORDER BY bucket";
    c.bench_function("query_sql group-by over 1e5 rows", |b| {
        b.iter(|| {
            let Ok(conn) = rusqlite::Connection::open_in_memory() else {
                return;
            };
            let _ = conn.execute_batch(
                "CREATE TABLE t(k INTEGER, v REAL); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000) INSERT INTO t SELECT i, i * 0.5 FROM c;",
            );
            let out = mex_engine_dba::run_query(conn, sql, None, 1000, 1 << 24, std::time::Duration::from_secs(30));
            if let Ok((cols, rows)) = out {
                std::hint::black_box(mex_engine_dba::to_csv(&cols, &rows));
            }
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
