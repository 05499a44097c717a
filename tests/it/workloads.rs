//! Machine identities: workers authenticate with workload tokens (a Kubernetes service-account token, a
//! GCP service-account ID token) and policies admit them by `sub:` principals, scoped to an issuer by
//! name where two clusters share subject names.

use codec_server::auth::policy::{OnDeny, PolicyRule};
use codec_server::config::{AuthModeConfig, Config, IssuerConfig};
use codec_server::protocol::Payload;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::audit::flushed_rows;
use crate::helpers::{TestApp, error_code, payload, read_payloads, to_json};
use crate::support::jwks_server::JwksServer;
use crate::support::tokens::{AUDIENCE, ISSUER, issuer, now, sign, token};

const PROD_CLUSTER: &str = "https://oidc.eks.eu-west-1.amazonaws.test/id/PROD1234";
const STAGING_CLUSTER: &str = "https://container.googleapis.test/v1/projects/p/locations/l/clusters/staging";
/// The audience the projected service-account volume asks for.
const WORKLOAD_AUDIENCE: &str = "temporal-codec";

/// A token shaped exactly like a projected Kubernetes service-account token.
fn service_account_token(cluster: &str, k8s_namespace: &str, name: &str) -> String {
    let claims = json!({
        "aud": [WORKLOAD_AUDIENCE],
        "exp": now() + 3600,
        "iat": now(),
        "nbf": now(),
        "iss": cluster,
        "jti": format!("{k8s_namespace}-{name}-{}", now()),
        "kubernetes.io": {
            "namespace": k8s_namespace,
            "node": { "name": "ip-10-0-1-7.eu-west-1.compute.internal", "uid": "6b1f6a5e-0c33-4a7b-9c1f-1b1e0c1d0a01" },
            "pod": { "name": format!("{name}-7d9c8b5f4-x2x9z"), "uid": "0d8a1f9e-3b0a-4c6e-8f44-6c1c4c3f7a11" },
            "serviceaccount": { "name": name, "uid": "a3c5e1f0-9b7d-4e2a-8c6b-5d4f3e2a1b0c" },
            "warnafter": now() + 3000
        },
        "sub": format!("system:serviceaccount:{k8s_namespace}:{name}"),
    });
    sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims)
}

/// A Google service-account ID token (the email is the service account's).
fn gcp_service_account_id_token(email: &str) -> String {
    let claims = json!({
        "aud": AUDIENCE, "azp": "112233445566778899000", "email": email, "email_verified": true,
        "exp": now() + 3600, "iat": now(), "iss": ISSUER, "sub": "112233445566778899000",
    });
    sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims)
}

fn cluster(url: &str, name: &str, jwks_url: &str) -> IssuerConfig {
    IssuerConfig {
        name: Some(name.into()),
        issuer: url.into(),
        audiences: vec![WORKLOAD_AUDIENCE.into()],
        email_claim: "none".into(),
        ..issuer(jwks_url)
    }
}

fn rule(pattern: &str, decode: &[&str], encode: &[&str]) -> PolicyRule {
    PolicyRule {
        pattern: pattern.into(),
        decode: decode.iter().map(|s| (*s).into()).collect(),
        encode: encode.iter().map(|s| (*s).into()).collect(),
        on_deny: OnDeny::Reject,
        passthrough_without_token: false,
    }
}

fn workload_config(c: &mut Config, jwks_url: &str) {
    c.auth.mode = Some(AuthModeConfig::Jwt);
    c.auth.issuers = vec![
        issuer(jwks_url),
        cluster(PROD_CLUSTER, "prod-eks", jwks_url),
        cluster(STAGING_CLUSTER, "staging-gke", jwks_url),
    ];
    c.auth.policies = vec![
        rule(
            "payments",
            &["sub@prod-eks:system:serviceaccount:payments:worker", "reporting@proj-1.iam.gserviceaccount.com"],
            &["sub:system:serviceaccount:payments:*"],
        ),
        rule("marketing", &["sub:system:serviceaccount:marketing:*"], &["sub:system:serviceaccount:marketing:*"]),
        rule("anyone", &["*"], &["*"]),
        rule("people", &["alice@example.com"], &["alice@example.com"]),
    ];
}

