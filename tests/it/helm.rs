//! The Helm chart `charts/codec-server` checked with the real `helm` binary (issue 6): every value set in
//! `charts/codec-server/ci/` lints and renders; every rendered manifest passes kubernetes-validate's strict
//! schemas; the config file the chart renders is accepted by `codec-server check-config` in a copy of the
//! pod's filesystem and environment; and values that cannot work are refused with a message saying why.
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

const RELEASE: &str = "codec";
const NAMESPACE: &str = "codec";
/// The Kubernetes version the manifests are rendered for and validated against (the chart needs >= 1.30).
const KUBERNETES_VERSION: &str = "1.33.0";
/// The value sets in `charts/codec-server/ci/`, by file stem (`<name>-values.yaml`).
const VALUE_SETS: [&str; 7] =
    ["minimal", "aws-irsa", "gcp-workload-identity", "vault-approle", "postgres-audit", "ingress-tls", "autoscaling"];
/// Kinds whose schemas are not part of Kubernetes (CRDs): checked structurally here instead.
const CRD_KINDS: [&str; 1] = ["ServiceMonitor"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn chart() -> PathBuf {
    repo("charts/codec-server")
}

fn value_set(name: &str) -> PathBuf {
    chart().join(format!("ci/{name}-values.yaml"))
}

fn tool(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{what} is not at {}. Run `bash scripts/test-env.sh` (it installs helm into .tools/ and \
         kubernetes-validate into .venv/), or point HELM_BIN at a helm binary.",
        path.display()
    );
    path
}

fn helm_bin() -> PathBuf {
    let path = std::env::var_os("HELM_BIN").map(PathBuf::from).unwrap_or_else(|| repo(".tools/bin/helm"));
    tool(path, "helm (HELM_BIN, or <repo>/.tools/bin/helm)")
}

