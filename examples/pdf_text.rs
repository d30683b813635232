//! `cargo run --example pdf_text -- FILE [--page N]`: same output as `rq-worker pdf-text`, usable
//! before the subcommand is wired into main. Used by bench/pdf_quality.py as a fallback.
//! `PDF_WORD_GAP=0.12` overrides the word-gap ratio, for tuning the layout against the corpus.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    inner: rq_worker::config::PdfTextArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut opts = rq_worker::pdf::ExtractOptions::default();
    if let Some(g) = std::env::var("PDF_WORD_GAP")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.layout.word_gap = g;
    }
    rq_worker::pdf::cli::run_pdf_text_with(&args.inner, opts)
}
