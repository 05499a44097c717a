//! The Web UI's codec call in a real browser (issue 4, SECURITY-TESTS 32): headless Chromium, driven
//! by tests/browser/cors.mjs, opens a page served from another origin and calls `/decode` exactly as
//! the Temporal Web UI does — `credentials: 'include'`, `X-Namespace`, `Authorization`,
//! `Authorization-Extras`, `?preserveStorageRefs=true` — so the browser's own CORS checks (preflight,
//! credentials, reading error responses) decide, not our reading of the spec.
//!
//! Needs `/usr/bin/chromium`, `node` and tests/browser/node_modules (`bash scripts/test-env.sh`
//! installs them); the test fails, never skips, without them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use codec_server::auth::policy::{OnDeny, PolicyRule};
use codec_server::config::AuthModeConfig;
use codec_server::protocol::{Payload, Payloads};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::helpers::{TestApp, payload, read_payloads, to_json};
use crate::support::jwks_server::JwksServer;
use crate::support::tokens::{ISSUER, UI_CLIENT, claims, issuer, now, sign, token};

const CHROMIUM: &str = "/usr/bin/chromium";
const SECRET: &[u8] = b"{\"card\":\"4111 1111 1111 1111\"}";

/// Headless Chromium behind tests/browser/cors.mjs: one browser for all calls of a test.
struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: tempfile::NamedTempFile,
}

/// The outcome of one Web UI `/decode` call, as the page saw it.
#[derive(Debug)]
struct Seen {
    /// `location.origin` of the calling page.
    origin: String,
    /// The response the page could read, or `None` when `fetch` threw.
    response: Option<(u16, String)>,
    /// `name: message` of what `fetch` threw.
    error: Option<String>,
    console: Vec<String>,
}

impl Browser {
    fn launch() -> Browser {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        check_prerequisites(&dir);
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = Command::new("node")
            .arg(dir.join("cors.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen temp file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` ({e}); run `bash scripts/test-env.sh`"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Browser { child, stdin, stdout, stderr }
    }

    /// Opens `page_url` and POSTs `payloads` to `{codec_url}/decode` from it as the Web UI does.
    fn web_ui_decode(
        &mut self,
        page_url: &str,
        codec_url: &str,
        namespace: &str,
        access_token: &str,
        id_token: &str,
        payloads: &[Payload],
    ) -> Seen {
        let call = json!({
            "pageUrl": page_url,
            "codecUrl": codec_url,
            "namespace": namespace,
            "authorization": format!("Bearer {access_token}"),
            "authorizationExtras": id_token,
            "body": to_json(payloads).to_string(),
        });
        let line = tokio::task::block_in_place(|| {
            let stdin = self.stdin.as_mut().expect("browser stdin open");
            writeln!(stdin, "{call}").and_then(|()| stdin.flush()).unwrap_or_else(|e| self.died(&e.to_string()));
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(n) if n > 0 => line,
                Ok(_) => self.died("no answer"),
                Err(e) => self.died(&e.to_string()),
            }
        });
        let result: Value = serde_json::from_str(&line).expect("cors.mjs writes one JSON object per line");
        assert!(result.get("harnessError").is_none(), "cors.mjs failed: {}", result["harnessError"]);
        let text = |v: &Value| v.as_str().expect("string").to_owned();
        Seen {
            origin: text(&result["origin"]),
            response: result.get("status").map(|s| (s.as_u64().expect("status") as u16, text(&result["body"]))),
            error: result.get("error").map(|e| format!("{}: {}", text(&e["name"]), text(&e["message"]))),
            console: result["console"].as_array().expect("console").iter().map(text).collect(),
        }
    }

    fn died(&mut self, what: &str) -> ! {
        let status = self.child.wait().ok();
        let log = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        panic!("tests/browser/cors.mjs stopped ({what}, exit {status:?}); its stderr:\n{log}");
    }
}

impl Drop for Browser {
    /// Closing stdin makes cors.mjs close Chromium and exit; a stuck one is killed.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with the install command when the system Chromium or the pinned `playwright-core` is missing.
pub(crate) fn check_prerequisites(dir: &Path) {
    let fix = "run `bash scripts/test-env.sh` to install it";
    assert!(Path::new(CHROMIUM).is_file(), "{CHROMIUM} is missing (Debian package `chromium`); {fix}");
    let pinned: Value = serde_json::from_slice(&std::fs::read(dir.join("package.json")).expect("package.json"))
        .expect("package.json is JSON");
    let want = pinned["dependencies"]["playwright-core"].as_str().expect("playwright-core pinned");
    let installed: PathBuf = dir.join("node_modules/playwright-core/package.json");
    let have = std::fs::read(&installed)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    assert_eq!(have.as_deref(), Some(want), "npm playwright-core {want} is not in {}; {fix}", installed.display());
}

/// Serves a blank HTML page on its own loopback port; returns the page's origin.
fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Ok().content_type("text/html; charset=utf-8").body("<!doctype html><title>UI</title>")
                }),
            )
            .default_service(web::to(HttpResponse::NoContent))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    origin
}

