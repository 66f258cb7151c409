//! The one strict JSON reader: every document mex refuses or trusts (an
//! envelope, the capability policy, the registry and the files it references,
//! a certificate) is read through [`from_slice`] / [`from_str`].
//!
//! Plain `serde_json` accepts things two readers of the same bytes can disagree
//! on; this reader refuses them, each with the JSON pointer and the line and
//! column where it stopped:
//!
//! * **Duplicate member names**, at any depth. `serde_json` keeps the last
//!   copy, other readers the first; a reviewer, a proxy or a log could see
//!   another document than the one mex acts on.
//! * **Numbers beyond ±(2^53−1)** in any spelling: `18446744073709551616`,
//!   `9007199254740993.0`, `1e300`. RFC 8785 hashes numbers as IEEE 754
//!   doubles, so two different integers out there would get one digest. (An
//!   integer literal too large for 64 bits reaches the reader as a double, just
//!   like `1e20`; both are out of range, so both are refused.)
//! * **A byte-order mark** at the start (RFC 8259 §8.1 forbids emitting one).
//!
//! It also **normalises integral numbers written with a fraction or an
//! exponent** (`5000.0`, `5e3`) to the integer they denote. JSON Schema counts
//! `5000.0` as an integer, and RFC 8785 writes it as `5000`, so this keeps the
//! published schemas, the typed parser and the hashes in agreement.
//!
//! Memory is bounded twice. Callers bound the input size (see
//! [`crate::MAX_ENVELOPE_BYTES`] and [`crate::read_envelope_bytes`]), and the
//! reader bounds what the parsed value may take: a `serde_json::Value` can
//! take a hundred times the bytes of its text (`{"a":{"a":…}}` allocates a
//! map node per object), so every string, array slot and object member is
//! charged a conservative estimate of its heap cost against a budget
//! ([`DEFAULT_VALUE_BUDGET`], or the one passed to [`from_slice_within`]), and
//! the document is refused ([`JsonError::TooComplex`]) as soon as it would
//! exceed it. Nesting is bounded by `serde_json`'s recursion limit (128
//! levels).
//!
//! Pointers cost nothing while a document reads cleanly: a refused value's
//! pointer is assembled from the tokens its enclosing arrays and objects add
//! as the error unwinds. For the envelope's fast path, `strict_value` is
//! this reader's visitor for a value inside a typed one (params, inputs),
//! `object` reads a struct only from an object, and `is_plain_within`
//! tells, in one scan of the bytes, whether a document too large to skip the
//! budget is one this reader would read unchanged if it is valid JSON (no
//! duplicate names, integer literals in range, within the budget); anything
//! else, or any failure there, is read here.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use thiserror::Error;

use crate::{MAX_SAFE_INTEGER, pointer};

/// Schema stand-in for free-form JSON (params): any value, with every number
/// within ±(2^53−1) at any depth. (`minimum`/`maximum` constrain only
/// numbers, `items` only arrays, `additionalProperties` only objects.)
pub(crate) struct SafeJsonValue;

impl schemars::JsonSchema for SafeJsonValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("SafeJsonValue")
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let this = generator.subschema_for::<Self>();
        schemars::json_schema!({
            "description": "Any JSON value whose numbers, at any depth, are within ±(2^53-1).",
            "minimum": -9_007_199_254_740_991i64,
            "maximum": 9_007_199_254_740_991u64,
            "items": this,
            "additionalProperties": this,
        })
    }
}

/// Schema stand-in for a free-form JSON object of [`SafeJsonValue`]s.
pub(crate) struct SafeJsonObject;

impl schemars::JsonSchema for SafeJsonObject {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("SafeJsonObject")
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<SafeJsonValue>();
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": value,
        })
    }
}

