//! Logging setup: pretty or JSON lines on stderr; `RUST_LOG` overrides the configured level.
//!
//! Every line written while a request is served sits in that request's `request` span (see
//! `request_id`), so it carries `request_id`: the pretty format prints it as `request{request_id=…}:`,
//! the JSON format in `"spans":[{"name":"request","request_id":…}, …]`. Colours only when stderr is a terminal, so files and
//! Kubernetes logs get plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
