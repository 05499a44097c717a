//! The one integration-test binary (one link on 2 cores): a real server per test on a free port.

mod caching;
mod config_files;
mod helpers;
mod roundtrip;
mod support;
mod temporal_cli;
