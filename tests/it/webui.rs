//! The real Temporal Web UI in a real browser (issue 10): two `temporal server start-dev` with their
//! UI on, both with `--ui-codec-endpoint` pointing at one codec server (dev mode, auth off) whose CORS
//! allowlist holds exactly the first UI's origin. The real CLI starts a workflow in each through our
//! `/encode`, so Temporal stores only the envelope; headless Chromium, driven by
//! tests/browser/webui.mjs, then opens each UI's workflow page, with no clicks:
//!
//! - the allowed UI calls our `/decode` from its origin and shows the plaintext input;
//! - the other UI is refused by the browser's CORS check, shows "Codec Server could not connect" and
//!   the sealed data, and never the plaintext. Same codec server, same key, same kind of workflow: only
//!   the origin differs.
//!
//! A screenshot of the decoded page is written to `target/webui-decoded-input.png`.
//!
//! Needs `/usr/bin/chromium`, `node`, tests/browser/node_modules and the `temporal` binary
//! (`bash scripts/test-env.sh` installs them); the test fails, never skips, without them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::browser::check_prerequisites;
use crate::helpers::TestApp;
use crate::support::temporal::{DevServerOptions, TemporalDevServer, assert_success};

/// What the Web UI 2.54 shows when its codec call fails.
const CODEC_ERROR: &str = "Codec Server could not connect";

/// How long a page may take to show what a case waits for (the UI decodes ~4 s after load).
const PAGE_DEADLINE_MS: u64 = 30_000;

/// The CLI gives up on a failing codec after about half of this.
const COMMAND_TIMEOUT: &str = "5s";

const NAMESPACE: &str = "default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_web_ui_shows_decoded_input_only_from_an_origin_the_codec_server_allows() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    check_prerequisites(&browser_dir);

    // The dev servers need the codec URL at launch and the codec server needs the UI's origin at
    // launch: reserve the codec's port first.
    let codec_listen = free_loopback_addr();
    let codec = format!("http://{codec_listen}");
    let options = DevServerOptions { ui: true, ui_codec_endpoint: Some(codec.clone()), ..DevServerOptions::default() };
    let (allowed, refused) =
        tokio::join!(TemporalDevServer::start_with(options.clone()), TemporalDevServer::start_with(options));
    let allowed_ui = allowed.ui_url.clone().expect("the first dev server serves its UI");
    let refused_ui = refused.ui_url.clone().expect("the second dev server serves its UI");
    let origin = allowed_ui.clone();
    let app = TestApp::spawn_with(move |c| {
        c.server.listen = codec_listen;
        c.cors.allowed_origins = vec![origin];
    })
    .await;
    assert_eq!(app.address, codec, "the codec server listens where both UIs call it");
    assert_eq!(app.config.cors.allowed_origins, vec![allowed_ui.clone()]);
    assert_ne!(allowed_ui, refused_ui);

    let marker = unique("webui-secret");
    let input = json!({ "secret": marker }).to_string();
    let workflow_id = unique("webui");
    let sealed_allowed = start_sealed_workflow(&allowed, &codec, &workflow_id, &input, &marker).await;
    let sealed_refused = start_sealed_workflow(&refused, &codec, &workflow_id, &input, &marker).await;
    let decode_call = format!("POST {codec}/decode?preserveStorageRefs=true");

    // The UI whose origin is allowed: it calls our /decode and shows the plaintext input.
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/webui-decoded-input.png");
    let page = open_page(
        &browser_dir,
        &format!("{allowed_ui}/namespaces/{NAMESPACE}/workflows/{workflow_id}"),
        &[&marker],
        &[CODEC_ERROR],
        Some(&screenshot),
    )
    .await;
    assert!(page.all_found, "the Web UI did not show the decoded input within {PAGE_DEADLINE_MS} ms: {page:#?}");
    assert_eq!(page.stopped_on, None, "{page:#?}");
    assert!(!page.text.contains(&sealed_allowed[..24]), "the sealed data is shown too: {page:#?}");
    assert!(page.codec_requests.contains(&decode_call), "no {decode_call}: {page:#?}");
    eprintln!("decoded input shown {} ms after load; screenshot {}", page.elapsed_ms, screenshot.display());

    // The UI whose origin is not allowed: the browser refuses the preflight, the UI reports the codec
    // error and shows the sealed data it decoded from base64 itself, never the plaintext.
    let page = open_page(
        &browser_dir,
        &format!("{refused_ui}/namespaces/{NAMESPACE}/workflows/{workflow_id}"),
        &[CODEC_ERROR, &sealed_refused[..24]],
        &[&marker],
        None,
    )
    .await;
    assert!(!page.text.contains(&marker), "a refused origin shows the plaintext: {page:#?}");
    assert!(page.all_found, "the refused UI showed neither the codec error nor the sealed input: {page:#?}");
    assert!(page.codec_requests.contains(&decode_call), "the refused UI did not try our codec: {page:#?}");
    assert!(
        page.console.iter().any(|m| m.contains("blocked by CORS policy") && m.contains(&refused_ui)),
        "refused for another reason than CORS: {page:#?}"
    );
}

