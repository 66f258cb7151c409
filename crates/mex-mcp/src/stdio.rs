//! stdio behind the strict front door.
//!
//! rmcp does not read stdin itself: a reader task reads newline-delimited
//! lines from the real input, at most [`MAX_MESSAGE_BYTES`] each (a longer
//! line is discarded as it streams in, keeping only its first
//! [`HEAD_BYTES`] to find its id), puts every line through
//! [`Inner::guard`](crate::Inner) and forwards what passes (or its rewrite)
//! into an in-memory pipe rmcp reads. rmcp writes into another pipe; a
//! writer task copies its lines to the real output and interleaves the
//! front door's JSON-RPC errors between whole lines, so nothing is torn.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use crate::guard::Verdict;
use crate::{Inner, MAX_MESSAGE_BYTES, McpServerError, MexServer};

/// How much of an oversized line is kept to find its id.
const HEAD_BYTES: usize = 64 * 1024;
/// Pipe buffers between the real streams and rmcp.
const PIPE_BYTES: usize = 64 * 1024;

/// Serve `server` over `input`/`output` until the input ends.
pub(crate) async fn serve<R, W>(
    server: MexServer,
    input: R,
    output: W,
) -> Result<(), McpServerError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    use rmcp::ServiceExt as _;
    let (rmcp_in, feed) = tokio::io::duplex(PIPE_BYTES);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (replies_tx, replies_rx) = mpsc::channel::<Vec<u8>>(64);
    let reader = tokio::spawn(read_lines(server.inner.clone(), input, feed, replies_tx));
    let writer = tokio::spawn(write_lines(from_rmcp, replies_rx, output));
    // Rewritten messages are small; forwarded ones are within the cap.
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(rmcp_in, rmcp_out)
        .with_max_line_length(MAX_MESSAGE_BYTES + 1);
    let result = async {
        let running = server
            .serve(transport)
            .await
            .map_err(|e| McpServerError::Transport(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpServerError::Transport(e.to_string()))?;
        Ok(())
    }
    .await;
    reader.abort();
    // rmcp has dropped its end of the output pipe: let the writer drain it.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    result
}

async fn read_lines<R: AsyncRead + Unpin>(
    inner: Arc<Inner>,
    input: R,
    mut feed: tokio::io::DuplexStream,
    replies: mpsc::Sender<Vec<u8>>,
) {
    let mut reader = BufReader::with_capacity(PIPE_BYTES, input);
    let mut line = Vec::new();
    let mut oversized = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                tracing::error!("cannot read stdin: {e}");
                break;
            }
        };
        if buf.is_empty() {
            // End of input; an unterminated last line is dropped, as rmcp
            // drops it.
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !oversized {
            if line.len() + chunk.len() > MAX_MESSAGE_BYTES {
                oversized = true;
                let keep = HEAD_BYTES.saturating_sub(line.len()).min(chunk.len());
                line.extend_from_slice(&chunk[..keep]);
                line.truncate(HEAD_BYTES);
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = newline.map_or(buf.len(), |n| n + 1);
        reader.consume(used);
        if newline.is_none() {
            continue;
        }
        let message = std::mem::take(&mut line);
        let too_long = std::mem::replace(&mut oversized, false);
        if !forward(&inner, message, too_long, &mut feed, &replies).await {
            break;
        }
    }
}

/// Check one line and pass it on; false when rmcp is gone.
async fn forward(
    inner: &Arc<Inner>,
    mut message: Vec<u8>,
    too_long: bool,
    feed: &mut tokio::io::DuplexStream,
    replies: &mpsc::Sender<Vec<u8>>,
) -> bool {
    if message.last() == Some(&b'\r') {
        message.pop();
    }
    if message.iter().all(u8::is_ascii_whitespace) && !too_long {
        return true;
    }
    let inner = inner.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let verdict = if too_long {
            inner.refuse_oversized(&message)
        } else {
            inner.guard(&message)
        };
        (verdict, message)
    })
    .await;
    let Ok((verdict, message)) = checked else {
        return false;
    };
    let to_rmcp = match verdict {
        Verdict::Pass => message,
        Verdict::Rewrite(bytes) => bytes,
        Verdict::Reply(bytes) => return replies.send(bytes).await.is_ok(),
        Verdict::Drop => return true,
    };
    feed.write_all(&to_rmcp).await.is_ok() && feed.write_all(b"\n").await.is_ok()
}

async fn write_lines<W: AsyncWrite + Unpin>(
    from_rmcp: tokio::io::DuplexStream,
    mut replies: mpsc::Receiver<Vec<u8>>,
    mut out: W,
) {
    let mut rmcp = BufReader::with_capacity(PIPE_BYTES, from_rmcp);
    let mut line = Vec::new();
    let mut replies_open = true;
    loop {
        tokio::select! {
            // Cancel-safe: a partial line stays in `line`.
            read = rmcp.read_until(b'\n', &mut line) => {
                let end = !matches!(read, Ok(n) if n > 0);
                if !line.is_empty() && (out.write_all(&line).await.is_err() || out.flush().await.is_err()) {
                    break;
                }
                line.clear();
                if end {
                    break;
                }
            }
            reply = replies.recv(), if replies_open => match reply {
                Some(mut bytes) => {
                    bytes.push(b'\n');
                    if out.write_all(&bytes).await.is_err() || out.flush().await.is_err() {
                        break;
                    }
                }
                None => replies_open = false,
            },
        }
    }
    let _ = out.flush().await;
}
