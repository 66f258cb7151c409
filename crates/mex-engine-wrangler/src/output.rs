//! Bounded output buffers and the small HTML report writer.

use std::io::{self, Write};
use std::path::PathBuf;

use crate::{Fail, WR_LIMIT_EXCEEDED};

/// The file an output that crossed the run's `output_bytes` budget is
/// spilled to (never claimed): see [`Cap`].
pub const OVER_BUDGET_FILE: &str = "over-budget.partial";

/// How large an output may grow: the engine's own bound
/// ([`crate::MAX_OUTPUT_BYTES`]), or the run's `output_bytes` budget when
/// that is smaller.
///
/// When the budget is the smaller of the two, crossing it stops the
/// operation at once (no more rows are read) and the bytes built so far,
/// one write past the budget, are written to [`OVER_BUDGET_FILE`] in the
/// output directory. In the jail that write crosses the file-size limit
/// (set to the budget), so the run ends the runtime's way, as
/// `budget_exceeded` / `RUNTIME.OUTPUT_BUDGET_EXCEEDED`, however slow the
/// machine, and long before the whole input would have been processed.
#[derive(Debug, Clone)]
pub struct Cap {
    /// The most bytes an output may hold.
    pub bytes: u64,
    /// Where to spill an output that crosses the run's budget (None: the
    /// bound is the engine's own, crossing it is `WR_LIMIT_EXCEEDED`).
    spill: Option<PathBuf>,
}

impl Cap {
    /// The engine's bound, or the run's `output_bytes` budget when smaller;
    /// `out_dir` is the run's output directory.
    pub fn new(engine_bound: u64, budget: Option<u64>, out_dir: PathBuf) -> Self {
        match budget {
            Some(b) if b < engine_bound => Self {
                bytes: b,
                spill: Some(out_dir.join(OVER_BUDGET_FILE)),
            },
            _ => Self {
                bytes: engine_bound,
                spill: None,
            },
        }
    }

    /// Whether this bound is the run's budget rather than the engine's.
    pub fn is_budget(&self) -> bool {
        self.spill.is_some()
    }
}

/// The error a [`Bounded`] buffer raises when it is full.
#[derive(Debug)]
pub struct OutputFull;

impl std::fmt::Display for OutputFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output bound reached")
    }
}

impl std::error::Error for OutputFull {}

/// A byte buffer that refuses to grow past its [`Cap`].
#[derive(Debug)]
pub struct Bounded {
    /// The bytes written so far.
    pub buf: Vec<u8>,
    cap: Cap,
}

impl Bounded {
    /// An empty buffer that holds at most `cap.bytes` bytes.
    pub fn new(cap: &Cap) -> Self {
        Self {
            buf: Vec::new(),
            cap: cap.clone(),
        }
    }

    /// Past the run's budget: write what there is, this write included, so
    /// the output directory holds more than the budget (the jail's
    /// file-size limit stops the process in this write). Best effort: if
    /// the file cannot be written, the engine's failure stands.
    fn spill(&self, data: &[u8]) {
        if let Some(path) = &self.cap.spill
            && let Ok(mut f) = std::fs::File::create(path)
        {
            let _ = f.write_all(&self.buf).and_then(|()| f.write_all(data));
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.cap.bytes {
            self.spill(data);
            return Err(io::Error::other(OutputFull));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The failure for an I/O error while writing output bounded by `cap`.
pub fn write_fail(e: &io::Error, cap: &Cap) -> Fail {
    let full = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<OutputFull>())
        .is_some();
    if full && cap.is_budget() {
        // In the jail the spilled file ends the run first, as
        // RUNTIME.OUTPUT_BUDGET_EXCEEDED; this code is only seen when the
        // handler runs unconfined.
        Fail::new(
            WR_LIMIT_EXCEEDED,
            format!(
                "the output would be larger than {} bytes, the run's output_bytes budget; the engine stopped there (partial output in {OVER_BUDGET_FILE}); raise budget.output_bytes or narrow the input",
                cap.bytes
            ),
        )
    } else if full {
        Fail::new(
            WR_LIMIT_EXCEEDED,
            format!(
                "the output would be larger than {} bytes, the engine's output bound; split the input",
                cap.bytes
            ),
        )
    } else {
        Fail::new("PROC_OUTPUT_ERROR", format!("cannot write the output: {e}"))
    }
}

/// Serialize `value` compactly into at most `cap.bytes` bytes.
pub fn json_bytes(value: &serde_json::Value, cap: &Cap) -> Result<Vec<u8>, Fail> {
    let mut out = Bounded::new(cap);
    serde_json::to_writer(&mut out, value).map_err(|e| {
        let io: io::Error = e.into();
        write_fail(&io, cap)
    })?;
    Ok(out.buf)
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A minimal, self-contained HTML page: a title, a summary list and one table.
pub fn html_page(
    title: &str,
    summary: &[(String, String)],
    header: &[String],
    rows: &[Vec<String>],
    cap: &Cap,
) -> Result<Vec<u8>, Fail> {
    let mut out = Bounded::new(cap);
    let mut w = |s: &str| out.write_all(s.as_bytes()).map_err(|e| write_fail(&e, cap));
    w("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>")?;
    w(&esc(title))?;
    w("</title></head><body>\n<h1>")?;
    w(&esc(title))?;
    w("</h1>\n<ul>\n")?;
    for (k, v) in summary {
        w(&format!("<li><b>{}</b>: {}</li>\n", esc(k), esc(v)))?;
    }
    w("</ul>\n<table border=\"1\">\n<tr>")?;
    for h in header {
        w(&format!("<th>{}</th>", esc(h)))?;
    }
    w("</tr>\n")?;
    for row in rows {
        w("<tr>")?;
        for c in row {
            w(&format!("<td>{}</td>", esc(c)))?;
        }
        w("</tr>\n")?;
    }
    w("</table>\n</body></html>\n")?;
    Ok(out.buf)
}
