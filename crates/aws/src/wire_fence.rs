//! Connections that put no byte on the wire unless a [`WriteGate`] says so at that moment.
//!
//! A check when a write enters a client is not enough: between it and the socket lie the
//! client's layers, the pool checkout and the connection task, and a process stopped
//! (SIGSTOP) in there sends the write when it resumes, long after another replica took
//! over. The check here sits right before the socket, so writes get connections of their
//! own made by a [`FencedConnector`]; reads keep the ordinary ones.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};

use crate::write_gate::WriteGate;

/// What a refused socket write fails with.
#[derive(Debug, thiserror::Error)]
#[error(
    "this replica may not write now (not the leader, or past its renew deadline): write fenced"
)]
pub struct WriteFenced;

/// A hyper connector whose connections are [`FencedIo`].
#[derive(Clone)]
pub struct FencedConnector<C> {
    inner: C,
    gate: WriteGate,
}

impl<C> FencedConnector<C> {
    pub fn new(inner: C, gate: WriteGate) -> Self {
        Self { inner, gate }
    }
}

impl<C> tower::Service<Uri> for FencedConnector<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
{
    type Response = FencedIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let gate = self.gate.clone();
        Box::pin(async move { Ok(FencedIo::new(connecting.await?, gate)) })
    }
}

/// A connection whose writes and flushes ask the gate first. A refused write fails the
/// request and the connection; bytes of a request cut short never complete it.
pub struct FencedIo<T> {
    inner: T,
    gate: WriteGate,
}

impl<T> FencedIo<T> {
    pub fn new(inner: T, gate: WriteGate) -> Self {
        Self { inner, gate }
    }

    fn refused(&self) -> Option<io::Error> {
        (!(self.gate.0)()).then(|| io::Error::new(io::ErrorKind::PermissionDenied, WriteFenced))
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for FencedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for FencedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // TLS may hold encrypted bytes back until a flush; they are writes too.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    // A TLS shutdown first sends what an earlier write left buffered: closed, the
    // connection is dropped instead.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.refused().is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for FencedIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Write;
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    fn gate() -> (Arc<AtomicBool>, WriteGate) {
        let open = Arc::new(AtomicBool::new(true));
        let read = open.clone();
        (
            open,
            WriteGate(Arc::new(move || read.load(Ordering::SeqCst))),
        )
    }

    #[tokio::test]
    async fn bytes_reach_the_wire_only_while_the_gate_is_open() {
        let (open, gate) = gate();
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = FencedIo::new(TokioIo::new(near), gate);

        let written = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"PATCH")).await;
        assert_eq!(written.expect("written while open"), 5);

        open.store(false, Ordering::SeqCst);
        let refused = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"LATE"))
            .await
            .expect_err("refused once closed");
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(refused.to_string().contains("fenced"), "{refused}");
        let slices = [io::IoSlice::new(b"LATE")];
        let vectored =
            std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &slices));
        assert!(vectored.await.is_err(), "a vectored write got through");
        let flushed = std::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx)).await;
        assert!(flushed.is_err(), "a flush got through");
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))
            .await
            .expect("a closed connection shuts down without a byte");

        drop(io);
        let mut arrived = Vec::new();
        far.read_to_end(&mut arrived)
            .await
            .expect("read the far end");
        assert_eq!(
            arrived, b"PATCH",
            "only what was written while open arrives"
        );
    }
}
