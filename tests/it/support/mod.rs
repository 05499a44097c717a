pub mod jwks_server;
pub mod temporal;
