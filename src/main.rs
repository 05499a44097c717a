//! `codec-server`: parse the command line and run it.
//!
//! A failure prints the error and its causes (which say how to fix it) on stderr and exits 1 — never
//! a Rust stack trace, whatever `RUST_BACKTRACE` says: operators read this, not developers.

use std::process::ExitCode;

use clap::Parser;

#[actix_web::main]
async fn main() -> ExitCode {
    match codec_server::cli::Cli::parse().run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", codec_server::cli::error_report(&error));
            ExitCode::FAILURE
        }
    }
}
