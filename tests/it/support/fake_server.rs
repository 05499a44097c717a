//! The HTTP side the KMS FAKES and the moto proxy share (`gcp_fake`, `azure_fake`, `moto::KmsProxy`):
//! a one-worker actix server on a
//! loopback port that can be stopped and started again on the same port (so a client's configured
//! endpoint stays right across an outage), and that stops when dropped.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, FromRequest, Handler, HttpServer, Responder, web};

type Listen = Box<dyn Fn(TcpListener) -> Server + Send + Sync>;

/// A running (or stopped) fake.
pub struct FakeServer {
    port: u16,
    /// Set while stopped: the fake's handler answers 503 to a request that still arrives on a
    /// connection the client kept alive, never a real answer.
    stopped: Arc<AtomicBool>,
    listen: Listen,
    handle: Option<ServerHandle>,
}

impl FakeServer {
    /// Serves every request with `handler` (which reads `data`), over TLS when `tls` is given, on a
    /// free loopback port. `stopped` is the flag the handler checks.
    pub fn start<S, F, Args>(
        what: &str,
        data: web::Data<S>,
        handler: F,
        tls: Option<rustls::ServerConfig>,
        stopped: Arc<AtomicBool>,
    ) -> FakeServer
    where
        S: Send + Sync + 'static,
        F: Handler<Args> + Clone + Send + Sync + 'static,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("bind the {what}: {e}"));
        let port = listener.local_addr().expect("port").port();
        let listen: Listen = Box::new(move |listener| {
            let (data, handler) = (data.clone(), handler.clone());
            let server =
                HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handler.clone())))
                    .workers(1)
                    .disable_signals();
            match &tls {
                Some(tls) => server.listen_rustls_0_23(listener, tls.clone()),
                None => server.listen(listener),
            }
            .expect("listen")
            .run()
        });
        let mut fake = FakeServer { port, stopped, listen, handle: None };
        fake.serve(listener);
        fake
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn serve(&mut self, listener: TcpListener) {
        let server = (self.listen)(listener);
        self.handle = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops listening: new connections are refused, and a request on a kept-alive one gets 503.
    pub async fn stop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.stop(false).await;
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).expect("rebind the fake's port");
        self.stopped.store(false, Ordering::SeqCst);
        self.serve(listener);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let (Some(handle), Ok(runtime)) = (self.handle.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { handle.stop(false).await });
        }
    }
}
