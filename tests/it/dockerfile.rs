//! The container build (issue 14), checked without a Docker daemon: the `.dockerignore` allowlist holds
//! everything Cargo reads to build the binary (the manifest declares a `[[test]]` target whose files are
//! not in the build context), the Dockerfile copies only allowlisted paths, its base images come from
//! build arguments meant to carry digests (never a made-up digest), and the image gets OCI labels.

use std::path::Path;
use std::process::Command;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The paths `.dockerignore` lets in (`*` then `!path` lines).
fn allowlist() -> Vec<String> {
    let text = repo_file(".dockerignore");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(lines.first(), Some(&"*"), ".dockerignore must start by excluding everything");
    lines[1..]
        .iter()
        .map(|l| l.strip_prefix('!').expect("only !exceptions after *").trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn the_build_context_allowlist_is_enough_for_cargo_to_build_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let context = tempfile::tempdir().unwrap();
    for entry in allowlist() {
        let status =
            Command::new("cp").arg("-r").arg(root.join(&entry)).arg(context.path().join(&entry)).status().unwrap();
        assert!(status.success(), "copy {entry}");
    }
    assert!(!context.path().join("tests").exists());

    // Cargo parses the manifest and every declared target as `cargo build --bin codec-server` would.
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(context.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = metadata["packages"][0]["targets"].to_string();
    assert!(targets.contains("\"codec-server\"") && targets.contains("\"it\""), "{targets}");

    // Every COPY from the context names an allowlisted path.
    let allowed = allowlist();
    for line in repo_file("Dockerfile").lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                allowed.iter().any(|a| a == source.trim_end_matches('/')),
                "{line}: {source} is not in .dockerignore"
            );
        }
    }
}

#[test]
fn base_images_come_from_pinning_arguments_and_the_image_is_labelled() {
    let dockerfile = repo_file("Dockerfile");
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        assert!(from.starts_with("FROM ${"), "a base image must come from a *_IMAGE argument: {from}");
    }
    // A digest in this file is a real one someone resolved, or none at all (a TODO says how).
    for (i, _) in dockerfile.match_indices("@sha256:") {
        let digest = &dockerfile[i + 8..];
        let hex = digest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        assert!(hex == 64 || digest.starts_with("<digest>"), "malformed digest at byte {i}");
    }
    assert!(dockerfile.contains("TODO(pin)"), "until digests are committed, the file says how to pin them");
    for label in ["source", "revision", "version"] {
        assert!(dockerfile.contains(&format!("org.opencontainers.image.{label}=")), "OCI label {label}");
    }
    assert!(dockerfile.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"), "the image's binary is stripped");
}
