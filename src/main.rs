//! `rq-worker`: parse the command line, set up logging, run the worker (or a tool subcommand) and
//! turn the outcome into an exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use rq_worker::config::{Cli, Command, LogFormatKind};
use rq_worker::ops::logging::{self, LogFormat};

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

/// Parse the command line: legacy forms (`python worker.py QUEUE`, `rq worker ...`) first, then
/// `rq worker`'s spellings, then clap. Returns the settings and the legacy mapping's note.
fn parse() -> (Cli, Option<String>) {
    let queue_name = std::env::var("QUEUE_NAME").ok();
    let (args, legacy) =
        rq_worker::config::map_legacy_command(std::env::args_os().collect(), queue_name.as_deref());
    let matches = Cli::command().get_matches_from(rq_worker::config::normalize_rq_args(args));
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.ingest.database_url_given = matches
        .value_source("database_url")
        .is_some_and(|s| s != clap::parser::ValueSource::DefaultValue);
    (cli, legacy)
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let (cli, legacy) = parse();
    let (format, python_format) = cli.worker.log_format();
    logging::init(
        match format {
            LogFormatKind::Text => LogFormat::Text,
            LogFormatKind::Json => LogFormat::Json,
        },
        cli.worker.log_filter(),
    );
    if cli.command.is_none() {
        if let Some(note) = legacy {
            log::info!("{note}");
        }
        if let Some(f) = python_format {
            log::warn!(
                "--log-format {f:?} ignored: that is a Python logging format; rq-worker writes \
                 text (default) or json lines (--log-format json)"
            );
        }
        for line in cli
            .worker
            .python_only
            .report(cli.worker.python.interpreter.is_some())
        {
            log::warn!("{line}");
        }
        if let Some(path) = &cli.worker.pid
            && let Err(e) = std::fs::write(path, std::process::id().to_string())
        {
            eprintln!(
                "rq-worker: error: cannot write the pid file {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let result: anyhow::Result<()> = match &cli.command {
        Some(Command::PdfText(args)) => rq_worker::pdf::cli::run_pdf_text(args),
        Some(Command::Health(args)) => return health(args),
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

/// `rq-worker health`: one probe, one line, exit 0 or 1.
fn health(args: &rq_worker::config::HealthArgs) -> ExitCode {
    let Some(addr) = args.addr.as_deref().filter(|a| !a.trim().is_empty()) else {
        eprintln!(
            "rq-worker health: no address: give --addr HOST:PORT or set RQ_WORKER_METRICS_ADDR \
             (the worker serves probes only with --metrics-addr)"
        );
        return ExitCode::FAILURE;
    };
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 300.0));
    match rq_worker::ops::http::probe(addr, path, timeout) {
        Ok(body) => {
            println!("{path}: {}", body.trim().replace('\n', "; "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rq-worker health: {e}");
            ExitCode::FAILURE
        }
    }
}
