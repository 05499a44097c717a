//! The one integration-test binary (one link on 2 cores): a real server per test on a free port.

mod helpers;
mod roundtrip;
mod support;
