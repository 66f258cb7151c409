//! Validation of untrusted relative paths and `mex://` artifact URIs.
//!
//! ## Relative path grammar
//!
//! ```text
//! rel-path = segment *( "/" segment )          ; at most 4096 bytes, at most 64 segments
//! segment  = 1*255 bytes of UTF-8 in NFC, not "." or "..",
//!            without "/", "\", NUL, any control character (Unicode Cc),
//!            bidirectional control (U+061C, U+200E, U+200F, U+202A..U+202E,
//!            U+2066..U+2069), invisible character (the default-ignorable
//!            code points: soft hyphen, zero-width space and joiners, word
//!            joiner, variation selectors, BOM, tags, fillers ...) or
//!            noncharacter, and not a drive prefix like "C:" in first position
//! ```
//!
//! These are the *one* set of rules for names that reach the store: bundle
//! entries built by [`crate::BundleBuilder`] (directory ingests and engines
//! that assemble a bundle, e.g. engine.sandbox through mex-runtime's
//! re-export), bundle indexes read back ([`crate::validate_bundle_index`]),
//! and `mex://` URIs all go through [`RelPath`].
//!
//! ## Twins: two spellings of one name
//!
//! Within one bundle, two entries are *twins*, and refused, when their
//! [`look_alike_key`]s are equal: the same name after NFKC (compatibility
//! forms such as fullwidth letters, ligatures, no-break spaces) and case
//! folding. Canonical equivalence (NFC vs NFD) is already one name after
//! normalization. What this does not catch: letters of different scripts
//! that merely look alike (Latin `a` and Cyrillic `а`); those are distinct
//! names, each shown as what it is.
//!
//! [`RelPath::parse`] is the *lenient* front door: it accepts harmless
//! spellings and normalizes them: empty segments (`a//b`, a trailing `/`) and
//! `.` segments (`./a`) are dropped and every segment is converted to Unicode
//! NFC, so `a//b`, `./a/b` and the NFD spelling of a name all become the same
//! [`RelPath`]. Everything that could point elsewhere is refused, never
//! rewritten: a leading `/`, any `..` segment, `\`, control characters, a
//! drive prefix, or an empty result.
//!
//! [`RelPath::parse_canonical`] is the *strict* door for places where only the
//! canonical form may appear (bundle index entries, URIs): the input must
//! already equal its normalized form.
//!
//! ## Artifact URI grammar
//!
//! ```text
//! mex-uri = "mex://artifact/" uuid   [ "/" rel-path ]   ; a record, by id
//!         | "mex://sha256/"   hex64  [ "/" rel-path ]   ; content, by hash
//! uuid    = 8-4-4-4-12 lowercase hex digits with hyphens
//! hex64   = 64 lowercase hex digits
//! ```
//!
//! The optional path selects an entry inside a bundle and must be canonical.
//! No query (`?`), fragment (`#`) or percent-encoding (`%`) is accepted, so
//! there is exactly one spelling per reference and nothing is decoded twice.
//!
//! These are string-level checks. Whatever touches the filesystem in this
//! crate additionally goes through `cap_std::fs::Dir`, which refuses to
//! resolve anything outside its directory even through symlinks.

use std::fmt;
use std::str::FromStr;

use mex_envelope::Sha256Digest;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::error::{ArtifactError, Result};

/// Longest accepted relative path, in bytes (after normalization).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path segment, in bytes (after normalization).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Most segments (directory depth + 1) in a path.
pub const MAX_SEGMENTS: usize = 64;

/// A validated, normalized relative path: `/`-separated NFC segments, none of
/// them `.` or `..`, no leading `/`. See the module docs for the grammar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

fn unsafe_path(path: &str, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::UnsafePath {
        path: path.chars().take(200).collect(),
        reason: reason.into(),
    }
}

/// Bidirectional controls: they reorder how a name is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Default-ignorable code points (invisible: they make one name look like
/// another) and noncharacters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2065}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
            | '\u{FDD0}'..='\u{FDEF}'
    ) || (u32::from(c) & 0xFFFE) == 0xFFFE
}

