//! Cutting page text into chunks exactly as the platform does (upstream.md "Chunking and token budget").
//!
//! Per page: strip, then 500-token windows with 100 tokens of overlap over `cl100k_base` tokens
//! (each window decoded with invalid UTF-8 replaced, then stripped, empty pieces dropped), or the
//! 2000/400-character fallback. Also the platform's token estimate and the content hash.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tiktoken_rs::CoreBPE;

use crate::config::ingest::ChunkTokenizer;

pub const CHUNK_SIZE_TOKENS: usize = 500;
pub const OVERLAP_TOKENS: usize = 100;

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| match tiktoken_rs::cl100k_base() {
        Ok(bpe) => Some(bpe),
        Err(e) => {
            log::warn!("cl100k_base tokenizer unavailable ({e}); chunking by characters");
            None
        }
    })
    .as_ref()
}

/// Overlapping windows over `0..total`: `(start, end)` pairs as the platform's loop produces them.
fn windows(total: usize, size: usize, overlap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < total {
        let end = total.min(start + size);
        out.push((start, end));
        if end >= total {
            break;
        }
        start = end.saturating_sub(overlap);
    }
    out
}

/// The chunks of one page's text.
pub fn chunk_text(text: &str, tokenizer: ChunkTokenizer) -> Vec<String> {
    let normalized = py_strip(text);
    if normalized.is_empty() {
        return Vec::new();
    }
    let bpe = match tokenizer {
        ChunkTokenizer::Cl100kBase => cl100k(),
        ChunkTokenizer::Chars => None,
    };
    let Some(bpe) = bpe else {
        let chars: Vec<char> = normalized.chars().collect();
        return windows(chars.len(), CHUNK_SIZE_TOKENS * 4, OVERLAP_TOKENS * 4)
            .into_iter()
            .map(|(s, e)| chars[s..e].iter().collect::<String>())
            .filter_map(|piece| {
                let piece = py_strip(&piece);
                (!piece.is_empty()).then(|| piece.to_string())
            })
            .collect();
    };
    let tokens = bpe.encode_ordinary(normalized);
    windows(tokens.len(), CHUNK_SIZE_TOKENS, OVERLAP_TOKENS)
        .into_iter()
        .filter_map(|(s, e)| {
            let bytes = bpe.decode_bytes(&tokens[s..e]).unwrap_or_default();
            let decoded = String::from_utf8_lossy(&bytes);
            let piece = py_strip(&decoded);
            (!piece.is_empty()).then(|| piece.to_string())
        })
        .collect()
}

/// The platform's token estimate for a chunk: `max(1, ceil(len(text) / 4.0 * 1.1))`, len in code points.
pub fn estimate_tokens(text: &str) -> i64 {
    let chars = text.chars().count() as f64;
    crate::num::f64_to_i64(((chars / 4.0) * 1.1).ceil().max(1.0))
}

/// sha256 of the UTF-8 content, lowercase hex.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_matches_python() {
        // Python: max(1, int(math.ceil((len(s) / 4.0) * 1.1)))
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 2); // 1.1 -> 2
        assert_eq!(estimate_tokens(&"x".repeat(40)), 11);
        assert_eq!(estimate_tokens(&"x".repeat(2000)), 550);
        assert_eq!(estimate_tokens(&"é".repeat(8)), 3);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn windows_overlap_like_the_platform() {
        assert_eq!(windows(0, 500, 100), vec![]);
        assert_eq!(windows(500, 500, 100), vec![(0, 500)]);
        assert_eq!(windows(501, 500, 100), vec![(0, 500), (400, 501)]);
        assert_eq!(
            windows(1000, 500, 100),
            vec![(0, 500), (400, 900), (800, 1000)]
        );
    }

    #[test]
    fn strip_is_pythons() {
        assert_eq!(py_strip("\u{1f} a b\u{a0}\n"), "a b");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x"); // zero-width space is not whitespace in Python
    }

    #[test]
    fn char_fallback() {
        let text = "y".repeat(4500);
        let chunks = chunk_text(&text, ChunkTokenizer::Chars);
        assert_eq!(
            chunks.iter().map(String::len).collect::<Vec<_>>(),
            vec![2000, 2000, 1300]
        );
        assert!(chunk_text("  \n ", ChunkTokenizer::Chars).is_empty());
    }

    #[test]
    fn token_windows() {
        let text = "hello world ".repeat(600); // 1200 tokens
        let chunks = chunk_text(&text, ChunkTokenizer::Cl100kBase);
        assert_eq!(chunks.len(), 3);
        assert!(
            chunks
                .iter()
                .all(|c| !c.starts_with(' ') && !c.ends_with(' '))
        );
    }
}
