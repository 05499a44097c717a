//! The PostgreSQL audit database over TLS with `sslmode=verify-full` against a private CA (issue 14):
//! RDS and Cloud SQL certificates chain to their provider's CA, not to a public root, so the server must
//! trust a CA file (`audit.database_ca_file`, the chart mounts it from a Secret). A CA made in the test
//! signs the local cluster's certificate; the same cluster is refused without the file, and with another
//! CA's file.

use std::sync::Arc;
use std::time::Duration;

use codec_server::clock::ManualClock;
use codec_server::config::{Config, Mode, Secret};
use codec_server::startup::Application;
use sqlx::Connection;

use crate::audit::flushed_rows;
use crate::helpers::{TestApp, payload};
use crate::support::postgres::Postgres;
use crate::support::tls::TestCa;

fn tls_config(config: &mut Config, pg: &Postgres, ca_file: Option<std::path::PathBuf>) {
    config.audit.database_url = Some(Secret::new(format!("{}?sslmode=verify-full", pg.url)));
    config.audit.database_ca_file = ca_file;
    config.audit.write_timeout = Duration::from_secs(2);
}

/// Builds a server against `pg` (migrations at start connect at once) and returns the error text.
async fn refused(pg: &Postgres, ca_file: Option<std::path::PathBuf>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::dev();
    config.data_dir = dir.path().to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    tls_config(&mut config, pg, ca_file);
    match Application::build_with_clock(&config, Mode::Dev, Arc::new(ManualClock::default())).await {
        Ok(_) => panic!("the server connected to a database whose certificate it must not trust"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn verify_full_trusts_the_configured_ca_file_and_refuses_without_it_or_with_another_ca() {
    let ca = TestCa::new("audit database test CA");
    let cert = ca.server_cert("postgres");
    let pg = Postgres::start_tls(&cert.cert_pem, &cert.key_pem);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, TestCa::new("some other CA").pem()).unwrap();

    let without = refused(&pg, None).await;
    let other = refused(&pg, Some(other_file)).await;
    let file = ca_file.clone();
    let app = TestApp::spawn_with(|c| tls_config(c, &pg, Some(file))).await;
    let sealed = app.encode("ns", vec![payload(b"\"over tls\"")]).await;
    app.decode("ns", &sealed).await;

    assert!(without.contains("certificate") || without.contains("Certificate"), "{without}");
    assert!(other.contains("certificate") || other.contains("Certificate"), "{other}");
    assert!(!without.contains("audit-test-password"), "the error names no password: {without}");
    // The server's own connections really are TLS: ask PostgreSQL about them with the same URL.
    let url = app.config.audit_database_url();
    assert!(url.contains("sslrootcert=") && url.contains("sslmode=verify-full"), "{url}");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect with the server's URL");
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(tls);
    let codec_connections: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'codec-server' AND NOT s.ssl",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(codec_connections, 0, "no plain connection from the server");
    let with_tls: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'codec-server' AND s.ssl",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(with_tls >= 1, "the server's pool is connected over TLS");
    let rows = flushed_rows(&app).await;
    assert_eq!(rows.len(), 2, "encode and decode are audited over TLS");
}
