//! Bounded output buffers and the small HTML report writer.

use std::io::{self, Write};

use crate::{Fail, WR_LIMIT_EXCEEDED};

/// The error a [`Bounded`] buffer raises when it is full.
#[derive(Debug)]
pub struct OutputFull;

impl std::fmt::Display for OutputFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output bound reached")
    }
}

impl std::error::Error for OutputFull {}

/// A byte buffer that refuses to grow past `cap`.
#[derive(Debug)]
pub struct Bounded {
    /// The bytes written so far.
    pub buf: Vec<u8>,
    cap: u64,
}

impl Bounded {
    /// An empty buffer that holds at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            buf: Vec::new(),
            cap,
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.cap {
            return Err(io::Error::other(OutputFull));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The failure for an I/O error while writing output of at most `cap` bytes.
pub fn write_fail(e: &io::Error, cap: u64) -> Fail {
    if e.get_ref()
        .and_then(|i| i.downcast_ref::<OutputFull>())
        .is_some()
    {
        Fail::new(
            WR_LIMIT_EXCEEDED,
            format!(
                "the output would be larger than {cap} bytes, the engine's output bound; split the input"
            ),
        )
    } else {
        Fail::new("PROC_OUTPUT_ERROR", format!("cannot write the output: {e}"))
    }
}

/// Serialize `value` compactly into at most `cap` bytes.
pub fn json_bytes(value: &serde_json::Value, cap: u64) -> Result<Vec<u8>, Fail> {
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
    cap: u64,
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
