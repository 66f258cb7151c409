//! Streaming ingest: read, hash and write in constant memory.
//!
//! Small inputs (one buffer) are handled inline. Larger inputs run a
//! three-stage pipeline over a fixed pool of [`POOL`] buffers of [`CHUNK`]
//! bytes: the calling thread reads, a hasher thread hashes, a writer thread
//! writes. The hashed bytes are exactly the written bytes (the same buffer
//! passes through both stages), so there is no window in which a changing
//! source could make the stored payload differ from its digest. Peak memory
//! is `POOL * CHUNK` (8 MiB) whatever the input size.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use mex_envelope::{Sha256Digest, Sha256Writer};

/// Size of one I/O buffer.
pub(crate) const CHUNK: usize = 1 << 20;
/// The first read's buffer: inputs shorter than this are read, hashed and
/// written without taking a full [`CHUNK`].
const SMALL: usize = 64 << 10;
/// Buffers in flight in the pipeline.
pub(crate) const POOL: usize = 8;

/// Why an ingest stopped.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// Reading the source failed after `read` bytes.
    Read { read: u64, source: io::Error },
    /// Writing the destination failed after `written` bytes.
    Write { written: u64, source: io::Error },
    /// The source is longer than the limit.
    TooLarge,
}

/// Result of a successful ingest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ingested {
    pub digest: Sha256Digest,
    pub size: u64,
}

/// Fill `buf` as far as possible; returns bytes read (less than `buf.len()`
/// only at end of input).
fn fill<R: Read + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
    total: u64,
) -> Result<usize, IngestError> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(IngestError::Read {
                    read: total + n as u64,
                    source,
                });
            }
        }
    }
    Ok(n)
}

/// Copy `reader` into `writer`, hashing on the way, refusing more than
/// `limit` bytes.
pub(crate) fn ingest<R, W>(
    reader: &mut R,
    writer: &mut W,
    limit: u64,
) -> Result<Ingested, IngestError>
where
    R: Read + ?Sized,
    W: Write + Send,
{
    // Most payloads are small: read into a small buffer first and take the
    // full chunk only when it fills (zeroing 1 MiB for a 100-byte output was
    // the largest item of a cache hit's verification).
    let mut first = vec![0u8; SMALL];
    let mut n = fill(reader, &mut first, 0)?;
    if n == SMALL {
        first.resize(CHUNK, 0);
        n += fill(reader, &mut first[SMALL..], SMALL as u64)?;
    }
    if (n as u64) > limit {
        return Err(IngestError::TooLarge);
    }
    if n < CHUNK {
        let mut hasher = Sha256Writer::new();
        hasher.update(&first[..n]);
        writer
            .write_all(&first[..n])
            .map_err(|source| IngestError::Write { written: 0, source })?;
        let (digest, size) = hasher.finish();
        return Ok(Ingested { digest, size });
    }
    first.truncate(n);
    pipeline(reader, writer, limit, first)
}

type Buf = Vec<u8>;

fn pipeline<R, W>(
    reader: &mut R,
    writer: &mut W,
    limit: u64,
    first: Buf,
) -> Result<Ingested, IngestError>
where
    R: Read + ?Sized,
    W: Write + Send,
{
    let (free_tx, free_rx): (SyncSender<Buf>, Receiver<Buf>) = sync_channel(POOL);
    let (hash_tx, hash_rx) = sync_channel::<Buf>(POOL);
    let (write_tx, write_rx) = sync_channel::<Buf>(POOL);
    for _ in 1..POOL {
        // Cannot fail: the channel has room for POOL buffers and we hold the receiver.
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256Writer::new();
            for buf in hash_rx {
                hasher.update(&buf);
                if write_tx.send(buf).is_err() {
                    break;
                }
            }
            hasher
        });
        let writer_thread = scope.spawn(move || -> Result<(), IngestError> {
            let mut written = 0u64;
            for buf in write_rx {
                writer
                    .write_all(&buf)
                    .map_err(|source| IngestError::Write { written, source })?;
                written += buf.len() as u64;
                // The reader may have finished and dropped the pool: fine.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });

        let read_result = (|| -> Result<(), IngestError> {
            let mut total = first.len() as u64;
            if hash_tx.send(first).is_err() {
                return Ok(()); // the writer failed; its error is reported below
            }
            loop {
                let Ok(mut buf) = free_rx.recv() else {
                    return Ok(());
                };
                buf.resize(CHUNK, 0);
                let n = fill(reader, &mut buf, total)?;
                if n == 0 {
                    return Ok(());
                }
                total += n as u64;
                if total > limit {
                    return Err(IngestError::TooLarge);
                }
                buf.truncate(n);
                if hash_tx.send(buf).is_err() {
                    return Ok(());
                }
                if n < CHUNK {
                    return Ok(());
                }
            }
        })();
        drop(hash_tx);
        drop(free_rx);
        let write_result = writer_thread.join().unwrap_or_else(|_| {
            Err(IngestError::Write {
                written: 0,
                source: io::Error::other("the writer thread panicked"),
            })
        });
        let hasher = hasher.join();
        read_result?;
        write_result?;
        let hasher = hasher.map_err(|_| IngestError::Write {
            written: 0,
            source: io::Error::other("the hasher thread panicked"),
        })?;
        let (digest, size) = hasher.finish();
        Ok(Ingested { digest, size })
    })
}

/// Hash a reader to its end in constant memory (used by verification).
pub(crate) fn hash_reader<R: Read + ?Sized>(reader: &mut R) -> Result<Ingested, IngestError> {
    ingest(reader, &mut io::sink(), u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn pipeline_matches_one_shot() {
        for len in [
            0usize,
            1,
            SMALL - 1,
            SMALL,
            SMALL + 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 17,
            POOL * CHUNK * 2 + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut out = Vec::new();
            let got = ingest(&mut &data[..], &mut out, u64::MAX).unwrap();
            assert_eq!(got.size, len as u64);
            assert_eq!(got.digest, Sha256Digest::of(&data));
            assert_eq!(out, data);
        }
    }

    #[test]
    fn limit_is_enforced() {
        let data = vec![7u8; 3 * CHUNK];
        assert!(matches!(
            ingest(&mut &data[..], &mut io::sink(), 2 * CHUNK as u64),
            Err(IngestError::TooLarge)
        ));
        assert!(matches!(
            ingest(&mut &data[..10], &mut io::sink(), 5),
            Err(IngestError::TooLarge)
        ));
        assert!(ingest(&mut &data[..], &mut io::sink(), 3 * CHUNK as u64).is_ok());
    }
}