/// Characters displayed like the separators `/` and `\\`.
fn is_separator_look_alike(c: char) -> bool {
    matches!(
        c,
        '\u{2044}'
            | '\u{2215}'
            | '\u{2216}'
            | '\u{29F5}'
            | '\u{29F8}'
            | '\u{29F9}'
            | '\u{FF0F}'
            | '\u{FF3C}'
            | '\u{FE68}'
    )
}

fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || is_bidi_control(c)
        || is_invisible(c)
        || is_separator_look_alike(c)
}

/// The key under which two names count as the same name to a reader: NFKC,
/// then case folding (lowercase), then NFKC again. Two entries of one
/// bundle with equal keys are refused as twins.
pub fn look_alike_key(path: &RelPath) -> String {
    let folded: String = path.as_str().nfkc().collect::<String>().to_lowercase();
    folded.nfkc().collect()
}

/// Check one raw segment (before NFC) and return its NFC form.
/// `whole` is only used for messages.
pub(crate) fn normalize_segment(segment: &str, whole: &str) -> Result<String> {
    if segment == ".." {
        return Err(unsafe_path(
            whole,
            "a '..' segment would leave the directory",
        ));
    }
    if let Some(c) = segment.chars().find(|c| is_forbidden_char(*c)) {
        let code = u32::from(c);
        let reason = if c == '\\' {
            "'\\' is not a separator here and is refused to avoid ambiguity".to_owned()
        } else if is_bidi_control(c) {
            format!(
                "it contains the bidirectional control character U+{code:04X}, which changes how the name is displayed; rename the file without it"
            )
        } else if is_separator_look_alike(c) {
            format!(
                "it contains U+{code:04X}, which is displayed like a path separator; rename the file without it"
            )
        } else if is_invisible(c) {
            format!(
                "it contains the invisible character U+{code:04X}, which makes the name look like another; rename the file without it"
            )
        } else {
            format!("it contains the control character U+{code:04X}; rename the file without it")
        };
        return Err(unsafe_path(whole, reason));
    }
    let nfc: String = segment.nfc().collect();
    if nfc.len() > MAX_SEGMENT_BYTES {
        return Err(unsafe_path(
            whole,
            format!("a segment is longer than {MAX_SEGMENT_BYTES} bytes"),
        ));
    }
    if nfc == "." || nfc == ".." {
        return Err(unsafe_path(whole, "a segment normalizes to '.' or '..'"));
    }
    let compat: String = nfc.nfkc().collect();
    if compat == "." || compat == ".." || compat.contains(['/', '\\']) {
        return Err(unsafe_path(
            whole,
            "a segment is displayed like '.', '..' or a path separator (compatibility forms such as fullwidth dots); rename the file",
        ));
    }
    Ok(nfc)
}

