//! JWT authentication and per-namespace policies against a real JWKS endpoint, with tokens minted
//! here (SECURITY-TESTS 25-30).

use std::time::Duration;

use codec_server::auth::AuthMode;
use codec_server::auth::jwks::KeySource;
use codec_server::auth::policy::{OnDeny, PolicyRule};
use codec_server::config::{AuthModeConfig, Config};
use codec_server::protocol::Payload;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, payload, read_payloads, to_json};
use crate::support::jwks_server::{Behaviour, JwksServer, public_jwk};
use crate::support::tokens::{ISSUER, UI_CLIENT, claims, fixture, issuer, now, sign, sign_with_header, token};

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn rule(pattern: &str, decode: &[&str], encode: &[&str], on_deny: OnDeny) -> PolicyRule {
    PolicyRule {
        pattern: pattern.into(),
        decode: decode.iter().map(|s| (*s).into()).collect(),
        encode: encode.iter().map(|s| (*s).into()).collect(),
        on_deny,
        passthrough_without_token: false,
    }
}

/// JWT auth with the policies these tests use (also used by the audit tests).
pub fn jwt_config(c: &mut Config, jwks_url: &str) {
    c.auth.mode = Some(AuthModeConfig::Jwt);
    c.auth.issuers = vec![issuer(jwks_url)];
    c.auth.policies = vec![
        rule(
            "payments",
            &["alice@example.com", "*@readers.example", "group:oncall"],
            &["writer@example.com"],
            OnDeny::Reject,
        ),
        PolicyRule {
            passthrough_without_token: true,
            ..rule("open-*", &["alice@example.com"], &["writer@example.com"], OnDeny::Passthrough)
        },
        rule("lenient-*", &["alice@example.com"], &["writer@example.com"], OnDeny::Passthrough),
    ];
}

async fn spawn(jwks: &JwksServer) -> TestApp {
    let url = jwks.url.clone();
    TestApp::spawn_with(move |c| jwt_config(c, &url)).await
}

/// POSTs Payloads JSON with the given headers.
async fn call(
    app: &TestApp,
    path: &str,
    ns: &str,
    headers: &[(&str, &str)],
    payloads: &[Payload],
) -> reqwest::Response {
    let mut request =
        app.client.post(app.url(path)).header("content-type", "application/json").header("x-namespace", ns);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.body(to_json(payloads).to_string()).send().await.unwrap()
}

async fn status_with(app: &TestApp, bearer: &str) -> u16 {
    let auth = format!("Bearer {bearer}");
    call(app, "/decode", "payments", &[("authorization", &auth)], &[payload(b"{}")]).await.status().as_u16()
}

/// Seals a payload in `ns` as the writer.
async fn sealed(app: &TestApp, ns: &str, data: &[u8]) -> Vec<Payload> {
    let auth = format!("Bearer {}", token("writer@example.com"));
    let response = call(app, "/encode", ns, &[("authorization", &auth)], &[payload(data)]).await;
    assert_eq!(response.status(), 200);
    read_payloads(response).await
}

fn jwks_fetches(app: &TestApp) -> u64 {
    match app.state.authorizer.mode() {
        AuthMode::Jwt { verifier, .. } => match &verifier.issuers()[0].keys {
            KeySource::Remote(cache) => cache.fetches(),
            KeySource::Static(_) => 0,
        },
        AuthMode::Disabled => 0,
    }
}

