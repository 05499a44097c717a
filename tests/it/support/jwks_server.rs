//! A JWKS endpoint for the auth tests: serves a key set we choose, counts fetches, and can fail,
//! stall or answer oversized on demand.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// How the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    Fail,
    Slow(Duration),
    Oversized,
}

struct Inner {
    keys: Mutex<Vec<String>>,
    behaviour: Mutex<Behaviour>,
    fetches: AtomicU64,
}

/// The running endpoint.
pub struct JwksServer {
    pub url: String,
    inner: Arc<Inner>,
}

/// The public JWK of a fixture key (tests/fixtures/jwt/public-jwks.json).
pub fn public_jwk(kid: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!("../../fixtures/jwt/public-jwks.json")).expect("fixture JWKS");
    all[kid].clone()
}

impl JwksServer {
    /// Serves the fixture keys named by `kids`.
    pub fn start(kids: &[&str]) -> JwksServer {
        let inner = Arc::new(Inner {
            keys: Mutex::new(kids.iter().map(|k| (*k).to_owned()).collect()),
            behaviour: Mutex::new(Behaviour::Normal),
            fetches: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://127.0.0.1:{}/.well-known/jwks.json", listener.local_addr().unwrap().port());
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route("/.well-known/jwks.json", web::get().to(serve))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        JwksServer { url, inner }
    }

    /// Replaces the published keys (rotation).
    pub fn publish(&self, kids: &[&str]) {
        *self.inner.keys.lock().unwrap() = kids.iter().map(|k| (*k).to_owned()).collect();
    }

    /// Changes how the endpoint answers.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.inner.behaviour.lock().unwrap() = behaviour;
    }

    /// Requests received so far.
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::SeqCst)
    }
}

async fn serve(inner: web::Data<Inner>) -> HttpResponse {
    inner.fetches.fetch_add(1, Ordering::SeqCst);
    let behaviour = *inner.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Fail => return HttpResponse::InternalServerError().finish(),
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Oversized => {
            let padding = "x".repeat(1 << 20);
            return HttpResponse::Ok().json(json!({ "keys": [], "padding": padding }));
        }
        Behaviour::Normal => {}
    }
    let keys: Vec<Value> = inner.keys.lock().unwrap().iter().map(|k| public_jwk(k)).collect();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}
