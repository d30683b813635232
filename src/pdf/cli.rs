//! `rq-worker pdf-text FILE [--page N] [--rejoin-hyphens]`: prints the text the worker would store for a PDF, pages
//! each followed by a form feed (like pdftotext), so users can see what a document yields.
//! Exit status is non-zero, with the typed error on stderr, when the file cannot be read.

use std::io::Write;

use anyhow::Context;

use crate::config::PdfTextArgs;

use super::{ExtractOptions, extract};

/// Run `pdf-text`: read the file, extract (all pages or `--page N`), print to stdout.
pub fn run_pdf_text(args: &PdfTextArgs) -> anyhow::Result<()> {
    run_pdf_text_with(args, ExtractOptions::default())
}

/// [`run_pdf_text`] with explicit options (limits, normalisation, layout tuning).
pub fn run_pdf_text_with(args: &PdfTextArgs, mut opts: ExtractOptions) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(p) = args.page {
        opts.pages = Some((p, p));
    }
    if args.rejoin_hyphens {
        opts.layout.rejoin_hyphens = true;
    }
    let doc = extract(&bytes, &opts)
        .with_context(|| format!("extracting text from {}", args.file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = out
        .write_all(doc.to_text().as_bytes())
        .and_then(|()| out.flush());
    match written {
        // `pdf-text FILE | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
