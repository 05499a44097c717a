//! `codec-server`: parse the command line and run it.

use clap::Parser;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    codec_server::cli::Cli::parse().run().await
}
