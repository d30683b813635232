//! `rq-worker`: parse the command line, set up logging, run the worker (or a tool subcommand) and
//! turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

use rq_worker::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.worker.log_filter())
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
    let result: anyhow::Result<()> = match &cli.command {
        Some(Command::PdfText(args)) => rq_worker::pdf::cli::run_pdf_text(args),
        None => {
            let registry = rq_worker::jobs::registry(&cli.ingest, cli.worker.concurrency);
            rq_worker::runtime::run(cli.worker, registry).map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rq-worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
