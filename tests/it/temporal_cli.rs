//! The real `temporal` CLI against our server (issue 2): `workflow start --codec-endpoint` seals the
//! input through `/encode`, the Temporal server stores only the envelope, and `workflow show
//! --codec-endpoint` reads it back through `/decode` with every endpoint spelling the CLI produces.
//!
//! One dev server serves every case of the test (starting one costs ~0.3 s, each CLI call ~0.1 s).
//! What the CLI sends and where `workflow show --output json` puts the input is written down in
//! `docs/notes-temporal-cli.md`.

use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::support::temporal::{TemporalDevServer, assert_success};

/// The workflow input, as the CLI serializes it (`json/plain`).
const INPUT: &str = r#"{"card":"4111"}"#;

/// The CLI gives up on a failing codec after about half of this (its default deadline is 10 s).
const COMMAND_TIMEOUT: &str = "5s";

#[tokio::test]
async fn the_temporal_cli_stores_only_sealed_input_and_reads_it_back_through_every_endpoint_form() {
    let app = TestApp::spawn().await;
    let temporal = TemporalDevServer::start().await;
    let workflow_id = unique_workflow_id();
    let endpoint = app.address.clone();

    let start = temporal
        .cli_async(&[
            "workflow",
            "start",
            "--namespace",
            "default",
            "--task-queue",
            "q",
            "--type",
            "Wf",
            "--workflow-id",
            &workflow_id,
            "--input",
            INPUT,
            "--codec-endpoint",
            &endpoint,
            "--command-timeout",
            COMMAND_TIMEOUT,
        ])
        .await;
    assert_success("workflow start --codec-endpoint", &start);
    assert!(app.state.codec.encrypt_cache().keys_created() >= 1, "the CLI's workflow start did not reach our /encode");

    // Without a codec: Temporal stores and returns our envelope, never the plaintext.
    let stored = show(&temporal, &workflow_id, &[]).await;
    let raw = String::from_utf8_lossy(&stored.stdout);
    assert!(!raw.contains("4111"), "plaintext in the stored history:\n{raw}");
    assert!(!raw.contains(&STANDARD.encode(INPUT)), "base64 plaintext in the stored history:\n{raw}");
    let (metadata, data) = input_payload(&stored);
    assert_eq!(metadata_value(&metadata, "encoding"), b"binary/kms-envelope");
    assert!(!contains(&data, INPUT.as_bytes()) && !contains(&data, b"4111"));
    assert!(!contains(&data, STANDARD.encode(INPUT).as_bytes()));

    // With a codec, in every spelling the CLI turns into a request path:
    // `/decode`, `//decode`, `/default/decode`, `/default//decode`.
    let endpoints = [
        endpoint.clone(),
        format!("{endpoint}/"),
        format!("{endpoint}/{{namespace}}"),
        format!("{endpoint}/{{namespace}}/"),
    ];
    for codec_endpoint in &endpoints {
        let decoded = show(&temporal, &workflow_id, &["--codec-endpoint", codec_endpoint]).await;
        assert_decoded_input(&format!("--codec-endpoint {codec_endpoint}"), &decoded);
    }

    // `--codec-auth` sends `Authorization: Bearer x`; with auth disabled it changes nothing.
    let with_auth = show(
        &temporal,
        &workflow_id,
        &["--codec-endpoint", &format!("{endpoint}/{{namespace}}"), "--codec-auth", "Bearer x"],
    )
    .await;
    assert_decoded_input("--codec-auth 'Bearer x'", &with_auth);
}

/// A workflow id no other run of this test uses against the same dev server.
fn unique_workflow_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("codec-cli-smoke-{}-{nanos}", std::process::id())
}

/// `temporal workflow show --output json` of `workflow_id`, plus `extra` arguments; asserts success.
async fn show(temporal: &TemporalDevServer, workflow_id: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "workflow",
        "show",
        "--namespace",
        "default",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
        "--command-timeout",
        COMMAND_TIMEOUT,
    ];
    args.extend_from_slice(extra);
    let output = temporal.cli_async(&args).await;
    assert_success(&format!("workflow show {}", extra.join(" ")), &output);
    output
}

/// The decoded first input payload is the CLI's original `json/plain` payload.
fn assert_decoded_input(what: &str, output: &Output) {
    let (metadata, data) = input_payload(output);
    assert_eq!(String::from_utf8_lossy(&metadata_value(&metadata, "encoding")), "json/plain", "{what}");
    assert_eq!(String::from_utf8_lossy(&data), INPUT, "{what}");
    assert_eq!(metadata.as_object().map(serde_json::Map::len), Some(1), "{what}: metadata {metadata}");
}

/// Metadata (base64 values) and decoded data of the workflow's first input payload, from the
/// `WorkflowExecutionStarted` event of `workflow show --output json`.
fn input_payload(output: &Output) -> (Value, Vec<u8>) {
    let history: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("workflow show printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    let started = &history["events"][0];
    assert_eq!(started["eventType"], "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "first event: {started}");
    let payloads = &started["workflowExecutionStartedEventAttributes"]["input"]["payloads"];
    assert_eq!(payloads.as_array().map(Vec::len), Some(1), "input payloads: {payloads}");
    let payload = &payloads[0];
    let data = STANDARD.decode(payload["data"].as_str().expect("payload data is a string")).expect("data is base64");
    (payload["metadata"].clone(), data)
}

fn metadata_value(metadata: &Value, key: &str) -> Vec<u8> {
    let text = metadata[key].as_str().unwrap_or_else(|| panic!("no metadata {key} in {metadata}"));
    STANDARD.decode(text).expect("metadata values are base64")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
