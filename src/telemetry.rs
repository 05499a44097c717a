//! Logging setup: pretty or JSON lines on stderr; `RUST_LOG` overrides the configured level. INFO lines
//! and below reach stderr through a buffer written by a background thread (`buffered_stderr`). The
//! access line is formatted by `access_line`, not by the `fmt` layer, because it is the busiest line.
//!
//! Every line written while a request is served sits in that request's `request` span (see
//! `request_id`), so it carries `request_id`: the pretty format prints it as `request{request_id=…}:`,
//! the JSON format in `"spans":[{"name":"request","request_id":…}, …]`. Colours only when stderr is a terminal, so files and
//! Kubernetes logs get plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub mod access_line;
mod buffered_stderr;

use buffered_stderr::BufferedStderr;
pub use buffered_stderr::FlushGuard;

use crate::config::{LogConfig, LogFormat};

/// Crates whose own error lines only repeat ours: during a Vault outage the Vault client (`vaultrs`) and
/// its HTTP layer (`rustify`) logged four ERROR lines per failed call beside our one WARN with the same
/// error, thousands of lines a second under load (docs/reliability.md). Silenced unless the configured
/// level names them.
const QUIET_CRATES: [&str; 2] = ["rustify", "vaultrs"];

/// Installs the global subscriber once; later calls are no-ops. Hold the guard until the process is
/// done logging: dropping it writes out the buffered lines.
pub fn init(config: &LogConfig) -> FlushGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_directives(&config.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(BufferedStderr);
    let ansi = std::io::stderr().is_terminal();
    let installed = match config.format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Pretty => builder.with_ansi(ansi).try_init(),
    };
    if installed.is_ok() {
        access_line::set_style(access_line::Style { format: config.format, ansi });
    }
    FlushGuard
}

/// The configured level plus `<crate>=off` for each of [`QUIET_CRATES`] it does not name.
fn filter_directives(level: &str) -> String {
    let mut directives = level.to_string();
    for name in QUIET_CRATES {
        let named = level.split(',').any(|d| d.trim().split('=').next() == Some(name));
        if !named {
            directives.push_str(&format!(",{name}=off"));
        }
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_client_errors_are_silenced_unless_named() {
        assert_eq!(filter_directives("info"), "info,rustify=off,vaultrs=off");
        assert_eq!(filter_directives("debug,vaultrs=debug"), "debug,vaultrs=debug,rustify=off");
        assert!(EnvFilter::try_new(filter_directives("warn,codec_server=debug")).is_ok());
    }
}
