//! PDF text extraction: bytes in, per-page text out (issue 3). No Redis or database knowledge.
//!
//! [`extract`] is the one entry point: it loads a document with lopdf (object/xref streams, broken
//! xref reconstruction, incremental updates and empty-password decryption are lopdf's), then
//! interprets each page's content for text with our own fonts, CMaps and layout. [`page_count`]
//! reads the page count cheaply. Any panic inside becomes [`PdfError::Panic`]; limits bound memory
//! and time on hostile files. `rq-worker pdf-text` lives in [`cli`].

mod cff;
pub mod cli;
mod cmap;
mod content;
mod encoding;
mod font;
mod layout;
// Data tables written by scripts/gen/pdf_tables.py (see scripts/gen/README.md); never edited by hand.
#[path = "generated/tables.rs"]
mod tables;
mod util;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lopdf::{Dictionary, Document as LoDocument, LoadOptions, Object, ObjectId};
use unicode_normalization::UnicodeNormalization;

pub use layout::LayoutParams;

use content::{FontCache, Interpreter};
use layout::PageLayout;
use util::{Budget, deref, dict_of, num_of, stream_bytes};

/// How extracted text is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalization {
    /// Text exactly as the fonts map it.
    None,
    /// NFKC on ligatures and presentation forms only (`ﬁ` → `fi`, Arabic forms → letters),
    /// like pdftotext. The default.
    #[default]
    PresentationForms,
    /// NFKC on all text (also full-width forms, superscripts, ...), best for search.
    Nfkc,
}

/// Options and limits of one extraction. `Default` suits untrusted uploads.
#[derive(Clone)]
pub struct ExtractOptions {
    /// Only these pages (1-based, inclusive range); `None` = all.
    pub pages: Option<(u32, u32)>,
    pub normalization: Normalization,
    pub layout: LayoutParams,
    /// Max decompressed bytes of any one stream (content, font, CMap, object stream).
    pub max_stream_bytes: usize,
    /// Max decompressed bytes of content/font/CMap streams over the whole document.
    pub max_document_bytes: usize,
    /// Max content operators interpreted per page (forms included).
    pub max_ops_per_page: usize,
    /// Max nesting of form XObjects.
    pub max_xobject_depth: usize,
    /// Max bytes of text per page (more is dropped).
    pub max_page_text_bytes: usize,
    /// Time budget for the whole extraction, checked cooperatively.
    pub time_limit: Option<Duration>,
    /// Absolute deadline, checked cooperatively (e.g. the job's own timeout).
    pub deadline: Option<Instant>,
    /// Polled cooperatively; returning `true` stops the extraction with [`PdfError::Cancelled`].
    pub cancel: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            pages: None,
            normalization: Normalization::default(),
            layout: LayoutParams::default(),
            max_stream_bytes: 64 << 20,
            max_document_bytes: 1 << 30,
            max_ops_per_page: 2_000_000,
            max_xobject_depth: 12,
            max_page_text_bytes: 4 << 20,
            time_limit: Some(Duration::from_secs(300)),
            deadline: None,
            cancel: None,
        }
    }
}

impl std::fmt::Debug for ExtractOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractOptions")
            .field("pages", &self.pages)
            .field("normalization", &self.normalization)
            .field("max_stream_bytes", &self.max_stream_bytes)
            .field("max_document_bytes", &self.max_document_bytes)
            .field("max_ops_per_page", &self.max_ops_per_page)
            .field("max_xobject_depth", &self.max_xobject_depth)
            .field("time_limit", &self.time_limit)
            .field("deadline", &self.deadline)
            .field("cancel", &self.cancel.as_ref().map(|_| "fn"))
            .finish()
    }
}

/// The text of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Text per page (of the requested range), each line ending with `\n`.
    pub pages: Vec<String>,
    /// Pages in the document.
    pub page_count: u32,
    /// The file was encrypted (and opened with the empty user password).
    pub encrypted: bool,
    /// `/Producer` from the Info dictionary.
    pub producer: Option<String>,
}

impl Document {
    /// Pages joined like pdftotext: each page followed by a form feed.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for p in &self.pages {
            s.push_str(p);
            s.push('\x0c');
        }
        s
    }
}

