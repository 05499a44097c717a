//! The chart reviewed for a company-wide production install (issue 14), on what `helm template` renders
//! (every value set also passes kubernetes-validate and check-config in tests/it/helm.rs): egress that
//! reaches what each value set uses, a grace period that follows the server's shutdown deadline, a
//! memory limit that follows the request limits, spread and budgets that survive rollouts and drains, a
//! `helm test` pod placed like the server, the migration Job with its sidecars, and the database CA.

use serde_json::Value;

use crate::support::helm::*;

fn render_with(set: &str, overrides: &str) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(&file, overrides).unwrap();
    Rendered::parse(&template(&[&value_set(set), &file], &[]).unwrap_or_else(|e| panic!("{set}: {e}")))
}

/// `(port, CIDRs or "any")` for every egress rule: one entry per port.
fn egress(r: &Rendered) -> Vec<(i64, Vec<String>)> {
    let policy = r.one("NetworkPolicy");
    let mut out = Vec::new();
    for rule in policy["spec"]["egress"].as_array().unwrap() {
        let to: Vec<String> = match rule["to"].as_array() {
            None => vec!["any".to_owned()],
            Some(peers) => peers
                .iter()
                .map(|p| p["ipBlock"]["cidr"].as_str().map(str::to_owned).unwrap_or_else(|| p.to_string()))
                .collect(),
        };
        for port in rule["ports"].as_array().unwrap() {
            out.push((port["port"].as_i64().unwrap(), to.clone()));
        }
    }
    out
}

fn allows(rules: &[(i64, Vec<String>)], port: i64, to: &str) -> bool {
    rules.iter().any(|(p, peers)| *p == port && peers.iter().any(|peer| peer == to || peer == "any"))
}

#[test]
fn every_value_set_with_restricted_egress_can_reach_its_credentials_kms_vault_and_database() {
    let mut checked = 0;
    for set in VALUE_SETS {
        let r = render(set);
        let policy = r.all("NetworkPolicy");
        if policy.is_empty() || !policy[0]["spec"]["policyTypes"].to_string().contains("Egress") {
            continue;
        }
        checked += 1;
        let rules = egress(&r);
        let config: toml::Value = toml::from_str(r.config_toml()).unwrap();
        let keks = config["keyrings"].to_string();
        let sa = &r.named("ServiceAccount", FULLNAME).unwrap()["metadata"]["annotations"];
        assert!(allows(&rules, 53, "any"), "{set}: DNS");
        if keks.contains("aws-kms://") {
            assert!(allows(&rules, 443, "any"), "{set}: AWS KMS and STS over 443");
            let irsa = sa.get("eks.amazonaws.com/role-arn").is_some();
            let node_credentials = allows(&rules, 80, "169.254.169.254/32") || allows(&rules, 80, "169.254.170.23/32");
            assert!(irsa || node_credentials, "{set}: an AWS KEK needs IRSA or a reachable credentials endpoint");
        }
        if keks.contains("gcp-kms://") {
            assert!(allows(&rules, 443, "any"), "{set}: Cloud KMS over 443");
            assert!(sa.get("iam.gke.io/gcp-service-account").is_some(), "{set}: Workload Identity");
            assert!(allows(&rules, 80, "169.254.169.254/32"), "{set}: the GKE metadata server");
            assert!(allows(&rules, 988, "169.254.169.252/32"), "{set}: the GKE metadata server (Calico)");
        }
        if keks.contains("azure-keyvault://") {
            assert!(allows(&rules, 443, "any"), "{set}: Key Vault and Entra ID over 443");
            let workload_identity = sa.get("azure.workload.identity/client-id").is_some();
            assert!(
                workload_identity || allows(&rules, 80, "169.254.169.254/32"),
                "{set}: an Azure KEK needs workload identity or a reachable IMDS (managed identity)"
            );
        }
        if let Some(address) = config.get("kms").and_then(|k| k.get("vault")).map(|v| v["address"].as_str().unwrap()) {
            let port: i64 = address.rsplit(':').next().unwrap().parse().unwrap();
            assert!(rules.iter().any(|(p, _)| *p == port), "{set}: Vault at {address}");
        }
        if r.env("CODEC_AUDIT__DATABASE_URL_FILE").is_some() {
            let proxied = r.pod_spec()["initContainers"].to_string().contains("cloud-sql-proxy");
            let port = if proxied { 3307 } else { 5432 };
            assert!(rules.iter().any(|(p, _)| *p == port), "{set}: PostgreSQL on {port}");
        }
    }
    assert!(checked >= 4, "value sets with egress rules: {checked}");

    // Each metadata choice renders its documented endpoint, and nothing by default.
    for (choice, cidr, port) in [
        ("aws", "169.254.169.254/32", 80),
        ("eks-pod-identity", "169.254.170.23/32", 80),
        ("gke", "169.254.169.252/32", 988),
        ("azure", "169.254.169.254/32", 80),
    ] {
        let r = render_with("ingress-tls", &format!("networkPolicy:\n  egress:\n    cloudMetadata: {choice}\n"));
        assert!(allows(&egress(&r), port, cidr), "{choice}");
    }
    assert!(!egress(&render("ingress-tls")).iter().any(|(p, _)| *p == 80), "no metadata endpoint unless asked");
}

