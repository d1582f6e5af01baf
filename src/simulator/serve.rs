//! The accept loop of the loopback HTTP/1 servers here (the bunq simulator and the webhook
//! receiver): one task per connection, every one of them ended by the same stop token.

use std::future::Future;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `listener` with `handle` until `stop` is cancelled; open connections end then too.
pub(crate) async fn accept_until<H, Fut, E>(
    listener: TcpListener,
    stop: CancellationToken,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                // Out of file descriptors and the like: keep serving the open connections.
                Err(_) => continue,
            },
        };
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let connection =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            tokio::select! {
                // A failed or reset connection is the client's problem to see, not ours.
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}
