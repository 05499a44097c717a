//! Running the real `helm` and kubernetes-validate for tests/it/helm.rs, and rebuilding a pod's files
//! and environment from rendered manifests so `codec-server check-config` can read what the chart renders.
//!
//! `helm` comes from `HELM_BIN`, else `<repo>/.tools/bin/helm` (scripts/install-helm.sh, which
//! `bash scripts/test-env.sh` runs); kubernetes-validate and PyYAML from `<repo>/.venv`. A missing tool is
//! a failure that says how to install it, never a skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

pub const RELEASE: &str = "codec";
pub const NAMESPACE: &str = "codec";
/// The Kubernetes version the manifests are rendered for and validated against (the chart needs >= 1.30).
pub const KUBERNETES_VERSION: &str = "1.33.0";
/// The value sets in `charts/codec-server/ci/`, by file stem (`<name>-values.yaml`).
pub const VALUE_SETS: [&str; 11] = [
    "minimal",
    "aws-irsa",
    "gcp-workload-identity",
    "aks-workload-identity",
    "vault-approle",
    "postgres-audit",
    "ingress-tls",
    "autoscaling",
    "eks-production",
    "gke-production",
    "vault-kubernetes",
];
/// The chart's full name for [`RELEASE`] (`<release>-codec-server`).
pub const FULLNAME: &str = "codec-codec-server";
/// Kinds whose schemas are not part of Kubernetes (CRDs): checked structurally here instead.
pub const CRD_KINDS: [&str; 1] = ["ServiceMonitor"];

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn chart() -> PathBuf {
    repo("charts/codec-server")
}

pub fn value_set(name: &str) -> PathBuf {
    chart().join(format!("ci/{name}-values.yaml"))
}

pub fn tool(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{what} is not at {}. Run `bash scripts/test-env.sh` (it installs helm into .tools/ and \
         kubernetes-validate into .venv/), or point HELM_BIN at a helm binary.",
        path.display()
    );
    path
}

pub fn helm_bin() -> PathBuf {
    let path = std::env::var_os("HELM_BIN").map(PathBuf::from).unwrap_or_else(|| repo(".tools/bin/helm"));
    tool(path, "helm (HELM_BIN, or <repo>/.tools/bin/helm)")
}

