//! Reading a dataset: decoding (UTF-8, UTF-16 with BOM, Latin-1), CSV /
//! JSON Lines / JSON parsing, all streamed row by row with bounded memory.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::{
    Fail, MAX_COLUMNS, MAX_JSON_DOCUMENT_BYTES, MAX_RECORD_BYTES, WR_DATA_PARSE_ERROR,
    WR_LIMIT_EXCEEDED, limit_fail,
};

/// The table formats the engine reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma (or other delimiter) separated values.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    Json,
}

impl Format {
    /// Parse a `format` / `target` param value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" => Some(Self::Jsonl),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The text encoding of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 unless a UTF-8 or UTF-16 byte-order mark says otherwise.
    Auto,
    /// UTF-8 (a leading BOM is dropped).
    Utf8,
    /// UTF-16 little endian (a leading BOM is dropped).
    Utf16Le,
    /// UTF-16 big endian (a leading BOM is dropped).
    Utf16Be,
    /// ISO-8859-1: every byte is the code point of the same value.
    Latin1,
}

/// How to read one input dataset (from the operation's params).
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The format.
    pub format: Format,
    /// The CSV delimiter byte.
    pub delimiter: u8,
    /// The CSV quote byte.
    pub quote: u8,
    /// The encoding.
    pub encoding: Encoding,
    /// Whether the first CSV record names the columns.
    pub has_header: bool,
}

impl InputOptions {
    /// Read the input options from `params`, with the input's media type
    /// deciding the format when `params.format` is absent.
    pub fn from_params(
        params: &Map<String, Value>,
        media_type: Option<&str>,
    ) -> Result<Self, Fail> {
        let format = match params.get("format").and_then(Value::as_str) {
            Some(f) => Format::parse(f).ok_or_else(|| bad_param("format", f))?,
            None => match media_type.map(|m| m.split(';').next().unwrap_or(m).trim()) {
                Some("text/csv") => Format::Csv,
                Some("application/x-ndjson" | "application/jsonl" | "application/jsonlines") => {
                    Format::Jsonl
                }
                Some("application/json") => Format::Json,
                other => {
                    return Err(Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "/params/format: the input's media type ({}) does not say whether it is CSV, JSON Lines or JSON; set params.format to \"csv\", \"jsonl\" or \"json\"",
                            other.unwrap_or("none")
                        ),
                    ));
                }
            },
        };
        let byte_param = |name: &str, default: u8| -> Result<u8, Fail> {
            match params.get(name).and_then(Value::as_str) {
                None => Ok(default),
                Some(s) if s == "\\t" || s == "\t" => Ok(b'\t'),
                Some(s) if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
                Some(s) => Err(bad_param(name, s)),
            }
        };
        let encoding = match params.get("encoding").and_then(Value::as_str) {
            None | Some("auto") => Encoding::Auto,
            Some("utf-8") => Encoding::Utf8,
            Some("utf-16le") => Encoding::Utf16Le,
            Some("utf-16be") => Encoding::Utf16Be,
            Some("latin-1") => Encoding::Latin1,
            Some(other) => return Err(bad_param("encoding", other)),
        };
        Ok(Self {
            format,
            delimiter: byte_param("delimiter", b',')?,
            quote: byte_param("quote", b'"')?,
            encoding,
            has_header: params
                .get("has_header")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }
}

fn bad_param(name: &str, value: &str) -> Fail {
    Fail::new(
        WR_DATA_PARSE_ERROR,
        format!(
            "/params/{name}: {value:?} is not a supported value; see the operation's params schema"
        ),
    )
}

/// An error a reader in the stack raises: the decoder's or the limiter's.
#[derive(Debug)]
enum StreamError {
    /// Bytes that are not valid in the declared encoding.
    Malformed { offset: u64, encoding: &'static str },
    /// One record is larger than [`MAX_RECORD_BYTES`].
    RecordTooLarge,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed { offset, encoding } => write!(
                f,
                "the bytes at offset {offset} are not valid {encoding}; set params.encoding to the file's encoding (utf-8, utf-16le, utf-16be, latin-1) or fix the file"
            ),
            Self::RecordTooLarge => write!(
                f,
                "a record is larger than {MAX_RECORD_BYTES} bytes (the engine's per-record bound); split the field or the line"
            ),
        }
    }
}