#[tokio::test]
async fn a_valid_token_decodes_and_every_forged_or_misused_one_gets_401() {
    let jwks = JwksServer::start(&["rsa-1", "ec-1"]);
    let app = spawn(&jwks).await;
    assert_eq!(status_with(&app, &token("alice@example.com")).await, 200);

    let header_json = |alg: &str, kid: &str| json!({ "alg": alg, "typ": "JWT", "kid": kid });
    let forged = [
        // alg: none, with and without a signature part.
        ("alg none", format!("{}.{}.", b64(&header_json("none", "rsa-1")), b64(&claims(Some("alice@example.com"))))),
        // HS256 keyed with the RSA public key as the shared secret.
        ("HS256 with the public key as secret", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("rsa-1".into());
            let secret = EncodingKey::from_secret(&fixture("rsa-1.pub.pem"));
            jsonwebtoken::encode(&h, &claims(Some("alice@example.com")), &secret).unwrap()
        }),
        (
            "RS512 outside the allowlist",
            sign("rsa-1", Algorithm::RS512, Some("rsa-1"), &claims(Some("alice@example.com"))),
        ),
        (
            "PS256 outside the allowlist",
            sign("rsa-1", Algorithm::PS256, Some("rsa-1"), &claims(Some("alice@example.com"))),
        ),
        ("ES256 naming an RSA kid", sign("ec-1", Algorithm::ES256, Some("rsa-1"), &claims(Some("alice@example.com")))),
        ("RS256 naming an EC kid", sign("rsa-1", Algorithm::RS256, Some("ec-1"), &claims(Some("alice@example.com")))),
        (
            "wrong issuer",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c["iss"] = json!("https://evil.test/");
                c
            }),
        ),
        (
            "issuer with another trailing slash",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c["iss"] = json!("https://issuer.test");
                c
            }),
        ),
        (
            "wrong audience",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c["aud"] = json!("other-api");
                c
            }),
        ),
        (
            "missing audience",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c.as_object_mut().unwrap().remove("aud");
                c
            }),
        ),
        (
            "expired beyond leeway",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c["exp"] = json!(now() - 31);
                c
            }),
        ),
        (
            "nbf in the future",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c["nbf"] = json!(now() + 300);
                c
            }),
        ),
        (
            "missing exp",
            sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &{
                let mut c = claims(Some("alice@example.com"));
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        (
            "signed by a key nobody published",
            sign("rsa-attacker", Algorithm::RS256, Some("rsa-1"), &claims(Some("alice@example.com"))),
        ),
        ("tampered claims", {
            let good = token("alice@example.com");
            let parts: Vec<&str> = good.split('.').collect();
            format!("{}.{}.{}", parts[0], b64(&claims(Some("writer@example.com"))), parts[2])
        }),
    ];
    for (what, bearer) in &forged {
        let response =
            call(&app, "/decode", "payments", &[("authorization", &format!("Bearer {bearer}"))], &[payload(b"{}")])
                .await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(response.headers().get("www-authenticate").unwrap(), "Bearer", "{what}");
        assert_eq!(error_code(response).await, "unauthenticated", "{what}");
    }
    // Within the leeway an expired token still works.
    let mut c = claims(Some("alice@example.com"));
    c["exp"] = json!(now() - 5);
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &c)).await, 200);
}

#[tokio::test]
async fn jku_x5u_and_embedded_jwk_headers_are_never_followed() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let attacker = JwksServer::start(&["rsa-attacker"]);
    let app = spawn(&jwks).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-attacker".into());
    header.jku = Some(attacker.url.clone());
    header.x5u = Some(attacker.url.clone());
    header.jwk = Some(serde_json::from_value(public_jwk("rsa-attacker")).unwrap());
    let forged = sign_with_header("rsa-attacker", header, &claims(Some("alice@example.com")));
    assert_eq!(status_with(&app, &forged).await, 401);
    assert_eq!(attacker.fetches(), 0, "the token's jku/x5u must never be fetched");
}

