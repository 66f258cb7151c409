//! Resources: artifacts by content (`mex://artifacts/sha256/<digest>`), their
//! sidecar manifests (`mex://artifacts/manifest/<artifact id>`) and an
//! operation's recorder events (`mex://ops/<op id>/events`).

use base64::Engine as _;
use mex_artifacts::ArtifactStore;
use mex_envelope::{ArtifactHandle, Sha256Digest};
use mex_recorder::{EventQuery, FlightRecorder};
use rmcp::ErrorData as McpError;
use rmcp::model::{ListResourcesResult, Resource, ResourceContents};
use uuid::Uuid;

/// Prefix of a content URI.
pub const CONTENT_PREFIX: &str = "mex://artifacts/sha256/";
/// Prefix of a manifest URI.
pub const MANIFEST_PREFIX: &str = "mex://artifacts/manifest/";
/// Prefix of an operation's events URI.
pub const OPS_PREFIX: &str = "mex://ops/";

/// Most records looked at when resolving a digest by scanning the store.
const SCAN_LIMIT: usize = 100_000;
/// Most events returned for one operation.
const EVENTS_LIMIT: u64 = 1_000;

/// The URI of an artifact's content.
pub fn content_uri(handle: &ArtifactHandle) -> String {
    format!("{CONTENT_PREFIX}{}", handle.content_hash)
}

/// Some artifact whose content has this digest (a scan of the records; the
/// store is content-addressed, so any record with the digest has the bytes).
pub fn find_by_digest(store: &ArtifactStore, digest: &Sha256Digest) -> Option<ArtifactHandle> {
    find_by_digest_preferring(store, digest, &[])
}

/// [`find_by_digest`], preferring a record whose id is in `preferred` (the
/// ids an operation's params name), checked first without a scan.
pub fn find_by_digest_preferring(
    store: &ArtifactStore,
    digest: &Sha256Digest,
    preferred: &[Uuid],
) -> Option<ArtifactHandle> {
    if let Some(h) = preferred
        .iter()
        .filter_map(|id| store.handle(*id).ok())
        .find(|h| h.content_hash == *digest)
    {
        return Some(h);
    }
    let ids = store.list().ok()?;
    ids.into_iter()
        .take(SCAN_LIMIT)
        .filter_map(|id| store.handle(id).ok())
        .find(|h| h.content_hash == *digest)
}

fn textual(media_type: Option<&str>) -> bool {
    media_type.is_some_and(|m| {
        m.starts_with("text/")
            || m == "application/json"
            || m.ends_with("+json")
            || m == "application/xml"
            || m.ends_with("+xml")
    })
}

fn not_found(uri: &str, why: impl std::fmt::Display) -> McpError {
    McpError::resource_not_found(
        format!("{}: {why}", crate::clip(uri)),
        Some(serde_json::json!({"uri": crate::clip(uri)})),
    )
}

/// Read one resource, verified against its digest and at most `max_bytes`.
pub fn read(
    store: &ArtifactStore,
    recorder: &dyn FlightRecorder,
    uri: &str,
    max_bytes: u64,
    hint: impl Fn(&Sha256Digest) -> Option<ArtifactHandle>,
) -> Result<ResourceContents, McpError> {
    if let Some(hex) = uri.strip_prefix(CONTENT_PREFIX) {
        let digest: Sha256Digest = hex
            .parse()
            .map_err(|_| not_found(uri, "the digest is not 64 lowercase hex digits"))?;
        let handle = hint(&digest)
            .or_else(|| find_by_digest(store, &digest))
            .ok_or_else(|| not_found(uri, "no artifact in the store has this content"))?;
        if handle.size_bytes > max_bytes {
            return Err(McpError::invalid_params(
                format!(
                    "{} is {} bytes, over this server's read limit of {max_bytes} bytes; read it with `mex artifacts get {}`",
                    crate::clip(uri),
                    handle.size_bytes,
                    handle.artifact_id
                ),
                Some(
                    serde_json::json!({"uri": crate::clip(uri), "size_bytes": handle.size_bytes, "limit": max_bytes}),
                ),
            ));
        }
        let bytes = store
            .read(&handle)
            .map_err(|e| not_found(uri, format!("the store refused to serve it: {e}")))?;
        let media = handle.media_type.as_ref().map(|m| m.as_str().to_owned());
        let contents = match (textual(media.as_deref()), String::from_utf8(bytes)) {
            (true, Ok(text)) => ResourceContents::text(text, uri),
            (_, Ok(text)) => ResourceContents::blob(
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                uri,
            ),
            (_, Err(e)) => ResourceContents::blob(
                base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                uri,
            ),
        };
        return Ok(
            contents.with_mime_type(media.unwrap_or_else(|| "application/octet-stream".to_owned()))
        );
    }
    if let Some(id) = uri.strip_prefix(MANIFEST_PREFIX) {
        let id = Uuid::try_parse(id).map_err(|_| not_found(uri, "not an artifact id (UUID)"))?;
        let manifest = store
            .manifest(id)
            .map_err(|e| not_found(uri, format!("no manifest: {e}")))?;
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        return Ok(ResourceContents::text(text, uri).with_mime_type("application/json"));
    }
    if let Some(rest) = uri.strip_prefix(OPS_PREFIX) {
        let id = rest
            .strip_suffix("/events")
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(|| not_found(uri, "expected mex://ops/<op id>/events"))?;
        let mut query = EventQuery::op(id);
        query.limit = Some(EVENTS_LIMIT);
        let events = recorder
            .events(&query)
            .map_err(|e| McpError::internal_error(format!("the recorder refused: {e}"), None))?;
        let text = serde_json::to_string_pretty(&events)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        return Ok(ResourceContents::text(text, uri).with_mime_type("application/json"));
    }
    Err(not_found(
        uri,
        "unknown resource; this server serves mex://artifacts/sha256/<digest>, mex://artifacts/manifest/<artifact id> and mex://ops/<op id>/events",
    ))
}

/// One page of the store's artifacts, in artifact id order. The cursor is
/// the offset of the next page.
pub fn list(
    store: &ArtifactStore,
    cursor: Option<&str>,
    page: usize,
) -> Result<ListResourcesResult, McpError> {
    let offset = match cursor {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            McpError::invalid_params(
                format!(
                    "cursor {:?} was not issued by this server; start again without a cursor",
                    crate::clip(c)
                ),
                None,
            )
        })?,
    };
    let mut ids = store
        .list()
        .map_err(|e| McpError::internal_error(format!("cannot list the store: {e}"), None))?;
    ids.sort();
    let resources = ids
        .iter()
        .skip(offset)
        .take(page)
        .filter_map(|id| store.handle(*id).ok())
        .map(|h| {
            let mut r = Resource::new(content_uri(&h), h.artifact_id.to_string())
                .with_size(h.size_bytes)
                .with_description(format!(
                    "artifact {} ({:?}); manifest: {MANIFEST_PREFIX}{}",
                    h.artifact_id, h.kind, h.artifact_id
                ));
            if let Some(m) = &h.media_type {
                r = r.with_mime_type(m.as_str());
            }
            r
        })
        .collect();
    let mut result = ListResourcesResult::with_all_items(resources);
    if offset.saturating_add(page) < ids.len() {
        result.next_cursor = Some((offset + page).to_string());
    }
    Ok(result)
}
