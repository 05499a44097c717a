//! The Helm chart `charts/codec-server` checked with the real `helm` binary (issue 6): every value set in
//! `charts/codec-server/ci/` lints and renders; every rendered manifest passes kubernetes-validate's strict
//! schemas; the config file the chart renders is accepted by `codec-server check-config` in a copy of the
//! pod's filesystem and environment; and values that cannot work are refused with a message saying why.
//!
//! The tools and the pod rebuild live in `support/helm.rs`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::helm::*;

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
        // Every probe is on the plain-HTTP admin port, whatever the API port speaks.
        for (probe, path) in
            [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
        {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{set} {probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "admin", "{set} {probe}");
            assert_eq!(container[probe]["httpGet"]["scheme"], "HTTP", "{set} {probe}");
        }
        // The helm test pod calls /readyz through the Service but is never one of its endpoints.
        let test_pod = r.one("Pod");
        assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
        let args = test_pod["spec"]["containers"][0]["args"].to_string();
        assert!(
            args.contains("\"probe\"") && args.contains("http://codec-codec-server.codec.svc:8082/readyz"),
            "{set}: {args}"
        );
        let selector = r.one("Service")["spec"]["selector"].as_object().unwrap();
        assert!(
            selector.iter().any(|(k, v)| test_pod["metadata"]["labels"][k] != *v),
            "{set}: Service selects the test pod"
        );

        let sa = &r.named("ServiceAccount", FULLNAME).unwrap()["metadata"]["annotations"];
        let automount = &pod["automountServiceAccountToken"];
        match set {
            "aws-irsa" => assert!(sa["eks.amazonaws.com/role-arn"].as_str().unwrap().starts_with("arn:aws:iam::")),
            "gcp-workload-identity" => {
                assert!(sa["iam.gke.io/gcp-service-account"].as_str().unwrap().ends_with(".iam.gserviceaccount.com"))
            }
            "aks-workload-identity" => {
                assert_eq!(sa["azure.workload.identity/client-id"], "5a1c3f0e-8d2b-4c71-9e6a-2f4b7d9c0e13");
            }
            _ => {}
        }
        // The AKS webhook mutates only labelled pods: the label goes with the client id, and only then.
        let labels = &r.one("Deployment")["spec"]["template"]["metadata"]["labels"];
        let azure = sa.get("azure.workload.identity/client-id").is_some();
        assert_eq!(labels.get("azure.workload.identity/use").map(|v| v == "true"), azure.then_some(true), "{set}");
        // Only Vault's Kubernetes login reads the service-account token.
        let vault_kubernetes = ["autoscaling", "vault-kubernetes"].contains(&set);
        assert_eq!(*automount, vault_kubernetes, "{set}: automountServiceAccountToken");

        let kinds = r.kinds();
        let production = ["eks-production", "gke-production", "vault-kubernetes"].contains(&set);
        assert_eq!(kinds.contains("HorizontalPodAutoscaler"), set == "autoscaling", "{set}");
        assert_eq!(r.one("Deployment")["spec"].get("replicas").is_none(), set == "autoscaling", "{set}");
        // A disruption budget whenever more than one replica runs.
        let several = production || ["postgres-audit", "autoscaling"].contains(&set);
        assert_eq!(kinds.contains("PodDisruptionBudget"), several, "{set}");
        assert_eq!(kinds.contains("Ingress"), production || set == "ingress-tls", "{set}");
        assert_eq!(kinds.contains("Secret"), ["vault-approle", "autoscaling"].contains(&set), "{set}");
        assert_eq!(kinds.contains("Job"), ["eks-production", "gke-production"].contains(&set), "{set}");
    }

    let postgres = render("postgres-audit");
    assert_eq!(postgres.one("Deployment")["spec"]["replicas"], 3);
    assert_eq!(postgres.one("PodDisruptionBudget")["spec"]["minAvailable"], 2);
    let volumes = postgres.pod_spec()["volumes"].to_string();
    assert!(volumes.contains("\"secretName\":\"codec-server-secrets\""), "the existingSecret is mounted: {volumes}");
}

