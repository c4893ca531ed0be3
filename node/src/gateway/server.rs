//! The gateway's HTTP/1.1 server: hyper's connection builder with the
//! gateway's limits, one task per connection in a `JoinSet` (so stopping the
//! gateway ends every connection), a cap on connections served at once,
//! and an accept loop that backs off on errors instead of spinning.
//!
//! hyper answers what never reaches a handler: a request head larger than
//! `max_header_bytes` gets 431 (a request line that long, 414), more than
//! `max_headers` headers 431, and a head that does not arrive within
//! `header_timeout` (including an idle kept-alive connection) closes the
//! connection.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::gateway::settings::GatewaySettings;
use crate::gateway::slots::CLIENT;

/// Serve `router` on `listener` under `settings`' limits until the task is
/// dropped; its connections end with it.
pub async fn serve(listener: TcpListener, router: Router, settings: GatewaySettings) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_header_size(settings.max_header_bytes)
        .max_headers(settings.max_headers)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("gateway accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        // Its requests' grid operations count against its address's share
        // of the session slots (`slots`).
        conns.spawn(CLIENT.scope(peer.ip(), async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!("gateway connection from {peer}: {e}");
            }
        }));
    }
}
