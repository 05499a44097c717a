//! Reading a request body only after the caller is authorized, within a deadline, and within one
//! budget of body bytes held across all connections.
//!
//! What must stay true: a request that is refused keeps none of its body (a small one, at most 64 KiB,
//! is read and dropped so the connection stays usable; a larger one is not read at all); a body that trickles in is
//! cut off at `body_read_timeout` (408); and the bytes of all bodies being read or served at once never
//! exceed `max_inflight_body_bytes` (503 with `Retry-After` past it), so memory stays bounded however
//! many connections a client opens.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProtocolError;

/// A refused request's body is read (and dropped) only up to this size, to keep its connection alive.
pub const DISCARD_MAX_BYTES: usize = 64 * 1024;
/// ...and only for this long.
const DISCARD_DEADLINE: Duration = Duration::from_secs(5);

/// The shared budget of body bytes and the per-request limits.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    in_flight: Arc<Semaphore>,
    capacity: usize,
    /// Largest body one request may send.
    pub max_body_bytes: usize,
    /// Deadline for receiving the whole body, from the moment it is first read.
    pub read_timeout: Duration,
}

/// Body bytes this request holds in the shared budget; released when dropped (after the response).
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl BodyBudget {
    /// A budget of `capacity` bytes across all requests. `capacity` is at least `max_body_bytes`
    /// (config validation), so one request of the largest size always fits an idle server.
    pub fn new(capacity: usize, max_body_bytes: usize, read_timeout: Duration) -> BodyBudget {
        BodyBudget { in_flight: Arc::new(Semaphore::new(capacity)), capacity, max_body_bytes, read_timeout }
    }

    /// Bytes currently held (for `/metrics`).
    pub fn in_use(&self) -> usize {
        self.capacity.saturating_sub(self.in_flight.available_permits())
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Reads the whole body. With a `Content-Length`, its bytes are reserved before anything is read;
    /// a chunked body reserves as it arrives.
    pub async fn read(
        &self,
        mut body: web::Payload,
        declared: Option<usize>,
    ) -> Result<(web::Bytes, InFlight), ProtocolError> {
        let limit = self.max_body_bytes;
        if declared.is_some_and(|len| len > limit) {
            return Err(ProtocolError::BodyTooLarge { limit });
        }
        let mut held = match declared {
            Some(len) => self.reserve(len)?,
            None => None,
        };
        let mut reserved = declared.unwrap_or(0);
        let receive = async {
            let mut bytes = web::BytesMut::with_capacity(reserved);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|_| ProtocolError::BodyRead)?;
                let total = bytes.len() + chunk.len();
                if total > limit {
                    return Err(ProtocolError::BodyTooLarge { limit });
                }
                // Without a Content-Length (or past it), reserve what arrives before keeping it.
                if total > reserved {
                    if let Some(more) = self.reserve(total - reserved)? {
                        match held.as_mut() {
                            Some(permit) => permit.merge(more),
                            None => held = Some(more),
                        }
                    }
                    reserved = total;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes.freeze())
        };
        let bytes = tokio::time::timeout(self.read_timeout, receive)
            .await
            .map_err(|_| ProtocolError::BodyTimeout { seconds: self.read_timeout.as_secs() })??;
        Ok((bytes, InFlight(held)))
    }

    /// After a refusal: reads and drops a small declared body so the HTTP/1.1 connection stays usable
    /// (closing a socket with unread bytes resets it, and a keep-alive client then loses its next
    /// request). A body over [`DISCARD_MAX_BYTES`], or of unknown length, is not read at all: the
    /// connection is closed instead. Nothing is kept, so this costs no memory.
    pub async fn discard(&self, mut body: web::Payload, declared: Option<usize>) {
        if declared.is_none_or(|len| len > DISCARD_MAX_BYTES) {
            return;
        }
        let drain = async {
            let mut left = DISCARD_MAX_BYTES;
            while let Some(Ok(chunk)) = body.next().await {
                left = match left.checked_sub(chunk.len()) {
                    Some(left) => left,
                    None => return,
                };
            }
        };
        let _ = tokio::time::timeout(self.read_timeout.min(DISCARD_DEADLINE), drain).await;
    }

    fn reserve(&self, bytes: usize) -> Result<Option<OwnedSemaphorePermit>, ProtocolError> {
        if bytes == 0 {
            return Ok(None);
        }
        let n = u32::try_from(bytes).map_err(|_| ProtocolError::BodyTooLarge { limit: self.max_body_bytes })?;
        match self.in_flight.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(ProtocolError::Overloaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_capacity_and_come_back_on_drop() {
        let budget = BodyBudget::new(100, 80, Duration::from_secs(1));
        let a = budget.reserve(60).unwrap();
        assert_eq!(budget.in_use(), 60);
        assert!(matches!(budget.reserve(41), Err(ProtocolError::Overloaded)));
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        assert!(budget.reserve(0).unwrap().is_none());
    }
}
