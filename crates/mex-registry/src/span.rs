//! A small position-tracking pass over JSON text: it maps the JSON pointer of
//! every value to the line and column where the value starts, and finds
//! duplicate object keys (which `serde_json` silently resolves to the last).
//!
//! It runs only on text that `serde_json` has already accepted, so it can be
//! lenient about malformed input; it never panics and stops at the first byte
//! it does not understand.

use std::collections::{HashMap, HashSet};

use mex_envelope::pointer;

/// A 1-based line and column. Columns count Unicode scalar values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// What the pass found.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    map: HashMap<String, Position>,
    /// `(pointer of the repeated member, position of its key, key)`.
    pub(crate) duplicate_keys: Vec<(String, Position, String)>,
}

impl Positions {
    /// The position of the value at `pointer`, or of its nearest ancestor
    /// that exists (a missing field is reported where its object starts).
    pub(crate) fn locate(&self, pointer: &str) -> Position {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.map.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Position { line: 1, column: 1 },
            }
        }
    }
}

/// Scan `text` (already known to be JSON).
pub(crate) fn scan(text: &str) -> Positions {
    let mut s = Scanner {
        bytes: text.as_bytes(),
        i: 0,
        line: 1,
        column: 1,
        out: Positions::default(),
    };
    s.ws();
    let mut at = String::new();
    s.value(&mut at, 0);
    s.out
}

/// Deeper than serde_json's own recursion limit, so never reached on text it
/// accepted; it only bounds the stack.
const MAX_DEPTH: usize = 256;

struct Scanner<'a> {
    bytes: &'a [u8],
    i: usize,
    line: usize,
    column: usize,
    out: Positions,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn pos(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if b & 0xC0 != 0x80 {
            // Count characters, not UTF-8 continuation bytes.
            self.column += 1;
        }
        Some(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.bump();
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Returns false when scanning must stop.
    fn value(&mut self, at: &mut String, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.out.map.insert(at.clone(), self.pos());
        match self.peek() {
            Some(b'{') => self.object(at, depth),
            Some(b'[') => self.array(at, depth),
            Some(b'"') => self.string().is_some(),
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.bump();
                }
                true
            }
            None => false,
        }
    }

    fn object(&mut self, at: &mut String, depth: usize) -> bool {
        self.bump();
        self.ws();
        if self.eat(b'}') {
            return true;
        }
        let mut seen = HashSet::new();
        loop {
            self.ws();
            let key_pos = self.pos();
            let Some(key) = self.string() else {
                return false;
            };
            self.ws();
            if !self.eat(b':') {
                return false;
            }
            self.ws();
            let len = at.len();
            at.push('/');
            at.push_str(&pointer::escape_token(&key));
            if !seen.insert(key.clone()) {
                self.out.duplicate_keys.push((at.clone(), key_pos, key));
            }
            let ok = self.value(at, depth + 1);
            at.truncate(len);
            if !ok {
                return false;
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}');
        }
    }

    fn array(&mut self, at: &mut String, depth: usize) -> bool {
        self.bump();
        self.ws();
        if self.eat(b']') {
            return true;
        }
        let mut index = 0usize;
        loop {
            self.ws();
            let len = at.len();
            at.push('/');
            at.push_str(&index.to_string());
            let ok = self.value(at, depth + 1);
            at.truncate(len);
            if !ok {
                return false;
            }
            index += 1;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']');
        }
    }

    /// Read a string token and decode it.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut raw: Vec<u8> = Vec::new();
        loop {
            let b = self.bump()?;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&raw).into_owned()),
                b'\\' => {
                    let e = self.bump()?;
                    let decoded = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    raw.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
                }
                other => raw.push(other),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = char::from(self.bump()?).to_digit(16)?;
            v = v * 16 + d;
        }
        Some(v)
    }

    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            // A surrogate pair: \uD83D\uDE00.
            if self.peek() == Some(b'\\') && self.bytes.get(self.i + 1) == Some(&b'u') {
                self.bump();
                self.bump();
                let lo = self.hex4()?;
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return Some(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
            }
            return Some('\u{FFFD}');
        }
        Some(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &Positions, ptr: &str) -> (usize, usize) {
        let pos = p.locate(ptr);
        (pos.line, pos.column)
    }

    #[test]
    fn maps_pointers_to_positions() {
        let text = "{\n  \"a\": [1, {\"b~/\": \"é\", \"c\": true}],\n  \"d\\u0041\": null\n}";
        let p = scan(text);
        assert_eq!(at(&p, ""), (1, 1));
        assert_eq!(at(&p, "/a"), (2, 8));
        assert_eq!(at(&p, "/a/0"), (2, 9));
        assert_eq!(at(&p, "/a/1"), (2, 12));
        assert_eq!(at(&p, "/a/1/b~0~1"), (2, 20));
        // The column after a multi-byte character counts characters.
        assert_eq!(at(&p, "/a/1/c"), (2, 30));
        assert_eq!(at(&p, "/dA"), (3, 14));
        // Missing pointers fall back to the nearest ancestor.
        assert_eq!(at(&p, "/a/1/missing"), (2, 12));
        assert!(p.duplicate_keys.is_empty());
    }

    #[test]
    fn finds_duplicate_keys() {
        let p = scan("{\"x\": 1, \"y\": {\"z\": 1, \"z\": 2}, \"x\": 3}");
        let found: Vec<(&str, &str)> = p
            .duplicate_keys
            .iter()
            .map(|(ptr, _, k)| (ptr.as_str(), k.as_str()))
            .collect();
        assert_eq!(found, vec![("/y/z", "z"), ("/x", "x")]);
    }
}
