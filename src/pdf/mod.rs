//! PDF text extraction: bytes in, per-page text out (issue 3). No Redis or database knowledge.
