//! SECURITY-TESTS 33: the real binary's logs (at debug level) and every response body stay free of
//! tokens, keys and payload bytes, through a session of good and bad requests.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codec_server::codec::envelope;
use codec_server::kms::local::LocalBackend;
use codec_server::kms::{KekUri, KmsBackend, KmsContext, WrappedKey};
use codec_server::protocol::{Namespace, Payloads};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "card 4111-1111-1111-1111 cvv 737";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn token(email: &str, aud: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "iss": "https://issuer.test/", "aud": aud, "sub": "u", "exp": now + 600, "email": email });
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-1.pem")).unwrap()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[tokio::test]
async fn logs_and_error_bodies_never_contain_tokens_keys_or_payload_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let bin = env!("CARGO_BIN_EXE_codec-server");
    assert!(Command::new(bin).args(["keygen", "--name", "main", "--data-dir", &data]).status().unwrap().success());
    let port = free_port();
    let config = dir.path().join("config.toml");
    let public_key = std::fs::read_to_string(fixture("rsa-1.pub.pem")).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
# Exact routing, so "/other/decode" below is a namespace mismatch (its message names both namespaces).
path_prefix = "/codec"
[auth]
mode = "jwt"
[[auth.issuers]]
issuer = "https://issuer.test/"
audiences = ["codec-api"]
id_token_audiences = ["ui"]
keys = ['''{public_key}''']
[[auth.policies]]
match = "payments"
decode = ["reader@example.com"]
encode = ["writer@example.com"]
[keyrings.main]
primary = ["local://main"]
[[namespaces]]
match = "*"
keyring = "main"
[log]
format = "json"
"#
        ),
    )
    .unwrap();
    let mut server = Server(
        Command::new(bin)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let writer = token("writer@example.com", "codec-api");
    let reader = token("reader@example.com", "codec-api");
    let stranger = token("stranger@example.com", "codec-api");
    let id_token = token("reader@example.com", "ui");
    let plain =
        json!({"payloads":[{"metadata":{"encoding":STANDARD.encode("json/plain")},"data":STANDARD.encode(SECRET)}]});
    let mut bodies = Vec::new();
    let post = |path: &str, auth: Option<&str>, body: String| {
        let mut r = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-namespace", "payments")
            .header("authorization-extras", id_token.as_str());
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        r.body(body).send()
    };
    let sealed = post("/encode", Some(&writer), plain.to_string()).await.unwrap().text().await.unwrap();
    let decoded = post("/decode", Some(&reader), sealed.clone()).await.unwrap().text().await.unwrap();
    assert!(decoded.contains(&STANDARD.encode(SECRET)), "the reader gets the payload back");

    let mut tampered: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let data = tampered["payloads"][0]["data"].as_str().unwrap().to_owned();
    let mut bytes = STANDARD.decode(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tampered["payloads"][0]["data"] = json!(STANDARD.encode(&bytes));
    let bad_token = format!("{}x", &reader[..reader.len() - 1]);
    for (path, auth, body) in [
        ("/decode", Some(reader.as_str()), tampered.to_string()),
        ("/decode", Some(stranger.as_str()), sealed.clone()),
        ("/decode", Some(bad_token.as_str()), sealed.clone()),
        ("/decode", None, sealed.clone()),
        ("/encode", Some(reader.as_str()), plain.to_string()),
        ("/decode", Some(reader.as_str()), format!("{{\"payloads\":[{{\"data\":\"{SECRET}\"}}]}}")),
        ("/decode", Some(reader.as_str()), format!("{{\"payloads\":[{{\"data\":{SECRET}")),
        ("/other/decode", Some(reader.as_str()), sealed.clone()),
    ] {
        let response = post(path, auth, body).await.unwrap();
        assert!(!response.status().is_success(), "{path} {auth:?} should fail");
        bodies.push(response.text().await.unwrap());
    }

    // The real data key of the sealed payload, unwrapped here with the KEK file, to search for it.
    let sealed_payloads = Payloads::from_json(sealed.as_bytes()).unwrap();
    let env = envelope::parse(&sealed_payloads.payloads[0].data).unwrap();
    let backend = LocalBackend::load(&dir.path().join("keys"), &["main".into()]).unwrap();
    let ctx = KmsContext::for_namespace(&Namespace::parse("payments").unwrap());
    let dek = backend
        .unwrap(&KekUri::parse("local://main").unwrap(), &WrappedKey(env.edks[0].wrapped.clone()), &ctx)
        .await
        .unwrap();
    let kek_file = std::fs::read_to_string(dir.path().join("keys/main.key")).unwrap();

    // SIGTERM, not SIGKILL: the server writes out its buffered log lines as it exits. A SIGKILL lost
    // the lines of the last ~20 ms (the buffer's flush interval) when the machine was loaded.
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    for _ in 0..300 {
        if server.0.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut logs = String::new();
    server.0.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    let mut stdout = String::new();
    server.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    logs.push_str(&stdout);
    assert!(logs.contains("Request refused"), "the log really captured the session:\n{logs}");

    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let forbidden: Vec<(&str, String)> = vec![
        ("plaintext", SECRET.to_owned()),
        ("plaintext fragment", "4111-1111".to_owned()),
        ("base64 plaintext", STANDARD.encode(SECRET)),
        ("writer token", writer.clone()),
        ("reader token signature", signature(&reader)),
        ("ID token signature", signature(&id_token)),
        ("stranger token signature", signature(&stranger)),
        ("KEK file", kek_file.trim().to_owned()),
        ("DEK hex", hex::encode(dek.expose())),
        ("DEK base64", STANDARD.encode(dek.expose())),
    ];
    for (what, needle) in &forbidden {
        assert!(!logs.contains(needle.as_str()), "{what} leaked into the logs");
        for body in &bodies {
            assert!(!body.contains(needle.as_str()), "{what} leaked into an error body: {body}");
        }
    }
}