#[test]
fn the_ingress_reaches_only_the_api_port_and_prometheus_and_helm_test_only_the_admin_port() {
    let r = render("ingress-tls");
    let service = r.one("Service");
    let ports = service["spec"]["ports"].as_array().unwrap();
    let names: Vec<&str> = ports.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["https", "admin"]);
    let container_ports = r.container()["ports"].as_array().unwrap();
    assert_eq!((&container_ports[0]["name"], &container_ports[1]["name"]), (&"https".into(), &"admin".into()));
    let config: toml::Value = toml::from_str(r.config_toml()).unwrap();
    assert_eq!(config["server"]["listen"].as_str(), Some("0.0.0.0:8081"));
    assert_eq!(config["server"]["admin_listen"].as_str(), Some("0.0.0.0:8082"));

    // The ingress names the API port only: /metrics and /readyz are not on it at all.
    let ingress = r.one("Ingress");
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "codec.example.com");
    for rule in ingress["spec"]["rules"].as_array().unwrap() {
        for path in rule["http"]["paths"].as_array().unwrap() {
            let backend = &path["backend"]["service"];
            assert_eq!(backend["name"], service["metadata"]["name"]);
            assert_eq!(backend["port"]["name"], "https");
        }
    }

    // Prometheus scrapes the admin port over plain HTTP: no certificate, so no serverName to get wrong.
    let monitor = r.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let labels = &service["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels[k], *v, "the ServiceMonitor selects the Service by {k}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["path"], &endpoint["scheme"]),
        (&"admin".into(), &"/metrics".into(), &"http".into())
    );
    assert!(endpoint.get("tlsConfig").is_none(), "{endpoint}");
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"][0], NAMESPACE);

    // The API port admits the ingress controller; the admin port Prometheus and the `helm test` pod.
    let policy = r.one("NetworkPolicy");
    let (api, admin) = (&policy["spec"]["ingress"][0], &policy["spec"]["ingress"][1]);
    assert_eq!(api["ports"][0]["port"], 8081);
    assert_eq!(admin["ports"][0]["port"], 8082);
    assert!(api["from"].to_string().contains("ingress-nginx") && !api["from"].to_string().contains("monitoring"));
    let test_labels = &r.one("Pod")["metadata"]["labels"];
    let admits_test_pod = |rule: &Value| {
        rule["from"].as_array().unwrap().iter().any(|peer| {
            peer["podSelector"]["matchLabels"].as_object().is_some_and(|m| m.iter().all(|(k, v)| test_labels[k] == *v))
        })
    };
    assert!(admits_test_pod(admin), "the NetworkPolicy must let `helm test` reach /readyz");
    assert!(!admits_test_pod(api));
}

#[test]
fn ingresses_with_acm_or_a_gke_managed_certificate_render_without_a_tls_secret() {
    for set in ["eks-production", "gke-production"] {
        let ingress = render(set).one("Ingress").clone();
        assert!(ingress["spec"].get("tls").is_none(), "{set}: {ingress}");
    }
    let eks = render("eks-production");
    assert!(eks.one("Ingress")["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"].is_string());
    // ACM on the AWS Load Balancer Controller: hosts without a secretName are fine too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(
        &file,
        "ingress:\n  annotations: {}\n  externalTls: true\n  tls:\n    - hosts: [codec.example.com]\n",
    )
    .unwrap();
    let r = Rendered::parse(&template(&[&value_set("eks-production"), &file], &[]).unwrap());
    let tls = &r.one("Ingress")["spec"]["tls"][0];
    assert_eq!((tls["hosts"][0].as_str(), tls.get("secretName")), (Some("codec.example.com"), None));
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
        ("config:\n  server:\n    admin_listen: 0.0.0.0:9000\n", "'admin_listen' not allowed"),
        ("serviceMonitor:\n  tlsConfig: {}\n", "'tlsConfig' not allowed"),
        ("networkPolicy:\n  egress:\n    cloudMetadata: openstack\n", "cloudMetadata"),
        ("config:\n  kms:\n    azure:\n      client_secret: abc\n", "'client_secret' not allowed"),
        ("serviceAccount:\n  azureWorkloadIdentity:\n    clientId: not-a-guid\n", "clientId"),
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
        ("adminPort: 8081\n", "adminPort must differ from containerPort"),
        (
            "terminationGracePeriodSeconds: 45\nconfig:\n  server:\n    shutdown_timeout: 60s\n",
            "shorter than preStopSleepSeconds (5) + config.server.shutdown_timeout (60s)",
        ),
        ("config:\n  server:\n    shutdown_timeout: 1fortnight\n", "cannot read the duration"),
        ("migrations:\n  job:\n    enabled: true\n", "needs auditDatabase = postgres"),
        ("auditDatabaseCa:\n  existingSecret: rds-ca\n", "auditDatabaseCa is the CA of a PostgreSQL server"),
        ("image:\n  repository: \"\"\n", "image.repository is required"),
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
