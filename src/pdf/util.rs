//! Small helpers over lopdf objects (dereferencing, typed getters) and the per-document budget
//! that enforces the extraction limits: decompressed bytes per stream and per document, operators
//! per page, and the cooperative deadline / cancellation check.

use std::time::Instant;

use lopdf::{Dictionary, Document, Object};

use super::{ExtractOptions, PdfError};

/// Follow references (at most a few hops); a dangling reference becomes `Null`.
pub fn deref<'a>(doc: &'a Document, mut obj: &'a Object) -> &'a Object {
    static NULL: Object = Object::Null;
    for _ in 0..8 {
        match obj {
            Object::Reference(id) => match doc.get_object(*id) {
                Ok(o) => obj = o,
                Err(_) => return &NULL,
            },
            _ => return obj,
        }
    }
    &NULL
}

pub fn dict_of<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Dictionary> {
    match deref(doc, obj) {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

pub fn name_of<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a [u8]> {
    match deref(doc, obj) {
        Object::Name(n) => Some(n.as_slice()),
        _ => None,
    }
}

pub fn num_of(doc: &Document, obj: &Object) -> Option<f32> {
    match deref(doc, obj) {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) if r.is_finite() => Some(*r),
        _ => None,
    }
}

/// Limits and the running totals of one extraction.
pub struct Budget<'o> {
    opts: &'o ExtractOptions,
    started: Instant,
    pub decompressed: usize,
    pub ops: usize,
    ticks: u32,
}

impl<'o> Budget<'o> {
    pub fn new(opts: &'o ExtractOptions) -> Self {
        Budget {
            opts,
            started: Instant::now(),
            decompressed: 0,
            ops: 0,
            ticks: 0,
        }
    }

    pub fn opts(&self) -> &ExtractOptions {
        self.opts
    }

    /// Deadline and cancellation check; cheap enough to call often.
    pub fn check_time(&mut self) -> Result<(), PdfError> {
        if let Some(limit) = self.opts.time_limit
            && self.started.elapsed() > limit
        {
            return Err(PdfError::Timeout);
        }
        if let Some(deadline) = self.opts.deadline
            && Instant::now() > deadline
        {
            return Err(PdfError::Timeout);
        }
        if let Some(cancel) = &self.opts.cancel
            && cancel()
        {
            return Err(PdfError::Cancelled);
        }
        Ok(())
    }

    /// Count one content operator; checks the page limit and, every 256 operators, the clock.
    pub fn tick_op(&mut self) -> Result<(), PdfError> {
        self.ops += 1;
        if self.ops > self.opts.max_ops_per_page {
            return Err(PdfError::LimitExceeded("operators per page"));
        }
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(256) {
            self.check_bytes()?;
            self.check_time()
        } else {
            Ok(())
        }
    }

    /// Fails once the document's decompressed bytes are over the limit.
    pub fn check_bytes(&self) -> Result<(), PdfError> {
        if self.decompressed > self.opts.max_document_bytes {
            return Err(PdfError::LimitExceeded("decompressed bytes per document"));
        }
        Ok(())
    }

    /// Account for `n` decompressed bytes against the document limit.
    pub fn add_bytes(&mut self, n: usize) -> Result<(), PdfError> {
        self.decompressed = self.decompressed.saturating_add(n);
        if self.decompressed > self.opts.max_document_bytes {
            return Err(PdfError::LimitExceeded("decompressed bytes per document"));
        }
        Ok(())
    }
}

/// The decoded bytes of a stream object (following references), bounded by the per-stream limit.
/// A stream over the limit or that cannot be decoded yields `None`. A stream whose filter chain
/// fails part-way yields its raw bytes only when it has no filter.
pub fn stream_bytes(doc: &Document, obj: &Object, budget: &mut Budget<'_>) -> Option<Vec<u8>> {
    let Object::Stream(s) = deref(doc, obj) else {
        return None;
    };
    let limit = budget.opts().max_stream_bytes;
    let data = match s.filters() {
        Ok(f) if !f.is_empty() => s.decompressed_content_with_limit(limit).ok()?,
        _ => {
            if s.content.len() > limit {
                return None;
            }
            s.content.clone()
        }
    };
    // Document-wide accounting: over the limit, stop handing out data.
    if budget.add_bytes(data.len()).is_err() {
        return None;
    }
    Some(data)
}
