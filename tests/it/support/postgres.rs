//! A private PostgreSQL cluster on loopback for the audit tests (DESIGN.md §11): `initdb` into a temp
//! directory, `pg_ctl start` with the socket in that directory, a password-protected role reached over
//! TCP on 127.0.0.1. [`Postgres::stop`] and [`Postgres::start_again`] take the database away and bring
//! it back with its data; dropping the value stops the cluster and deletes it.
//!
//! The binaries come from Debian's PostgreSQL packages (`bash scripts/test-env.sh` installs them);
//! `PG_BIN` overrides their directory. A missing binary fails the test with a message saying how to
//! install it: tests never skip. PostgreSQL refuses to run as root, so as root the commands run as the
//! `postgres` system user.

#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The role and password of the test cluster.
const USER: &str = "codec";
const PASSWORD: &str = "audit-test-password";

/// A running private cluster.
pub struct Postgres {
    /// `postgres://codec:…@127.0.0.1:PORT/postgres`.
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Extra `-c name=value` server settings (TLS).
    settings: String,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.into_iter().rev().find(|dir| dir.join("initdb").is_file()).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: run \
             `bash scripts/test-env.sh` (installs Debian's postgresql package) or set PG_BIN"
        )
    })
}

fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status has the real uid; tests run on Linux.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command with `text` on its stdin (as the postgres user when built by `pg_command`).
trait StdinText {
    fn stdin_text(&mut self, text: &str);
}

impl StdinText for Command {
    fn stdin_text(&mut self, text: &str) {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.get_program()));
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).expect("write stdin");
        assert!(child.wait().expect("wait").success(), "{:?} failed", self.get_program());
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

impl Postgres {
    /// Creates and starts a new cluster (about 1-2 s).
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A cluster that serves TLS with this certificate chain and key (PEM) as well as plain TCP.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        // The postgres user must reach the directory, own the data directory and read the password file.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&data);
                    c
                },
                "chown data dir",
            );
        }
        let mut initdb = pg_command(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb, "initdb");
        let mut settings = String::new();
        if let Some((cert, key)) = tls {
            // The server reads its key only when the file is private to its owner.
            let (cert_file, key_file) = (data.join("server.crt"), data.join("server.key"));
            for (file, text) in [(&cert_file, cert), (&key_file, key)] {
                pg_command(Path::new("/usr/bin/tee")).arg(file).stdin_text(text);
                let mut chmod = pg_command(Path::new("/usr/bin/chmod"));
                chmod.arg("0600").arg(file);
                run(chmod, "chmod TLS file");
            }
            settings =
                format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", cert_file.display(), key_file.display());
        }
        let port = free_port();
        let url = format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres");
        let pg = Postgres { url, port, bin, data, settings, _dir: dir };
        pg.start_again();
        pg
    }

    /// Starts the (stopped) cluster on the same port, with its data.
    pub fn start_again(&self) {
        let socket_dir = self.data.clone();
        let mut c = pg_command(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(&self.data).args(["-w", "-t", "30", "-l"]).arg(self.data.join("log")).arg("-o").arg(format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off{}",
            socket_dir.display(),
            self.port,
            self.settings
        ));
        c.arg("start");
        run(c, "pg_ctl start");
    }

    /// Stops the cluster (fast shutdown: connections are closed, new ones refused).
    pub fn stop(&self) {
        let mut c = pg_command(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(&self.data).args(["-w", "-m", "fast", "stop"]);
        run(c, "pg_ctl stop");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = pg_command(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(&self.data).args(["-w", "-m", "immediate", "stop"]);
        let _ = c.output();
    }
}
