//! CORS for the Temporal Web UI (DESIGN §3, SECURITY-TESTS 32): only configured origins are echoed,
//! preflights answer 2xx on every codec path with the headers the UI sends, and error responses carry
//! the CORS headers too (or the browser shows an opaque network error instead of our message).

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::helpers::{TestApp, payload, to_json};
use crate::protocol::{Framing, raw_request};

const DEV_UI: &str = "http://localhost:8233";
const UI_HEADERS: &str = "content-type,x-namespace,authorization,authorization-extras";

async fn preflight(app: &TestApp, path: &str, origin: &str, request_headers: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", request_headers)
        .send()
        .await
        .unwrap()
}

async fn post_from(app: &TestApp, origin: &str, path: &str, namespace: Option<&str>, body: String) -> HeaderMap {
    let mut request =
        app.client.post(app.url(path)).header("origin", origin).header("content-type", "application/json");
    if let Some(ns) = namespace {
        request = request.header("x-namespace", ns);
    }
    request.body(body).send().await.unwrap().headers().clone()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header"))
}

/// The comma-separated tokens of a header, lower-cased.
fn tokens(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect()
}

fn assert_echoes_origin_with_vary(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{what}: {headers:?}");
    assert!(tokens(headers, "vary").contains(&"origin".to_owned()), "{what}: Vary lacks Origin: {headers:?}");
}

#[tokio::test]
async fn a_preflight_from_the_dev_ui_is_allowed_with_every_header_the_ui_sends() {
    let app = TestApp::spawn().await;

    for origin in [DEV_UI, "http://127.0.0.1:8233"] {
        let response = preflight(&app, "/decode", origin, UI_HEADERS).await;

        assert!(response.status().is_success(), "{origin}: {}", response.status());
        let headers = response.headers();
        assert_echoes_origin_with_vary(headers, origin, origin);
        assert!(tokens(headers, "access-control-allow-methods").contains(&"post".to_owned()), "{headers:?}");
        let allowed = tokens(headers, "access-control-allow-headers");
        for wanted in UI_HEADERS.split(',') {
            assert!(allowed.contains(&wanted.to_owned()), "{wanted} not in {allowed:?}");
        }
        let max_age = header(headers, "access-control-max-age").expect("Access-Control-Max-Age");
        assert!(max_age.parse::<u64>().is_ok_and(|s| s > 0), "max-age {max_age}");
        assert_eq!(header(headers, "access-control-allow-credentials"), None, "credentials are opt-in");
    }
}

#[tokio::test]
async fn a_preflight_answers_2xx_on_every_codec_path_shape() {
    let app = TestApp::spawn_with(|c| c.server.path_prefix = "/codec".into()).await;

    for path in ["/default/decode", "/codec/encode", "/codec/payments/decode", "/decode?preserveStorageRefs=true"] {
        let response = preflight(&app, path, DEV_UI, UI_HEADERS).await;
        assert!(response.status().is_success(), "{path}: {}", response.status());
        assert_echoes_origin_with_vary(response.headers(), DEV_UI, path);
    }
    for path in ["//decode", "//decode?x=y", "/default//encode"] {
        let headers = [
            ("Origin", DEV_UI),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", UI_HEADERS),
        ];
        let response = raw_request(&app, "OPTIONS", path, &headers, b"", Framing::ContentLength).await;
        assert!((200..300).contains(&response.status), "{path}: {}", response.status);
        assert_eq!(response.header("access-control-allow-origin"), Some(DEV_UI), "{path}");
    }
}

#[tokio::test]
async fn a_disallowed_origin_is_never_echoed_on_preflight_or_response() {
    let app = TestApp::spawn().await;
    let body = to_json(&[payload(b"1")]).to_string();

    for origin in ["https://evil.example", "http://localhost:8233.evil.example", "http://localhost:82330", "null"] {
        let response = preflight(&app, "/decode", origin, UI_HEADERS).await;
        let allowed = response.status().is_success() && response.headers().contains_key("access-control-allow-origin");
        assert!(!allowed, "{origin}: preflight allowed: {:?}", response.headers());

        let headers = post_from(&app, origin, "/decode", Some("default"), body.clone()).await;
        assert_eq!(header(&headers, "access-control-allow-origin"), None, "{origin}");
    }
}

