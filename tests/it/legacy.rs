//! Migration from Temporal's sample encryption codecs (DESIGN.md §4, "Compatibility decoding"):
//! payloads written by the Go, Python, TypeScript and Java samples decode through `/decode` with a
//! configured legacy key, including their zlib, gzip and snappy inner layers, and nothing else does.
//!
//! The fixtures are built here the way the samples build them, without our code: the protobuf
//! `Payload` is written by hand, AES-256-GCM comes from the RustCrypto `aes-gcm` crate (the server
//! uses aws-lc), compression from `flate2` (zlib = RFC 1950 like Go's `compress/zlib`, gzip) and
//! `snap` (the snappy block format of Go's `snappy.Encode`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codec_server::config::{Config, LegacyKeyConfig};
use codec_server::protocol::{ExternalPayloadDetails, Payload};
use serde_json::{Value, json};

use crate::helpers::{TestApp, payload};

/// The Go sample's key id; the sample uses the id's bytes as the key.
const GO_KEY_ID: &str = "test-key-test-key-test-key-test!";
/// The Python and TypeScript samples' key id and key.
const SAMPLE_KEY_ID: &str = "test-key-id";
const SAMPLE_KEY: &[u8; 32] = b"test-key-test-key-test-key-test!";
/// A key id whose key is configured as base64 in a key file.
const FILE_KEY_ID: &str = "payments-2023";

/// 32 bytes that are not ASCII, so only the base64 reading of the key file can produce them.
fn file_key() -> [u8; 32] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
}

/// Our dev server plus the three legacy keys, in the three ways the config takes them, adjusted
/// by `configure`.
async fn spawn_with_legacy_keys(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        let key_file = config.data_dir.join("legacy-payments-2023.key");
        std::fs::write(&key_file, format!("{}\n", STANDARD.encode(file_key()))).expect("write the legacy key file");
        let keys = [
            (GO_KEY_ID, json!({ "key": GO_KEY_ID, "namespaces": ["*"] })),
            (SAMPLE_KEY_ID, json!({ "key": std::str::from_utf8(SAMPLE_KEY).unwrap(), "namespaces": ["default"] })),
            (FILE_KEY_ID, json!({ "key_file": key_file, "namespaces": ["default", "payments-*"] })),
        ];
        for (id, key) in keys {
            let key: LegacyKeyConfig = serde_json::from_value(key).expect("a legacy key config");
            config.legacy.keys.insert(id.to_owned(), key);
        }
        configure(config);
    })
    .await
}

// ---- Fixtures, built the way the samples build them ----