#[tokio::test]
async fn tokens_come_only_from_a_well_formed_bearer_header() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let good = token("alice@example.com");
    for header in
        ["", "Bearer", "Basic dXNlcjpwYXNz", &format!("Token {good}"), &format!("Bearer {good}x!"), "Bearer a.b"]
    {
        let headers: Vec<(&str, &str)> = if header.is_empty() { vec![] } else { vec![("authorization", header)] };
        let response = call(&app, "/decode", "payments", &headers, &[payload(b"{}")]).await;
        assert_eq!(response.status(), 401, "{header:?}");
    }
    // A token in the query string or a cookie is ignored.
    let response = app
        .client
        .post(app.url(&format!("/decode?access_token={good}&token={good}")))
        .header("content-type", "application/json")
        .header("x-namespace", "payments")
        .header("cookie", format!("access_token={good}; Authorization=Bearer {good}"))
        .body(to_json(&[payload(b"{}")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_reader_decodes_but_cannot_encode_and_a_writer_cannot_read() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let sealed = sealed(&app, "payments", b"{\"card\":\"4111\"}").await;
    let reader = format!("Bearer {}", token("Alice@Example.COM"));
    let response = call(&app, "/decode", "payments", &[("authorization", &reader)], &sealed).await;
    assert_eq!(response.status(), 200, "email case must not matter");
    assert_eq!(read_payloads(response).await, vec![payload(b"{\"card\":\"4111\"}")]);

    let response = call(&app, "/encode", "payments", &[("authorization", &reader)], &[payload(b"x")]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "forbidden");

    let writer = format!("Bearer {}", token("writer@example.com"));
    let response = call(&app, "/decode", "payments", &[("authorization", &writer)], &sealed).await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.unwrap();
    assert!(!body.contains("4111") && !body.contains("eyJjYXJkIjoiNDExMSJ9"), "nothing of the payload: {body}");
    // No policy covers `marketing`: nobody gets in.
    let response = call(&app, "/decode", "marketing", &[("authorization", &reader)], &[payload(b"x")]).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn domain_patterns_and_groups_admit_and_a_missing_or_unverified_email_does_not() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    assert_eq!(status_with(&app, &token("bob@readers.example")).await, 200);
    assert_eq!(status_with(&app, &token("bob@evil-readers.example")).await, 403);
    let mut grouped = claims(Some("carol@elsewhere.example"));
    grouped["groups"] = json!(["oncall", "dev"]);
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &grouped)).await, 200);
    let mut no_email = claims(None);
    no_email["groups"] = json!(["oncall"]);
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &no_email)).await, 403);
    let mut unverified = claims(Some("alice@example.com"));
    unverified["email_verified"] = json!(false);
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &unverified)).await, 403);
}

