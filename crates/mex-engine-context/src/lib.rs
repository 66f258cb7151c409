//! # mex-engine-context: `engine.context` (D3)
//!
//! Code and file search over one input **bundle**: `context.search`
//! (literal or regex), `context.open_ref` (a line range of one file) and
//! `context.find_todos` (`TODO`, `FIXME`, `XXX`, `HACK` markers). Built on
//! the ripgrep crates: `ignore` walks, `grep-regex` compiles, `grep-searcher`
//! reads line by line with a bounded buffer.
//!
//! The crate is a handler library: [`handle`] takes an SDK
//! [`Request`] and is hosted out of the mex process
//! (it parses untrusted files), under the process-engine jail and budgets.
//! It does not depend on mex-runtime.
//!
//! ## The bundle
//!
//! The request must carry exactly one input of kind `bundle`, delivered as a
//! directory tree (the bundle's entries under their paths). `scopes` and
//! `file` are paths inside that tree. Every scope and file goes through the
//! store's path rules ([`mex_artifacts::RelPath::parse`]: relative, no `..`,
//! no `\`, no control, bidirectional or invisible characters, NFC); a path
//! they refuse is `CTX_SCOPE_DENIED`. An empty `scopes` list means the whole
//! bundle.
//!
//! ## Walking
//!
//! Everything in a scope is searched: hidden files (`.env`, `.github/`) are
//! included and no `.gitignore`, `.ignore` or global exclude rules apply,
//! because the bundle is exactly what the caller chose to hand over, and a
//! result must not depend on rule files. Symlinks are never followed: a
//! symlink anywhere in a scope (or on the way to it) is `CTX_IO_ERROR` (a
//! store bundle holds regular files only), so a symlink loop or a link out
//! of the bundle cannot be walked. So are special files (FIFOs, sockets,
//! devices), file names that are not UTF-8 or that the store's canonical
//! path rules refuse ([`mex_artifacts::RelPath::parse_canonical`]), and more
//! than [`MAX_FILES`] files.
//!
//! ## Determinism (D3)
//!
//! Files are searched in byte order of their bundle path (the bundle
//! index's order), matches within a file in line order; outputs are JSON
//! from fixed-order structs with no timestamps, ids or hash-map order, so
//! identical inputs and params give byte-identical outputs.
//!
//! ## Limits
//!
//! | limit | value | when exceeded |
//! |---|---|---|
//! | matches (`k`) | `k` (default 20, at most [`MAX_MATCHES`]) | stop, `truncated: true` |
//! | TODO markers | [`MAX_TODOS`] | stop, `truncated: true` |
//! | bytes per snippet | [`MAX_SNIPPET_BYTES`] | snippet cut at a character boundary, `text_truncated: true` |
//! | snippet bytes in total | [`MAX_TOTAL_SNIPPET_BYTES`] | stop, `truncated: true` |
//! | one line | [`MAX_LINE_BYTES`] | `CTX_IO_ERROR` naming the file |
//! | files in the scopes | [`MAX_FILES`] | `CTX_IO_ERROR` |
//! | compiled regex | [`REGEX_SIZE_LIMIT`], lazy DFA [`DFA_SIZE_LIMIT`], nesting [`REGEX_NEST_LIMIT`] | `CTX_QUERY_ERROR` |
//! | `open_ref` range | [`MAX_OPEN_BYTES`] | `CTX_QUERY_ERROR` |
//!
//! A file holding a NUL byte is binary: its matches are dropped and it is
//! counted in `files_binary` (detection stops reading the file at the first
//! buffer holding a NUL). Lines that are not UTF-8 are reported with
//! U+FFFD in place of invalid bytes. The regex engine runs in time linear
//! in the input, so there is no catastrophic backtracking (`(a*)*b` is
//! fine); a pattern whose compiled form is too large is refused.
//! `mode: "semantic"` needs an embedding index this implementation does not
//! have: `CTX_QUERY_ERROR`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use grep_matcher::Matcher;
use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use mex_artifacts::RelPath;
use mex_engine_sdk::{Fail, Request};
use mex_envelope::ArtifactKind;
use serde::Serialize;
use serde_json::Value;

