//! The seam between the extract job and PDF text extraction ([`crate::pdf`]): learn the page count
//! first (checked against `MAX_PDF_PAGE_COUNT` before any text is extracted), then extract every
//! page's text, bounded by the job's deadline and cancellation.

use std::sync::Arc;
use std::time::Instant;

use crate::pdf::{self, ExtractOptions, PdfError};

/// A PDF that could not be read (or whose extraction was stopped).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PdfTextError(#[from] pub PdfError);

/// A PDF whose page count is known.
pub struct OpenedPdf<'a> {
    bytes: &'a [u8],
    page_count: u32,
}

/// Read the page count (no text yet). A count of 0 from the cheap path (some encrypted files) is
/// taken as unknown: the extraction then tells the real count.
pub fn open(bytes: &[u8]) -> Result<OpenedPdf<'_>, PdfTextError> {
    let page_count = pdf::page_count(bytes)?;
    Ok(OpenedPdf { bytes, page_count })
}

impl OpenedPdf<'_> {
    /// Pages in the document; 0 when only the extraction can tell.
    pub fn page_count(&self) -> usize {
        self.page_count as usize
    }

    /// The text of every page, in order; stops at `deadline` or when `cancel()` says so.
    pub fn extract_pages(
        &self,
        deadline: Option<Instant>,
        cancel: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<Vec<String>, PdfTextError> {
        let opts = ExtractOptions {
            deadline,
            cancel: Some(cancel),
            ..ExtractOptions::default()
        };
        let doc = pdf::extract(self.bytes, &opts)?;
        if doc.pages.is_empty() {
            return Err(PdfTextError(PdfError::Parse("the PDF has no pages".into())));
        }
        Ok(doc.pages)
    }
}