#[tokio::test]
async fn the_email_can_come_from_the_verified_id_token_of_the_same_subject() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let access = format!("Bearer {}", sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims(None)));
    let id_token = |sub: &str, aud: &str, key: &str| {
        let c = json!({ "iss": ISSUER, "aud": aud, "sub": sub, "exp": now() + 600, "email": "alice@example.com" });
        sign(key, Algorithm::RS256, Some("rsa-1"), &c)
    };
    let decode = |extras: String| {
        let access = access.clone();
        let app = &app;
        async move {
            call(
                app,
                "/decode",
                "payments",
                &[("authorization", &access), ("authorization-extras", &extras)],
                &[payload(b"{}")],
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(decode(id_token("user-1", UI_CLIENT, "rsa-1")).await, 200);
    assert_eq!(decode(id_token("user-2", UI_CLIENT, "rsa-1")).await, 401, "another subject's ID token");
    assert_eq!(decode(id_token("user-1", "other-client", "rsa-1")).await, 401, "wrong ID-token audience");
    assert_eq!(decode(id_token("user-1", UI_CLIENT, "rsa-attacker")).await, 401, "unverifiable ID token");
    let no_extras = call(&app, "/decode", "payments", &[("authorization", &access)], &[payload(b"{}")]).await;
    assert_eq!(no_extras.status(), 403, "no email anywhere");
}

#[tokio::test]
async fn passthrough_namespaces_return_the_payloads_unchanged_but_never_for_encode() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let sealed = sealed(&app, "open-data", b"{\"secret\":1}").await;
    let stranger = format!("Bearer {}", token("stranger@example.com"));
    for headers in [vec![("authorization", stranger.as_str())], vec![]] {
        let response = call(&app, "/decode", "open-data", &headers, &sealed).await;
        assert_eq!(response.status(), 200);
        assert_eq!(read_payloads(response).await, sealed, "byte-identical, still sealed");
    }
    let response = call(&app, "/encode", "open-data", &[("authorization", &stranger)], &[payload(b"plain")]).await;
    assert_eq!(response.status(), 403, "encode must never echo plaintext");
    let response = call(&app, "/encode", "open-data", &[], &[payload(b"plain")]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn passthrough_never_covers_a_token_that_fails_verification() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let mut expired = claims(Some("stranger@example.com"));
    expired["exp"] = json!(now() - 3600);
    let expired = format!("Bearer {}", sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &expired));
    let forged = format!("Bearer {}", sign("rsa-attacker", Algorithm::RS256, Some("rsa-1"), &claims(Some("a@x.io"))));
    let stranger = format!("Bearer {}", token("stranger@example.com"));
    for ns in ["open-data", "lenient-data"] {
        let sealed = sealed(&app, ns, b"{\"secret\":1}").await;
        for (what, bearer) in
            [("expired", &expired), ("bad signature", &forged), ("garbage", &"Bearer a.b.c".to_owned())]
        {
            let response = call(&app, "/decode", ns, &[("authorization", bearer)], &sealed).await;
            assert_eq!(response.status(), 401, "{ns}: {what} token must be 401, not passed through");
            assert_eq!(error_code(response).await, "unauthenticated");
        }
        let response = call(&app, "/decode", ns, &[("authorization", &stranger)], &sealed).await;
        assert_eq!(response.status(), 200, "{ns}: a verified caller without permission gets the passthrough");
        assert_eq!(read_payloads(response).await, sealed);
    }
    // No token at all: passed through only where the rule opts in.
    let sealed_lenient = sealed(&app, "lenient-data", b"x").await;
    assert_eq!(call(&app, "/decode", "lenient-data", &[], &sealed_lenient).await.status(), 401);
    let sealed_open = sealed(&app, "open-data", b"x").await;
    assert_eq!(call(&app, "/decode", "open-data", &[], &sealed_open).await.status(), 200);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("codec_auth_passthrough_total{reason=\"policy\"} 2"), "{metrics}");
    assert!(metrics.contains("codec_auth_passthrough_total{reason=\"no-token\"} 1"), "{metrics}");
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_once_per_interval_and_rotation_is_picked_up() {
    let jwks = JwksServer::start(&["rsa-1"]);
    // This test is about single-flight refreshes, not fetch timeouts: the one refresh below runs while
    // 1,000 requests load the server, so on a loaded CI machine the tests' 500 ms fetch timeout could
    // fail it (and then every waiter gets 401, by design). A generous timeout keeps the test on its subject.
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| {
        jwt_config(c, &url);
        c.auth.issuers[0].jwks_timeout = Duration::from_secs(10);
    })
    .await;
    assert_eq!(status_with(&app, &token("alice@example.com")).await, 200);
    assert_eq!(jwks.fetches(), 1);

    // The issuer rotates to rsa-2. Within the refresh interval, 1,000 requests with the new kid
    // (distinct tokens, so none is served from the token cache) cause no fetch at all.
    jwks.publish(&["rsa-2"]);
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            let mut c = claims(Some("alice@example.com"));
            c["jti"] = json!(i);
            sign("rsa-2", Algorithm::RS256, Some("rsa-2"), &c)
        })
        .collect();
    let statuses = futures_util::future::join_all(tokens.iter().map(|t| status_with(&app, t))).await;
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(jwks.fetches(), 1, "rate-limited: no refresh inside the interval");
    assert_eq!(jwks_fetches(&app), 1);

    // After the interval, the same 1,000 cause exactly one refresh, and the new key verifies.
    app.clock.advance(Duration::from_secs(30));
    let statuses = futures_util::future::join_all(tokens.iter().map(|t| status_with(&app, t))).await;
    let refused: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        refused.is_empty(),
        "rotated key accepted after the refresh; not 200: {refused:?}, fetches {}",
        jwks.fetches()
    );
    assert_eq!(jwks.fetches(), 2, "exactly one refresh for 1,000 unknown-kid tokens");

    // The removed key no longer verifies new tokens.
    let mut c = claims(Some("alice@example.com"));
    c["jti"] = json!("after-rotation");
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &c)).await, 401);
}