/// An original payload: what the SDK's data converter produced before the sample codec ran.
struct Original {
    /// In the order the sample would marshal them (Go's map order is random; not sorted here).
    metadata: Vec<(&'static str, Vec<u8>)>,
    data: Vec<u8>,
    external_sizes: Vec<i64>,
}

impl Original {
    fn new(metadata: &[(&'static str, &[u8])], data: &[u8]) -> Original {
        Original {
            metadata: metadata.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
            data: data.to_vec(),
            external_sizes: Vec::new(),
        }
    }

    /// `temporal.api.common.v1.Payload` in protobuf wire format, written by hand:
    /// `map<string, bytes> metadata = 1; bytes data = 2; repeated ExternalPayloadDetails external_payloads = 3`
    /// with `int64 size_bytes = 1`.
    fn proto(&self) -> Vec<u8> {
        proto_payload(&self.metadata, &self.data, &self.external_sizes)
    }

    /// What `/decode` must return.
    fn expected(&self) -> Payload {
        Payload {
            metadata: self.metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>(),
            data: self.data.clone().into(),
            external_payloads: self
                .external_sizes
                .iter()
                .map(|&size_bytes| ExternalPayloadDetails { size_bytes })
                .collect(),
        }
    }
}

fn proto_payload(metadata: &[(&str, Vec<u8>)], data: &[u8], external_sizes: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in metadata {
        let mut entry = Vec::new();
        length_delimited(&mut entry, 1, key.as_bytes());
        length_delimited(&mut entry, 2, value);
        length_delimited(&mut out, 1, &entry);
    }
    if !data.is_empty() {
        length_delimited(&mut out, 2, data);
    }
    for &size in external_sizes {
        let mut details = Vec::new();
        varint(&mut details, 1 << 3);
        varint(&mut details, size as u64);
        length_delimited(&mut out, 3, &details);
    }
    out
}

fn length_delimited(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The samples' `encrypt`: `nonce || AES-256-GCM(key, plaintext) || tag`, no AAD (Go:
/// `gcm.Seal(nonce, nonce, data, nil)`; Python: `nonce + AESGCM(key).encrypt(nonce, data, None)`).
fn sample_encrypt(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).expect("a 32-byte key");
    let sealed = cipher.encrypt(&Nonce::from(nonce), plaintext).expect("AES-GCM encryption");
    [nonce.as_slice(), &sealed].concat()
}

/// The samples' outer payload: `binary/encrypted`, the key id, and the sealed inner payload.
fn legacy_payload(key_id: &str, key: &[u8; 32], nonce: [u8; 12], inner_proto: &[u8]) -> Payload {
    Payload {
        metadata: BTreeMap::from([
            ("encoding".to_owned(), b"binary/encrypted".to_vec()),
            ("encryption-key-id".to_owned(), key_id.as_bytes().to_vec()),
        ]),
        data: sample_encrypt(key, nonce, inner_proto).into(),
        external_payloads: Vec::new(),
    }
}

/// A compression layer as the SDK codecs write it: `{encoding: <encoding>, data: compress(proto)}`,
/// returned as protobuf.
fn compressed_layer(encoding: &str, compressed: Vec<u8>) -> Vec<u8> {
    proto_payload(&[("encoding", encoding.as_bytes().to_vec())], &compressed, &[])
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("zlib into memory");
    encoder.finish().expect("zlib into memory")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).expect("snappy into memory")
}

/// Wraps `proto` in the named compression layers, innermost first.
fn compress_layers(mut proto: Vec<u8>, layers: &[&str]) -> Vec<u8> {
    for layer in layers {
        let compressed = match *layer {
            "binary/zlib" => zlib(&proto),
            "binary/gzip" => gzip(&proto),
            "binary/snappy" => snappy(&proto),
            other => panic!("no fixture for {other}"),
        };
        proto = compressed_layer(layer, compressed);
    }
    proto
}

/// A JSON payload with a card number, as an SDK's JSON converter writes it.
fn card(n: u8) -> Original {
    Original::new(&[("encoding", b"json/plain")], format!("{{\"card\":\"4111-{n}\"}}").as_bytes())
}

async fn assert_decode_failed(app: &TestApp, payloads: &[Payload], failing: &[usize], what: &str) {
    let response = app.post_decode("default", payloads).await;
    assert_eq!(response.status(), 400, "{what}");
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "decode-failed", "{what}: {body}");
    assert_eq!(body["error"]["indexes"], json!(failing), "{what}: {body}");
    assert!(!body.to_string().contains("4111"), "{what}: the error released plaintext: {body}");
}

// ---- Tests ----

#[tokio::test]
async fn payloads_sealed_by_the_go_python_typescript_and_java_samples_decode_to_the_originals() {
    let app = spawn_with_legacy_keys(|_| {}).await;
    let mut go = Original::new(
        &[("messageType", b"\x00\xffbinary"), ("encoding", b"binary/protobuf")],
        &[0, 1, 2, 255, 254, 0, 0, 7],
    );
    go.external_sizes = vec![1234];
    let python = card(1);
    let typescript = Original::new(&[("encoding", b"binary/null")], b"");
    let java = card(2);
    let from_key_file = card(3);
    let not_legacy = payload(b"{\"plain\":true}");

    let mut java_payload = legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [4; 12], &java.proto());
    java_payload.metadata.insert("encryption-cipher".into(), b"AES/GCM/NoPadding".to_vec());
    let request = vec![
        legacy_payload(GO_KEY_ID, GO_KEY_ID.as_bytes().try_into().unwrap(), [1; 12], &go.proto()),
        legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [2; 12], &python.proto()),
        legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [3; 12], &typescript.proto()),
        java_payload,
        legacy_payload(FILE_KEY_ID, &file_key(), [5; 12], &from_key_file.proto()),
        not_legacy.clone(),
    ];

    let decoded = app.decode("default", &request).await;

    let expected = vec![
        go.expected(),
        python.expected(),
        typescript.expected(),
        java.expected(),
        from_key_file.expected(),
        not_legacy,
    ];
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn zlib_gzip_and_snappy_layers_inside_sample_payloads_are_unwrapped_byte_for_byte() {
    let app = spawn_with_legacy_keys(|_| {}).await;
    let originals: Vec<Original> = (10..15).map(card).collect();
    let go_key: &[u8; 32] = GO_KEY_ID.as_bytes().try_into().unwrap();
    // The Go sample with `Compress: true`: the zlib codec runs first, encryption wraps its output.
    let request = vec![
        legacy_payload(GO_KEY_ID, go_key, [1; 12], &compress_layers(originals[0].proto(), &["binary/zlib"])),
        legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [2; 12], &compress_layers(originals[1].proto(), &["binary/gzip"])),
        legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [3; 12], &compress_layers(originals[2].proto(), &["binary/snappy"])),
        legacy_payload(
            FILE_KEY_ID,
            &file_key(),
            [4; 12],
            &compress_layers(originals[3].proto(), &["binary/zlib", "binary/snappy", "binary/gzip"]),
        ),
        // Compressible data, so the layer really is smaller than what it carries.
        legacy_payload(
            GO_KEY_ID,
            go_key,
            [5; 12],
            &compress_layers(Original::new(&[("encoding", b"json/plain")], &[b'7'; 100_000]).proto(), &["binary/zlib"]),
        ),
    ];
    assert!(request[4].data.len() < 10_000);

    let decoded = app.decode("default", &request).await;

    let mut expected: Vec<Payload> = originals[..4].iter().map(Original::expected).collect();
    expected.push(Original::new(&[("encoding", b"json/plain")], &[b'7'; 100_000]).expected());
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn a_sample_payload_whose_key_id_is_not_configured_passes_through_unchanged() {
    let app = spawn_with_legacy_keys(|_| {}).await;
    let inner = card(1).proto();
    let unknown_id = legacy_payload("some-other-team-key", SAMPLE_KEY, [1; 12], &inner);
    let case_changed_id = legacy_payload("TEST-KEY-ID", SAMPLE_KEY, [2; 12], &inner);
    let mut no_id = legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [3; 12], &inner);
    no_id.metadata.remove("encryption-key-id");
    let request = vec![unknown_id, case_changed_id, no_id];

    let decoded = app.decode("default", &request).await;

    assert_eq!(decoded, request);
}