impl std::error::Error for StreamError {}

/// Turn an I/O error from the reader stack into a typed failure.
fn stream_fail(e: &io::Error, where_: &str) -> Fail {
    match e.get_ref().and_then(|i| i.downcast_ref::<StreamError>()) {
        Some(StreamError::RecordTooLarge) => limit_fail(format!(
            "{where_}: a record is larger than {MAX_RECORD_BYTES} bytes (the engine's per-record bound); split the field or the line"
        )),
        Some(m @ StreamError::Malformed { .. }) => {
            Fail::new(WR_DATA_PARSE_ERROR, format!("{where_}: {m}"))
        }
        None => Fail::new(
            WR_DATA_PARSE_ERROR,
            format!("{where_}: cannot read the input: {e}"),
        ),
    }
}

/// Decodes the raw bytes into UTF-8, failing on the first malformed sequence.
struct DecodeReader<R> {
    inner: R,
    decoder: Option<encoding_rs::Decoder>,
    label: &'static str,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    done: bool,
    out: Box<[u8]>,
    out_pos: usize,
    out_len: usize,
    offset: u64,
}

impl<R: Read> DecodeReader<R> {
    fn new(inner: R, encoding: Encoding) -> Self {
        let (decoder, label) = match encoding {
            Encoding::Auto => (
                Some(encoding_rs::UTF_8.new_decoder()),
                "UTF-8 (or UTF-16 as its BOM says)",
            ),
            Encoding::Utf8 => (
                Some(encoding_rs::UTF_8.new_decoder_with_bom_removal()),
                "UTF-8",
            ),
            Encoding::Utf16Le => (
                Some(encoding_rs::UTF_16LE.new_decoder_with_bom_removal()),
                "UTF-16LE",
            ),
            Encoding::Utf16Be => (
                Some(encoding_rs::UTF_16BE.new_decoder_with_bom_removal()),
                "UTF-16BE",
            ),
            Encoding::Latin1 => (None, "Latin-1"),
        };
        Self {
            inner,
            decoder,
            label,
            inbuf: vec![0; 16 * 1024].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            eof: false,
            done: false,
            out: vec![0; 48 * 1024].into_boxed_slice(),
            out_pos: 0,
            out_len: 0,
            offset: 0,
        }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out_len {
                let n = buf.len().min(self.out_len - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if self.in_start == self.in_end && !self.eof {
                let n = self.inner.read(&mut self.inbuf)?;
                self.in_start = 0;
                self.in_end = n;
                self.eof = n == 0;
            }
            let input = &self.inbuf[self.in_start..self.in_end];
            self.out_pos = 0;
            match &mut self.decoder {
                None => {
                    // Latin-1: each byte is U+0000..U+00FF; at most 2 UTF-8 bytes each.
                    let take = input.len().min(self.out.len() / 2);
                    let mut w = 0;
                    for &b in &input[..take] {
                        if b < 0x80 {
                            self.out[w] = b;
                            w += 1;
                        } else {
                            self.out[w] = 0xC0 | (b >> 6);
                            self.out[w + 1] = 0x80 | (b & 0x3F);
                            w += 2;
                        }
                    }
                    self.in_start += take;
                    self.offset += take as u64;
                    self.out_len = w;
                    if self.eof && self.in_start == self.in_end {
                        self.done = true;
                    }
                }
                Some(decoder) => {
                    let (result, read, written) =
                        decoder.decode_to_utf8_without_replacement(input, &mut self.out, self.eof);
                    self.in_start += read;
                    self.offset += read as u64;
                    self.out_len = written;
                    match result {
                        encoding_rs::DecoderResult::InputEmpty => {
                            if self.eof {
                                self.done = true;
                            }
                        }
                        encoding_rs::DecoderResult::OutputFull => {}
                        encoding_rs::DecoderResult::Malformed(bad, extra) => {
                            let offset = self
                                .offset
                                .saturating_sub(u64::from(bad) + u64::from(extra));
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                StreamError::Malformed {
                                    offset,
                                    encoding: self.label,
                                },
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Gives at most `budget` bytes between two resets (one record's worth plus
/// the read-ahead), and counts the quote bytes it passed.
struct Limiter<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
    quote: u8,
    quotes: Rc<Cell<u64>>,
}

impl<R: Read> Read for Limiter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.get();
        if left == 0 {
            return Err(io::Error::other(StreamError::RecordTooLarge));
        }
        let cap = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.budget.set(left - n as u64);
        let q = buf[..n].iter().filter(|&&b| b == self.quote).count() as u64;
        self.quotes.set(self.quotes.get() + q);
        Ok(n)
    }
}

/// The reader stack under every parser.
type Stack = Limiter<DecodeReader<BufReader<File>>>;

/// A counter shared between the table and its reader stack.
type Counter = Rc<Cell<u64>>;

/// The read-ahead slack a record budget allows beyond [`MAX_RECORD_BYTES`].
const SLACK: u64 = 256 * 1024;

/// One data row.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based data row number (the header is not a row).
    pub number: u64,
    /// 1-based line of the input where the row starts, when known.
    pub line: Option<u64>,
    /// The cells, aligned with [`Table::columns`] (shorter when the row
    /// lacks the later columns; `None` when a JSON row lacks the key).
    pub cells: Vec<Option<Value>>,
}

enum Source {
    Csv {
        reader: csv::Reader<Stack>,
        record: csv::StringRecord,
    },
    Jsonl {
        reader: BufReader<Stack>,
        line: u64,
        buf: Vec<u8>,
    },
    Json {
        rows: std::vec::IntoIter<Value>,
    },
}

/// A dataset opened for one streaming pass.
pub struct Table {
    columns: Vec<String>,
    source: Source,
    budget: Rc<Cell<u64>>,
    quotes: Rc<Cell<u64>>,
    quote: u8,
    next_number: u64,
    last_line: u64,
    csv_header: bool,
    pending_first: bool,
}

fn open_stack(path: &Path, opts: &InputOptions) -> Result<(Stack, Counter, Counter), Fail> {
    let file = File::open(path).map_err(|e| {
        Fail::new(
            WR_DATA_PARSE_ERROR,
            format!("{}: cannot open the input: {e}", path.display()),
        )
    })?;
    let budget = Rc::new(Cell::new(MAX_RECORD_BYTES + SLACK));
    let quotes = Rc::new(Cell::new(0));
    let limiter = Limiter {
        inner: DecodeReader::new(BufReader::new(file), opts.encoding),
        budget: Rc::clone(&budget),
        quote: opts.quote,
        quotes: Rc::clone(&quotes),
    };
    Ok((limiter, budget, quotes))
}

impl Table {
    /// Open `path` for one pass; reads the CSV header when there is one.
    pub fn open(path: &Path, opts: &InputOptions) -> Result<Self, Fail> {
        let (limiter, budget, quotes) = open_stack(path, opts)?;
        let source = match opts.format {
            Format::Csv => {
                let reader = csv::ReaderBuilder::new()
                    .delimiter(opts.delimiter)
                    .quote(opts.quote)
                    .has_headers(false)
                    .flexible(true)
                    .buffer_capacity(16 * 1024)
                    .from_reader(limiter);
                Source::Csv {
                    reader,
                    record: csv::StringRecord::new(),
                }
            }
            Format::Jsonl => Source::Jsonl {
                reader: BufReader::with_capacity(16 * 1024, limiter),
                line: 0,
                buf: Vec::new(),
            },
            Format::Json => {
                budget.set(MAX_JSON_DOCUMENT_BYTES + 1);
                let mut text = Vec::new();
                let mut limited = limiter;
                let read = (&mut limited)
                    .take(MAX_JSON_DOCUMENT_BYTES + 1)
                    .read_to_end(&mut text);
                match read {
                    Err(e) => {
                        if matches!(
                            e.get_ref().and_then(|i| i.downcast_ref::<StreamError>()),
                            Some(StreamError::RecordTooLarge)
                        ) {
                            return Err(json_too_large());
                        }
                        return Err(stream_fail(&e, "the JSON document"));
                    }
                    Ok(_) if text.len() as u64 > MAX_JSON_DOCUMENT_BYTES => {
                        return Err(json_too_large());
                    }
                    Ok(_) => {}
                }
                let value: Value = serde_json::from_slice(&text).map_err(|e| {
                    Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "line {} column {}: the input is not a JSON document: {e}",
                            e.line(),
                            e.column()
                        ),
                    )
                })?;
                drop(text);
                let Value::Array(rows) = value else {
                    return Err(Fail::new(
                        WR_DATA_PARSE_ERROR,
                        "/: a JSON dataset must be an array of objects (one per row); this document is not an array",
                    ));
                };
                Source::Json {
                    rows: rows.into_iter(),
                }
            }
        };
        let mut table = Self {
            columns: Vec::new(),
            source,
            budget,
            quotes,
            quote: opts.quote,
            next_number: 1,
            last_line: 1,
            csv_header: opts.has_header,
            pending_first: false,
        };
        if opts.format == Format::Csv {
            table.read_csv_header()?;
        }
        Ok(table)
    }

    /// The column names known so far (JSON sources add columns as rows
    /// bring new keys; within one object, new keys come in sorted order).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    fn read_csv_header(&mut self) -> Result<(), Fail> {
        let Source::Csv { reader, record } = &mut self.source else {
            return Ok(());
        };
        self.budget.set(MAX_RECORD_BYTES + SLACK);
        let got = reader
            .read_record(record)
            .map_err(|e| csv_fail(&e, "the header"))?;
        if !got {
            self.check_quotes()?;
            return Ok(());
        }
        if record.len() > MAX_COLUMNS {
            return Err(too_many_columns("line 1", record.len()));
        }
        if self.csv_header {
            let mut seen = std::collections::BTreeSet::new();
            for (i, name) in record.iter().enumerate() {
                if !seen.insert(name.to_owned()) {
                    return Err(Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "line 1, column {}: the header names column {name:?} twice; rename one",
                            i + 1
                        ),
                    ));
                }
                self.columns.push(name.to_owned());
            }
        } else {
            self.columns = (1..=record.len()).map(|i| format!("column_{i}")).collect();
            // The first record is data: keep it for the first next_row().
            self.pending_first = true;
        }
        Ok(())
    }