#[tokio::test]
async fn a_trailing_slash_in_a_configured_origin_matches_the_browser_origin() {
    let app = TestApp::spawn_with(|c| c.cors.allowed_origins = vec!["https://ui.example.com/".into()]).await;

    let response = preflight(&app, "/decode", "https://ui.example.com", UI_HEADERS).await;

    assert!(response.status().is_success(), "{}", response.status());
    assert_echoes_origin_with_vary(response.headers(), "https://ui.example.com", "preflight");
    let body = to_json(&[payload(b"1")]).to_string();
    let headers = post_from(&app, "https://ui.example.com", "/decode", Some("default"), body).await;
    assert_echoes_origin_with_vary(&headers, "https://ui.example.com", "POST");
}

#[tokio::test]
async fn credentials_when_configured_are_allowed_on_preflight_and_responses_with_the_exact_origin() {
    let app = TestApp::spawn_with(|c| c.cors.allow_credentials = true).await;

    let response = preflight(&app, "/decode", DEV_UI, UI_HEADERS).await;
    assert!(response.status().is_success());
    assert_eq!(header(response.headers(), "access-control-allow-credentials"), Some("true"));
    assert_echoes_origin_with_vary(response.headers(), DEV_UI, "preflight");

    let body = to_json(&[payload(b"1")]).to_string();
    let headers = post_from(&app, DEV_UI, "/decode", Some("default"), body.clone()).await;
    assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"));
    assert_echoes_origin_with_vary(&headers, DEV_UI, "POST");

    // Never credentials together with a wildcard origin, whatever the origin.
    for origin in [DEV_UI, "https://evil.example"] {
        let headers = post_from(&app, origin, "/decode", Some("default"), body.clone()).await;
        assert_ne!(header(&headers, "access-control-allow-origin"), Some("*"), "{origin}");
        let response = preflight(&app, "/decode", origin, UI_HEADERS).await;
        assert_ne!(header(response.headers(), "access-control-allow-origin"), Some("*"), "{origin}");
    }
}

#[tokio::test]
async fn configured_extra_headers_are_allowed_in_preflight_and_others_are_not() {
    let app = TestApp::spawn_with(|c| c.cors.extra_allowed_headers = vec!["X-Request-Id".into()]).await;
    let requested = format!("{UI_HEADERS},x-request-id");

    let response = preflight(&app, "/decode", DEV_UI, &requested).await;

    assert!(response.status().is_success(), "{}", response.status());
    assert!(tokens(response.headers(), "access-control-allow-headers").contains(&"x-request-id".to_owned()));
    let unlisted = preflight(&app, "/decode", DEV_UI, &format!("{UI_HEADERS},x-not-configured")).await;
    let allowed = unlisted.status().is_success() && unlisted.headers().contains_key("access-control-allow-origin");
    assert!(!allowed, "a header nobody configured was allowed: {:?}", unlisted.headers());

    let default_app = TestApp::spawn().await;
    let response = preflight(&default_app, "/decode", DEV_UI, &requested).await;
    assert!(!response.status().is_success(), "x-request-id is not allowed without configuration");
}