/// Why a JSON document was refused by the strict reader.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The document starts with a byte-order mark.
    #[error(
        "the document starts with a {encoding} byte-order mark (line 1, column 1); JSON must not start with one: save it as UTF-8 without a BOM"
    )]
    ByteOrderMark {
        /// `UTF-8`, `UTF-16` or `UTF-32`.
        encoding: &'static str,
    },
    /// The bytes are not JSON.
    #[error("not valid JSON at line {line}, column {column}: {message}; {hint}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the JSON parser saw.
        message: String,
        /// What to do about it, in plain words.
        hint: &'static str,
    },
    /// An object names the same member twice.
    #[error(
        "duplicate key {key:?} at {} (line {line}, column {column}): an object may name each member once, and readers disagree on which copy wins; remove one of them",
        display_pointer(.pointer)
    )]
    DuplicateKey {
        /// JSON pointer of the repeated member.
        pointer: String,
        /// The repeated name.
        key: String,
        /// 1-based line where the reader stopped (just after the key).
        line: usize,
        /// 1-based column where the reader stopped.
        column: usize,
    },
    /// Holding the document would take more memory than the reader allows.
    #[error(
        "the document is too complex: holding it would take more than {budget} bytes of memory (stopped at {}, line {line}, column {column}); it has too many members, items or nested containers: pass large data as input artifacts",
        display_pointer(.pointer)
    )]
    TooComplex {
        /// The memory budget, in bytes.
        budget: usize,
        /// JSON pointer of the value being read when the budget ran out.
        pointer: String,
        /// 1-based line where the reader stopped.
        line: usize,
        /// 1-based column where the reader stopped.
        column: usize,
    },
    /// A number is beyond ±(2^53−1).
    #[error(
        "the number {number} at {} (line {line}, column {column}) is outside ±(2^53-1) = ±9007199254740991, the range JSON hashing keeps exact; send a smaller number, or a string",
        display_pointer(.pointer)
    )]
    NumberOutOfRange {
        /// JSON pointer of the number.
        pointer: String,
        /// The number as read (rounded when it was not exact).
        number: String,
        /// 1-based line where the reader stopped (just after the number).
        line: usize,
        /// 1-based column where the reader stopped.
        column: usize,
    },
}

fn display_pointer(p: &str) -> &str {
    if p.is_empty() { "/ (document root)" } else { p }
}

impl JsonError {
    /// The JSON pointer of the offending value, when there is one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::DuplicateKey { pointer, .. }
            | Self::NumberOutOfRange { pointer, .. }
            | Self::TooComplex { pointer, .. } => Some(pointer),
            Self::ByteOrderMark { .. } | Self::Syntax { .. } => None,
        }
    }

    /// 1-based (line, column) where the reader stopped.
    pub fn position(&self) -> (usize, usize) {
        match self {
            Self::ByteOrderMark { .. } => (1, 1),
            Self::Syntax { line, column, .. }
            | Self::DuplicateKey { line, column, .. }
            | Self::NumberOutOfRange { line, column, .. }
            | Self::TooComplex { line, column, .. } => (*line, *column),
        }
    }
}

/// The memory budget of [`from_slice`] and [`from_str`]: 64 MiB, for trusted
/// files (the registry, the policy, certificates).
pub const DEFAULT_VALUE_BUDGET: usize = 64 << 20;

/// Read one JSON document strictly (see the module docs), within
/// [`DEFAULT_VALUE_BUDGET`].
///
/// # Example
///
/// ```rust
/// use mex_envelope::json::{self, JsonError};
///
/// let value = json::from_slice(br#"{"engine": "engine.physics", "limit": 3}"#)?;
/// assert_eq!(value["limit"], 3);
///
/// // A member named twice is refused (readers disagree on which copy wins),
/// // with the pointer of the repeated member and where it was seen.
/// let err = json::from_slice(br#"{"grants": {"a": 1, "a": 2}}"#).unwrap_err();
/// assert!(matches!(&err, JsonError::DuplicateKey { key, .. } if key == "a"));
/// assert_eq!(err.pointer(), Some("/grants/a"));
///
/// // Integers that hashing could not keep exact are refused too.
/// let err = json::from_slice(b"[9007199254740993]").unwrap_err();
/// assert!(matches!(err, JsonError::NumberOutOfRange { .. }));
/// # Ok::<(), JsonError>(())
/// ```
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    from_slice_within(bytes, DEFAULT_VALUE_BUDGET)
}