/// The engine this crate implements.
pub const ENGINE_ID: &str = "engine.context";
/// Failure code: a scope or file is refused by the store's path rules.
pub const CTX_SCOPE_DENIED: &str = "CTX_SCOPE_DENIED";
/// Failure code: the query, range or params are invalid.
pub const CTX_QUERY_ERROR: &str = "CTX_QUERY_ERROR";
/// Failure code: the bundle could not be read as a tree of regular files.
pub const CTX_IO_ERROR: &str = "CTX_IO_ERROR";

/// Most matches `context.search` returns (the largest `k`).
pub const MAX_MATCHES: u64 = 10_000;
/// Most markers `context.find_todos` returns.
pub const MAX_TODOS: u64 = 10_000;
/// Most bytes of one snippet (the matching line, cut at a character boundary).
pub const MAX_SNIPPET_BYTES: usize = 512;
/// Most snippet bytes in one result.
pub const MAX_TOTAL_SNIPPET_BYTES: usize = 1 << 20;
/// Longest line the searcher holds in memory (its heap limit).
pub const MAX_LINE_BYTES: usize = 8 << 20;
/// Most files walked in one run.
pub const MAX_FILES: usize = 100_000;
/// Size limit of a compiled regex.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Size limit of the lazy DFA's cache.
pub const DFA_SIZE_LIMIT: usize = 8 << 20;
/// Deepest nesting of a regex.
pub const REGEX_NEST_LIMIT: u32 = 64;
/// Most bytes `context.open_ref` returns.
pub const MAX_OPEN_BYTES: usize = 4 << 20;

const TODO_PATTERN: &str = r"\b(?:TODO|FIXME|XXX|HACK)\b";

fn io_fail(message: impl Into<String>) -> Fail {
    Fail::new(CTX_IO_ERROR, message)
}

fn query_fail(message: impl Into<String>) -> Fail {
    Fail::new(CTX_QUERY_ERROR, message)
}

/// Run one `engine.context` operation.
pub fn handle(req: &mut Request) -> Result<(), Fail> {
    match req.operation() {
        "context.search" => search(req),
        "context.open_ref" => open_ref(req),
        "context.find_todos" => find_todos(req),
        other => Err(query_fail(format!(
            "/operation: {other:?} is not an operation of {ENGINE_ID}; use context.search, context.open_ref or context.find_todos"
        ))),
    }
}