#[test]
fn the_grace_period_is_derived_from_the_servers_shutdown_timeout() {
    let grace = |r: &Rendered| r.pod_spec()["terminationGracePeriodSeconds"].as_i64().unwrap();
    // Defaults: preStop 5 s + shutdown_timeout 30 s + 10 s for the audit flush.
    assert_eq!(grace(&render("minimal")), 45);
    // eks-production: shutdown_timeout = 60s.
    assert_eq!(grace(&render("eks-production")), 75);
    assert_eq!(grace(&render_with("minimal", "config:\n  server:\n    shutdown_timeout: 1m 30s 500ms\n")), 106);
    assert_eq!(grace(&render_with("minimal", "terminationGracePeriodSeconds: 120\n")), 120);
    // The readiness probe is answered from memory on the admin port: a short timeout is enough.
    let minimal = render("minimal");
    let probe = &minimal.container()["readinessProbe"];
    assert!(probe["timeoutSeconds"].as_i64().unwrap() <= 2 && probe["httpGet"]["port"] == "admin");
}

#[test]
fn defaults_set_retention_storage_and_a_memory_limit_that_follows_the_request_limits() {
    let r = render("minimal");
    let resources = &r.container()["resources"];
    // 128 MiB + 4 × (3 × 16 MiB + 64 MiB).
    assert_eq!(resources["limits"]["memory"], "576Mi");
    assert_eq!(resources["requests"]["ephemeral-storage"], "1Gi", "the emptyDir's size is requested");
    let config: toml::Value = toml::from_str(r.config_toml()).unwrap();
    assert_eq!(config["audit"]["retention"].as_str(), Some("30d"));

    let smaller = render_with(
        "minimal",
        "config:\n  server:\n    max_body_bytes: 4194304\n    max_decompressed_bytes: 16777216\nmemorySizing:\n  concurrentLargeRequests: 8\n",
    );
    // 128 + 8 × (12 + 16) MiB.
    assert_eq!(smaller.container()["resources"]["limits"]["memory"], "352Mi");
    let set = render_with("minimal", "resources:\n  limits:\n    memory: 1Gi\n");
    assert_eq!(set.container()["resources"]["limits"]["memory"], "1Gi", "an explicit limit wins");
    let persistent = render_with("minimal", "persistence:\n  enabled: true\n");
    assert!(persistent.container()["resources"]["requests"].get("ephemeral-storage").is_none());
}