    fn check_quotes(&self) -> Result<(), Fail> {
        if self.quotes.get() % 2 == 1 {
            return Err(Fail::new(
                WR_DATA_PARSE_ERROR,
                format!(
                    "line {}: unbalanced quote: the input has an odd number of {:?} characters, so a quoted field is never closed (the last record read starts at this line); close the quote or escape it by doubling it",
                    self.last_line,
                    char::from(self.quote)
                ),
            ));
        }
        Ok(())
    }

    /// The next row, or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>, Fail> {
        let number = self.next_number;
        let row = match &mut self.source {
            Source::Csv { reader, record } => {
                if self.pending_first {
                    self.pending_first = false;
                } else {
                    self.budget.set(MAX_RECORD_BYTES + SLACK);
                    let got = reader
                        .read_record(record)
                        .map_err(|e| csv_fail(&e, &format!("row {number}")))?;
                    if !got {
                        self.check_quotes()?;
                        return Ok(None);
                    }
                }
                let line = record
                    .position()
                    .map_or(self.last_line, csv::Position::line);
                self.last_line = line;
                if record.len() > MAX_COLUMNS {
                    return Err(too_many_columns(
                        &format!("row {number} (line {line})"),
                        record.len(),
                    ));
                }
                if record.len() != self.columns.len() {
                    return Err(Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "row {number} (line {line}): {} fields, but the table has {} columns; every record needs the same number of fields (check the delimiter and quoting)",
                            record.len(),
                            self.columns.len()
                        ),
                    ));
                }
                Row {
                    number,
                    line: Some(line),
                    cells: record
                        .iter()
                        .map(|c| Some(Value::String(c.to_owned())))
                        .collect(),
                }
            }
            Source::Jsonl { reader, line, buf } => loop {
                buf.clear();
                self.budget.set(MAX_RECORD_BYTES + SLACK);
                let n = reader
                    .read_until(b'\n', buf)
                    .map_err(|e| stream_fail(&e, &format!("line {}", *line + 1)))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: Value = serde_json::from_slice(buf).map_err(|e| {
                    Fail::new(
                        WR_DATA_PARSE_ERROR,
                        format!(
                            "line {}, column {}: not a JSON object: {e}",
                            *line,
                            e.column()
                        ),
                    )
                })?;
                let at = format!("row {number} (line {})", *line);
                let cells = object_cells(&mut self.columns, value, &at)?;
                break Row {
                    number,
                    line: Some(*line),
                    cells,
                };
            },
            Source::Json { rows } => {
                let Some(value) = rows.next() else {
                    return Ok(None);
                };
                let at = format!("row {number} (/{})", number - 1);
                let cells = object_cells(&mut self.columns, value, &at)?;
                Row {
                    number,
                    line: None,
                    cells,
                }
            }
        };
        self.next_number += 1;
        Ok(Some(row))
    }
}

