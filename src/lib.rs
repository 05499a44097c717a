//! An organization-level Temporal Codec Server.
//!
//! It seals Temporal payloads with envelope encryption (AES-256-GCM under keys derived from a data key
//! that a KMS wraps), serves the Remote Data Encoding protocol (`/encode`, `/decode`) to the
//! Web UI, the CLI and workers, and decides per namespace who may see what.
//!
//! Follow a request from `routes`: `protocol` turns HTTP into clean values, `auth` makes the `Grant`,
//! `codec` seals or opens payloads with keys from `kms`, and `error` maps every failure to a response.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connection;
pub mod cors;
pub mod decimal;
pub mod error;
pub mod glob;
pub mod kms;
pub mod metrics;
pub mod protocol;
pub mod readiness;
pub mod request_id;
pub mod routes;
pub mod secret;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