/// Read one JSON document strictly, refusing it when holding it would take
/// more than `budget` bytes (estimated conservatively, see the module docs).
pub fn from_slice_within(bytes: &[u8], budget: usize) -> Result<Value, JsonError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError::ByteOrderMark { encoding: "UTF-8" });
    }
    // UTF-32's marks first: little-endian UTF-32's starts like UTF-16's.
    if bytes.starts_with(&[0x00, 0x00, 0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE, 0x00, 0x00])
    {
        return Err(JsonError::ByteOrderMark { encoding: "UTF-32" });
    }
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(JsonError::ByteOrderMark { encoding: "UTF-16" });
    }
    let mut ctx = Ctx {
        at: Vec::new(),
        failure: None,
        budget,
        remaining: budget,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = Node { ctx: &mut ctx }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    result.map_err(|e| {
        let (line, column) = (e.line().max(1), e.column().max(1));
        let pointer = ctx.pointer();
        match ctx.failure.take() {
            Some(Failure::Duplicate { key }) => JsonError::DuplicateKey {
                pointer,
                key,
                line,
                column,
            },
            Some(Failure::Number { number }) => JsonError::NumberOutOfRange {
                pointer,
                number,
                line,
                column,
            },
            Some(Failure::Budget) => JsonError::TooComplex {
                budget,
                pointer,
                line,
                column,
            },
            None => {
                let message = pointer::strip_position(&e.to_string()).to_owned();
                JsonError::Syntax {
                    line,
                    column,
                    hint: syntax_hint(bytes, &message),
                    message,
                }
            }
        }
    })
}

/// What to do about a syntax error, from serde_json's message (its wording
/// is stable: it is matched here only to choose advice, never to decide
/// whether the document is refused).
fn syntax_hint(bytes: &[u8], message: &str) -> &'static str {
    if bytes.iter().take(4).any(|&b| b == 0) {
        return "the document looks UTF-16 or UTF-32 encoded (it has NUL bytes): save it as UTF-8";
    }
    const HINTS: &[(&str, &str)] = &[
        (
            "surrogate",
            "a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF escape (a UTF-16 surrogate pair), and JSON text must be valid Unicode: complete the pair or remove the lone surrogate",
        ),
        (
            "hex escape",
            "a \\u escape takes exactly four hex digits, and a \\uD800-\\uDBFF escape (half of a UTF-16 surrogate pair) must be followed at once by a \\uDC00-\\uDFFF escape: complete the pair or remove the lone surrogate",
        ),
        (
            "invalid escape",
            "the escapes JSON allows are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX",
        ),
        (
            "control character",
            "escape control characters inside strings (write \\n for a newline, \\t for a tab)",
        ),
        (
            "invalid unicode",
            "JSON text must be valid UTF-8 and name valid Unicode code points",
        ),
        (
            "EOF while parsing",
            "the document ends too early: close every string, array and object",
        ),
        (
            "trailing comma",
            "remove the comma before the closing bracket or brace",
        ),
        (
            "trailing characters",
            "send one JSON document: remove what follows its first value",
        ),
        (
            "key must be a string",
            "object member names are strings in double quotes",
        ),
        (
            "expected `:`",
            "put a colon between a member's name and its value",
        ),
        (
            "expected `,` or",
            "separate items with commas and close every array and object",
        ),
        (
            "expected ident",
            "the literals are true, false and null, in lower case",
        ),
        (
            "expected value",
            "a value (string, number, object, array, true, false or null) is missing or misspelled here; strings take double quotes",
        ),
        (
            "number",
            "numbers are decimal, without leading zeros, plus signs, NaN or Infinity",
        ),
        (
            "recursion limit",
            "the document nests too deeply: flatten it",
        ),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("check the JSON syntax at that position", |(_, hint)| hint)
}

