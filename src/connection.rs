//! Requests in service at once on one connection. HTTP/1.1 serves one request at a time per connection;
//! HTTP/2 multiplexes streams, and actix-http 3 neither advertises `SETTINGS_MAX_CONCURRENT_STREAMS` nor
//! lets it be set: every stream a client opens becomes a running handler at once. Without a bound, one
//! connection opening streams that announce a body and never send it holds a handler (~8 KiB) per
//! stream until `body_read_timeout`, as many as the client likes.
//!
//! What must stay true: at most `server.max_concurrent_streams` requests of one connection are in service;
//! one more is answered 503 `overloaded` (with `Retry-After`) at once, before authentication and without
//! its body being read; a slot is given back when its handler finishes or is dropped (client reset,
//! closed connection).

use std::cell::Cell;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::error::ApiError;
use crate::protocol::ProtocolError;

/// One connection's count of requests in service, and its limit (kept in the connection's data).
#[derive(Clone, Debug)]
pub struct InService {
    count: Rc<Cell<usize>>,
    limit: usize,
}

/// Holds one slot of a connection until dropped.
struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl InService {
    /// For `HttpServer::on_connect`: gives every new connection its own count, bounded by `limit`.
    pub fn on_connect(limit: usize) -> impl Fn(&dyn std::any::Any, &mut Extensions) + Send + Sync + Clone + 'static {
        move |_io, data| {
            data.insert(InService { count: Rc::default(), limit });
        }
    }

    /// Takes a slot, or `None` when the connection already has `limit` requests in service.
    fn enter(&self) -> Option<Slot> {
        let n = self.count.get();
        (n < self.limit).then(|| {
            self.count.set(n + 1);
            Slot(self.count.clone())
        })
    }
}

/// Middleware: refuses a request past its connection's limit; otherwise holds a slot while it is served.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    // Connections from `on_connect` always carry a count; a request without one (unit tests) is not limited.
    let slot = match req.request().conn_data::<InService>() {
        Some(in_service) => match in_service.enter() {
            Some(slot) => Some(slot),
            None => {
                tracing::debug!("Too many requests in service on one connection; refused.");
                return Ok(req.error_response(ApiError::from(ProtocolError::Overloaded)).map_into_right_body());
            }
        },
        None => None,
    };
    let response = next.call(req).await;
    drop(slot);
    Ok(response?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let in_service = InService { count: Rc::default(), limit: 2 };
        let first = in_service.enter().expect("first");
        let second = in_service.enter().expect("second");
        assert!(in_service.enter().is_none(), "a third is refused");
        drop(first);
        let third = in_service.enter().expect("a slot came back");
        drop((second, third));
        assert_eq!(in_service.count.get(), 0);
    }
}