#[tokio::test]
async fn tampered_or_malformed_sample_payloads_fail_with_decode_failed_and_release_nothing() {
    let app = spawn_with_legacy_keys(|_| {}).await;
    let good = legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [1; 12], &card(1).proto());
    let sealed = |inner: &[u8]| legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [2; 12], inner);
    let with_data = |data: Vec<u8>| Payload { data: data.into(), ..good.clone() };
    let flipped = |index: usize| {
        let mut data = good.data.to_vec();
        data[index] ^= 0x01;
        with_data(data)
    };
    let len = good.data.len();
    let cases = [
        ("bit flipped in the nonce", flipped(0)),
        ("bit flipped in the ciphertext", flipped(12)),
        ("bit flipped in the tag", flipped(len - 1)),
        ("truncated inside the nonce", with_data(good.data[..11].to_vec())),
        ("nonce and a short tag only", with_data(good.data[..12 + 15].to_vec())),
        ("tag cut off", with_data(good.data[..len - 16].to_vec())),
        ("sealed under another key", legacy_payload(SAMPLE_KEY_ID, &[9; 32], [1; 12], &card(1).proto())),
        ("decrypts to bytes that are not a Payload", sealed(&[0xff; 40])),
        ("corrupt zlib layer", sealed(&compressed_layer("binary/zlib", b"definitely not zlib".to_vec()))),
        ("zlib layer with a wrong checksum", {
            let mut packed = zlib(&card(3).proto());
            let last = packed.len() - 1;
            packed[last] ^= 0x01;
            sealed(&compressed_layer("binary/zlib", packed))
        }),
        ("corrupt snappy layer", sealed(&compressed_layer("binary/snappy", vec![0xff; 16]))),
        ("corrupt gzip layer", sealed(&compressed_layer("binary/gzip", b"\x1f\x8bnot gzip".to_vec()))),
    ];
    for (what, bad) in cases {
        assert_decode_failed(&app, &[good.clone(), bad], &[1], what).await;
    }
    // The untampered payload alone still decodes.
    assert_eq!(app.decode("default", &[good]).await, vec![card(1).expected()]);
}