/// Read a whole file of at most `max` bytes, without trusting its metadata:
/// a FIFO, a device or a file that grows while it is read stops at `max + 1`
/// bytes and is refused with [`std::io::ErrorKind::FileTooLarge`]. Every
/// trusted file mex reads (registry, policy, certificate, token) goes
/// through here.
///
/// ```
/// use mex_envelope::json::read_file_at_most;
/// let err = read_file_at_most(std::path::Path::new("/dev/zero"), 1024).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
/// ```
pub fn read_file_at_most(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("it is larger than {max} bytes, so it is not read"),
        ));
    }
    Ok(bytes)
}

/// The most members an object may have for [`is_plain_within`] to check its
/// names for duplicates itself (by comparing each with those before it);
/// a larger object is left to the strict reader.
const PLAIN_MAX_MEMBERS: usize = 32;

/// The nesting [`is_plain_within`] follows (`serde_json`'s recursion limit).
const PLAIN_MAX_DEPTH: usize = 128;

/// One open container of [`is_plain_within`]'s scan.
struct Open {
    /// An object (else an array).
    object: bool,
    /// Where this object's member names start in the scan's name list.
    names_from: usize,
    /// The next string is a member name (objects only).
    expect_name: bool,
    /// Values seen so far (arrays only).
    items: usize,
}

/// Whether `bytes` is a document that [`from_slice_within`] would read
/// exactly as plain `serde_json` reads it, when it is valid JSON at all:
/// no byte-order mark, no member name twice in any object, every number an
/// integer literal within ±(2^53-1) (a fraction or an exponent is something
/// the strict reader normalizes; `-0` too), and memory charges within
/// `budget` (each string is charged its length as written, at least its
/// decoded length, so the charge is never below the strict reader's). One
/// pass over the bytes; it allocates only a short list of member names, and
/// gives up (`false`) on anything unusual: a name with an escape, an object
/// of more than [`PLAIN_MAX_MEMBERS`] members, deep nesting. It does not
/// check the syntax: the caller deserializes a plain document with
/// `serde_json`, which refuses invalid JSON, and reads every document that
/// is not plain (or fails) with the strict reader, which decides and says
/// what is wrong and where.
pub(crate) fn is_plain_within(bytes: &[u8], budget: usize) -> bool {
    // Only an object is plain: `serde_json` would also fill a struct from an
    // array of its fields in order, which the strict reader refuses.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    let mut remaining = budget;
    let mut charge = |cost: usize| match remaining.checked_sub(cost) {
        Some(left) => {
            remaining = left;
            true
        }
        None => false,
    };
    let mut open: Vec<Open> = Vec::new();
    let mut names: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // A value starts here (a string that is a member name is not one):
        // charge an array its item.
        let starts_value = matches!(
            b,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ) && !(b == b'"'
            && open.last().is_some_and(|o| o.object && o.expect_name));
        if starts_value && let Some(array) = open.last_mut().filter(|o| !o.object) {
            let first = if array.items == 0 {
                COST_ARRAY_FIRST
            } else {
                0
            };
            array.items += 1;
            if !charge(COST_ITEM + first) {
                return false;
            }
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b':' | b't' | b'r' | b'u' | b'e' | b'f' | b'a'
            | b'l' | b's' | b'n' => i += 1,
            b',' => {
                if let Some(o) = open.last_mut() {
                    o.expect_name = o.object;
                }
                i += 1;
            }
            b'{' | b'[' => {
                if open.len() >= PLAIN_MAX_DEPTH {
                    return false;
                }
                open.push(Open {
                    object: b == b'{',
                    names_from: names.len(),
                    expect_name: b == b'{',
                    items: 0,
                });
                i += 1;
            }
            b'}' | b']' => {
                if let Some(o) = open.pop() {
                    names.truncate(o.names_from);
                }
                i += 1;
            }
            b'"' => {
                let from = i + 1;
                let mut j = from;
                let mut escaped = false;
                loop {
                    match bytes.get(j) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(_) => j += 1,
                    }
                }
                let text = bytes.get(from..j).unwrap_or_default();
                i = j + 1;
                match open.last_mut() {
                    Some(o) if o.object && o.expect_name => {
                        o.expect_name = false;
                        let mine = names.get(o.names_from..).unwrap_or_default();
                        if escaped || mine.len() >= PLAIN_MAX_MEMBERS || mine.contains(&text) {
                            return false;
                        }
                        let first = if mine.is_empty() { COST_MAP_NODE } else { 0 };
                        names.push(text);
                        if !charge(COST_MEMBER + text.len() + first) {
                            return false;
                        }
                    }
                    _ => {
                        if !charge(COST_STRING.saturating_add(text.len())) {
                            return false;
                        }
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let digits = bytes.get(i..).unwrap_or_default();
                let digits = digits.strip_prefix(b"-").unwrap_or(digits);
                let len = digits.iter().take_while(|d| d.is_ascii_digit()).count();
                let next = digits.get(len);
                let integer = std::str::from_utf8(digits.get(..len).unwrap_or_default())
                    .ok()
                    .filter(|t| t.len() <= 16 && !(t.starts_with('0') && b == b'-'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|n| n <= MAX_SAFE_INTEGER);
                if !integer || matches!(next, Some(b'.' | b'e' | b'E')) {
                    return false;
                }
                i += len + usize::from(b == b'-');
            }
            _ => return false,
        }
    }
    true
}

/// One value read strictly from any deserializer, inside a typed one (the
/// envelope's params and inputs): no member name twice at any depth, every
/// number within ±(2^53-1) and integral numbers normalized, as
/// [`from_slice_within`] reads them, charged against the envelope's memory
/// budget. Its errors carry no pointer: on the envelope's fast path any
/// failure sends the document to the strict reader, which says where.
pub(crate) fn strict_value<'de, D: de::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let budget = crate::MAX_ENVELOPE_VALUE_BYTES;
    let mut ctx = Ctx {
        at: Vec::new(),
        failure: None,
        budget,
        remaining: budget,
    };
    Node { ctx: &mut ctx }.deserialize(d)
}

