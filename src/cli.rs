//! The `codec-server` command line: serve, check-config, encode/decode for scripts, keygen, migrate and
//! audit queries.

mod audit;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::Audit;
use crate::auth::Authorizer;
use crate::clock::SystemClock;
use crate::config::{Config, Mode, Overrides};
use crate::protocol::{CodecOp, Namespace, Payloads};
use crate::startup::Application;
use crate::state::AppState;

/// Organization-level Temporal Codec Server.
#[derive(Debug, Parser)]
#[command(name = "codec-server", version, about)]
pub struct Cli {
    /// TOML config file. Without one, `serve` starts the embedded dev default.
    #[arg(long, global = true, env = "CODEC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (dev key, audit database); overrides `data_dir`.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8081; overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Also allow this browser origin (CORS), e.g. http://localhost:8080; repeat for several. Added
        /// to `cors.allowed_origins` (in dev mode: to the local Temporal UI on port 8233).
        #[arg(long = "allow-origin", value_name = "URL")]
        allow_origin: Vec<String>,
    },
    /// Load and validate the configuration, then print it with secrets redacted.
    CheckConfig,
    /// Seal the Payloads JSON on stdin for a namespace; print the result on stdout.
    Encode {
        #[arg(long)]
        namespace: String,
    },
    /// Open the Payloads JSON on stdin for a namespace; print the result on stdout.
    Decode {
        #[arg(long)]
        namespace: String,
    },
    /// Apply pending audit-database migrations (needed when `audit.migrate_on_start = false`).
    Migrate,
    /// Read or prune the audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// GET a URL (e.g. http://codec-server:8082/readyz) and exit 0 on a 2xx answer: the chart's `helm
    /// test` pod runs this from the server's own image, so no third-party image is pulled.
    Probe {
        url: String,
        /// Tries before giving up (two seconds apart).
        #[arg(long, default_value_t = 5)]
        attempts: u32,
        /// Seconds allowed for each try.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// With https://, do not verify the certificate (this only proves readiness; nothing secret is sent).
        #[arg(long)]
        insecure: bool,
    },
    /// Write a new local KEK file (`<dir>/<name>.key`, mode 0600). Never overwrites.
    Keygen {
        #[arg(long)]
        name: String,
        /// Directory; default `<data_dir>/keys`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        let (listen, allow_origins) = match &self.command {
            Command::Serve { listen, allow_origin } => (*listen, allow_origin.clone()),
            _ => (None, Vec::new()),
        };
        let overrides = Overrides { listen, data_dir: self.data_dir.clone(), allow_origins };
        match self.command {
            Command::Keygen { name, dir } => {
                if crate::kms::KekUri::parse(&format!("local://{name}")).is_err() {
                    anyhow::bail!("key names use only letters, digits, '-', '_' and '.'");
                }
                let dir =
                    dir.unwrap_or_else(|| self.data_dir.unwrap_or_else(|| PathBuf::from("codec-data")).join("keys"));
                let path = crate::kms::local::write_new_key(&dir, &name)?;
                println!("wrote {} — reference it as local://{name}", path.display());
                Ok(())
            }
            Command::CheckConfig => {
                let (config, mode) = Config::load(self.config.as_deref(), &overrides)?;
                if mode == Mode::Dev {
                    println!("# no config file: this is the embedded dev default");
                } else {
                    // Also load every key file, so a missing or malformed KEK is found before deploying.
                    AppState::build(&config, mode, Arc::new(SystemClock), Audit::disabled()).await?;
                }
                print!("{}", config.to_redacted_toml());
                Ok(())
            }
            Command::Serve { .. } => serve(self.config.as_deref(), &overrides).await,
            Command::Probe { url, attempts, timeout, insecure } => {
                probe(&url, attempts, std::time::Duration::from_secs(timeout), insecure).await
            }
            Command::Migrate => audit::migrate(&Config::load(self.config.as_deref(), &overrides)?.0).await,
            Command::Audit { command } => {
                audit::run(&Config::load(self.config.as_deref(), &overrides)?.0, command).await
            }
            Command::Encode { namespace } => {
                transform(self.config.as_deref(), &overrides, &namespace, CodecOp::Encode).await
            }
            Command::Decode { namespace } => {
                transform(self.config.as_deref(), &overrides, &namespace, CodecOp::Decode).await
            }
        }
    }
}

/// The text `codec-server` prints when a command fails: the error, then each cause on its own line.
/// Built from `Display` only, so no backtrace is ever included (`anyhow`'s `Debug` would add one when
/// `RUST_BACKTRACE` is set).
pub fn error_report(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

async fn serve(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<()> {
    let (config, mode) = Config::load(file, overrides)?;
    let _flush_logs = crate::telemetry::init(&config.log);
    if mode == Mode::Dev {
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            "DEV MODE — NOT FOR PRODUCTION: no config file, so auth is OFF, keys are a local file, and only loopback is served. Pass --config for a real deployment."
        );
    }
    let app = Application::build(&config, mode).await?;
    if let Some(port) = app.admin_port() {
        tracing::info!(port, "Admin listener (/healthz, /readyz, /metrics) listening.");
    }
    tracing::info!(listen = %config.server.listen, port = app.port(), "Codec server listening.");
    app.run_until_stopped().await.context("server failed")
}

/// `probe`: bounded tries; prints the status (and the body, which names no secret) of the last one.
async fn probe(url: &str, attempts: u32, timeout: std::time::Duration, insecure: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .tls_danger_accept_invalid_certs(insecure)
        .build()
        .context("HTTP client")?;
    let mut last = String::from("no attempt made");
    for attempt in 1..=attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => {
                println!("{} {}", response.status(), response.text().await.unwrap_or_default());
                return Ok(());
            }
            Ok(response) => last = format!("{} {}", response.status(), response.text().await.unwrap_or_default()),
            Err(e) => last = format!("{e:#}"),
        }
    }
    anyhow::bail!("{url}: not ready after {attempts} attempts; last answer: {last}")
}

/// `encode`/`decode` subcommands: the operator holds the keys, so this is an operator grant.
async fn transform(
    file: Option<&std::path::Path>,
    overrides: &Overrides,
    namespace: &str,
    op: CodecOp,
) -> anyhow::Result<()> {
    let (config, mode) = Config::load(file, overrides)?;
    let namespace = Namespace::parse(namespace).context("invalid namespace name")?;
    let state = AppState::build(&config, mode, Arc::new(SystemClock), Audit::disabled()).await?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let payloads = Payloads::from_json_bounded(&input, config.server.max_payloads)?.payloads;
    let grant = Authorizer::operator_grant(&namespace, op);
    let out = match op {
        CodecOp::Encode => state.codec.encode(&grant, payloads).await?.payloads,
        _ => state.codec.decode(&grant, payloads).await?.payloads,
    };
    println!("{}", String::from_utf8_lossy(&Payloads { payloads: out }.to_json()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_report_lists_the_causes_and_never_a_backtrace() {
        let error = anyhow::anyhow!("no such file").context("cannot read /etc/codec.toml: pass --config");
        let report = error_report(&error);
        assert_eq!(report, "error: cannot read /etc/codec.toml: pass --config\n  caused by: no such file");
    }
}