/// Runs helm with its config, cache and data directories in a temporary directory (nothing from `~`).
pub fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm_bin())
        .args(args)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` with these values files (and `--set`-style extra args); stdout, or stderr on failure.
pub fn template(values: &[&Path], extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE];
    args.extend(["--kube-version", KUBERNETES_VERSION]);
    let values: Vec<String> = values.iter().map(|p| p.display().to_string()).collect();
    for file in &values {
        args.extend(["--values", file.as_str()]);
    }
    args.extend(extra);
    let out = helm(&args);
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

/// A value set rendered with its own values only; rendered and parsed once per test run.
pub fn render(set: &str) -> Arc<Rendered> {
    static RENDERED: OnceLock<Mutex<BTreeMap<String, Arc<Rendered>>>> = OnceLock::new();
    let cache = RENDERED.get_or_init(Default::default);
    if let Some(rendered) = cache.lock().unwrap().get(set) {
        return rendered.clone();
    }
    let yaml = template(&[&value_set(set)], &[]).unwrap_or_else(|e| panic!("helm template {set}: {e}"));
    let rendered = Arc::new(Rendered::parse(&yaml));
    cache.lock().unwrap().entry(set.to_owned()).or_insert(rendered).clone()
}

/// The rendered manifests, parsed (PyYAML from the venv turns the YAML stream into JSON).
pub struct Rendered {
    pub docs: Vec<Value>,
}

impl Rendered {
    pub fn parse(yaml: &str) -> Rendered {
        let python = tool(repo(".venv/bin/python"), "the test venv's python");
        let script = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
        let mut child = Command::new(python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rendered manifests are not YAML:\n{yaml}");
        Rendered { docs: serde_json::from_slice(&out.stdout).unwrap() }
    }

    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    pub fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    pub fn kinds(&self) -> BTreeSet<String> {
        self.docs.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect()
    }

    pub fn pod_spec(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }

    pub fn container(&self) -> &Value {
        &self.pod_spec()["containers"][0]
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap())
    }

    /// The server's config file (not the migration hook's copy).
    pub fn config_toml(&self) -> &str {
        self.named("ConfigMap", FULLNAME).expect("the server's ConfigMap")["data"]["config.toml"].as_str().unwrap()
    }

    /// Whether a manifest is a Helm hook (the migration Job and its copies, the test pod).
    pub fn is_hook(doc: &Value) -> bool {
        doc["metadata"]["annotations"].get("helm.sh/hook").is_some()
    }
}

pub fn kubernetes_validate(files: &[PathBuf]) -> Output {
    let bin = tool(repo(".venv/bin/kubernetes-validate"), "kubernetes-validate");
    Command::new(bin).args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]).args(files).output().unwrap()
}

/// A copy of the pod's filesystem under `root`: the rendered ConfigMap and Secrets as files, the
/// operator's existing Secrets filled with stand-ins, and the container's environment with every mount
/// path moved under `root`.
pub struct Pod {
    root: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// (file name, contents) of every Secret file, to check that none is printed.
    pub secret_values: Vec<(String, String)>,
}

impl Pod {
    pub fn materialize(rendered: &Rendered) -> Pod {
        let root = tempfile::tempdir().unwrap();
        let mut secret_values = Vec::new();
        let spec = rendered.pod_spec();
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        // Mounts of Secrets the operator makes (existingSecret, tls.secretName, localKeys.existingSecret).
        let mut operator_secrets: Vec<PathBuf> = Vec::new();
        for mount in rendered.container()["volumeMounts"].as_array().unwrap() {
            let path = mount["mountPath"].as_str().unwrap().to_owned();
            let dir = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
            if let Some(name) = volume["configMap"]["name"].as_str() {
                let map = rendered.named("ConfigMap", name).expect("the mounted ConfigMap is rendered");
                for (key, value) in map["data"].as_object().unwrap() {
                    std::fs::write(dir.join(key), value.as_str().unwrap()).unwrap();
                }
            } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                let Some(secret) = rendered.named("Secret", name) else {
                    operator_secrets.push(dir.clone());
                    mounts.push((path, dir));
                    continue;
                };
                for (key, value) in secret["data"].as_object().unwrap() {
                    let bytes = STANDARD.decode(value.as_str().unwrap()).unwrap();
                    secret_values.push((key.clone(), text(&bytes).trim().to_owned()));
                    std::fs::write(dir.join(key), bytes).unwrap();
                }
            }
            mounts.push((path, dir));
        }
        let remap = |value: &str| remap_mounts(value, &mounts);
        let config_path = PathBuf::from(remap(rendered.env("CODEC_CONFIG").expect("CODEC_CONFIG is set")));
        let rendered_config =
            std::fs::read_to_string(&config_path).expect("CODEC_CONFIG names the mounted config file");
        let config = remap_config_paths(&rendered_config, &mounts);
        std::fs::write(&config_path, &config).unwrap();

        let mut env = Vec::new();
        for var in rendered.container()["env"].as_array().unwrap() {
            let (name, value) = (var["name"].as_str().unwrap(), remap(var["value"].as_str().unwrap()));
            let in_operator_secret =
                Path::new(&value).parent().is_some_and(|d| operator_secrets.iter().any(|o| o == d));
            if name.ends_with("_FILE") && in_operator_secret {
                // A key of the operator's existingSecret (a missing file anywhere else is the chart's bug).
                let key = Path::new(&value).file_name().unwrap().to_str().unwrap().to_owned();
                let stand_in = match key.as_str() {
                    "audit-database-url" => "postgres://codec:stand-in-password@postgres.db.svc/codec",
                    "vault-token" => "hvs.stand-in-token",
                    "vault-secret-id" => "stand-in-secret-id",
                    other => panic!("{name} names the existing-Secret key {other}; add a stand-in for it"),
                };
                std::fs::write(&value, format!("{stand_in}\n")).unwrap();
                secret_values.push((key, stand_in.to_owned()));
            }
            env.push((name.to_owned(), value));
        }
        // What the AKS workload-identity webhook adds to a labelled pod (its env and projected token);
        // the server's credential reads them when it is built.
        let labels = &rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"];
        if labels["azure.workload.identity/use"] == "true" {
            let sa =
                &rendered.named("ServiceAccount", FULLNAME).expect("the service account")["metadata"]["annotations"];
            let token = root.path().join("var/run/secrets/azure/tokens/azure-identity-token");
            std::fs::create_dir_all(token.parent().unwrap()).unwrap();
            std::fs::write(&token, "stand-in-projected-service-account-token").unwrap();
            let client_id = sa["azure.workload.identity/client-id"].as_str().expect("the client-id annotation");
            env.push(("AZURE_CLIENT_ID".into(), client_id.to_owned()));
            env.push(("AZURE_TENANT_ID".into(), "7b0c2e4d-1a3f-4e5b-8c9d-0e1f2a3b4c5d".into()));
            env.push(("AZURE_FEDERATED_TOKEN_FILE".into(), token.display().to_string()));
            env.push(("AZURE_AUTHORITY_HOST".into(), "https://login.microsoftonline.com/".into()));
        }
        let pod = Pod { root, env, secret_values };
        pod.fill_existing_secrets(&toml::from_str(&config).unwrap(), &operator_secrets);
        pod
    }

    /// Files the config names inside mounts of Secrets the chart does not render (`tls.secretName`,
    /// `localKeys.existingSecret`): a certificate and key, and local KEKs written by `codec-server keygen`.
    pub fn fill_existing_secrets(&self, config: &toml::Value, operator_secrets: &[PathBuf]) {
        let mounted = |what: &str, dir: &Path| {
            assert!(operator_secrets.iter().any(|o| o == dir), "{what} is {}: not a mounted Secret", dir.display());
        };
        // Vault's CA bundle from the operator's Secret: any CA certificate will do for loading.
        let vault_ca = config.get("kms").and_then(|k| k.get("vault")).and_then(|v| v.get("ca_bundle"));
        if let Some(file) = vault_ca.and_then(|f| f.as_str()).map(Path::new)
            && operator_secrets.iter().any(|o| Some(o.as_path()) == file.parent())
        {
            let ca = rcgen::generate_simple_self_signed(vec!["vault.example.com".to_owned()]).unwrap();
            std::fs::write(file, ca.cert.pem()).unwrap();
        }
        if let Some(tls) = config.get("server").and_then(|s| s.get("tls")) {
            let certified = rcgen::generate_simple_self_signed(vec!["codec.example.com".to_owned()]).unwrap();
            let (cert, key) =
                (Path::new(tls["cert_file"].as_str().unwrap()), Path::new(tls["key_file"].as_str().unwrap()));
            mounted("server.tls.cert_file's directory", cert.parent().unwrap());
            mounted("server.tls.key_file's directory", key.parent().unwrap());
            std::fs::write(cert, certified.cert.pem()).unwrap();
            std::fs::write(key, certified.signing_key.serialize_pem()).unwrap();
        }
        let key_dir = config.get("kms").and_then(|k| k.get("local")).and_then(|l| l.get("key_dir"));
        if let Some(dir) = key_dir.and_then(|d| d.as_str()) {
            mounted("kms.local.key_dir", Path::new(dir));
            for ring in config["keyrings"].as_table().unwrap().values() {
                let uris = ring.get("decrypt_only").and_then(|d| d.as_array()).into_iter().flatten();
                for uri in ring["primary"].as_array().unwrap().iter().chain(uris) {
                    if let Some(name) = uri.as_str().unwrap().strip_prefix("local://") {
                        let out = self.codec_server(&["keygen", "--name", name, "--dir", dir]);
                        assert!(out.status.success(), "keygen: {}", text(&out.stderr));
                    }
                }
            }
        }
    }

    /// The real binary with exactly the pod's environment (nothing from this machine: no AWS_*, GOOGLE_*,
    /// VAULT_* or CODEC_* variables, and an empty HOME).
    pub fn codec_server(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_codec-server"))
            .args(args)
            .env_clear()
            .env("HOME", self.root.path().join("home"))
            .env("RUST_BACKTRACE", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }
}

/// `value` with a leading mount path (`/run/secrets/codec-server/x`) moved to that mount's directory.
pub fn remap_mounts(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (path, dir) in mounts {
        if let Some(rest) = value.strip_prefix(path.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value.to_owned()
}

/// The rendered config text with every string value that starts with a mount path remapped; the text is
/// otherwise kept as the chart rendered it, so the server parses the chart's own TOML.
pub fn remap_config_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    pub fn strings<'a>(value: &'a toml::Value, out: &mut BTreeSet<&'a str>) {
        match value {
            toml::Value::String(s) => {
                out.insert(s);
            }
            toml::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            toml::Value::Table(table) => table.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let parsed: toml::Value = toml::from_str(text).expect("the rendered config is TOML");
    let mut found = BTreeSet::new();
    strings(&parsed, &mut found);
    let mut text = text.to_owned();
    for original in found {
        let moved = remap_mounts(original, mounts);
        if moved != original {
            text = text.replace(&format!("\"{original}\""), &format!("\"{moved}\""));
        }
    }
    text
}