/// Why a document yields no text.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// Not a PDF lopdf could read (even after xref reconstruction).
    #[error("unreadable PDF: {0}")]
    Parse(String),
    /// Encrypted with a non-empty user password (or an unsupported handler).
    #[error("encrypted PDF needs a password")]
    Encrypted,
    /// A limit in [`ExtractOptions`] was hit.
    #[error("PDF limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// The time limit or deadline passed.
    #[error("PDF extraction timed out")]
    Timeout,
    /// The cancel callback asked to stop.
    #[error("PDF extraction cancelled")]
    Cancelled,
    /// The requested page does not exist.
    #[error("page {0} out of range (document has {1} pages)")]
    PageOutOfRange(u32, u32),
    /// A bug (in lopdf or here) met on this file; the process carries on.
    #[error("PDF parser panicked: {0}")]
    Panic(String),
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

fn guarded<T>(f: impl FnOnce() -> Result<T, PdfError>) -> Result<T, PdfError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(PdfError::Panic(panic_message(p))),
    }
}

/// Objects text extraction never reads, dropped while loading to bound memory on large files:
/// link annotations and their actions, destinations and name trees, outline items, the structure
/// tree, XMP metadata, embedded files; image streams keep only their dictionary.
fn skip_unneeded(id: ObjectId, obj: &mut Object) -> Option<(ObjectId, Object)> {
    const DEST: [&[u8]; 8] = [
        b"XYZ", b"Fit", b"FitH", b"FitV", b"FitR", b"FitB", b"FitBH", b"FitBV",
    ];
    let name = |d: &Dictionary, k: &[u8]| match d.get(k) {
        Ok(Object::Name(n)) => Some(n.clone()),
        _ => None,
    };
    let drop_dict = |d: &Dictionary| {
        let ty = name(d, b"Type");
        let sub = name(d, b"Subtype");
        matches!(
            ty.as_deref(),
            Some(
                b"StructElem"
                    | b"StructTreeRoot"
                    | b"MCR"
                    | b"OBJR"
                    | b"Metadata"
                    | b"EmbeddedFile"
            )
        ) || sub.as_deref() == Some(b"Link")
            || matches!(
                name(d, b"S").as_deref(),
                Some(b"URI" | b"GoTo" | b"GoToR" | b"Launch")
            )
            || (d.has(b"Title")
                && d.has(b"Parent")
                && (d.has(b"Dest") || d.has(b"A") || d.has(b"First")))
            // Name/number tree nodes (destinations, page labels) and `<< /D [...] >>` destinations.
            || d.has(b"Limits")
            || (d.len() == 1 && d.has(b"D"))
    };
    let keep = match &*obj {
        Object::Dictionary(d) => !drop_dict(d),
        Object::Stream(s) => {
            if name(&s.dict, b"Subtype").as_deref() == Some(b"Image") {
                *obj = Object::Dictionary(s.dict.clone());
                true
            } else {
                !drop_dict(&s.dict)
            }
        }
        Object::Array(a) => {
            !(a.len() >= 2 && matches!(&a[1], Object::Name(n) if DEST.contains(&n.as_slice())))
        }
        _ => true,
    };
    // lopdf keeps the object in place for top-level objects and takes the returned one for
    // members of object streams, so hand back a copy.
    keep.then(|| (id, obj.clone()))
}

fn load_with(
    bytes: &[u8],
    opts: &ExtractOptions,
    reconstruct: bool,
    filtered: bool,
) -> Result<LoDocument, PdfError> {
    let lo = LoadOptions {
        max_decompressed_size: Some(opts.max_stream_bytes),
        force_reconstruct: reconstruct,
        filter: if filtered { Some(skip_unneeded) } else { None },
        ..LoadOptions::default()
    };
    LoDocument::load_mem_with_options(bytes, lo).map_err(|e| {
        if matches!(
            e,
            lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_)
        ) {
            PdfError::Encrypted
        } else {
            PdfError::Parse(e.to_string())
        }
    })
}

/// Pages whose dictionary cannot be found: a sign that the xref table describes the wrong
/// objects even though it reads.
fn missing_pages(doc: &LoDocument) -> usize {
    doc.page_iter()
        .filter(|id| doc.get_dictionary(*id).is_err())
        .count()
}

fn healthy(r: &Result<LoDocument, PdfError>) -> bool {
    match r {
        Ok(d) => !d.get_pages().is_empty() && missing_pages(d) == 0,
        Err(PdfError::Encrypted) => true,
        Err(_) => false,
    }
}