/// The directory the request's one bundle input was delivered as.
fn bundle_root(req: &Request) -> Result<PathBuf, Fail> {
    let bundles: Vec<_> = req
        .doc
        .inputs
        .iter()
        .filter(|i| i.kind == ArtifactKind::Bundle)
        .collect();
    let input = match bundles.as_slice() {
        [one] => *one,
        [] => {
            return Err(io_fail(
                "/inputs: no input of kind bundle; pass the tree to search as exactly one bundle input (a directory put into the store)",
            ));
        }
        _ => {
            return Err(io_fail(format!(
                "/inputs: {} bundle inputs; pass exactly one bundle (put the trees into one directory first)",
                bundles.len()
            )));
        }
    };
    let root = PathBuf::from(&input.path);
    let meta = std::fs::symlink_metadata(&root).map_err(|e| {
        io_fail(format!(
            "bundle input {}: cannot read {}: {e}",
            input.artifact_id,
            root.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(io_fail(format!(
            "bundle input {} was delivered as a single file ({}), not as its directory tree; the host must materialize bundle inputs for this engine",
            input.artifact_id,
            root.display()
        )));
    }
    Ok(root)
}

/// A path param checked by the store's path rules.
fn rel_param(value: &str, pointer: &str) -> Result<RelPath, Fail> {
    RelPath::parse(value).map_err(|e| {
        Fail::new(
            CTX_SCOPE_DENIED,
            format!("{pointer}: {value:?} is not a path inside the bundle: {e}"),
        )
    })
}

/// Refuse a path whose target or any directory on the way is a symlink.
/// Returns the target's metadata.
fn lstat_inside(root: &Path, rel: &RelPath, pointer: &str) -> Result<std::fs::Metadata, Fail> {
    let mut at = root.to_path_buf();
    let mut meta = None;
    for segment in rel.segments() {
        at.push(segment);
        let m = std::fs::symlink_metadata(&at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                io_fail(format!(
                    "{pointer}: {:?} is not in the bundle; list the bundle's entries and name one of them",
                    rel.as_str()
                ))
            } else {
                io_fail(format!("{pointer}: cannot read {:?}: {e}", rel.as_str()))
            }
        })?;
        if m.file_type().is_symlink() {
            return Err(Fail::new(
                CTX_SCOPE_DENIED,
                format!(
                    "{pointer}: {:?} passes through a symlink ({:?}); symlinks are never followed, name a regular file or directory",
                    rel.as_str(),
                    at.strip_prefix(root).unwrap_or(&at).display()
                ),
            ));
        }
        meta = Some(m);
    }
    meta.ok_or_else(|| io_fail(format!("{pointer}: empty path")))
}

/// Every regular file of the scopes, keyed (and so sorted) by bundle path.
fn collect_files(root: &Path, scopes: &[RelPath]) -> Result<BTreeMap<String, PathBuf>, Fail> {
    let mut files = BTreeMap::new();
    let whole = [None];
    let targets: Vec<Option<&RelPath>> = if scopes.is_empty() {
        whole.to_vec()
    } else {
        scopes.iter().map(Some).collect()
    };
    for (i, scope) in targets.into_iter().enumerate() {
        let pointer = format!("/params/scopes/{i}");
        let start = match scope {
            None => root.to_path_buf(),
            Some(rel) => {
                let meta = lstat_inside(root, rel, &pointer)?;
                let path = root.join(rel.as_str());
                if meta.is_file() {
                    files.insert(rel.as_str().to_owned(), path);
                    check_count(files.len())?;
                    continue;
                }
                if !meta.is_dir() {
                    return Err(io_fail(format!(
                        "{pointer}: {:?} is not a regular file or directory; bundles hold regular files only",
                        rel.as_str()
                    )));
                }
                path
            }
        };
        let walk = ignore::WalkBuilder::new(&start)
            .standard_filters(false)
            .hidden(false)
            .parents(false)
            .ignore(false)
            .git_ignore(false)
            .git_global(false)
            .git_exclude(false)
            .follow_links(false)
            .build();
        for entry in walk {
            let entry =
                entry.map_err(|e| io_fail(format!("{pointer}: cannot walk the bundle: {e}")))?;
            let shown = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .into_owned();
            let Some(kind) = entry.file_type() else {
                return Err(io_fail(format!(
                    "{pointer}: cannot tell the file type of {shown:?}"
                )));
            };
            if kind.is_dir() {
                continue;
            }
            if kind.is_symlink() {
                return Err(io_fail(format!(
                    "{pointer}: {shown:?} is a symlink; a bundle holds regular files only and symlinks are never followed"
                )));
            }
            if !kind.is_file() {
                return Err(io_fail(format!(
                    "{pointer}: {shown:?} is a special file (FIFO, socket or device); a bundle holds regular files only"
                )));
            }
            let rel = entry
                .path()
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| {
                    io_fail(format!(
                        "{pointer}: the name {shown:?} is not UTF-8; bundle entry names are UTF-8 (rename the file)"
                    ))
                })?;
            let rel = RelPath::parse_canonical(rel).map_err(|e| {
                io_fail(format!(
                    "{pointer}: the name {shown:?} breaks the store's path rules: {e}"
                ))
            })?;
            files.insert(rel.as_str().to_owned(), entry.path().to_path_buf());
            check_count(files.len())?;
        }
    }
    Ok(files)
}

fn check_count(n: usize) -> Result<(), Fail> {
    if n > MAX_FILES {
        return Err(io_fail(format!(
            "/params/scopes: more than {MAX_FILES} files to search; name narrower scopes"
        )));
    }
    Ok(())
}

