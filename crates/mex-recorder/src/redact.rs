//! Redaction: secret values never reach the recorder's storage.
//!
//! A value is secret, and is replaced by [`REDACTED`] before anything is
//! hashed or written, when any of these holds:
//!
//! 1. **Marked**: it is a JSON object with a `"$secret"` key, e.g.
//!    `{"$secret": "hunter2"}`. This is the convention callers use for a value
//!    they know is secret; the whole object is replaced.
//! 2. **Secret key**: it is the value of an object key whose words name a
//!    secret. Keys are split into lower-case words at `_`, `-`, `.`, spaces and
//!    camelCase boundaries; the key is secret when a word is one of
//!    [`SECRET_KEY_WORDS`], or two adjacent words join into one of them
//!    (`api_key`, `x-api-key`, `privateKey`), or the key is in the recorder's
//!    extra secret keys ([`Redactor::with_secret_key`]). The value is replaced
//!    whatever its type, so a nested object under `credentials` goes entirely.
//! 3. **Looks like a credential**: a string starting with `Bearer ` or
//!    `Basic `, or containing a PEM private key block.
//! 4. **Known secret value**: a string containing a value registered with
//!    [`Redactor::with_secret_value`] (the runtime registers every secret it
//!    resolves for `secrets.use:<id>`); each occurrence is replaced, in
//!    payloads and in messages alike.
//!
//! Matching errs on the side of removing too much: an audit log that lacks a
//! harmless value is better than one that leaks a credential (policy engines'
//! decision logs have leaked secrets this way).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The key that marks a value as secret: `{"$secret": <value>}`.
pub const SECRET_MARKER: &str = "$secret";

/// Words (and two-word joins) that make an object key secret.
pub const SECRET_KEY_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "secrets",
    "token",
    "apikey",
    "credential",
    "credentials",
    "authorization",
    "cookie",
    "privatekey",
    "accesskey",
    "secretkey",
    "sessionkey",
    "clientsecret",
];

/// Registered secret values shorter than this are ignored: replacing every
/// occurrence of a 1-3 character string would shred the log and protect
/// nothing.
const MIN_SECRET_VALUE_LEN: usize = 4;

/// The redaction policy a recorder applies to every payload and message.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra_keys: BTreeSet<String>,
    values: Vec<String>,
}

impl Redactor {
    /// The default policy: marker, key words and credential shapes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also treat this key as secret (matched after normalization: words
    /// joined, lower case, so `deployKey` also covers `deploy_key`).
    #[must_use]
    pub fn with_secret_key(mut self, key: &str) -> Self {
        self.extra_keys.insert(words(key).concat());
        self
    }

    /// Also remove every occurrence of this literal value (ignored when
    /// shorter than 4 bytes).
    #[must_use]
    pub fn with_secret_value(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        if value.len() >= MIN_SECRET_VALUE_LEN && !self.values.contains(&value) {
            self.values.push(value);
            // Longest first, so a secret containing another is removed whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
        self
    }

    /// Whether an object key names a secret.
    pub fn is_secret_key(&self, key: &str) -> bool {
        let w = words(key);
        let joined = w.concat();
        if self.extra_keys.contains(&joined) || SECRET_KEY_WORDS.contains(&joined.as_str()) {
            return true;
        }
        w.iter()
            .any(|word| SECRET_KEY_WORDS.contains(&word.as_str()))
            || w.windows(2)
                .any(|pair| SECRET_KEY_WORDS.contains(&pair.concat().as_str()))
    }

    /// Redact a JSON value (see the module docs for the rules).
    pub fn redact_value(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => {
                if map.contains_key(SECRET_MARKER) {
                    return Value::String(REDACTED.to_owned());
                }
                let mut out = Map::new();
                for (k, v) in map {
                    let v = if self.is_secret_key(&k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        self.redact_value(v)
                    };
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_value(v)).collect())
            }
            Value::String(s) => Value::String(self.redact_text(&s)),
            other => other,
        }
    }

    /// Redact free text (messages, rules): credential shapes and registered
    /// secret values.
    pub fn redact_text(&self, text: &str) -> String {
        if looks_like_credential(text) {
            return REDACTED.to_owned();
        }
        let mut out = text.to_owned();
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

fn looks_like_credential(s: &str) -> bool {
    let t = s.trim_start();
    let lower_prefix: String = t.chars().take(7).collect::<String>().to_ascii_lowercase();
    lower_prefix.starts_with("bearer ")
        || lower_prefix.starts_with("basic ")
        || (s.contains("-----BEGIN") && s.contains("PRIVATE KEY"))
}

/// Split a key into lower-case words at separators and camelCase boundaries.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use serde_json::json;

    use super::*;

    #[test]
    fn key_rules() {
        let r = Redactor::new().with_secret_key("deployKey");
        for k in [
            "password",
            "DB_PASSWORD",
            "api_key",
            "x-api-key",
            "apiKey",
            "privateKey",
            "refresh_token",
            "Authorization",
            "client.secret",
            "deploy_key",
        ] {
            assert!(r.is_secret_key(k), "{k} should be secret");
        }
        for k in [
            "max_tokens",
            "monkey",
            "keyboard",
            "engine_id",
            "tokenizer",
            "author",
        ] {
            assert!(!r.is_secret_key(k), "{k} should not be secret");
        }
    }

    #[test]
    fn marked_nested_and_known_values() {
        let r = Redactor::new().with_secret_value("s3cr3t-value");
        let v = r.redact_value(json!({
            "a": {"$secret": "hunter2"},
            "list": [{"token": "abc"}, "prefix s3cr3t-value suffix"],
            "credentials": {"user": "bob", "pass": "x"},
            "auth": "Bearer abc.def",
            "n": 3,
        }));
        let text = v.to_string();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("abc"));
        assert!(!text.contains("s3cr3t-value"));
        assert!(!text.contains("bob"));
        assert_eq!(v["n"], 3);
        assert_eq!(v["list"][1], "prefix [REDACTED] suffix");
    }
}