/// What a Web UI page showed, as tests/browser/webui.mjs reports it.
#[derive(Debug)]
struct Page {
    /// Every awaited text appeared before the deadline.
    all_found: bool,
    /// The stop text that ended the wait early.
    stopped_on: Option<String>,
    /// The page's `document.body.innerText` when the wait ended.
    text: String,
    elapsed_ms: u64,
    /// `METHOD url` of every `/encode` and `/decode` request the page made.
    codec_requests: Vec<String>,
    console: Vec<String>,
}

/// Opens `url` in headless Chromium and waits until the page shows every `wait_for` text, or any
/// `stop_on` text, or [`PAGE_DEADLINE_MS`] passes.
async fn open_page(
    browser_dir: &Path,
    url: &str,
    wait_for: &[&str],
    stop_on: &[&str],
    screenshot: Option<&Path>,
) -> Page {
    let call = json!({
        "url": url,
        "waitFor": wait_for,
        "stopOn": stop_on,
        "deadlineMs": PAGE_DEADLINE_MS,
        "screenshot": screenshot,
    });
    let mut command = Command::new("node");
    command.arg(browser_dir.join("webui.mjs")).arg(call.to_string()).current_dir(browser_dir);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the task running node panicked")
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}); run `bash scripts/test-env.sh`"));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "tests/browser/webui.mjs printed no JSON ({e}; {}): {}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(result.get("harnessError").is_none(), "webui.mjs failed: {}", result["harnessError"]);
    let texts = |v: &Value| -> Vec<String> {
        v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_owned()).collect()
    };
    Page {
        all_found: result["allFound"].as_bool().expect("allFound"),
        stopped_on: result["stoppedOn"].as_str().map(str::to_owned),
        text: result["text"].as_str().expect("text").to_owned(),
        elapsed_ms: result["elapsedMs"].as_u64().expect("elapsedMs"),
        codec_requests: texts(&result["codecRequests"]),
        console: texts(&result["console"]),
    }
}

/// Starts a workflow with the real CLI sealing `input` through `codec`, checks without a codec that
/// Temporal stores only our envelope, and returns the stored `data` (base64) of the input payload.
async fn start_sealed_workflow(
    temporal: &TemporalDevServer,
    codec: &str,
    workflow_id: &str,
    input: &str,
    marker: &str,
) -> String {
    let start = temporal
        .cli_async(&[
            "workflow",
            "start",
            "--namespace",
            NAMESPACE,
            "--task-queue",
            "webui",
            "--type",
            "WebUiCheck",
            "--workflow-id",
            workflow_id,
            "--input",
            input,
            "--codec-endpoint",
            codec,
            "--command-timeout",
            COMMAND_TIMEOUT,
        ])
        .await;
    assert_success("workflow start --codec-endpoint", &start);

    let show = temporal
        .cli_async(&[
            "workflow",
            "show",
            "--namespace",
            NAMESPACE,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
            "--command-timeout",
            COMMAND_TIMEOUT,
        ])
        .await;
    assert_success("workflow show", &show);
    let raw = String::from_utf8_lossy(&show.stdout);
    assert!(!raw.contains(marker), "plaintext in the stored history:\n{raw}");
    assert!(!raw.contains(&STANDARD.encode(input)), "base64 plaintext in the stored history:\n{raw}");
    let history: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("workflow show printed no JSON ({e}): {raw}"));
    let started = &history["events"][0];
    assert_eq!(started["eventType"], "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "first event: {started}");
    let payloads = &started["workflowExecutionStartedEventAttributes"]["input"]["payloads"];
    assert_eq!(payloads.as_array().map(Vec::len), Some(1), "input payloads: {payloads}");
    let encoding = payloads[0]["metadata"]["encoding"].as_str().expect("metadata encoding");
    assert_eq!(STANDARD.decode(encoding).expect("base64 metadata"), b"binary/kms-envelope");
    let data = payloads[0]["data"].as_str().expect("payload data").to_owned();
    let bytes = STANDARD.decode(&data).expect("data is base64");
    assert!(!bytes.windows(marker.len()).any(|w| w == marker.as_bytes()), "plaintext in the envelope");
    data
}

/// A loopback address that was free a moment ago.
fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port");
    listener.local_addr().expect("read the bound address")
}

/// `prefix` made unique to this run.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