fn scopes_param(req: &Request) -> Result<Vec<RelPath>, Fail> {
    let Some(list) = req.params().get("scopes") else {
        return Err(query_fail(
            "/params/scopes: missing; give a list of paths inside the bundle ([] for all of it)",
        ));
    };
    let Some(list) = list.as_array() else {
        return Err(query_fail(
            "/params/scopes: not an array; give a list of paths inside the bundle",
        ));
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let pointer = format!("/params/scopes/{i}");
            let s = v
                .as_str()
                .ok_or_else(|| query_fail(format!("{pointer}: not a string")))?;
            rel_param(s, &pointer)
        })
        .collect()
}

fn matcher_builder() -> RegexMatcherBuilder {
    let mut b = RegexMatcherBuilder::new();
    b.line_terminator(Some(b'\n'))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT);
    b
}

fn searcher() -> Searcher {
    SearcherBuilder::new()
        .line_number(true)
        .binary_detection(BinaryDetection::quit(0))
        .heap_limit(Some(MAX_LINE_BYTES))
        .build()
}

/// One line, as at most [`MAX_SNIPPET_BYTES`] of UTF-8 (invalid bytes
/// become U+FFFD), and whether it was cut.
fn snippet(line: &[u8]) -> (String, bool) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let head = line.get(..MAX_SNIPPET_BYTES).unwrap_or(line);
    let mut text = String::from_utf8_lossy(head).into_owned();
    let mut cut = head.len() < line.len();
    if text.len() > MAX_SNIPPET_BYTES {
        let mut end = MAX_SNIPPET_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        cut = true;
    }
    (text, cut)
}

/// The budget shared by every file of one run.
struct Budget {
    max_items: u64,
    items: u64,
    bytes: usize,
    truncated: bool,
}

impl Budget {
    /// Account for one more item of `len` snippet bytes; false (and
    /// `truncated`) when it does not fit.
    fn take(&mut self, len: usize) -> bool {
        if self.items >= self.max_items || self.bytes.saturating_add(len) > MAX_TOTAL_SNIPPET_BYTES
        {
            self.truncated = true;
            return false;
        }
        self.items += 1;
        self.bytes += len;
        true
    }

    fn give_back(&mut self, items: u64, bytes: usize) {
        self.items = self.items.saturating_sub(items);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// One matching line.
#[derive(Debug, Clone, Serialize)]
struct Hit {
    path: String,
    line: u64,
    column: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    marker: Option<String>,
    text: String,
    text_truncated: bool,
}

struct FileSink<'a> {
    matcher: &'a RegexMatcher,
    path: &'a str,
    with_marker: bool,
    budget: &'a mut Budget,
    hits: Vec<Hit>,
    hit_bytes: usize,
    binary: bool,
}

impl Sink for FileSink<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, std::io::Error> {
        let line = mat.bytes();
        let found = self
            .matcher
            .find(line)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (column, marker) = match found {
            Some(m) => (
                m.start() as u64 + 1,
                line.get(m.start()..m.end())
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            ),
            None => (1, None),
        };
        let (text, text_truncated) = snippet(line);
        if !self.budget.take(text.len()) {
            return Ok(false);
        }
        self.hit_bytes += text.len();
        self.hits.push(Hit {
            path: self.path.to_owned(),
            line: mat.line_number().unwrap_or(0),
            column,
            marker: if self.with_marker { marker } else { None },
            text,
            text_truncated,
        });
        Ok(true)
    }

    fn binary_data(&mut self, _: &Searcher, _: u64) -> Result<bool, std::io::Error> {
        self.binary = true;
        Ok(false)
    }
}

/// What a walk-and-search produced.
struct Scan {
    hits: Vec<Hit>,
    files_searched: u64,
    files_binary: u64,
    truncated: bool,
}

