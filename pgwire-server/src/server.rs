//! The listener: one engine session per connection, cancel requests, and a
//! clean shutdown on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tsunagu_engine::current::Current;

use crate::handler::{Auth, CancelRegistry, Connection, Handlers};
use crate::limits::Limiter;

/// Serves the current engine on `listener` until SIGINT or SIGTERM:
/// SCRAM-SHA-256 authentication through `auth`, TLS when an acceptor is
/// given. Each connection works on the engine current when it connected.
pub async fn serve(
    current: Arc<Current>,
    listener: TcpListener,
    auth: Arc<Auth>,
    limiter: Arc<Limiter>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> std::io::Result<()> {
    let registry = Arc::new(CancelRegistry::default());
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        log::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let connection = match Connection::new(&current.get(), registry.clone(), auth.clone(), limiter.clone()) {
                    Ok(c) => c,
                    Err(e) => {
                        log::error!("cannot start a session for {peer}: {e}");
                        continue;
                    }
                };
                let handlers = Arc::new(Handlers { connection, registry: registry.clone() });
                let tls = tls.clone();
                connections.spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                        log::debug!("connection {peer} ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    eprintln!(
        "tsunagu: shutting down ({} open connection(s))",
        connections.len()
    );
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
    Ok(())
}

/// True when every address `listen` (`HOST:PORT`) resolves to is a loopback
/// address (127.0.0.0/8, ::1): only this machine can connect.
pub async fn is_loopback(listen: &str) -> std::io::Result<bool> {
    let mut any = false;
    for addr in tokio::net::lookup_host(listen).await? {
        any = true;
        if !addr.ip().to_canonical().is_loopback() {
            return Ok(false);
        }
    }
    Ok(any)
}

/// Binds the listen address.
pub async fn bind(listen: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