#[test]
fn replicas_spread_per_rollout_and_get_a_disruption_budget_by_default() {
    let minimal = render("minimal");
    for constraint in minimal.pod_spec()["topologySpreadConstraints"].as_array().unwrap() {
        assert_eq!(constraint["matchLabelKeys"], serde_json::json!(["pod-template-hash"]), "{constraint}");
    }
    assert!(!render("minimal").kinds().contains("PodDisruptionBudget"), "one replica: a budget would block drains");
    let three = render_with("minimal", "replicaCount: 3\nauditDatabase: postgres\nsecrets:\n  existingSecret: s\n");
    assert_eq!(three.one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    let off = render_with("postgres-audit", "podDisruptionBudget:\n  enabled: false\n");
    assert!(!off.kinds().contains("PodDisruptionBudget"));
}

#[test]
fn the_helm_test_pod_uses_the_servers_image_pull_secrets_and_placement() {
    let overrides = "imagePullSecrets: [{name: regcred}]\ntolerations: [{key: dedicated, operator: Equal, value: codec, effect: NoSchedule}]\n\
                     image:\n  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    let r = render_with("gcp-workload-identity", overrides);
    let test_pod = r.one("Pod");
    let server = r.pod_spec();
    for key in ["imagePullSecrets", "nodeSelector", "tolerations"] {
        assert_eq!(test_pod["spec"][key], server[key], "{key}");
        assert!(!server[key].is_null(), "{key}");
    }
    let image = test_pod["spec"]["containers"][0]["image"].as_str().unwrap();
    assert_eq!(image, r.container()["image"].as_str().unwrap());
    assert!(image.contains("@sha256:"), "pinned like the server: {image}");
    assert_eq!(test_pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
    let other =
        render_with("minimal", "tests:\n  image:\n    repository: registry.example.com/codec-probe\n    tag: \"1\"\n");
    assert_eq!(other.one("Pod")["spec"]["containers"][0]["image"], "registry.example.com/codec-probe:1");
}

#[test]
fn the_migration_job_runs_before_the_pods_with_their_config_secrets_ca_and_sidecars() {
    let r = render("gke-production");
    let job = r.one("Job");
    let hook = &job["metadata"]["annotations"];
    assert_eq!(hook["helm.sh/hook"], "pre-install,pre-upgrade");
    let spec = &job["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["migrate"]));
    assert_eq!(container["image"], r.container()["image"]);
    assert_eq!(container["env"], r.container()["env"], "the same CODEC_* variables");
    // The proxy is a native sidecar in both pods, so the Job's pod ends when `migrate` does.
    assert_eq!(spec["initContainers"], r.pod_spec()["initContainers"]);
    assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
    // Hook copies of the config and service account exist before the release's own on a first install.
    let names = |kind: &str| -> Vec<String> {
        r.all(kind)
            .iter()
            .filter(|d| Rendered::is_hook(d))
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("ConfigMap"), ["codec-codec-server-migrate"]);
    assert_eq!(names("ServiceAccount"), ["codec-codec-server-migrate"]);
    assert_eq!(spec["serviceAccountName"], "codec-codec-server-migrate");
    let sa = r.named("ServiceAccount", "codec-codec-server-migrate").unwrap();
    assert!(sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].is_string(), "the proxy's identity");
    for map in r.all("ConfigMap") {
        let config: toml::Value = toml::from_str(map["data"]["config.toml"].as_str().unwrap()).unwrap();
        assert_eq!(config["audit"]["migrate_on_start"].as_bool(), Some(false), "the replicas do not migrate");
    }
    assert_eq!(job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "codec-server-migrate");

    // A chart-made Secret does not exist yet on a first install either: the Job mounts its hook copy.
    let made = render_with("autoscaling", "migrations:\n  job:\n    enabled: true\n");
    let copy = made.named("Secret", "codec-codec-server-migrate").expect("a hook copy of the chart-made Secret");
    assert_eq!(copy["data"], made.named("Secret", FULLNAME).unwrap()["data"]);
    let volumes = made.one("Job")["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("\"secretName\":\"codec-codec-server-migrate\""), "{volumes}");

    // The RDS CA from its Secret: mounted in the server and the Job, and named by the config.
    let eks = render("eks-production");
    let config: toml::Value = toml::from_str(eks.config_toml()).unwrap();
    let ca_file = config["audit"]["database_ca_file"].as_str().unwrap();
    assert_eq!(ca_file, "/run/secrets/codec-server-db-ca/global-bundle.pem");
    for spec in [eks.pod_spec(), &eks.one("Job")["spec"]["template"]["spec"]] {
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "db-ca").expect("db-ca volume");
        assert_eq!(volume["secret"]["secretName"], "rds-ca");
        let mounts = spec["containers"][0]["volumeMounts"].to_string();
        assert!(mounts.contains("/run/secrets/codec-server-db-ca"), "{mounts}");
    }
}

#[test]
fn extra_containers_go_in_the_server_pod_only() {
    let r = render_with(
        "eks-production",
        "extraContainers:\n  - name: log-shipper\n    image: registry.example.com/shipper:1\n\
         extraVolumes:\n  - name: spool\n    emptyDir: {}\nextraVolumeMounts:\n  - name: spool\n    mountPath: /spool\n",
    );
    let names: Vec<&Value> = r.pod_spec()["containers"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
    assert_eq!(names, [&Value::from("codec-server"), &Value::from("log-shipper")]);
    let job = &r.one("Job")["spec"]["template"]["spec"];
    assert_eq!(job["containers"].as_array().unwrap().len(), 1, "a sidecar would keep the Job running");
    assert!(job["volumes"].to_string().contains("spool"), "extra volumes are mounted in the Job too");
}

#[test]
fn the_readme_walk_throughs_show_the_value_sets_the_tests_render() {
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let mut shown = Vec::new();
    for (i, _) in readme.match_indices("<!-- ci/") {
        let rest = &readme[i + "<!-- ".len()..];
        let file = &rest[..rest.find(" -->").unwrap()];
        let block = rest.split_once("```yaml\n").unwrap().1;
        let block = &block[..block.find("```").unwrap()];
        let on_disk = std::fs::read_to_string(chart().join(file)).unwrap();
        assert_eq!(block, on_disk, "README.md's block for {file} differs from the file the tests render");
        let stem = file.trim_start_matches("ci/").trim_end_matches("-values.yaml").to_owned();
        assert!(VALUE_SETS.contains(&stem.as_str()), "{file} is not a rendered value set");
        shown.push(stem);
    }
    assert_eq!(shown, ["eks-production", "gke-production", "vault-kubernetes"]);
}

/// The NOTES an install of `set` prints (`helm install --dry-run=client`: no cluster is contacted).
fn notes(set: &str) -> String {
    let chart = chart();
    let values = value_set(set);
    let out = helm(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--values",
        values.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{set}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    stdout.split_once("NOTES:").expect("NOTES are printed").1.to_owned()
}

#[test]
fn notes_say_plainly_that_one_sqlite_replica_is_a_trial_and_show_the_dependency_view() {
    let trial = notes("minimal");
    assert!(trial.contains("TRIAL setup"), "{trial}");
    assert!(trial.contains("config.audit.retention (30d)"), "{trial}");
    assert!(trial.contains("readyz?verbose"), "{trial}");
    let production = notes("eks-production");
    assert!(!production.contains("TRIAL"), "{production}");
}