/// Load as written, skipping objects text never needs; when that fails, finds no pages or loses
/// page objects, load everything (lopdf then repairs the page tree), and if still unhealthy
/// rebuild the xref by scanning the file; keep whichever reads best.
fn load(bytes: &[u8], opts: &ExtractOptions) -> Result<LoDocument, PdfError> {
    let first = load_with(bytes, opts, false, true);
    if healthy(&first) {
        return first;
    }
    drop(first);
    let second = load_with(bytes, opts, false, false);
    if healthy(&second) {
        return second;
    }
    match (second, load_with(bytes, opts, true, false)) {
        (Ok(a), Ok(b)) => {
            let score = |d: &LoDocument| d.get_pages().len() - missing_pages(d);
            Ok(if score(&b) > score(&a) { b } else { a })
        }
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
}

/// A file encrypted without an `/ID` in its trailer: the key derivation (ISO 32000-1 algorithm 2)
/// hashes the first file identifier, which readers take as empty when it is missing; lopdf
/// refuses to authenticate instead. Returns the file with an empty `/ID` written into its last
/// `trailer` dictionary (after the cross-reference table, so no offset moves), or `None` when
/// there is no such dictionary.
fn with_empty_id(bytes: &[u8]) -> Option<Vec<u8>> {
    let t = bytes.windows(7).rposition(|w| w == b"trailer")?;
    let open = t + 7 + bytes.get(t + 7..)?.windows(2).position(|w| w == b"<<")? + 2;
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&bytes[..open]);
    out.extend_from_slice(b"/ID[<><>]");
    out.extend_from_slice(&bytes[open..]);
    Some(out)
}

/// Number of pages, read without interpreting any content (for a page-count check before
/// [`extract`]).
pub fn page_count(bytes: &[u8]) -> Result<u32, PdfError> {
    guarded(|| match LoDocument::load_metadata_mem(bytes) {
        Ok(m) if m.page_count > 0 => Ok(m.page_count),
        _ => {
            let doc = load(bytes, &ExtractOptions::default())?;
            Ok(u32::try_from(doc.get_pages().len()).unwrap_or(u32::MAX))
        }
    })
}

/// Extract the text of every page (or `opts.pages`) of a PDF.
pub fn extract(bytes: &[u8], opts: &ExtractOptions) -> Result<Document, PdfError> {
    guarded(|| extract_inner(bytes, opts))
}

fn info_string(doc: &LoDocument, key: &[u8]) -> Option<String> {
    let info = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|o| dict_of(doc, o))?;
    let v = deref(doc, info.get(key).ok()?);
    lopdf::decode_text_string(v)
        .ok()
        .map(|s| s.trim_end_matches('\0').to_string())
}

/// An inheritable page attribute (Resources, MediaBox, Rotate): the page's or an ancestor's.
fn inherited<'a>(doc: &'a LoDocument, page: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    let mut d = page;
    for _ in 0..32 {
        if let Ok(v) = d.get(key) {
            return Some(v);
        }
        d = d.get(b"Parent").ok().and_then(|p| dict_of(doc, p))?;
    }
    None
}

fn extract_inner(bytes: &[u8], opts: &ExtractOptions) -> Result<Document, PdfError> {
    let mut budget = Budget::new(opts);
    let mut doc = load(bytes, opts)?;
    budget.check_time()?;
    if doc.is_encrypted() && doc.trailer.get(b"ID").is_err() {
        if let Some(patched) = with_empty_id(bytes)
            && let Ok(d) = load(&patched, opts)
            && !d.is_encrypted()
        {
            doc = d;
        }
        budget.check_time()?;
    }
    let encrypted = doc.was_encrypted() || doc.is_encrypted();
    if doc.is_encrypted() {
        return Err(PdfError::Encrypted);
    }
    let producer = info_string(&doc, b"Producer").filter(|s| !s.is_empty());
    let pages = doc.get_pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    let (first, last) = match opts.pages {
        Some((a, b)) => {
            if a == 0 || a > page_count {
                return Err(PdfError::PageOutOfRange(a, page_count));
            }
            (a, b.min(page_count))
        }
        None => (1, page_count),
    };
    let mut fonts = FontCache::default();
    let mut out = Vec::with_capacity((last + 1).saturating_sub(first) as usize);
    for (&num, &id) in pages.range(first..=last) {
        budget.check_time()?;
        budget.check_bytes()?;
        budget.ops = 0;
        let _ = num;
        let text = page_text(&doc, id, &mut budget, &mut fonts)?;
        out.push(normalize(text, opts.normalization));
    }
    Ok(Document {
        pages: out,
        page_count,
        encrypted,
        producer,
    })
}

