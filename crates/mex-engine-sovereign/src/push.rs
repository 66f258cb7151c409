//! `sovereign.sync_push`: PUT an artifact to a remote profile's URL.
//!
//! Plain HTTP/1.1 over `std::net` (no TLS yet: an `https://` URL is refused
//! with `SOV_SYNC_ERROR`); one request, `Connection: close`, the response
//! head read up to [`MAX_RESPONSE_HEAD`] bytes. The profile is a small JSON
//! object, read strictly:
//!
//! ```json
//! {"url": "http://backup.local:8080/vault/notes.age", "key_id": "vault"}
//! ```
//!
//! `key_id` names the held age identity the body is encrypted to (needed
//! when `encrypt` is true, the default; its `secrets.use:<key_id>` must be
//! granted). Credentials in the URL are refused: they would be recorded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mex_engine_sdk::{Fail, Request};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{SOV_KEY_DENIED, SOV_SYNC_ERROR, age_identity, held_key_named};

/// Largest remote profile read.
pub const MAX_PROFILE_BYTES: u64 = 64 << 10;
/// Largest response head read (status line and headers).
pub const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// Socket read/write timeout (the run's wall budget bounds it too).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn sync(m: String) -> Fail {
    Fail::new(SOV_SYNC_ERROR, m)
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (`[v6]` kept bracketed).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse a profile URL; the error says what to change.
pub fn parse_url(url: &str) -> Result<HttpUrl, String> {
    if url.len() > 2048 {
        return Err("the url is longer than 2048 bytes".to_owned());
    }
    if url
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
    {
        return Err(
            "the url has spaces, control or non-ASCII characters; percent-encode them".to_owned(),
        );
    }
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(
            "https is not supported yet (plain HTTP only); push to an http:// endpoint on a trusted network"
                .to_owned(),
        );
    } else {
        return Err("the url must start with http://".to_owned());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(
            "the url carries credentials (user@host); they would be recorded, so they are refused"
                .to_owned(),
        );
    }
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[..end + 2];
        let port = authority[end + 2..].strip_prefix(':');
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the url has no host".to_owned());
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("the url's port {p:?} is not a number in 1..=65535"))?,
    };
    Ok(HttpUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// The profile: url and optional key id.
fn read_profile(req: &Request) -> Result<(String, Option<String>), Fail> {
    let bytes = crate::read_small(req, "remote_profile_ref", MAX_PROFILE_BYTES, SOV_SYNC_ERROR)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        sync(format!(
            "params.remote_profile_ref is not JSON ({e}); write {{\"url\": \"http://…\", \"key_id\": \"…\"}}"
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(sync(
            "params.remote_profile_ref must be a JSON object".to_owned(),
        ));
    };
    for k in map.keys() {
        if k != "url" && k != "key_id" {
            return Err(sync(format!(
                "params.remote_profile_ref: unknown member /{k}; a profile has only url and key_id"
            )));
        }
    }
    let url = map
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            sync("params.remote_profile_ref: /url is missing or not a string".to_owned())
        })?
        .to_owned();
    let key_id = match map.get("key_id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(sync(
                "params.remote_profile_ref: /key_id must be a string".to_owned(),
            ));
        }
    };
    Ok((url, key_id))
}

/// Run `sovereign.sync_push`.
pub fn sync_push(req: &mut Request) -> Result<(), Fail> {
    if !req.has_capability("net.http") {
        return Err(sync(
            "sync_push needs net.http, which this run was not granted; request it and have an operator grant it with a consent record".to_owned(),
        ));
    }
    let encrypt = req
        .params()
        .get("encrypt")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (url, key_id) = read_profile(req)?;
    let target =
        parse_url(&url).map_err(|why| sync(format!("params.remote_profile_ref: /url: {why}")))?;
    let plain = req.read_input("bundle_ref")?;
    let body = if encrypt {
        let key_id = key_id.ok_or_else(|| {
            Fail::new(
                SOV_KEY_DENIED,
                "encrypt is true but params.remote_profile_ref has no /key_id; name the held age key, or set encrypt to false",
            )
        })?;
        let key = held_key_named(req, &key_id)?;
        let identity = age_identity(&key_id, &key)?;
        let mut out = Vec::with_capacity(plain.len() + 512);
        crate::age_encrypt(identity, &mut plain.as_slice(), &mut out)
            .map_err(|why| Fail::new(crate::SOV_ENCRYPT_ERROR, why))?;
        out
    } else {
        plain
    };
    let status = put(&target, &body)?;
    let log = format!(
        "PUT {url}\nstatus: {status}\nbytes: {}\nsha256: {}\nencrypted: {encrypt}\n",
        body.len(),
        hex::encode(Sha256::digest(&body))
    );
    if !(200..300).contains(&status) {
        return Err(sync(format!(
            "the remote answered {status} to PUT {url}; check the endpoint and its permissions"
        )));
    }
    req.write_output("push.log", "artifact.logs", "text/plain", log.as_bytes())
}

/// PUT `body` and return the status code.
fn put(target: &HttpUrl, body: &[u8]) -> Result<u16, Fail> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = TcpStream::connect((host, target.port)).map_err(|e| {
        sync(format!(
            "cannot connect to {}:{} ({e}); check the url and that the sandbox granted the network",
            target.host, target.port
        ))
    })?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: mex-engine-sovereign\r\n\r\n",
        target.path,
        target.host,
        target.port,
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(|e| sync(format!("sending to {}: {e}", target.host)))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(line_end) = response.windows(2).position(|w| w == b"\r\n") {
            return parse_status(&response[..line_end]);
        }
        if response.len() >= MAX_RESPONSE_HEAD {
            return Err(sync(format!(
                "the remote's status line is longer than {MAX_RESPONSE_HEAD} bytes; it is not an HTTP server"
            )));
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| sync(format!("reading the remote's answer: {e}")))?;
        if n == 0 {
            return Err(sync(
                "the remote closed the connection without an HTTP answer".to_owned(),
            ));
        }
        response.extend_from_slice(&buf[..n]);
    }
}

fn parse_status(line: &[u8]) -> Result<u16, Fail> {
    let text = std::str::from_utf8(line).unwrap_or("");
    let mut parts = text.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| sync(format!("the remote's status code {code:?} is not a number"))),
        _ => Err(sync("the remote's answer is not HTTP/1.x".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a/b?x=1"),
            Ok(HttpUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/a/b?x=1".into()
            })
        );
        assert_eq!(
            parse_url("http://h").map(|u| (u.port, u.path)),
            Ok((80, "/".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:9/x").map(|u| (u.host, u.port)),
            Ok(("[::1]".into(), 9))
        );
        for bad in [
            "https://h/",
            "ftp://h/",
            "http://u:p@h/",
            "http://h:0/",
            "http://h:99999/",
            "http:///x",
            "http://h/ x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