/// [`strict_value`] for a value that must be an object (the params).
pub(crate) fn strict_object<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Map<String, Value>, D::Error> {
    match strict_value(d)? {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom(
            "expected an object of engine-specific params",
        )),
    }
}

/// A struct the contract's schema says is an object, read only from an
/// object: `serde` would also fill it from an array of its fields in order
/// (`"budget": [5000, 1048576]`), which the schema does not allow.
/// `expected` completes "expected ..." in the error.
pub(crate) fn object<'de, D, T>(d: D, expected: &'static str) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    d.deserialize_map(ObjectOnly {
        expected,
        target: std::marker::PhantomData,
    })
}

/// [`object`] for an optional member: absent or `null` is `None`.
pub(crate) fn optional_object<'de, D, T>(
    d: D,
    expected: &'static str,
) -> Result<Option<T>, D::Error>
where
    D: de::Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    d.deserialize_option(OptionalObject {
        expected,
        target: std::marker::PhantomData,
    })
}

struct ObjectOnly<T> {
    expected: &'static str,
    target: std::marker::PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// The visitor of [`optional_object`].
struct OptionalObject<T> {
    expected: &'static str,
    target: std::marker::PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for OptionalObject<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        object(d, self.expected).map(Some)
    }
}

/// Read one JSON document strictly from text.
pub fn from_str(text: &str) -> Result<Value, JsonError> {
    from_slice(text.as_bytes())
}

enum Failure {
    Duplicate { key: String },
    Number { number: String },
    Budget,
}

/// One reference token of the pointer of a refused value.
enum Token {
    Key(String),
    Index(usize),
}

struct Ctx {
    /// The pointer of the refused value, innermost token first. Nothing is
    /// tracked while a document reads cleanly: when a value is refused, each
    /// enclosing array or object adds its token as the error passes up
    /// through it, so the success path builds no pointers at all.
    at: Vec<Token>,
    failure: Option<Failure>,
    budget: usize,
    /// Estimated bytes the value may still take.
    remaining: usize,
}