fn object_cells(
    columns: &mut Vec<String>,
    value: Value,
    at: &str,
) -> Result<Vec<Option<Value>>, Fail> {
    let Value::Object(map) = value else {
        return Err(Fail::new(
            WR_DATA_PARSE_ERROR,
            format!("{at}: every row must be a JSON object (column name to value)"),
        ));
    };
    if map.len() > MAX_COLUMNS {
        return Err(too_many_columns(at, map.len()));
    }
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut cells: Vec<Option<Value>> = vec![None; columns.len()];
    for (key, v) in entries {
        match columns.iter().position(|c| *c == key) {
            Some(i) => cells[i] = Some(v),
            None => {
                if columns.len() >= MAX_COLUMNS {
                    return Err(too_many_columns(at, columns.len() + 1));
                }
                columns.push(key);
                cells.push(Some(v));
            }
        }
    }
    Ok(cells)
}

fn json_too_large() -> Fail {
    limit_fail(format!(
        "the JSON document is larger than {MAX_JSON_DOCUMENT_BYTES} bytes (the engine's bound for a whole-document JSON dataset); convert it to JSON Lines, which is streamed"
    ))
}

fn too_many_columns(at: &str, n: usize) -> Fail {
    Fail::new(
        WR_LIMIT_EXCEEDED,
        format!(
            "{at}: {n} columns, more than the engine's bound of {MAX_COLUMNS}; split the table or check the delimiter"
        ),
    )
}