#[tokio::test]
async fn error_responses_to_an_allowed_origin_carry_the_cors_headers() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_body_bytes = 4096;
        c.server.path_prefix = "/codec".into(); // exact routing, where a namespace mismatch is still an error
    })
    .await;
    let body = to_json(&[payload(b"1")]).to_string();
    let client = &app.client;
    let from_ui = |request: reqwest::RequestBuilder| request.header("origin", DEV_UI);

    let cases = vec![
        (
            "400 namespace-mismatch",
            from_ui(client.post(app.url("/payments/decode")))
                .header("content-type", "application/json")
                .header("x-namespace", "marketing")
                .body(body.clone()),
            400,
        ),
        (
            "400 missing-namespace",
            from_ui(client.post(app.url("/decode"))).header("content-type", "application/json").body(body.clone()),
            400,
        ),
        ("415", from_ui(client.post(app.url("/decode"))).header("content-type", "text/plain").body(body.clone()), 415),
        ("404", from_ui(client.post(app.url("/nothing/here/at/all"))).body(body.clone()), 404),
        ("405", from_ui(client.get(app.url("/decode"))), 405),
        (
            "413",
            from_ui(client.post(app.url("/decode")))
                .header("content-type", "application/json")
                .header("x-namespace", "default")
                .body("x".repeat(5000)),
            413,
        ),
        (
            "501",
            from_ui(client.post(app.url("/download")))
                .header("content-type", "application/json")
                .header("x-namespace", "default")
                .body(body.clone()),
            501,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_echoes_origin_with_vary(response.headers(), DEV_UI, what);
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(error["error"]["code"].is_string(), "{what}: the browser can read our message");
    }
}

#[tokio::test]
async fn a_refused_preflight_answers_a_json_error_with_vary_origin_like_every_other_error() {
    let app = TestApp::spawn().await;

    let cases = [
        ("https://evil.example", UI_HEADERS, "cors-origin-not-allowed"),
        (DEV_UI, "content-type,x-not-configured", "cors-headers-not-allowed"),
    ];
    for (origin, requested, code) in cases {
        let response = preflight(&app, "/decode", origin, requested).await;
        let headers = response.headers().clone();
        assert_eq!(response.status(), 400, "{origin} {requested}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"), "{origin}");
        assert!(tokens(&headers, "vary").contains(&"origin".to_owned()), "Vary lacks Origin: {headers:?}");
        assert_eq!(header(&headers, "access-control-allow-origin"), None, "a refused preflight allows nothing");
        assert!(headers.contains_key("x-request-id"), "{headers:?}");
        let error: serde_json::Value = response.json().await.expect("JSON error body");
        assert_eq!(error["error"]["code"], code, "{error}");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.contains("cors."), "the message names the setting to change: {message}");
        assert!(!message.contains("evil"), "the caller's origin is not echoed: {message}");
    }
}

#[tokio::test]
async fn serve_allow_origin_adds_origins_to_the_dev_default_and_nothing_else() {
    use crate::support::server_process::ServerProcess;

    let server = ServerProcess::start_dev(
        &["--allow-origin", "http://localhost:8080", "--allow-origin", "https://ui.example.com/"],
        &[],
    );
    let client = reqwest::Client::new();
    let preflight_from = |origin: &'static str| {
        client
            .request(Method::OPTIONS, server.url("/decode"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", UI_HEADERS)
            .send()
    };

    for origin in ["http://localhost:8080", "https://ui.example.com", DEV_UI] {
        let response = preflight_from(origin).await.unwrap();
        assert!(response.status().is_success(), "{origin}: {}", response.status());
        assert_echoes_origin_with_vary(response.headers(), origin, origin);
    }
    let refused = preflight_from("http://localhost:9999").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(header(refused.headers(), "access-control-allow-origin"), None);
}

#[test]
fn several_origins_can_be_listed_in_one_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codec-server"))
        .args(["check-config", "--data-dir"])
        .arg(dir.path())
        .env_remove("CODEC_CONFIG")
        .env("CODEC_CORS__ALLOWED_ORIGINS", r#"["https://temporal.example.com","http://localhost:8080"]"#)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cors = printed.split("[cors]").nth(1).expect("[cors] printed");
    for origin in ["\"https://temporal.example.com\"", "\"http://localhost:8080\""] {
        assert!(cors.contains(origin), "{origin} not in {cors}");
    }
    assert!(!cors.contains("8233"), "the variable replaces the list: {cors}");
}
