//! HTTP routes. Start here to follow a request: `codec` finds the operation from the path suffix,
//! hands a validated `CodecRequest` to `encode` or `decode`, and writes the payloads they return.
//! Dependencies point one way: `codec` → `encode`/`decode` → `audit_trail` (the steps both share).

pub mod audit_trail;
pub mod codec;
pub mod decode;
pub mod encode;
pub mod health;
pub mod metrics;

use actix_web::web;

/// Registers every route on one listener (no `server.admin_listen`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_admin(cfg);
    cfg.default_service(web::to(codec::dispatch));
}

/// The main listener when an admin listener exists: the codec routes, and `/healthz` kept for
/// probes and load balancers configured before the admin port existed. `/readyz` and `/metrics` are
/// not here, so an ingress routing `/` to this port does not publish them.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz()).default_service(web::to(codec::dispatch));
}

/// `/healthz`, `/readyz` and `/metrics` (the admin listener serves only these; anything else is 404).
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz())
        .service(
            web::resource("/readyz")
                .route(web::get().to(health::readyz))
                .default_service(web::to(health::method_not_allowed)),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics::metrics))
                .default_service(web::to(health::method_not_allowed)),
        );
}

fn healthz() -> actix_web::Resource {
    web::resource("/healthz").route(web::get().to(health::healthz)).default_service(web::to(health::method_not_allowed))
}
