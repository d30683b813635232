//! The seam between the extract job and PDF text extraction: open a PDF, learn its page count
//! (checked against `MAX_PDF_PAGE_COUNT` before any text is extracted), then get each page's text.
//! Backed by lopdf's own text extraction until the `pdf` module (issue 3) lands.

/// A PDF that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PdfTextError(pub String);

/// An opened PDF.
pub struct OpenedPdf {
    doc: lopdf::Document,
    pages: Vec<u32>,
}

/// Parse the file's structure (no text yet).
pub fn open(bytes: &[u8]) -> Result<OpenedPdf, PdfTextError> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| PdfTextError(e.to_string()))?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err(PdfTextError("the PDF has no pages".into()));
    }
    Ok(OpenedPdf { doc, pages })
}

impl OpenedPdf {
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The text of every page, in order. A page whose text cannot be extracted reads as empty.
    pub fn extract_pages(&self) -> Result<Vec<String>, PdfTextError> {
        Ok(self
            .pages
            .iter()
            .map(|&n| match self.doc.extract_text(&[n]) {
                Ok(text) => text,
                Err(e) => {
                    log::debug!("page {n}: no text ({e})");
                    String::new()
                }
            })
            .collect())
    }
}
