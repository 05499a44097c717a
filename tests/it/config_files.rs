//! The shipped example configs load, and the configuration layers (file → env → `*_FILE` → flags)
//! work through the real `codec-server` binary.

use std::process::{Command, Output};

fn codec_server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codec-server"));
    command.args(args).env_remove("CODEC_CONFIG").env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run codec-server")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_annotated_example_config_is_valid_once_its_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys = keys.to_str().unwrap();
    let env = [("CODEC_KMS__LOCAL__KEY_DIR", keys)];
    let missing = codec_server(&["check-config", "--config", &repo_file("config/example.toml")], &env);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("codec-server keygen --name main"), "{}", stderr(&missing));

    assert!(codec_server(&["keygen", "--name", "main", "--dir", keys], &[]).status.success());
    let ok = codec_server(&["check-config", "--config", &repo_file("config/example.toml")], &env);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("payments-*"));
}

#[test]
fn the_dev_config_file_matches_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(codec_server(&["keygen", "--name", "dev", "--data-dir", data], &[]).status.success());
    let from_file = codec_server(&["check-config", "--config", &repo_file("config/dev.toml"), "--data-dir", data], &[]);
    let embedded = codec_server(&["check-config", "--data-dir", data], &[]);
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    let embedded = stdout(&embedded);
    let embedded = embedded.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(stdout(&from_file).trim(), embedded.trim());
}

#[test]
fn environment_and_file_secrets_override_the_file_and_secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let secret = dir.path().join("legacy.key");
    std::fs::write(&secret, "test-key-test-key-test-key-test!\n").unwrap();
    assert!(codec_server(&["keygen", "--name", "dev", "--data-dir", data], &[]).status.success());
    let out = codec_server(
        &["check-config", "--config", &repo_file("config/dev.toml"), "--data-dir", data],
        &[
            ("CODEC_SERVER__MAX_PAYLOADS", "7"),
            ("CODEC_LEGACY__KEYS__K1__KEY_FILE", secret.to_str().unwrap()),
            ("CODEC_LEGACY__KEYS__K1__NAMESPACES", "[default]"),
            // What Kubernetes injects for a Service named `codec-server`: ignored, not an error.
            ("CODEC_SERVER_PORT", "tcp://10.0.0.1:8081"),
            ("CODEC_SERVER_SERVICE_HOST", "10.0.0.1"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("max_payloads = 7"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains("test-key-test-key"), "a secret was printed");
}

#[test]
fn invalid_configuration_fails_with_a_message_that_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[auth]\nmode = \"disabled\"\n[server]\nlisten = \"0.0.0.0:8081\"\n[keyrings.k]\nprimary = [\"local://k\"]\n[[namespaces]]\nmatch = \"*\"\nkeyring = \"k\"\n").unwrap();
    let out = codec_server(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("allow_unauthenticated_non_loopback"), "{}", stderr(&out));

    std::fs::write(&file, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = codec_server(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lisen"), "unknown keys are named: {}", stderr(&out));
}

#[test]
fn the_encode_and_decode_subcommands_round_trip_through_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(codec_server(&["keygen", "--name", "dev", "--data-dir", data], &[]).status.success());
    let run = |op: &str, input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_codec-server"))
            .args([op, "--namespace", "default", "--config", &repo_file("config/dev.toml"), "--data-dir", data])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let original = r#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJjYXJkIjoiNDExMSJ9"}]}"#;
    let sealed = run("encode", original);
    assert!(sealed.contains("YmluYXJ5L2ttcy1lbnZlbG9wZQ==") && !sealed.contains("eyJjYXJkIjoiNDExMSJ9"));
    assert_eq!(run("decode", &sealed).trim(), original);
}

#[test]
fn startup_and_cli_errors_print_the_message_and_the_fix_never_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let backtrace = [("RUST_BACKTRACE", "full"), ("RUST_LIB_BACKTRACE", "1")];

    let runs = [
        (vec!["serve", "--data-dir", data, "--listen", &taken], "--listen"),
        (vec!["check-config", "--config", "/nonexistent/codec.toml"], "/nonexistent/codec.toml"),
        (vec!["audit", "query", "--data-dir", data, "--since", "yesterday-ish"], "24h"),
    ];
    for (args, fix) in runs {
        let out = codec_server(&args, &backtrace);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("error: "), "{args:?}: {err}");
        assert!(err.contains(fix), "{args:?}: the fix is named: {err}");
        for trace in ["backtrace", "Backtrace", ".rs:"] {
            assert!(!err.contains(trace), "{args:?}: `{trace}` in {err}");
        }
    }
}

#[test]
fn check_config_refuses_a_group_rule_when_no_issuer_has_a_groups_claim() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(codec_server(&["keygen", "--name", "main", "--data-dir", data], &[]).status.success());
    let config = |issuer_extra: &str| {
        format!(
            "data_dir = {data:?}\n[auth]\nmode = \"jwt\"\n[[auth.issuers]]\nissuer = \"https://login.example.com/\"\n\
             audiences = [\"temporal-codec\"]\njwks_url = \"https://login.example.com/jwks.json\"\n{issuer_extra}\n\
             [[auth.policies]]\nmatch = \"payments\"\ndecode = [\"*@example.com\", \"group:oncall\"]\n\
             [keyrings.main]\nprimary = [\"local://main\"]\n[[namespaces]]\nmatch = \"*\"\nkeyring = \"main\"\n"
        )
    };
    let file = dir.path().join("codec.toml");

    std::fs::write(&file, config("")).unwrap();
    let refused = codec_server(&["check-config", "--config", file.to_str().unwrap()], &[]);
    let err = stderr(&refused);
    assert!(!refused.status.success(), "a rule that can never match was accepted");
    assert!(err.contains("`group:oncall` can never match") && err.contains("groups_claim"), "{err}");

    std::fs::write(&file, config("groups_claim = \"groups\"")).unwrap();
    let accepted = codec_server(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert!(accepted.status.success(), "{}", stderr(&accepted));
}
