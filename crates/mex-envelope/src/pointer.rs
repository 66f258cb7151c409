//! JSON pointers (RFC 6901): the one place mex escapes a reference token
//! and turns a serde path into a pointer (every crate that reports a
//! pointer builds it here; `tests/tests/one_home.rs` keeps it that way),
//! and the private marker that lets a nested `Deserialize` impl report the
//! pointer of its own failure.
//!
//! ```
//! use mex_envelope::pointer;
//! assert_eq!(pointer::escape_token("a/b~c"), "a~1b~0c");
//! assert_eq!(pointer::join("/params", "a/b"), "/params/a~1b");
//! ```

use std::fmt::Write as _;

/// Escape one reference token per RFC 6901 (`~` to `~0`, `/` to `~1`).
pub fn escape_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    push_token(&mut out, token);
    out
}

/// Append one reference token to `out`, escaped as [`escape_token`] does,
/// without allocating anything but `out`'s growth.
///
/// ```
/// use mex_envelope::pointer;
/// let mut at = String::from("/params");
/// at.push('/');
/// pointer::push_token(&mut at, "a/b~c");
/// assert_eq!(at, "/params/a~1b~0c");
/// ```
pub fn push_token(out: &mut String, token: &str) {
    let mut rest = token;
    while let Some(i) = rest.find(['~', '/']) {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push_str(if rest.as_bytes().get(i) == Some(&b'~') {
            "~0"
        } else {
            "~1"
        });
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    out.push_str(rest);
}

/// Undo [`escape_token`] (`~1` to `/`, then `~0` to `~`, in that order).
///
/// ```
/// use mex_envelope::pointer;
/// assert_eq!(pointer::unescape_token("a~1b~0c"), "a/b~c");
/// assert_eq!(pointer::unescape_token("~01"), "~1");
/// ```
pub fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Append one reference token (escaped) to a pointer.
pub fn join(base: &str, token: impl std::fmt::Display) -> String {
    let token = token.to_string();
    let mut out = String::with_capacity(base.len() + 1 + token.len());
    out.push_str(base);
    out.push('/');
    push_token(&mut out, &token);
    out
}

/// Convert a `serde_path_to_error` path into a JSON pointer (enum and
/// unknown segments add nothing).
pub fn from_serde_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                let _ = write!(out, "/{index}");
            }
            serde_path_to_error::Segment::Map { key } => {
                let _ = write!(out, "/{}", escape_token(key));
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

const MARK: &str = "\u{1}ptr:";

/// Encode a relative pointer into a serde error message, so that the outer
/// parser can append it to the path it already knows.
pub(crate) fn mark(relative_pointer: &str, message: &str) -> String {
    format!("{MARK}{relative_pointer}\u{1}{message}")
}

/// Split a message produced by [`mark`] back into (relative pointer, message).
pub(crate) fn unmark(message: &str) -> (String, String) {
    if let Some((ptr, msg)) = message
        .strip_prefix(MARK)
        .and_then(|rest| rest.split_once('\u{1}'))
    {
        return (ptr.to_owned(), msg.to_owned());
    }
    (String::new(), message.to_owned())
}

/// Strip serde's trailing " at line L column C" when we report pointers instead.
pub(crate) fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(idx) if message[idx..].contains(" column ") => &message[..idx],
        _ => message,
    }
}