fn looks_like_drive(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

impl RelPath {
    /// Lenient parse of an untrusted relative path: drops empty and `.`
    /// segments, converts to NFC, refuses everything unsafe (see module docs).
    pub fn parse(path: &str) -> Result<Self> {
        if path.is_empty() {
            return Err(unsafe_path(path, "the path is empty"));
        }
        if path.starts_with('/') {
            return Err(unsafe_path(path, "absolute paths are refused"));
        }
        if path.len() > MAX_PATH_BYTES * 2 {
            return Err(unsafe_path(
                path,
                format!("longer than {MAX_PATH_BYTES} bytes"),
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." {
                continue;
            }
            out.push(normalize_segment(segment, path)?);
        }
        if out.is_empty() {
            return Err(unsafe_path(
                path,
                "the path names no file (only '.' or '/')",
            ));
        }
        if looks_like_drive(&out[0]) {
            return Err(unsafe_path(path, "a drive prefix such as 'C:' is refused"));
        }
        if out.len() > MAX_SEGMENTS {
            return Err(unsafe_path(
                path,
                format!("more than {MAX_SEGMENTS} segments"),
            ));
        }
        let joined = out.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(unsafe_path(
                path,
                format!("longer than {MAX_PATH_BYTES} bytes"),
            ));
        }
        Ok(Self(joined))
    }

    /// Strict parse: the input must be valid *and* already canonical (equal
    /// to what [`RelPath::parse`] would make of it).
    pub fn parse_canonical(path: &str) -> Result<Self> {
        let parsed = Self::parse(path)?;
        if parsed.0 != path {
            return Err(unsafe_path(
                path,
                format!(
                    "not in canonical form (expected {:?}: no empty or '.' segments, NFC)",
                    parsed.0
                ),
            ));
        }
        Ok(parsed)
    }

    /// Build from already validated segments (used by the bundle walker).
    pub(crate) fn from_segments(segments: &[String]) -> Result<Self> {
        Self::parse_canonical(&segments.join("/"))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RelPath {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What an artifact URI points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UriTarget {
    /// A record, by artifact id.
    Artifact(Uuid),
    /// Content, by SHA-256.
    Content(Sha256Digest),
}

/// A parsed `mex://` artifact URI (grammar in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactUri {
    /// The artifact or content.
    pub target: UriTarget,
    /// An entry inside a bundle, if any.
    pub path: Option<RelPath>,
}

fn bad_uri(uri: &str, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::InvalidUri {
        uri: uri.chars().take(200).collect(),
        reason: reason.into(),
    }
}

impl ArtifactUri {
    /// Parse an untrusted URI strictly.
    pub fn parse(uri: &str) -> Result<Self> {
        let Some(rest) = uri.strip_prefix("mex://") else {
            return Err(bad_uri(uri, "it does not start with \"mex://\""));
        };
        if let Some(c) = uri
            .chars()
            .find(|c| matches!(c, '?' | '#' | '%') || c.is_control())
        {
            return Err(bad_uri(
                uri,
                format!(
                    "the character {c:?} is not allowed (no query, fragment, percent-encoding or control characters)"
                ),
            ));
        }
        let (kind, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad_uri(uri, "missing the artifact id or hash"))?;
        let (id, path) = match rest.split_once('/') {
            Some((id, path)) => (id, Some(path)),
            None => (rest, None),
        };
        let target = match kind {
            "artifact" => {
                let parsed = Uuid::try_parse(id)
                    .map_err(|_| bad_uri(uri, format!("{id:?} is not a UUID")))?;
                if parsed.hyphenated().to_string() != id {
                    return Err(bad_uri(
                        uri,
                        "the UUID must be lowercase and hyphenated (8-4-4-4-12)",
                    ));
                }
                UriTarget::Artifact(parsed)
            }
            "sha256" => UriTarget::Content(
                id.parse()
                    .map_err(|_| bad_uri(uri, format!("{id:?} is not 64 lowercase hex digits")))?,
            ),
            other => {
                return Err(bad_uri(
                    uri,
                    format!("unknown authority {other:?} (expected \"artifact\" or \"sha256\")"),
                ));
            }
        };
        let path = match path {
            None => None,
            Some(p) => Some(
                RelPath::parse_canonical(p)
                    .map_err(|e| bad_uri(uri, format!("bad entry path: {e}")))?,
            ),
        };
        Ok(Self { target, path })
    }
}

impl fmt::Display for ArtifactUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            UriTarget::Artifact(id) => write!(f, "mex://artifact/{}", id.hyphenated())?,
            UriTarget::Content(d) => write!(f, "mex://sha256/{d}")?,
        }
        if let Some(p) = &self.path {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl FromStr for ArtifactUri {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// An untrusted reference found in params: a relative path or an artifact URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathRef {
    /// A relative path (normalized leniently).
    Relative(RelPath),
    /// A `mex://` URI.
    Uri(ArtifactUri),
}

/// Validate an untrusted string that should be a relative path or a `mex://`
/// URI: what the integrity gate calls on paths inside params. Any other
/// scheme (`file:`, `http:` ...) is refused.
pub fn validate_reference(s: &str) -> Result<PathRef> {
    if s.starts_with("mex:") {
        return ArtifactUri::parse(s).map(PathRef::Uri);
    }
    if let Some((scheme, _)) = s.split_once(':')
        && scheme.len() > 1
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && s[scheme.len()..].starts_with("://")
    {
        return Err(bad_uri(
            s,
            format!("the scheme {scheme:?} is not allowed; only mex:// artifact URIs are"),
        ));
    }
    RelPath::parse(s).map(PathRef::Relative)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn lenient_forms_normalize() {
        for (input, want) in [
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b/", "a/b"),
            ("e\u{301}", "\u{e9}"),
        ] {
            assert_eq!(RelPath::parse(input).unwrap().as_str(), want, "{input:?}");
        }
        assert!(RelPath::parse_canonical("a//b").is_err());
        assert!(RelPath::parse_canonical("a/b").is_ok());
    }

    #[test]
    fn unsafe_forms_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a\\b",
            "a\u{0}b",
            "a\nb",
            ".",
            "./",
            "C:/x",
            "a/\u{202E}txt",
            "a/..",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = "a/".repeat(65) + "a";
        assert!(RelPath::parse(&long).is_err());
    }

    #[test]
    fn bidi_invisible_and_separator_look_alikes_are_refused() {
        for (bad, why) in [
            ("invoice\u{202E}fdp.exe", "bidirectional"), // RLO
            ("a\u{202D}b", "bidirectional"),             // LRO
            ("a\u{2067}b", "bidirectional"),             // RLI
            ("a\u{200F}b", "bidirectional"),             // RLM
            ("a\u{200E}b", "bidirectional"),             // LRM
            ("a\u{061C}b", "bidirectional"),             // ALM
            ("a\u{200B}.txt", "invisible"),              // zero-width space
            ("a\u{200D}.txt", "invisible"),              // zero-width joiner
            ("\u{FEFF}a.txt", "invisible"),              // BOM
            ("a\u{00AD}b", "invisible"),                 // soft hyphen
            ("a\u{FE0F}b", "invisible"),                 // variation selector
            ("a\u{E0041}b", "invisible"),                // tag
            ("a\u{FFFE}b", "invisible"),                 // noncharacter
            ("a\u{2215}b", "separator"),                 // division slash
            ("a\u{FF0F}b", "separator"),                 // fullwidth solidus
            ("\u{FF0E}\u{FF0E}", "displayed like"),      // fullwidth ".."
        ] {
            let err = RelPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn look_alike_keys() {
        let key = |p: &str| look_alike_key(&RelPath::parse(p).unwrap());
        assert_eq!(key("e\u{301}.txt"), key("\u{e9}.txt")); // NFD / NFC
        assert_eq!(key("README"), key("readme"));
        assert_eq!(key("\u{FF41}.txt"), key("a.txt")); // fullwidth a
        assert_eq!(key("\u{FB01}le"), key("file")); // ligature fi
        assert_eq!(key("a\u{00A0}b"), key("a b")); // no-break space
        // Different scripts stay different names (documented limit).
        assert_ne!(key("\u{0430}.txt"), key("a.txt"));
    }

    #[test]
    fn uris() {
        let id = Uuid::new_v4();
        let u = ArtifactUri::parse(&format!("mex://artifact/{id}/dir/file.txt")).unwrap();
        assert_eq!(u.target, UriTarget::Artifact(id));
        assert_eq!(u.path.as_ref().unwrap().as_str(), "dir/file.txt");
        assert_eq!(u.to_string(), format!("mex://artifact/{id}/dir/file.txt"));
        let h = Sha256Digest::of(b"x");
        assert_eq!(
            ArtifactUri::parse(&format!("mex://sha256/{h}"))
                .unwrap()
                .target,
            UriTarget::Content(h)
        );
        for bad in [
            format!("mex://artifact/{}", id.to_string().to_uppercase()),
            format!("mex://artifact/{id}/../x"),
            format!("mex://artifact/{id}/a//b"),
            format!("mex://artifact/{id}?x=1"),
            format!("mex://artifact/{id}/a%2Fb"),
            "mex://sha256/ABC".to_owned(),
            "mex://other/x".to_owned(),
            "mex:/artifact".to_owned(),
        ] {
            assert!(ArtifactUri::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            validate_reference("file:///etc/passwd"),
            Err(ArtifactError::InvalidUri { .. })
        ));
        assert!(matches!(
            validate_reference("out/a.txt"),
            Ok(PathRef::Relative(_))
        ));
        assert!(matches!(
            validate_reference(&format!("mex://sha256/{h}")),
            Ok(PathRef::Uri(_))
        ));
    }
}
