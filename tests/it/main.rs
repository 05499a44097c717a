//! The one integration-test binary (one link on 2 cores): a real server per test on a free port.

mod audit;
mod audit_cli;
mod audit_databases;
mod audit_tls;
mod auth;
mod browser;
mod caching;
mod config_files;
mod cors;
mod crypto_vectors;
mod dockerfile;
mod envelope_security;
mod errors;
mod helm;
mod helm_production;
mod helpers;
mod hostile;
mod hostile_connections;
mod jws_vectors;
#[cfg(feature = "aws-kms")]
mod kms_aws;
#[cfg(feature = "azure-keyvault")]
mod kms_azure;
#[cfg(all(feature = "aws-kms", feature = "gcp-kms"))]
mod kms_faults;
#[cfg(feature = "gcp-kms")]
mod kms_gcp;
#[cfg(feature = "vault-transit")]
mod kms_vault;
mod legacy;
mod namespaces;
mod no_leaks;
mod ops;
mod protocol;
mod roundtrip;
mod support;
mod temporal_cli;
#[cfg(feature = "aws-kms")]
mod temporal_proxy;
mod webui;
mod workloads;
