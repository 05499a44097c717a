//! Builds and runs the HTTP server: listener (plain or TLS), middleware (request ids and access log,
//! metrics, CORS), routes, shared state, and the graceful-shutdown deadline; and, with
//! `server.admin_listen`, a second plain-HTTP server for probes and Prometheus that keeps answering
//! (`/readyz`: `shutting-down`) while the main one drains.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Mode};
use crate::state::AppState;

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    admin: Option<(u16, Server)>,
    state: web::Data<AppState>,
}

impl Application {
    /// Binds the listener and builds the state with the system clock.
    pub async fn build(config: &Config, mode: Mode) -> anyhow::Result<Application> {
        Application::build_with_clock(config, mode, Arc::new(SystemClock)).await
    }

    /// Binds the listener (port 0 picks a free port) and builds the state with `clock`.
    pub async fn build_with_clock(config: &Config, mode: Mode, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let audit = Audit::start(&config.audit, &config.audit_database_url())
            .await
            .context("cannot start the audit log (audit.database_url)")?;
        let state = web::Data::new(AppState::build(config, mode, clock, audit).await?);
        let tls = match &config.server.tls {
            Some(tls) => {
                let resolver = crate::tls::ReloadingCertificate::load(tls, state.metrics.clone())
                    .context("[server.tls]: cannot load the certificate and key")?;
                resolver.watch(tls.reload_interval);
                Some(crate::tls::server_config(resolver)?)
            }
            None => {
                warn_if_plain_http(config);
                None
            }
        };
        let listener = TcpListener::bind(config.server.listen)
            .with_context(|| {
                format!(
                    "cannot listen on {}: choose a free address with --listen or server.listen (is another server running?)",
                    config.server.listen
                )
            })?;
        let port = listener.local_addr()?.port();
        let cors = config.cors.clone();
        let app_state = state.clone();
        let metrics = web::Data::from(state.metrics.clone());
        let separate_admin = config.server.admin_listen.is_some();
        let mut server = HttpServer::new(move || {
            App::new()
                // Innermost: a request refused for its connection's stream count is still logged, counted
                // in metrics and given CORS headers by the layers around it.
                .wrap(actix_web::middleware::from_fn(crate::connection::middleware))
                .wrap(crate::cors::cors_middleware(&cors))
                .wrap(actix_web::middleware::from_fn(crate::cors::json_refusals))
                .wrap(actix_web::middleware::from_fn(crate::metrics::middleware))
                .wrap(actix_web::middleware::from_fn(crate::request_id::middleware))
                .app_data(app_state.clone())
                .app_data(metrics.clone())
                .configure(if separate_admin { crate::routes::configure_api } else { crate::routes::configure })
        })
        // On SIGTERM/SIGINT: readiness turns `shutting-down`, the server stops accepting and lets in-flight
        // requests finish for this long, then `run_until_stopped` returns (whole seconds: round up so a
        // configured deadline is never cut short).
        .shutdown_signal(shutdown_requested(state.clone()))
        .shutdown_timeout(config.server.shutdown_timeout.as_secs_f64().ceil() as u64)
        // Slow or idle clients are cut off; request heads are also bounded by actix (96 headers, 128 KiB).
        .client_request_timeout(config.server.client_request_timeout)
        // Each connection counts its requests in service (HTTP/2 streams): crate::connection.
        .on_connect(crate::connection::InService::on_connect(config.server.max_concurrent_streams))
        .keep_alive(config.server.keep_alive)
        // HTTP/2 writes a response's HEADERS and DATA frames separately: with Nagle's algorithm on (the OS
        // default) the second write waits for the client's delayed ACK, ~40 ms on every HTTP/2 response.
        .tcp_nodelay(true)
        .max_connections(config.server.max_connections_per_worker);
        server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls)?,
            None => server.listen(listener)?,
        };
        if let Some(workers) = config.server.workers {
            server = server.workers(workers);
        }
        let admin = match config.server.admin_listen {
            Some(addr) => Some(admin_server(addr, state.clone())?),
            None => None,
        };
        Ok(Application { port, server: server.run(), admin, state })
    }

    /// The admin listener's port, when `server.admin_listen` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|(port, _)| *port)
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shared state (tests read KMS counters and caches through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM stop it gracefully).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let refresher = crate::readiness::spawn_refresher(self.state.readiness.clone());
        let admin = self.admin.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await;
        refresher.abort();
        // In-flight requests are done: the admin listener (probes, metrics) goes last.
        if let Some((handle, task)) = admin {
            handle.stop(false).await;
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "The admin listener ended with an error.");
            }
        }
        // Write every queued audit event before exiting.
        self.state.audit.shutdown().await;
        served
    }
}

/// The plain-HTTP admin server: `/healthz`, `/readyz`, `/metrics` on one worker. It has no signal
/// handling of its own: `run_until_stopped` stops it after the main server has drained.
fn admin_server(addr: std::net::SocketAddr, state: web::Data<AppState>) -> anyhow::Result<(u16, Server)> {
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (server.admin_listen)"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(crate::routes::configure_admin))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
    Ok((port, server))
}

/// Resolves on the first SIGTERM or SIGINT, after marking the replica as shutting down (the probe then
/// answers 503 while in-flight requests finish). If the handlers cannot be installed, never resolves:
/// the process then ends only by SIGKILL, which the log says.
async fn shutdown_requested(state: web::Data<AppState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "Cannot install the SIGTERM/SIGINT handlers; graceful shutdown is off.");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    state.readiness.begin_shutdown();
    tracing::info!(signal = name, "Shutting down: no new connections; finishing requests in flight.");
}

/// Tokens over plain HTTP are readable on the network; an ingress may terminate TLS, so only warn.
fn warn_if_plain_http(config: &Config) {
    let jwt = config.auth.mode == Some(crate::config::AuthModeConfig::Jwt);
    if jwt && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.server.listen,
            "Serving plain HTTP on a non-loopback address with auth enabled: bearer tokens cross the network in clear unless an ingress terminates TLS in front. Set [server.tls] to serve HTTPS."
        );
    }
    if config.kms.insecure_allow_plaintext_http {
        tracing::warn!(
            "kms.insecure_allow_plaintext_http = true: KMS endpoints on other hosts may be plain http, so KMS credentials and unwrapped data keys cross that hop in clear unless something else (a service mesh) encrypts it."
        );
    }
}