#[tokio::test]
async fn compression_nested_deeper_than_legacy_max_depth_is_refused() {
    let original = card(7);
    let nested = |layers: &[&str]| {
        legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [1; 12], &compress_layers(original.proto(), layers))
    };
    let four = ["binary/zlib", "binary/snappy", "binary/gzip", "binary/zlib"];
    let five = ["binary/zlib", "binary/snappy", "binary/gzip", "binary/zlib", "binary/snappy"];

    // The default bound (4 layers).
    let app = spawn_with_legacy_keys(|_| {}).await;
    assert_eq!(app.config.legacy.max_depth, 4);
    assert_eq!(app.decode("default", &[nested(&four)]).await, vec![original.expected()]);
    assert_decode_failed(&app, &[nested(&five)], &[0], "five layers, default max_depth").await;

    // A configured bound.
    let app = spawn_with_legacy_keys(|config| config.legacy.max_depth = 1).await;
    assert_eq!(app.decode("default", &[nested(&four[..1])]).await, vec![original.expected()]);
    assert_decode_failed(&app, &[nested(&four[..2])], &[0], "two layers, max_depth 1").await;
}

/// Single allocations of at least this size, anywhere in the test binary, are counted. No test
/// needs one: the largest legitimate buffers are request bodies (16 MiB by default) and a
/// decompression output at the default 64 MiB bound (128 MiB of capacity at most).
const HUGE_ALLOCATION: usize = 256 << 20;

static HUGE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting [`HUGE_ALLOCATION`]s, so a test can show that the server never
/// tried to hold a decompression bomb's whole output.
struct CountingAllocator;

impl CountingAllocator {
    fn note(size: usize) {
        if size >= HUGE_ALLOCATION {
            HUGE_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches no allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes through `System`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A legacy payload whose zlib layer inflates to a valid `Payload` whose data is `zeros` zero
/// bytes; compressed from a stream, so the test itself never holds the inflated bytes.
fn zlib_bomb(zeros: usize) -> Payload {
    let mut prefix = Vec::new();
    varint(&mut prefix, (2 << 3) | 2);
    varint(&mut prefix, zeros as u64);
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&prefix).expect("zlib into memory");
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).expect("zlib into memory");
        left -= n;
    }
    let packed = encoder.finish().expect("zlib into memory");
    legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [1; 12], &compressed_layer("binary/zlib", packed))
}

#[tokio::test]
async fn a_zlib_bomb_inside_a_sample_payload_is_refused_without_inflating_it() {
    // 512 MiB of zeros in ~0.5 MiB: far over the default 64 MiB bound and over `HUGE_ALLOCATION`.
    let bomb = zlib_bomb(512 << 20);
    assert!(bomb.data.len() < 2 << 20, "bomb fixture is {} bytes", bomb.data.len());
    let huge_before = HUGE_ALLOCATIONS.load(Ordering::SeqCst);

    // At the default bound.
    let app = spawn_with_legacy_keys(|_| {}).await;
    assert_eq!(app.config.server.max_decompressed_bytes, 64 << 20);
    assert_decode_failed(&app, std::slice::from_ref(&bomb), &[0], "512 MiB bomb, default bound").await;

    // At a configured bound: just under it decodes, the bomb is refused.
    let app = spawn_with_legacy_keys(|config| config.server.max_decompressed_bytes = 1 << 20).await;
    let under = zlib_bomb(1000 << 10);
    let decoded = app.decode("default", &[under]).await;
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].data.len(), 1000 << 10);
    assert!(decoded[0].data.iter().all(|&b| b == 0));
    assert_decode_failed(&app, &[bomb], &[0], "512 MiB bomb, 1 MiB bound").await;

    assert_eq!(
        HUGE_ALLOCATIONS.load(Ordering::SeqCst),
        huge_before,
        "something allocated {HUGE_ALLOCATION} bytes or more at once while the server refused the bomb"
    );
}

