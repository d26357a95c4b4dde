//! A stdout/stderr sink for plugins that keeps the first bytes up to a limit and drops the rest without failing the guest.
//!
//! wasmtime-wasi's `MemoryOutputPipe` traps the guest once full, which would
//! turn a chatty but correct plugin into a failed step; here output beyond
//! the limit is counted and discarded instead.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: usize,
}

/// A bounded in-memory capture of one output stream.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    limit: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            limit,
            buffer: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.limit.saturating_sub(b.kept.len());
        let take = room.min(bytes.len());
        b.kept.extend_from_slice(&bytes[..take]);
        b.dropped += bytes.len() - take;
    }

    /// The kept bytes and the number of bytes dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, usize) {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut b.kept), std::mem::take(&mut b.dropped))
    }
}

// The permit is large so guests write in few host calls; it does not bound memory.
const PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prefix_and_counts_the_rest() {
        let mut c = Capture::new(5);
        c.write(Bytes::from_static(b"abc")).unwrap();
        c.write(Bytes::from_static(b"defgh")).unwrap();
        assert_eq!(c.take(), (b"abcde".to_vec(), 3));
        assert_eq!(c.take(), (Vec::new(), 0));
    }
}