/// Heap cost estimates (bytes), deliberately above what `serde_json::Value`
/// and the allocator take: a map node holds up to 11 members and is
/// allocated with the first; array storage doubles as it grows; every heap
/// block carries allocator overhead.
const COST_MAP_NODE: usize = 768;
const COST_MEMBER: usize = 128;
const COST_ARRAY_FIRST: usize = 160;
const COST_ITEM: usize = 80;
const COST_STRING: usize = 32;

impl Ctx {
    fn fail<E: de::Error>(&mut self, failure: Failure) -> E {
        let message = match &failure {
            Failure::Duplicate { key } => format!("duplicate key {key:?}"),
            Failure::Number { number } => format!("number {number} out of range"),
            Failure::Budget => format!("over the {}-byte memory budget", self.budget),
        };
        self.failure = Some(failure);
        E::custom(message)
    }

    /// Charge `cost` bytes against the budget.
    fn charge<E: de::Error>(&mut self, cost: usize) -> Result<(), E> {
        match self.remaining.checked_sub(cost) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => Err(self.fail(Failure::Budget)),
        }
    }

    fn number<E: de::Error>(&mut self, number: String) -> E {
        self.fail(Failure::Number { number })
    }

    /// An error leaving the value under `token`: when a value was refused,
    /// `token` is part of its pointer.
    fn leaving<E>(&mut self, token: impl FnOnce() -> Token, e: E) -> E {
        if self.failure.is_some() {
            self.at.push(token());
        }
        e
    }

    /// The JSON pointer of the refused value.
    fn pointer(&self) -> String {
        let mut out = String::new();
        for token in self.at.iter().rev() {
            out.push('/');
            match token {
                Token::Key(key) => pointer::push_token(&mut out, key),
                Token::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

/// One value (its pointer is built only if it is refused, see [`Ctx::at`]).
struct Node<'a> {
    ctx: &'a mut Ctx,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Magnitude bound as a double: 2^53 - 1 is exactly representable.
#[allow(
    clippy::cast_precision_loss,
    reason = "2^53 - 1 is exactly representable as a double"
)]
const MAX_SAFE_F64: f64 = MAX_SAFE_INTEGER as f64;

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.ctx.charge(COST_STRING.saturating_add(v.len()))?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.ctx.charge(COST_STRING.saturating_add(v.len()))?;
        Ok(Value::String(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(self.ctx.number(v.to_string()));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(self.ctx.number(v.to_string()));
        }
        Ok(Value::Number(v.into()))
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "only reached for integral values within ±(2^53 - 1), which convert exactly"
    )]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if !v.is_finite() || v.abs() > MAX_SAFE_F64 {
            // Integer literals too large for 64 bits arrive here as
            // doubles too: show the value as read.
            return Err(self
                .ctx
                .number(format!("{v:e} (as read, rounded to a double)")));
        }
        if v.fract() == 0.0 {
            // Integral: the integer it denotes (exact, |v| <= 2^53 - 1).
            return Ok(Value::Number(if v < 0.0 {
                Number::from(v as i64)
            } else {
                Number::from(v as u64)
            }));
        }
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let index = out.len();
            match seq.next_element_seed(Node { ctx: self.ctx }) {
                Ok(Some(v)) => {
                    let first = if out.is_empty() { COST_ARRAY_FIRST } else { 0 };
                    if let Err(e) = self.ctx.charge(COST_ITEM + first) {
                        return Err(self.ctx.leaving(|| Token::Index(index), e));
                    }
                    out.push(v);
                }
                Ok(None) => break,
                Err(e) => return Err(self.ctx.leaving(|| Token::Index(index), e)),
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let e = self.ctx.fail(Failure::Duplicate { key: key.clone() });
                return Err(self.ctx.leaving(|| Token::Key(key), e));
            }
            let first = if out.is_empty() { COST_MAP_NODE } else { 0 };
            if let Err(e) = self
                .ctx
                .charge(COST_MEMBER.saturating_add(key.len()).saturating_add(first))
            {
                return Err(self.ctx.leaving(|| Token::Key(key), e));
            }
            match map.next_value_seed(Node { ctx: self.ctx }) {
                Ok(value) => {
                    out.insert(key, value);
                }
                Err(e) => return Err(self.ctx.leaving(|| Token::Key(key), e)),
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_with_pointer_and_position() {
        let err = from_str("{\"a\": {\"b\": [1, {\"c\": 1,\n \"c\": 2}]}}").unwrap_err();
        match err {
            JsonError::DuplicateKey {
                pointer,
                key,
                line,
                column,
            } => {
                assert_eq!(pointer, "/a/b/1/c");
                assert_eq!(key, "c");
                assert_eq!((line, column), (2, 4));
            }
            other => panic!("expected a duplicate key, got {other}"),
        }
        // Same name in different objects is fine.
        assert!(from_str(r#"{"a": {"c": 1}, "b": {"c": 1}, "c": [{"c": 1}, {"c": 2}]}"#).is_ok());
        // Escaped spellings of one name are one name.
        let err = from_str(r#"{"op_id": 1, "op\u005fid": 2}"#).unwrap_err();
        assert_eq!(err.pointer(), Some("/op_id"));
    }

    #[test]
    fn numbers_beyond_2_53_are_refused_in_every_spelling() {
        for text in [
            "9007199254740992",
            "-9007199254740992",
            "18446744073709551615",
            "18446744073709551616",
            "18446744073709551617",
            "-18446744073709551617",
            "9007199254740993.0",
            "9007199254740991.5",
            "1e300",
            "-1e300",
            "1E16",
            "1000000000000000000000000000000",
        ] {
            let err = from_str(&format!("{{\"v\": {text}}}")).unwrap_err();
            assert!(
                matches!(&err, JsonError::NumberOutOfRange { pointer, .. } if pointer == "/v"),
                "{text}: {err}"
            );
        }
        for (text, want) in [
            ("9007199254740991", "9007199254740991"),
            ("-9007199254740991", "-9007199254740991"),
            ("5000.0", "5000"),
            ("5e3", "5000"),
            ("-0.0", "0"),
            ("1.5", "1.5"),
            ("1e-300", "1e-300"),
        ] {
            let v = from_str(&format!("{{\"v\": {text}}}")).unwrap();
            assert_eq!(v["v"].to_string(), want, "{text}");
        }
    }

    #[test]
    fn byte_order_marks_are_refused_in_plain_words() {
        let err = from_slice(b"\xEF\xBB\xBF{}").unwrap_err();
        assert_eq!(err, JsonError::ByteOrderMark { encoding: "UTF-8" });
        assert!(err.to_string().contains("without a BOM"), "{err}");
        assert!(matches!(
            from_slice(b"\xFF\xFE{\x00}\x00").unwrap_err(),
            JsonError::ByteOrderMark { encoding: "UTF-16" }
        ));
    }

    #[test]
    fn utf32_marks_are_named_as_utf32_not_utf16() {
        for bytes in [&b"\xFF\xFE\x00\x00{"[..], &b"\x00\x00\xFE\xFF{"[..]] {
            assert_eq!(
                from_slice(bytes).unwrap_err(),
                JsonError::ByteOrderMark { encoding: "UTF-32" }
            );
        }
    }

    #[test]
    fn syntax_errors_say_what_to_do() {
        let cases: [(&[u8], &str); 5] = [
            (br#"["\ud800"]"#, "surrogate pair"),
            (b"{\x00\"\x00", "save it as UTF-8"),
            (b"[1,]", "remove the comma"),
            (b"{\"a\" 1}", "colon"),
            (b"[True]", "misspelled"),
        ];
        for (bytes, says) in cases {
            let err = from_slice(bytes).unwrap_err();
            assert!(matches!(err, JsonError::Syntax { .. }), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let text = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
            let err = from_str(&text).unwrap_err();
            assert!(matches!(err, JsonError::Syntax { .. }), "{err}");
            assert!(err.to_string().contains("recursion limit"), "{err}");
        }
        let text = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(from_str(&text).is_ok());
    }

    #[test]
    fn the_memory_budget_refuses_documents_that_would_take_too_much() {
        // Many tiny objects: a few bytes of text, a map node each.
        let text = format!("[{}0]", "{\"a\":0},".repeat(20_000));
        assert!(from_slice_within(text.as_bytes(), 20_000 * 1024).is_ok());
        let err = from_slice_within(text.as_bytes(), 1 << 20).unwrap_err();
        assert!(
            matches!(&err, JsonError::TooComplex { budget, .. } if *budget == 1 << 20),
            "{err}"
        );
        assert!(err.to_string().contains("too complex"), "{err}");
        // The pointer names the value that ran over, at any depth.
        let text = format!(r#"{{"a": [1, {{"b/~": "{}"}}]}}"#, "x".repeat(1000));
        let err = from_slice_within(text.as_bytes(), 2500).unwrap_err();
        assert!(matches!(&err, JsonError::TooComplex { .. }), "{err}");
        assert_eq!(err.pointer(), Some("/a/1/b~1~0"));
        // Long strings are charged by length.
        let text = format!("[\"{}\"]", "x".repeat(2 << 20));
        assert!(matches!(
            from_slice_within(text.as_bytes(), 1 << 20).unwrap_err(),
            JsonError::TooComplex { .. }
        ));
    }

    #[test]
    fn plain_documents_are_only_those_the_strict_reader_reads_unchanged() {
        let plain = br#"{"a": [1, -2, "x\"y", true, false, null, {}], "b": {"c": "d"}}"#;
        assert!(is_plain_within(plain, DEFAULT_VALUE_BUDGET));
        for not_plain in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"a": {"b": 1, "b": 1}}"#,
            br#"{"a": 1, "\u0061": 2}"#,
            br#"{"a": 5.0}"#,
            br#"{"a": 5e3}"#,
            br#"{"a": 5E3}"#,
            br#"{"a": -0}"#,
            br#"{"a": 9007199254740992}"#,
            br#"{"a": -9007199254740992}"#,
            br#"{"a": 18446744073709551616}"#,
            b"\xEF\xBB\xBF{}",
            br#"{"a": "unterminated}"#,
            b"{\"a\": +1}",
            br#"["poe-1.0", "11111111-1111-4111-8111-000000000001"]"#,
            br#"  [{"a": 1}]"#,
            br#""a string""#,
            b"7",
        ] {
            assert!(
                !is_plain_within(not_plain, DEFAULT_VALUE_BUDGET),
                "{}",
                String::from_utf8_lossy(not_plain)
            );
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(!is_plain_within(deep.as_bytes(), DEFAULT_VALUE_BUDGET));
        let wide: String = (0..=PLAIN_MAX_MEMBERS)
            .map(|i| format!("\"k{i}\": {i},"))
            .collect();
        let wide = format!("{{{}}}", wide.trim_end_matches(','));
        assert!(from_slice(wide.as_bytes()).is_ok());
        assert!(!is_plain_within(wide.as_bytes(), DEFAULT_VALUE_BUDGET));
    }

    #[test]
    fn the_plain_scan_never_charges_less_than_the_strict_reader() {
        // Whenever the strict reader runs out of budget, the scan does too
        // (it charges strings as written, escapes included).
        let doc =
            br#"{"a": ["\u00e9\u00e9", "xy", {"b": [1, 2, {}]}], "c": "\\", "d": {"e": null}}"#;
        let needed = (0..20_000)
            .find(|&budget| from_slice_within(doc, budget).is_ok())
            .unwrap();
        for budget in 0..needed {
            assert!(!is_plain_within(doc, budget), "{budget}");
        }
        assert!(is_plain_within(doc, needed + 64));
    }

    #[test]
    fn trailing_data_is_a_syntax_error() {
        assert!(matches!(
            from_str("{} {}").unwrap_err(),
            JsonError::Syntax { .. }
        ));
    }
}
