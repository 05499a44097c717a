//! The real `codec-server` binary, started with `serve` and a config file in a temporary data
//! directory (one local KEK, auth off, loopback, JSON logs), for tests of process-level behaviour:
//! signals, exit codes, log lines.
//!
//! [`SlowRequest`] sends an encode by hand and holds it in flight, for shutdown tests.
//!
//! A small shell wrapper runs the server and kills it when the test binary's end closes the wrapper's
//! stdin, so a server never outlives the tests even if they are killed; the wrapper passes on the
//! server's exit status.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs the server, prints its pid, kills it when stdin closes, and exits with the server's status.
const WRAPPER: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
child=$!
echo "$child"
{ cat <&3 >/dev/null; kill -KILL "$child" 2>/dev/null; } &
wait "$child""#;

/// How long the binary may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server process.
pub struct ServerProcess {
    pub port: u16,
    /// The admin listener's port, when the config sets `server.admin_listen`.
    pub admin_port: Option<u16>,
    pid: u32,
    wrapper: Child,
    _stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `codec-server serve` with the base config, `server_keys` added to its `[server]` section
    /// (e.g. `shutdown_timeout = "20s"`), and environment `env` (e.g. `RUST_LOG`).
    pub fn start(server_keys: &str, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_with_keys(
            server_keys,
            "[keyrings.main]\nprimary = [\"local://main\"]\n\n[[namespaces]]\nmatch = \"*\"\nkeyring = \"main\"\n",
            env,
        )
    }

    /// Like `start`, with `keys` (the `[kms.*]`, `[keyrings.*]` and `[[namespaces]]` sections) in place
    /// of the local keyring. The local KEK `main` exists either way.
    pub fn start_with_keys(server_keys: &str, keys: &str, env: &[(&str, &str)]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        codec_server::kms::local::write_new_key(&dir.path().join("keys"), "main").expect("local KEK");
        let config = format!(
            "data_dir = {data:?}\n\n[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
             [auth]\nmode = \"disabled\"\n\n{keys}",
            data = dir.path().display().to_string(),
        );
        let config_file = dir.path().join("config.toml");
        std::fs::write(&config_file, config).expect("write config");
        ServerProcess::launch(&[OsStr::new("--config"), config_file.as_os_str()], env, dir)
    }

    /// `codec-server serve` with no config file (the embedded dev default) in a temporary data directory,
    /// on a free loopback port, with JSON logs and `args` added (e.g. `--allow-origin URL`).
    pub fn start_dev(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut all: Vec<&OsStr> = vec![OsStr::new("--data-dir"), dir.path().as_os_str()];
        all.extend([OsStr::new("--listen"), OsStr::new("127.0.0.1:0")]);
        all.extend(args.iter().map(OsStr::new));
        let mut env = env.to_vec();
        env.push(("CODEC_LOG__FORMAT", "json"));
        let all: Vec<std::ffi::OsString> = all.into_iter().map(OsStr::to_owned).collect();
        let refs: Vec<&OsStr> = all.iter().map(|a| a.as_os_str()).collect();
        ServerProcess::launch(&refs, &env, dir)
    }

    fn launch(args: &[&OsStr], env: &[(&str, &str)], dir: tempfile::TempDir) -> ServerProcess {
        let mut command = Command::new("sh");
        command
            .args(["-c", WRAPPER, env!("CARGO_BIN_EXE_codec-server"), "serve"])
            .args(args)
            .env_remove("CODEC_CONFIG")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut wrapper = command.spawn().expect("start codec-server");
        let stdin = wrapper.stdin.take().expect("stdin");
        let mut pid_line = String::new();
        BufReader::new(wrapper.stdout.take().expect("stdout")).read_line(&mut pid_line).expect("pid line");
        let pid = pid_line.trim().parse().expect("wrapper prints the server pid");

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let admin_port = Arc::new(Mutex::new(None));
        let admin_seen = admin_port.clone();
        let stderr = wrapper.stderr.take().expect("stderr");
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = logged_port(&line, "Admin listener (/healthz, /readyz, /metrics) listening.") {
                    *admin_seen.lock().unwrap() = Some(port);
                }
                if let Some(port) = logged_port(&line, "Codec server listening.") {
                    let _ = port_tx.send(port);
                }
                collected.lock().unwrap().push(line);
            }
        });
        let port = port_rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!("codec-server did not start listening; its log:\n{}", lines.lock().unwrap().join("\n"))
        });
        // The admin line is logged before the main one.
        let admin_port = *admin_port.lock().unwrap();
        ServerProcess { port, admin_port, pid, wrapper, _stdin: stdin, lines, _dir: dir }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The server's process id (for `/proc/PID/fd` and `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends a signal (`-TERM`, `-INT`, …) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid);
    }

    /// Waits for the server to exit, at most `deadline`; `None` if it is still running then.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.wrapper.try_wait().expect("wait for the wrapper") {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stderr lines so far, parsed as JSON (lines that are not JSON are skipped).
    pub fn json_log(&self) -> Vec<Value> {
        self.log().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).stderr(Stdio::null()).status();
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

/// The port in the JSON log line whose message is `message`.
pub fn logged_port(line: &str, message: &str) -> Option<u16> {
    let value: Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != message {
        return None;
    }
    u16::try_from(fields.get("port")?.as_u64()?).ok()
}

/// An encode request sent by hand with `Expect: 100-continue`: once the server answers `100 Continue`
/// it has dispatched the request, which then waits for the rest of its body.
pub struct SlowRequest {
    pub stream: TcpStream,
    body: Vec<u8>,
}

impl SlowRequest {
    /// Connects, sends the head, waits for `100 Continue`, sends the first half of `body`.
    pub async fn start(port: u16, body: Vec<u8>) -> SlowRequest {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let head = format!(
            "POST /encode HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-namespace: default\r\n\
             content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        let mut interim = Vec::new();
        while !interim.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stream.read(&mut byte).await.expect("read 100 Continue"), 1, "connection closed early");
            interim.push(byte[0]);
        }
        assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&interim));
        let half = body.len() / 2;
        stream.write_all(&body[..half]).await.expect("send first half");
        SlowRequest { stream, body: body[half..].to_vec() }
    }

    /// Sends the rest of the body; returns the status and the response body.
    pub async fn finish(mut self) -> (u16, Vec<u8>) {
        self.stream.write_all(&self.body).await.expect("send second half");
        let mut response = Vec::new();
        self.stream.read_to_end(&mut response).await.expect("read response");
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
        (status, response[split + 4..].to_vec())
    }
}
