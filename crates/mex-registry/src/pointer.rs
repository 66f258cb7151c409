//! JSON pointers (RFC 6901).

/// Escape one reference token.
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Append one token to a pointer.
pub(crate) fn join(base: &str, token: impl std::fmt::Display) -> String {
    format!("{base}/{}", escape(&token.to_string()))
}

/// Convert a `serde_path_to_error` path into a JSON pointer.
pub(crate) fn from_serde_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            serde_path_to_error::Segment::Map { key } => {
                out.push('/');
                out.push_str(&escape(key));
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}