async fn call(app: &TestApp, op: &str, ns: &str, bearer: &str, payloads: &[Payload]) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/{op}")))
        .header("content-type", "application/json")
        .header("x-namespace", ns)
        .header("authorization", format!("Bearer {bearer}"))
        .body(to_json(payloads).to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_service_account_encodes_only_in_the_namespaces_its_subject_is_allowed() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| workload_config(c, &url)).await;
    let worker = service_account_token(PROD_CLUSTER, "payments", "worker");

    let response = call(&app, "encode", "payments", &worker, &[payload(b"{\"amount\":42}")]).await;
    assert_eq!(response.status(), 200);
    let sealed = read_payloads(response).await;
    let response = call(&app, "decode", "payments", &worker, &sealed).await;
    assert_eq!(response.status(), 200);
    assert_eq!(read_payloads(response).await, vec![payload(b"{\"amount\":42}")]);

    for ns in ["marketing", "anyone", "people"] {
        let response = call(&app, "encode", ns, &worker, &[payload(b"plain")]).await;
        assert_eq!(response.status(), 403, "{ns}: a payments worker is not allowed here");
        assert_eq!(error_code(response).await, "forbidden");
    }
    let marketing = service_account_token(PROD_CLUSTER, "marketing", "worker");
    assert_eq!(call(&app, "encode", "payments", &marketing, &[payload(b"x")]).await.status(), 403);
    assert_eq!(call(&app, "decode", "payments", &marketing, &sealed).await.status(), 403);
    assert_eq!(call(&app, "encode", "marketing", &marketing, &[payload(b"x")]).await.status(), 200);
}

#[tokio::test]
async fn an_issuer_scoped_subject_admits_only_that_clusters_service_account() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| workload_config(c, &url)).await;
    let prod = service_account_token(PROD_CLUSTER, "payments", "worker");
    let staging = service_account_token(STAGING_CLUSTER, "payments", "worker");
    let sealed = read_payloads(call(&app, "encode", "payments", &staging, &[payload(b"s")]).await).await;

    assert_eq!(call(&app, "decode", "payments", &prod, &sealed).await.status(), 200);
    let response = call(&app, "decode", "payments", &staging, &sealed).await;
    assert_eq!(response.status(), 403, "same subject, other cluster: `sub@prod-eks:` does not admit it");

    // An issuer the server does not trust is 401, whatever its subject.
    let unknown = service_account_token("https://oidc.unknown.test/id/X", "payments", "worker");
    assert_eq!(call(&app, "decode", "payments", &unknown, &sealed).await.status(), 401);
}

#[tokio::test]
async fn workloads_are_never_admitted_by_email_rules_or_star() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| workload_config(c, &url)).await;

    // `*` means "anyone with a verified email": a person, not every pod of every trusted cluster.
    let worker = service_account_token(PROD_CLUSTER, "payments", "worker");
    assert_eq!(call(&app, "encode", "anyone", &worker, &[payload(b"x")]).await.status(), 403);
    assert_eq!(call(&app, "encode", "anyone", &token("bob@example.com"), &[payload(b"x")]).await.status(), 200);

    // A cluster issuer has `email_claim = "none"`: an `email` claim in its tokens is not believed.
    let claims: Value = json!({
        "aud": WORKLOAD_AUDIENCE, "exp": now() + 3600, "iat": now(), "iss": PROD_CLUSTER,
        "sub": "system:serviceaccount:default:default", "email": "alice@example.com", "email_verified": true,
    });
    let spoof = sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims);
    assert_eq!(call(&app, "encode", "people", &spoof, &[payload(b"x")]).await.status(), 403);
    assert_eq!(call(&app, "encode", "people", &token("alice@example.com"), &[payload(b"x")]).await.status(), 200);
}

#[tokio::test]
async fn a_gcp_service_account_is_admitted_by_its_email_and_audit_rows_name_every_subject() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| workload_config(c, &url)).await;
    let worker = service_account_token(PROD_CLUSTER, "payments", "worker");
    let sealed = read_payloads(call(&app, "encode", "payments", &worker, &[payload(b"r")]).await).await;

    let reporting = gcp_service_account_id_token("Reporting@proj-1.iam.gserviceaccount.com");
    assert_eq!(call(&app, "decode", "payments", &reporting, &sealed).await.status(), 200);
    let other = gcp_service_account_id_token("other@proj-1.iam.gserviceaccount.com");
    assert_eq!(call(&app, "decode", "payments", &other, &sealed).await.status(), 403);

    let rows = flushed_rows(&app).await;
    // (issuer, subject, email, outcome) of each row, oldest first.
    type Who<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);
    let who: Vec<Who> = rows
        .iter()
        .map(|r| (r.issuer.as_deref(), r.subject.as_deref(), r.email.as_deref(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        who,
        vec![
            (Some(PROD_CLUSTER), Some("system:serviceaccount:payments:worker"), None, "success"),
            (Some(ISSUER), Some("112233445566778899000"), Some("reporting@proj-1.iam.gserviceaccount.com"), "success"),
            (Some(ISSUER), Some("112233445566778899000"), Some("other@proj-1.iam.gserviceaccount.com"), "denied"),
        ]
    );
}