#[tokio::test]
async fn a_legacy_key_opens_payloads_only_in_the_namespaces_it_is_configured_for() {
    let app = spawn_with_legacy_keys(|_| {}).await;
    let original = card(7);
    let sealed = legacy_payload(SAMPLE_KEY_ID, SAMPLE_KEY, [3; 12], &original.proto());

    // SAMPLE_KEY_ID is configured for `default` only: elsewhere the payload stays sealed.
    assert_eq!(app.decode("default", std::slice::from_ref(&sealed)).await, vec![original.expected()]);
    assert_eq!(app.decode("marketing", std::slice::from_ref(&sealed)).await, vec![sealed]);
}

/// Runs `codec-server decode --namespace NS` with `args` and `env`, the payloads on stdin.
fn decode_with_binary(args: &[&str], env: &[(&str, &str)], namespace: &str, payloads: &[Payload]) -> Vec<Payload> {
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_codec-server"));
    command.args(args).args(["decode", "--namespace", namespace]).env_remove("CODEC_CONFIG").env_remove("RUST_LOG");
    command.envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("run codec-server decode");
    let body = codec_server::protocol::Payloads { payloads: payloads.to_vec() }.to_json();
    child.stdin.take().expect("stdin").write_all(&body).expect("write stdin");
    let out = child.wait_with_output().expect("wait for codec-server decode");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    codec_server::protocol::Payloads::from_json(&out.stdout).expect("Payloads on stdout").payloads
}

#[test]
fn the_empty_key_id_of_the_go_sample_is_configured_as_legacy_keys_empty_string() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    codec_server::kms::local::write_new_key(&dir.path().join("keys"), "main").unwrap();
    std::fs::write(dir.path().join("go-sample.key"), format!("{GO_KEY_ID}\n")).unwrap();
    let config = dir.path().join("codec.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[auth]\nmode = \"disabled\"\n[keyrings.main]\nprimary = [\"local://main\"]\n\
             [[namespaces]]\nmatch = \"*\"\nkeyring = \"main\"\n\
             [legacy.keys.\"\"]\nkey_file = {key:?}\nnamespaces = [\"orders\"]\n",
            key = dir.path().join("go-sample.key").display().to_string(),
        ),
    )
    .unwrap();
    let original = card(9);
    let go_without_key_id = legacy_payload("", GO_KEY_ID.as_bytes().try_into().unwrap(), [9; 12], &original.proto());
    let args = ["--config", config.to_str().unwrap()];

    let opened = decode_with_binary(&args, &[], "orders", std::slice::from_ref(&go_without_key_id));
    assert_eq!(opened, vec![original.expected()]);
    // Outside the key's namespaces it comes back unchanged.
    let elsewhere = decode_with_binary(&args, &[], "payments", std::slice::from_ref(&go_without_key_id));
    assert_eq!(elsewhere, vec![go_without_key_id]);
}

#[test]
fn a_lower_case_key_id_can_be_configured_through_the_environment_as_the_example_shows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    codec_server::kms::local::write_new_key(&dir.path().join("keys"), "dev").unwrap();
    let key_file = dir.path().join("legacy.key");
    std::fs::write(&key_file, format!("{}\n", std::str::from_utf8(SAMPLE_KEY).unwrap())).unwrap();
    let env = [
        ("CODEC_LEGACY__KEYS__PAYMENTS_2023__KEY_FILE", key_file.to_str().unwrap()),
        ("CODEC_LEGACY__KEYS__PAYMENTS_2023__NAMESPACES", r#"["payments-*"]"#),
    ];
    let original = card(5);
    let sealed = [
        legacy_payload("payments_2023", SAMPLE_KEY, [5; 12], &original.proto()),
        // The variable name cannot spell this id: it is not configured, so it stays sealed.
        legacy_payload("PAYMENTS_2023", SAMPLE_KEY, [6; 12], &original.proto()),
    ];

    let opened = decode_with_binary(&["--data-dir", data], &env, "payments-eu", &sealed);

    assert_eq!(opened, vec![original.expected(), sealed[1].clone()]);
}
