//! Builds and runs the HTTP server: listener (plain or TLS), middleware (request ids and access log,
//! metrics, CORS), routes, shared state, and the graceful-shutdown deadline.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, CorsConfig, Mode};
use crate::state::AppState;

/// Request headers the Web UI and CLI send; always allowed.
pub const BASE_ALLOWED_HEADERS: [&str; 4] = ["content-type", "x-namespace", "authorization", "authorization-extras"];

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
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let port = listener.local_addr()?.port();
        let cors = config.cors.clone();
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(cors_middleware(&cors))
                .wrap(actix_web::middleware::from_fn(crate::metrics::middleware))
                .wrap(actix_web::middleware::from_fn(crate::request_id::middleware))
                .app_data(app_state.clone())
                .configure(crate::routes::configure)
        })
        // On SIGTERM/SIGINT actix stops accepting, lets in-flight requests finish for this long, then
        // `run_until_stopped` returns (whole seconds: round up so a configured deadline is never cut short).
        .shutdown_timeout(config.server.shutdown_timeout.as_secs_f64().ceil() as u64)
        // Slow or idle clients are cut off; request heads are also bounded by actix (96 headers, 128 KiB).
        .client_request_timeout(config.server.client_request_timeout)
        .keep_alive(config.server.keep_alive)
        .max_connections(config.server.max_connections_per_worker);
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

/// CORS per DESIGN §3: exact origins echoed with `Vary: Origin`, the UI's headers allowed, headers on
/// error responses too (the middleware wraps every response, errors included).
pub fn cors_middleware(config: &CorsConfig) -> Cors {
    let mut headers: Vec<String> = BASE_ALLOWED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    headers.extend(config.extra_allowed_headers.iter().map(|h| h.to_ascii_lowercase()));
    let mut cors = Cors::default()
        .allowed_methods(["POST", "GET", "OPTIONS"])
        .allowed_headers(headers)
        .max_age(usize::try_from(config.max_age.as_secs()).unwrap_or(usize::MAX));
    for origin in &config.allowed_origins {
        cors = cors.allowed_origin(origin.trim_end_matches('/'));
    }
    if config.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}