fn csv_fail(e: &csv::Error, at: &str) -> Fail {
    let line = e
        .position()
        .map(|p| format!(" (line {})", p.line()))
        .unwrap_or_default();
    match e.kind() {
        csv::ErrorKind::Io(io) => stream_fail(io, &format!("{at}{line}")),
        csv::ErrorKind::Utf8 { pos, err } => Fail::new(
            WR_DATA_PARSE_ERROR,
            format!(
                "{at} (line {}), field {}: not valid UTF-8; set params.encoding",
                pos.as_ref().map_or(0, csv::Position::line),
                err.field() + 1
            ),
        ),
        _ => Fail::new(WR_DATA_PARSE_ERROR, format!("{at}{line}: {e}")),
    }
}

/// Whether a cell counts as null: absent, JSON null, or an empty CSV cell.
pub fn is_null(cell: Option<&Value>) -> bool {
    match cell {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// The text of a cell as CSV writes it (nested values as compact JSON).
pub fn cell_text(cell: Option<&Value>) -> String {
    match cell {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => v.to_string(),
    }
}

/// The media type of an input, as the request names it.
pub fn media_type_of<'a>(req: &'a mex_engine_sdk::Request, param: &str) -> Option<&'a str> {
    let id = req.params().get(param).and_then(Value::as_str)?;
    req.doc
        .inputs
        .iter()
        .find(|i| i.artifact_id.to_string() == id)
        .and_then(|i| i.media_type.as_deref())
}
