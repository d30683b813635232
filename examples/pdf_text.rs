//! `cargo run --example pdf_text -- FILE [--page N]`: same output as `rq-worker pdf-text`, usable
//! before the subcommand is wired into main. Used by bench/pdf_quality.py as a fallback.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    inner: rq_worker::config::PdfTextArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rq_worker::pdf::cli::run_pdf_text(&args.inner)
}
