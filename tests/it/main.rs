//! The one integration-test binary (one link on 2 cores): a real server per test on a free port.

mod auth;
mod caching;
mod config_files;
mod cors;
mod crypto_vectors;
mod envelope_security;
mod errors;
mod helpers;
mod legacy;
mod namespaces;
mod protocol;
mod roundtrip;
mod support;
mod temporal_cli;