/// Runs helm with its config, cache and data directories in a temporary directory (nothing from `~`).
fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm_bin())
        .args(args)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` with these values files (and `--set`-style extra args); stdout, or stderr on failure.
fn template(values: &[&Path], extra: &[&str]) -> Result<String, String> {
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
fn render(set: &str) -> Arc<Rendered> {
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
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn parse(yaml: &str) -> Rendered {
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

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.docs.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect()
    }

    fn pod_spec(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        &self.pod_spec()["containers"][0]
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap())
    }

    fn config_toml(&self) -> &str {
        self.one("ConfigMap")["data"]["config.toml"].as_str().unwrap()
    }
}

#[test]
fn every_value_set_lints_and_renders_manifests_that_pass_strict_kubernetes_schemas() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches("-values.yaml").to_owned())
        .collect();
    assert_eq!(on_disk, VALUE_SETS.iter().map(|s| s.to_string()).collect(), "ci/ and VALUE_SETS disagree");

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for set in VALUE_SETS {
        let lint = helm(&["lint", "--strict", chart().to_str().unwrap(), "--values", value_set(set).to_str().unwrap()]);
        assert!(lint.status.success(), "helm lint {set}:\n{}{}", text(&lint.stdout), text(&lint.stderr));

        let rendered = render(set);
        // One file per manifest that Kubernetes' own schemas cover; CRDs are checked in their own test.
        for (i, doc) in rendered.docs.iter().enumerate() {
            if CRD_KINDS.contains(&doc["kind"].as_str().unwrap()) {
                continue;
            }
            let file = dir.path().join(format!("{set}-{i}.json"));
            std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
            files.push(file);
        }
    }
    let out = kubernetes_validate(&files);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict:\n{report}");
    assert!(!report.contains("Couldn't find schema"), "a kind without a schema slipped through:\n{report}");
    assert_eq!(report.matches(" passed for resource ").count(), files.len(), "{report}");
}

fn kubernetes_validate(files: &[PathBuf]) -> Output {
    let bin = tool(repo(".venv/bin/kubernetes-validate"), "kubernetes-validate");
    Command::new(bin).args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]).args(files).output().unwrap()
}

#[test]
fn strict_validation_refuses_a_field_kubernetes_does_not_know() {
    // The control for the test above: the validator really is strict on what the chart renders.
    let rendered = render("minimal");
    let mut deployment = rendered.one("Deployment").clone();
    deployment["spec"]["template"]["spec"]["enableServiceLink"] = Value::Bool(false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deployment.json");
    std::fs::write(&file, serde_json::to_vec(&deployment).unwrap()).unwrap();

    let out = kubernetes_validate(&[file]);

    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("'enableServiceLink' was unexpected"), "{}", text(&out.stdout));
}

/// A copy of the pod's filesystem under `root`: the rendered ConfigMap and Secrets as files, the
/// operator's existing Secrets filled with stand-ins, and the container's environment with every mount
/// path moved under `root`.
struct Pod {
    root: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// (file name, contents) of every Secret file, to check that none is printed.
    secret_values: Vec<(String, String)>,
}

impl Pod {
    fn materialize(rendered: &Rendered) -> Pod {
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
        let pod = Pod { root, env, secret_values };
        pod.fill_existing_secrets(&toml::from_str(&config).unwrap(), &operator_secrets);
        pod
    }

    /// Files the config names inside mounts of Secrets the chart does not render (`tls.secretName`,
    /// `localKeys.existingSecret`): a certificate and key, and local KEKs written by `codec-server keygen`.
    fn fill_existing_secrets(&self, config: &toml::Value, operator_secrets: &[PathBuf]) {
        let mounted = |what: &str, dir: &Path| {
            assert!(operator_secrets.iter().any(|o| o == dir), "{what} is {}: not a mounted Secret", dir.display());
        };
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
    fn codec_server(&self, args: &[&str]) -> Output {
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
fn remap_mounts(value: &str, mounts: &[(String, PathBuf)]) -> String {
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
fn remap_config_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    fn strings<'a>(value: &'a toml::Value, out: &mut BTreeSet<&'a str>) {
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

#[test]
fn the_config_file_each_value_set_renders_is_accepted_by_check_config_in_the_pods_environment() {
    for set in VALUE_SETS {
        let rendered = render(set);
        let pod = Pod::materialize(&rendered);

        // The pod's command is `serve` with CODEC_CONFIG; check-config reads the same variable.
        let out = pod.codec_server(&["check-config"]);

        let printed = text(&out.stdout);
        assert!(out.status.success(), "check-config {set}:\n{}", text(&out.stderr));
        assert!(printed.contains("listen = \"0.0.0.0:8081\""), "{set}: {printed}");
        assert!(printed.contains("mode = \"jwt\""), "{set}: {printed}");
        for (var, key) in [
            ("CODEC_AUDIT__DATABASE_URL_FILE", "database_url"),
            ("CODEC_KMS__VAULT__AUTH__SECRET_ID_FILE", "secret_id"),
            ("CODEC_KMS__VAULT__AUTH__TOKEN_FILE", "token"),
        ] {
            if rendered.env(var).is_some() {
                assert!(printed.contains(&format!("{key} = \"<redacted>\"")), "{set}: {var} did not reach the server");
            }
        }
        for (file, secret) in &pod.secret_values {
            assert!(!printed.contains(secret.as_str()), "{set}: check-config printed the secret file {file}");
            assert!(!rendered.config_toml().contains(secret.as_str()), "{set}: the ConfigMap holds the secret {file}");
        }
    }
}

#[test]
fn each_value_set_gets_the_kubernetes_objects_its_values_ask_for() {
    for set in VALUE_SETS {
        let r = render(set);
        let pod = r.pod_spec();
        let container = r.container();
        assert_eq!(pod["enableServiceLinks"], false, "{set}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{set}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{set}");
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{set}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{set}");
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{set}");
        let scheme = if set == "ingress-tls" { "HTTPS" } else { "HTTP" };
        for (probe, path) in
            [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
        {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{set} {probe}");
            assert_eq!(container[probe]["httpGet"]["scheme"], scheme, "{set} {probe}");
        }
        // The helm test pod calls /readyz through the Service but is never one of its endpoints.
        let test_pod = r.one("Pod");
        assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
        assert!(test_pod["spec"]["containers"][0]["args"].to_string().contains(".codec.svc:8081/readyz"), "{set}");
        let selector = r.one("Service")["spec"]["selector"].as_object().unwrap();
        assert!(
            selector.iter().any(|(k, v)| test_pod["metadata"]["labels"][k] != *v),
            "{set}: Service selects the test pod"
        );

        let sa = &r.one("ServiceAccount")["metadata"]["annotations"];
        let automount = &pod["automountServiceAccountToken"];
        match set {
            "aws-irsa" => assert!(sa["eks.amazonaws.com/role-arn"].as_str().unwrap().starts_with("arn:aws:iam::")),
            "gcp-workload-identity" => {
                assert!(sa["iam.gke.io/gcp-service-account"].as_str().unwrap().ends_with(".iam.gserviceaccount.com"))
            }
            _ => {}
        }
        // Only Vault's Kubernetes login reads the service-account token.
        assert_eq!(*automount, set == "autoscaling", "{set}: automountServiceAccountToken");

        let kinds = r.kinds();
        assert_eq!(kinds.contains("HorizontalPodAutoscaler"), set == "autoscaling", "{set}");
        assert_eq!(r.one("Deployment")["spec"].get("replicas").is_none(), set == "autoscaling", "{set}");
        assert_eq!(kinds.contains("PodDisruptionBudget"), ["postgres-audit", "autoscaling"].contains(&set), "{set}");
        assert_eq!(kinds.contains("Ingress"), set == "ingress-tls", "{set}");
        assert_eq!(kinds.contains("Secret"), ["vault-approle", "autoscaling"].contains(&set), "{set}");
    }

    let postgres = render("postgres-audit");
    assert_eq!(postgres.one("Deployment")["spec"]["replicas"], 3);
    assert_eq!(postgres.one("PodDisruptionBudget")["spec"]["minAvailable"], 2);
    let volumes = postgres.pod_spec()["volumes"].to_string();
    assert!(volumes.contains("\"secretName\":\"codec-server-secrets\""), "the existingSecret is mounted: {volumes}");
}

#[test]
fn with_tls_the_ingress_service_monitor_and_network_policy_reach_the_https_port() {
    let r = render("ingress-tls");
    let service = r.one("Service");
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["name"], "https");
    assert_eq!(r.container()["ports"][0]["name"], "https");

    let ingress = r.one("Ingress");
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "codec.example.com");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], "https");

    let monitor = r.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let labels = &service["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels[k], *v, "the ServiceMonitor selects the Service by {k}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["path"], &endpoint["scheme"]),
        (&port["name"], &"/metrics".into(), &"https".into())
    );
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"][0], NAMESPACE);

    let policy = r.one("NetworkPolicy");
    let rule = &policy["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], r.container()["ports"][0]["containerPort"]);
    let test_labels = &r.one("Pod")["metadata"]["labels"];
    let admits_test_pod = rule["from"].as_array().unwrap().iter().any(|peer| {
        peer["podSelector"]["matchLabels"].as_object().is_some_and(|m| m.iter().all(|(k, v)| test_labels[k] == *v))
    });
    assert!(admits_test_pod, "the NetworkPolicy must let `helm test` reach /readyz");
    assert!(r.one("Pod")["spec"]["containers"][0]["args"].to_string().contains("https://"));
}

#[test]
fn a_config_or_secret_change_rolls_the_pods_and_a_replica_change_does_not() {
    let base = value_set("vault-approle");
    let checksums = |extra: &[&str]| {
        let r = Rendered::parse(&template(&[&base], extra).unwrap());
        let annotations = r.one("Deployment")["spec"]["template"]["metadata"]["annotations"].clone();
        (annotations["checksum/config"].clone(), annotations["checksum/secret"].clone())
    };
    let (config, secret) = checksums(&[]);
    let (config_2, secret_2) = checksums(&["--set", "config.log.level=debug"]);
    assert_ne!(config, config_2);
    assert_eq!(secret, secret_2);
    let (config_3, secret_3) = checksums(&["--set", "secrets.vaultSecretId=rotated"]);
    assert_eq!(config, config_3);
    assert_ne!(secret, secret_3);
    assert_eq!(checksums(&["--set", "replicaCount=1"]), (config, secret));
}

/// `helm template` of the minimal value set plus `overrides` (YAML) must fail, saying `message`.
fn assert_refused(overrides: &str, message: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(&file, overrides).unwrap();
    let error = match template(&[&value_set("minimal"), &file], &[]) {
        Ok(_) => panic!("helm template accepted:\n{overrides}"),
        Err(error) => error,
    };
    assert!(error.contains(message), "expected {message:?} for\n{overrides}\ngot:\n{error}");
    error
}

#[test]
fn the_schema_refuses_misspelt_keys_wrong_enums_and_settings_the_chart_owns() {
    for (overrides, message) in [
        ("config:\n  audit:\n    on_failure: maybe\n", "on_failure"),
        ("config:\n  log:\n    format: text\n", "format"),
        ("replicas: 3\n", "'replicas' not allowed"),
        ("config:\n  server:\n    listen: 0.0.0.0:9000\n", "'listen' not allowed"),
        ("config:\n  kms:\n    aws:\n      secret_access_key: abc\n", "'secret_access_key' not allowed"),
        ("auditDatabase: mysql\n", "auditDatabase"),
        ("config:\n  keyrings:\n    main:\n      primary: [\"s3://bucket/key\"]\n", "primary"),
    ] {
        let error = assert_refused(overrides, message);
        assert!(error.contains("schema"), "not refused by the schema: {error}");
        // `helm lint` applies the same schema.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overrides.yaml");
        std::fs::write(&file, overrides).unwrap();
        let minimal = value_set("minimal");
        let lint = helm(&[
            "lint",
            chart().to_str().unwrap(),
            "--values",
            minimal.to_str().unwrap(),
            "--values",
            file.to_str().unwrap(),
        ]);
        assert!(!lint.status.success(), "helm lint accepted:\n{overrides}");
    }
}

#[test]
fn combinations_that_cannot_work_are_refused_with_how_to_fix_them() {
    let sqlite = "the SQLite audit database is a file in one pod";
    let legacy_key = "config:\n  legacy:\n    keys:\n      k1:\n        key_file: /run/secrets/codec-server/k1\n        namespaces: [\"*\"]\n";
    let legacy_key_elsewhere = format!("{legacy_key}secrets:\n  files:\n    other: x\n");
    for (overrides, message) in [
        ("replicaCount: 3\n", sqlite),
        ("autoscaling:\n  enabled: true\n", sqlite),
        ("config:\n  auth:\n    mode: disabled\n", "allow_unauthenticated_non_loopback"),
        ("config:\n  auth:\n    issuers: []\n", "needs at least one trusted issuer"),
        ("config:\n  keyrings: null\n", "config.keyrings is empty"),
        ("config:\n  namespaces:\n    - {match: \"*\", keyring: mian}\n", "uses keyring \"mian\""),
        ("localKeys:\n  existingSecret: \"\"\n", "local://main is a local key file"),
        ("auditDatabase: postgres\n", "audit-database-url"),
        ("ingress:\n  enabled: true\n", "ingress.enabled needs ingress.tls"),
        ("tls:\n  enabled: true\n", "tls.enabled needs tls.secretName"),
        ("podDisruptionBudget:\n  enabled: true\n  minAvailable: 1\n", "node drains would hang"),
        (legacy_key, "no Secret is mounted at /run/secrets/codec-server"),
        (&legacy_key_elsewhere, "the chart-made Secret has no key k1"),
    ] {
        assert_refused(overrides, message);
    }
    // The chart's defaults alone name the first thing to configure.
    let defaults = template(&[], &[]).expect_err("the defaults have no issuer, keyring or namespace rule");
    assert!(defaults.contains("config.auth.issuers"), "{defaults}");
}

#[test]
fn auth_disabled_renders_only_with_the_opt_out_the_server_itself_demands() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    let overrides = "config:\n  auth:\n    mode: disabled\n    allow_unauthenticated_non_loopback: true\n";
    std::fs::write(&file, overrides).unwrap();
    let rendered = Rendered::parse(&template(&[&value_set("minimal"), &file], &[]).unwrap());
    let pod = Pod::materialize(&rendered);
    assert!(pod.codec_server(&["check-config"]).status.success());

    // Without the opt-out the server refuses the same file, for the reason the chart gives.
    let config = pod.env.iter().find(|(k, _)| k == "CODEC_CONFIG").unwrap().1.clone();
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_now.replace("allow_unauthenticated_non_loopback = true", "")).unwrap();
    let refused = pod.codec_server(&["check-config"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("allow_unauthenticated_non_loopback"), "{}", text(&refused.stderr));
}
