//! Builds and runs the HTTP server: listener (plain or TLS), middleware (request ids and access log,
//! metrics, CORS), routes, shared state, and the graceful-shutdown deadline.

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
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(crate::cors::cors_middleware(&cors))
                .wrap(actix_web::middleware::from_fn(crate::cors::json_refusals))
                .wrap(actix_web::middleware::from_fn(crate::metrics::middleware))
                .wrap(actix_web::middleware::from_fn(crate::request_id::middleware))
                .app_data(app_state.clone())
                .configure(crate::routes::configure)
        })
        // On SIGTERM/SIGINT actix stops accepting, lets in-flight requests finish for this long, then
        // `run_until_stopped` returns (whole seconds: round up so a configured deadline is never cut short).
        .shutdown_timeout(config.server.shutdown_timeout.as_secs_f64().ceil() as u64);
        server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls)?,
            None => server.listen(listener)?,
        };
        if let Some(workers) = config.server.workers {
            server = server.workers(workers);
        }
        Ok(Application { port, server: server.run(), state })
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
        let served = self.server.await;
        // In-flight requests are done: write every queued audit event before exiting.
        self.state.audit.shutdown().await;
        served
    }
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