/// An access token with no email (as many IdPs issue) and the ID token that carries it, for subject
/// `user-1` — the pair the Web UI sends as `Authorization` and `Authorization-Extras`.
fn ui_tokens(email: &str) -> (String, String) {
    let access = sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &claims(None));
    let id = json!({ "iss": ISSUER, "aud": UI_CLIENT, "sub": "user-1", "exp": now() + 600, "email": email });
    (access, sign("rsa-1", Algorithm::RS256, Some("rsa-1"), &id))
}

/// Whether `body` carries the plaintext, raw or base64-encoded as a decoded payload would.
fn shows_secret(body: &str) -> bool {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    body.contains(std::str::from_utf8(SECRET).unwrap()) || body.contains(&encoded) || body.contains("4111")
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is JSON: {body}"));
    v["error"]["code"].as_str().expect("error.code").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_the_web_ui_decodes_from_its_origin_reads_auth_errors_and_other_origins_are_blocked() {
    let mut browser = Browser::launch();
    let jwks = JwksServer::start(&["rsa-1"]);
    let ui = serve_page();
    let elsewhere = serve_page();
    let (jwks_url, allowed) = (jwks.url.clone(), ui.clone());
    let app = TestApp::spawn_with(move |c| {
        c.auth.mode = Some(AuthModeConfig::Jwt);
        c.auth.issuers = vec![issuer(&jwks_url)];
        c.auth.policies = vec![PolicyRule {
            pattern: "payments".into(),
            decode: vec!["alice@example.com".into()],
            encode: vec!["writer@example.com".into()],
            on_deny: OnDeny::Reject,
            passthrough_without_token: false,
        }];
        c.cors.allowed_origins = vec![allowed];
        c.cors.allow_credentials = true;
    })
    .await;
    assert!(ui != app.address && elsewhere != app.address && ui != elsewhere, "three distinct origins");
    let response = app
        .client
        .post(app.url("/encode"))
        .header("content-type", "application/json")
        .header("x-namespace", "payments")
        .header("authorization", format!("Bearer {}", token("writer@example.com")))
        .body(to_json(&[payload(SECRET)]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sealed = read_payloads(response).await;
    let (alice, alice_id) = ui_tokens("alice@example.com");
    let page = |origin: &str| format!("{origin}/");

    // A page on an origin that is not allowed: the browser refuses the preflight, so the POST is never
    // sent — nothing was decoded and nothing reached the page.
    app.state.codec.decrypt_cache().clear().await;
    let before = (app.kms_calls(), app.state.codec.decrypt_cache().misses());
    let seen = browser.web_ui_decode(&page(&elsewhere), &app.address, "payments", &alice, &alice_id, &sealed);
    assert_eq!(seen.origin, elsewhere);
    assert_eq!(seen.response, None, "a disallowed origin must not read the response: {seen:?}");
    assert!(seen.error.as_deref().is_some_and(|e| e.starts_with("TypeError")), "{seen:?}");
    assert!(seen.console.iter().any(|m| m.contains("blocked by CORS policy")), "blocked for CORS: {seen:?}");
    assert_eq!((app.kms_calls(), app.state.codec.decrypt_cache().misses()), before, "nothing decoded");

    // The Web UI's own origin with a reader's tokens: the preflight with these headers and credentials
    // passes and the page reads the plaintext.
    let seen = browser.web_ui_decode(&page(&ui), &app.address, "payments", &alice, &alice_id, &sealed);
    assert_eq!(seen.origin, ui);
    let (status, body) = seen.response.clone().unwrap_or_else(|| panic!("blocked from the allowed origin: {seen:?}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(Payloads::from_json(body.as_bytes()).expect("Payloads JSON").payloads, vec![payload(SECRET)]);
    assert!(shows_secret(&body), "the leak check below recognises a decoded payload");
    assert!(app.kms_calls() > before.0, "this decode reached the KMS, so the count above could have moved");

    // From the allowed origin, a 403 and a 401 are readable by the page: their CORS headers let the UI
    // show our message instead of an opaque network error.
    let (mallory, mallory_id) = ui_tokens("mallory@example.com");
    let seen = browser.web_ui_decode(&page(&ui), &app.address, "payments", &mallory, &mallory_id, &sealed);
    let (status, body) = seen.response.clone().unwrap_or_else(|| panic!("403 not readable: {seen:?}"));
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"));
    assert!(!shows_secret(&body), "{body}");

    let seen = browser.web_ui_decode(&page(&ui), &app.address, "payments", "not.a.jwt", &alice_id, &sealed);
    let (status, body) = seen.response.clone().unwrap_or_else(|| panic!("401 not readable: {seen:?}"));
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthenticated"));
    assert!(!shows_secret(&body), "{body}");
}
