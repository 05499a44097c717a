//! HTTP routes. Start here to follow a request: `codec` finds the operation from the path suffix and
//! hands a validated `CodecRequest` to `encode` or `decode`.

pub mod audit_trail;
pub mod codec;
pub mod decode;
pub mod encode;
pub mod health;
pub mod metrics;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(health::healthz))
            .default_service(web::to(health::method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(web::to(health::method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(web::to(health::method_not_allowed)),
    )
    .default_service(web::to(codec::dispatch));
}
