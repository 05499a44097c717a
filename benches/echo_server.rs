//! The "echo" baseline of `scripts/bench.sh`: the HTTP + JSON + base64 cost of a simple codec server,
//! with no crypto, no auth and no audit. It parses a `Payloads` body the naive way (serde structs of
//! strings), base64-decodes every metadata value and every `data` field, re-encodes them and answers
//! with the same document. Whatever our server does above this is the price of its own work.
//!
//! Built as the `echo-baseline` bin (see Cargo.toml for why not an example):
//! `cargo run --release --bin echo-baseline -- 127.0.0.1:18090 [workers]` (workers default to 1).

use std::collections::BTreeMap;

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
struct Payloads {
    payloads: Vec<Payload>,
}

#[derive(Deserialize, Serialize)]
struct Payload {
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    data: String,
}

fn reencode(text: &str) -> Result<String, base64::DecodeError> {
    Ok(STANDARD.encode(STANDARD.decode(text)?))
}

async fn echo(body: web::Bytes) -> HttpResponse {
    let Ok(mut doc) = serde_json::from_slice::<Payloads>(&body) else {
        return HttpResponse::BadRequest().body("malformed JSON");
    };
    for payload in &mut doc.payloads {
        for value in payload.metadata.values_mut() {
            let Ok(again) = reencode(value) else { return HttpResponse::BadRequest().body("bad base64") };
            *value = again;
        }
        let Ok(again) = reencode(&payload.data) else { return HttpResponse::BadRequest().body("bad base64") };
        payload.data = again;
    }
    match serde_json::to_vec(&doc) {
        Ok(json) => HttpResponse::Ok().content_type("application/json").body(json),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    HttpServer::new(|| {
        App::new()
            // The same 16 MiB body limit as our server's default, so 1 MiB payloads are accepted.
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::post().to(echo))
    })
    .workers(workers)
    .bind(listen)?
    .run()
    .await
}