fn scan(
    root: &Path,
    scopes: &[RelPath],
    matcher: &RegexMatcher,
    max_items: u64,
    with_marker: bool,
) -> Result<Scan, Fail> {
    let files = collect_files(root, scopes)?;
    let mut budget = Budget {
        max_items,
        items: 0,
        bytes: 0,
        truncated: false,
    };
    let mut out = Scan {
        hits: Vec::new(),
        files_searched: 0,
        files_binary: 0,
        truncated: false,
    };
    let mut searcher = searcher();
    for (rel, path) in &files {
        if budget.truncated {
            break;
        }
        let file = std::fs::File::open(path)
            .map_err(|e| io_fail(format!("{rel:?}: cannot open it: {e}")))?;
        let mut sink = FileSink {
            matcher,
            path: rel,
            with_marker,
            budget: &mut budget,
            hits: Vec::new(),
            hit_bytes: 0,
            binary: false,
        };
        searcher
            .search_file(matcher, &file, &mut sink)
            .map_err(|e| {
                io_fail(format!(
                    "{rel:?}: cannot search it: {e} (lines longer than {MAX_LINE_BYTES} bytes are refused; leave the file out of the scopes)"
                ))
            })?;
        out.files_searched += 1;
        let FileSink {
            hits,
            hit_bytes,
            binary,
            ..
        } = sink;
        if binary {
            out.files_binary += 1;
            budget.give_back(hits.len() as u64, hit_bytes);
        } else {
            out.hits.extend(hits);
        }
    }
    out.truncated = budget.truncated;
    Ok(out)
}

#[derive(Serialize)]
struct Limits {
    max_items: u64,
    max_snippet_bytes: usize,
    max_total_snippet_bytes: usize,
    max_line_bytes: usize,
}

#[derive(Serialize)]
struct SearchResult<'a> {
    operation: &'a str,
    query: &'a str,
    mode: &'a str,
    scopes: Vec<&'a str>,
    limits: Limits,
    files_searched: u64,
    files_binary: u64,
    truncated: bool,
    matches: Vec<Hit>,
}

fn limits(max_items: u64) -> Limits {
    Limits {
        max_items,
        max_snippet_bytes: MAX_SNIPPET_BYTES,
        max_total_snippet_bytes: MAX_TOTAL_SNIPPET_BYTES,
        max_line_bytes: MAX_LINE_BYTES,
    }
}

fn write_json(req: &mut Request, file: &str, value: &impl Serialize) -> Result<(), Fail> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| io_fail(format!("cannot serialize the result: {e}")))?;
    req.write_output(file, "artifact.dataset", "application/json", &bytes)
}

fn search(req: &mut Request) -> Result<(), Fail> {
    let query = req
        .params()
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| query_fail("/params/query: missing or not a string; give the text to find"))?
        .to_owned();
    let mode = req
        .params()
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let k = match req.params().get("k") {
        None => 20,
        Some(v) => v.as_u64().ok_or_else(|| {
            query_fail("/params/k: not a non-negative integer; give how many matches to return")
        })?,
    };
    if k > MAX_MATCHES {
        return Err(query_fail(format!(
            "/params/k: {k} is more than {MAX_MATCHES}; ask for at most {MAX_MATCHES} matches"
        )));
    }
    let matcher = match mode.as_str() {
        "regex" => matcher_builder().build(&query),
        "literal" => matcher_builder().fixed_strings(true).build(&query),
        "semantic" => {
            return Err(query_fail(
                "/params/mode: semantic search needs an embedding index, which this implementation does not have; use \"regex\" or \"literal\"",
            ));
        }
        other => {
            return Err(query_fail(format!(
                "/params/mode: {other:?} is not a mode; use \"regex\" or \"literal\""
            )));
        }
    }
    .map_err(|e| {
        query_fail(format!(
            "/params/query: the pattern is refused: {e} (patterns are single-line, compiled within {REGEX_SIZE_LIMIT} bytes and nested at most {REGEX_NEST_LIMIT} deep; simplify it or use mode \"literal\")"
        ))
    })?;
    let scopes = scopes_param(req)?;
    let root = bundle_root(req)?;
    let scan = scan(&root, &scopes, &matcher, k, false)?;
    let result = SearchResult {
        operation: "context.search",
        query: &query,
        mode: &mode,
        scopes: scopes.iter().map(RelPath::as_str).collect(),
        limits: limits(k),
        files_searched: scan.files_searched,
        files_binary: scan.files_binary,
        truncated: scan.truncated,
        matches: scan.hits,
    };
    write_json(req, "search.json", &result)
}

#[derive(Serialize)]
struct TodoResult<'a> {
    operation: &'a str,
    markers: [&'a str; 4],
    scopes: Vec<&'a str>,
    limits: Limits,
    files_searched: u64,
    files_binary: u64,
    truncated: bool,
    todos: Vec<Hit>,
}