fn page_text(
    doc: &LoDocument,
    id: ObjectId,
    budget: &mut Budget<'_>,
    fonts: &mut FontCache,
) -> Result<String, PdfError> {
    let max_text = budget.opts().max_page_text_bytes;
    let layout = PageLayout::new(budget.opts().layout, max_text);
    let Ok(page) = doc.get_dictionary(id) else {
        return Ok(String::new());
    };
    let resources = inherited(doc, page, b"Resources").and_then(|r| dict_of(doc, r));
    // Page contents: one stream or an array of streams, concatenated.
    let mut data = Vec::new();
    if let Ok(c) = page.get(b"Contents") {
        match deref(doc, c) {
            Object::Array(parts) => {
                for p in parts {
                    if let Some(d) = stream_bytes(doc, p, budget) {
                        data.extend_from_slice(&d);
                        data.push(b'\n');
                    }
                }
            }
            Object::Stream(_) => {
                if let Some(d) = stream_bytes(doc, c, budget) {
                    data = d;
                }
            }
            _ => {}
        }
    }
    budget.check_bytes()?;
    // Rotation: start from a CTM that turns the page upright, so lines read left to right.
    let rotate = crate::num::f32_to_i64(
        inherited(doc, page, b"Rotate")
            .and_then(|r| num_of(doc, r))
            .unwrap_or(0.0),
    );
    let ctm = match rotate.rem_euclid(360) {
        90 => [0.0, -1.0, 1.0, 0.0, 0.0, 0.0],
        180 => [-1.0, 0.0, 0.0, -1.0, 0.0, 0.0],
        270 => [0.0, 1.0, -1.0, 0.0, 0.0, 0.0],
        _ => [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    };
    let boxed = |key: &[u8]| -> Option<[f32; 4]> {
        match inherited(doc, page, key).map(|o| deref(doc, o)) {
            Some(Object::Array(a)) if a.len() == 4 => {
                let v: Vec<f32> = a.iter().filter_map(|o| num_of(doc, o)).collect();
                (v.len() == 4).then(|| [v[0], v[1], v[2], v[3]])
            }
            _ => None,
        }
    };
    let mut layout = layout;
    if let Some(b) = boxed(b"CropBox").or_else(|| boxed(b"MediaBox")) {
        let pts = [(b[0], b[1]), (b[2], b[3]), (b[0], b[3]), (b[2], b[1])];
        let tx = |(x, y): (f32, f32)| {
            (
                x * ctm[0] + y * ctm[2] + ctm[4],
                x * ctm[1] + y * ctm[3] + ctm[5],
            )
        };
        let d: Vec<(f32, f32)> = pts.into_iter().map(tx).collect();
        let x0 = d.iter().map(|p| p.0).fold(f32::MAX, f32::min);
        let x1 = d.iter().map(|p| p.0).fold(f32::MIN, f32::max);
        let y0 = d.iter().map(|p| p.1).fold(f32::MAX, f32::min);
        let y1 = d.iter().map(|p| p.1).fold(f32::MIN, f32::max);
        layout.set_clip(x0, y0, x1, y1);
    }
    let mut interp = Interpreter::new(doc, budget, fonts, layout);
    interp.run(&data, resources, ctm, 0)?;
    interp.draw_annotations(page, ctm)?;
    Ok(interp.into_layout().finish())
}

fn is_presentation_form(c: char) -> bool {
    matches!(c as u32, 0xFB00..=0xFDFF | 0xFE70..=0xFEFF)
}

fn normalize(text: String, n: Normalization) -> String {
    match n {
        Normalization::None => text,
        Normalization::Nfkc => text.nfkc().collect(),
        Normalization::PresentationForms => {
            if !text.chars().any(is_presentation_form) {
                return text;
            }
            let mut out = String::with_capacity(text.len());
            for c in text.chars() {
                if is_presentation_form(c) {
                    out.extend(std::iter::once(c).nfkc());
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_id_goes_into_the_last_trailer() {
        let file = b"%PDF-1.4\nxref\n0 1\ntrailer\n<</Size 1>>\nxref\ntrailer <</Size 2/Encrypt 3 0 R>>\nstartxref\n9\n%%EOF";
        let out = with_empty_id(file).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("trailer\n<</Size 1>>"));
        assert!(text.contains("trailer <</ID[<><>]/Size 2/Encrypt 3 0 R>>"));
        // Everything before the trailer keeps its offset.
        assert_eq!(&out[..40], &file[..40]);
        assert_eq!(with_empty_id(b"%PDF-1.4 no trailer here"), None);
    }
}