#[tokio::test]
async fn when_the_issuer_is_down_the_last_good_keys_keep_working() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    assert_eq!(status_with(&app, &token("alice@example.com")).await, 200);
    jwks.behave(Behaviour::Fail);
    // Past max_age the set is stale and a refresh is attempted; it fails and the old keys stay.
    app.clock.advance(Duration::from_secs(601));
    let mut c = claims(Some("alice@example.com"));
    c["jti"] = json!("fresh");
    assert_eq!(status_with(&app, &sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &c)).await, 200);
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn an_oversized_or_slow_jwks_is_refused() {
    for behaviour in [Behaviour::Oversized, Behaviour::Slow(Duration::from_secs(3))] {
        let jwks = JwksServer::start(&["rsa-1"]);
        jwks.behave(behaviour);
        let app = spawn(&jwks).await;
        assert_eq!(status_with(&app, &token("alice@example.com")).await, 401, "{behaviour:?}");
        assert_eq!(jwks.fetches(), 1);
    }
}

#[tokio::test]
async fn a_policy_file_reload_takes_effect_and_an_invalid_one_is_refused() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.toml");
    std::fs::write(&path, "[[policies]]\nmatch = \"payments\"\ndecode = [\"alice@example.com\"]\n").unwrap();
    let (url, file) = (jwks.url.clone(), path.clone());
    let app = TestApp::spawn_with(move |c| {
        jwt_config(c, &url);
        c.auth.policies.clear();
        c.auth.policy_file = Some(file);
        c.auth.policy_reload_interval = Duration::from_millis(50);
    })
    .await;
    let bob = token("bob@example.com");
    assert_eq!(status_with(&app, &bob).await, 403);

    std::fs::write(&path, "[[policies]]\nmatch = \"payments\"\ndecode = [\"bob@example.com\"]\n").unwrap();
    assert!(eventually(|| async { status_with(&app, &bob).await == 200 }).await, "reload took effect");
    assert_eq!(status_with(&app, &token("alice@example.com")).await, 403);

    std::fs::write(&path, "[[policies]]\nmatch = \"payments\"\ndecode = [\"not an email\"]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_with(&app, &bob).await, 200, "an invalid file leaves the old policies in force");
}

/// Polls `check` for up to 5 s (the watcher runs every 50 ms).
async fn eventually<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn unauthorized_requests_never_touch_the_kms() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let sealed = sealed(&app, "payments", b"{}").await;
    app.state.codec.decrypt_cache().clear().await;
    let before = (app.kms_calls(), app.state.codec.decrypt_cache().misses());
    let stranger = format!("Bearer {}", token("stranger@example.com"));
    assert_eq!(call(&app, "/decode", "payments", &[("authorization", &stranger)], &sealed).await.status(), 403);
    assert_eq!(call(&app, "/decode", "payments", &[], &sealed).await.status(), 401);
    assert_eq!((app.kms_calls(), app.state.codec.decrypt_cache().misses()), before);
}

#[tokio::test]
async fn a_cached_token_stops_working_when_it_expires_on_the_injected_clock() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let app = spawn(&jwks).await;
    let mut c = claims(Some("alice@example.com"));
    c["exp"] = json!(now() + 60);
    let short = sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &c);
    assert_eq!(status_with(&app, &short).await, 200);
    assert_eq!(status_with(&app, &short).await, 200, "served from the token cache");
    // 60 s of lifetime + 30 s of leeway have passed: the cached verification must not outlive the token.
    app.clock.advance(Duration::from_secs(91));
    assert_eq!(status_with(&app, &short).await, 401);
}
