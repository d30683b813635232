//! `rq-worker`: parse the command line, set up logging, run the worker (or a tool subcommand) and
//! turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

use rq_worker::config::{Cli, Command};

/// glibc gives threads that allocate their own malloc arenas (up to eight per core). With a job
/// thread per slot plus the heartbeat, pub/sub and maintenance threads, memory freed by one job
/// stays cached in many arenas; two arenas keep RSS close to what is in use (about 15% less peak
/// RSS in the ingestion benchmark, with no slowdown seen there). `MALLOC_ARENA_MAX`, when set, wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse_from(rq_worker::config::normalize_rq_args(std::env::args_os()));
    env_logger::Builder::new()
        .filter_level(cli.worker.log_filter())
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
    if cli.command.is_none() {
        for line in cli.worker.python_only.report() {
            log::warn!("{line}");
        }
        if let Some(path) = &cli.worker.pid {
            if let Err(e) = std::fs::write(path, std::process::id().to_string()) {
                eprintln!(
                    "rq-worker: error: cannot write the pid file {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
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