fn find_todos(req: &mut Request) -> Result<(), Fail> {
    let scopes = scopes_param(req)?;
    let matcher = matcher_builder()
        .build(TODO_PATTERN)
        .map_err(|e| query_fail(format!("the marker pattern does not compile: {e}")))?;
    let root = bundle_root(req)?;
    let scan = scan(&root, &scopes, &matcher, MAX_TODOS, true)?;
    let result = TodoResult {
        operation: "context.find_todos",
        markers: ["TODO", "FIXME", "XXX", "HACK"],
        scopes: scopes.iter().map(RelPath::as_str).collect(),
        limits: limits(MAX_TODOS),
        files_searched: scan.files_searched,
        files_binary: scan.files_binary,
        truncated: scan.truncated,
        todos: scan.hits,
    };
    write_json(req, "todos.json", &result)
}

fn open_ref(req: &mut Request) -> Result<(), Fail> {
    let file = req
        .params()
        .get("file")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            query_fail("/params/file: missing or not a string; name a file of the bundle")
        })?
        .to_owned();
    let range = req.params().get("range");
    let line = |name: &str| {
        range
            .and_then(|r| r.get(name))
            .and_then(Value::as_u64)
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                query_fail(format!(
                    "/params/range/{name}: missing or not an integer >= 1; lines are numbered from 1"
                ))
            })
    };
    let (start, end) = (line("start_line")?, line("end_line")?);
    if start > end {
        return Err(query_fail(format!(
            "/params/range: start_line {start} is after end_line {end}; give start_line <= end_line"
        )));
    }
    let rel = rel_param(&file, "/params/file")?;
    let root = bundle_root(req)?;
    let meta = lstat_inside(&root, &rel, "/params/file")?;
    if !meta.is_file() {
        return Err(io_fail(format!(
            "/params/file: {:?} is not a regular file; name a file of the bundle, not a directory",
            rel.as_str()
        )));
    }
    // cap-std refuses anything resolving outside the bundle, even if the
    // tree changed since the check above.
    let dir = cap_std::fs::Dir::open_ambient_dir(&root, cap_std::ambient_authority())
        .map_err(|e| io_fail(format!("cannot open the bundle directory: {e}")))?;
    let handle = dir.open(rel.as_str()).map_err(|e| {
        Fail::new(
            CTX_SCOPE_DENIED,
            format!(
                "/params/file: cannot open {:?} inside the bundle: {e}",
                rel.as_str()
            ),
        )
    })?;
    let text = read_range(handle.into_std(), start, end, rel.as_str())?;
    req.write_output("ref.txt", "artifact.document", "text/plain", &text)
}

/// Lines `start..=end` of `file` (numbered from 1, terminators kept), read
/// in fixed-size chunks so a huge line before the range costs no memory.
/// An `end` past the last line is the last line.
fn read_range(file: impl Read, start: u64, end: u64, shown: &str) -> Result<Vec<u8>, Fail> {
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut out = Vec::new();
    let mut line_no: u64 = 1;
    let mut partial = false;
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| io_fail(format!("/params/file: cannot read {shown:?}: {e}")))?;
        if buf.is_empty() {
            break;
        }
        let (piece_len, ends_line) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line_no >= start {
            let piece = buf.get(..piece_len).unwrap_or(buf);
            if out.len() + piece.len() > MAX_OPEN_BYTES {
                return Err(query_fail(format!(
                    "/params/range: lines {start}..{end} of {shown:?} hold more than {MAX_OPEN_BYTES} bytes; ask for fewer lines"
                )));
            }
            out.extend_from_slice(piece);
        }
        reader.consume(piece_len);
        if ends_line {
            line_no += 1;
            partial = false;
            if line_no > end {
                return Ok(out);
            }
        } else {
            partial = true;
        }
    }
    let lines = line_no - 1 + u64::from(partial);
    if start > lines {
        return Err(query_fail(format!(
            "/params/range/start_line: {start} is past the end of {shown:?}, which has {lines} lines"
        )));
    }
    Ok(out)
}
