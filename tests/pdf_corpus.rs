//! Regression test over a small fixed corpus subset (tests/fixtures/pdf): per-file word-F1
//! floors against pdftotext's text committed beside each PDF, and a bounded, deterministic
//! mutation pass (truncation, byte flips, corrupted streams) asserting no panic and bounded memory.
//! Floors come from measured values (see floors.tsv); tests assert quality, never timings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rq_worker::pdf::{self, ExtractOptions, PdfError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pdf")
}

fn floors() -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(fixtures().join("floors.tsv")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?.to_string(), it.next()?.trim().parse().ok()?))
        })
        .collect()
}

fn word_f1(reference: &str, got: &str) -> f64 {
    let mut a: HashMap<&str, i64> = HashMap::new();
    for w in reference.split_whitespace() {
        *a.entry(w).or_default() += 1;
    }
    let na: i64 = a.values().sum();
    let mut nb = 0i64;
    let mut common = 0i64;
    for w in got.split_whitespace() {
        nb += 1;
        if let Some(c) = a.get_mut(w)
            && *c > 0
        {
            *c -= 1;
            common += 1;
        }
    }
    if na == 0 && nb == 0 {
        return 1.0;
    }
    if na == 0 || nb == 0 {
        return 0.0;
    }
    2.0 * common as f64 / (na + nb) as f64
}

#[test]
fn corpus_subset_meets_quality_floors() {
    let list = floors();
    assert!(list.len() >= 8, "floors.tsv lists the fixtures");
    let mut failures = Vec::new();
    for (name, floor) in &list {
        let bytes = std::fs::read(fixtures().join(name)).unwrap_or_default();
        let reference = std::fs::read_to_string(fixtures().join(name.replace(".pdf", ".txt")))
            .unwrap_or_default();
        let got = match pdf::extract(&bytes, &ExtractOptions::default()) {
            Ok(d) => d.to_text(),
            Err(e) => {
                failures.push(format!("{name}: error {e}"));
                continue;
            }
        };
        let f1 = word_f1(&reference, &got);
        eprintln!("{name}\t{f1:.4}\t(floor {floor})");
        if f1 + 1e-9 < *floor {
            failures.push(format!("{name}: word F1 {f1:.4} < floor {floor}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }
}

fn peak_rss_mb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb / 1024)
}

fn mutate(rng: &mut Rng, src: &[u8], kind: usize) -> Vec<u8> {
    let mut b = src.to_vec();
    match kind % 4 {
        // Truncation.
        0 => b.truncate(rng.below(b.len())),
        // Random byte flips.
        1 => {
            for _ in 0..1 + rng.below(32) {
                let i = rng.below(b.len());
                if i < b.len() {
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        // Corrupt the inside of a stream (compressed data, content operators).
        2 => {
            let starts: Vec<usize> = b
                .windows(6)
                .enumerate()
                .filter(|(_, w)| w == b"stream")
                .map(|(i, _)| i + 7)
                .collect();
            if !starts.is_empty() {
                let s = starts[rng.below(starts.len())];
                for _ in 0..1 + rng.below(16) {
                    let i = s + rng.below(256);
                    if i < b.len() {
                        b[i] = rng.next().to_le_bytes()[0];
                    }
                }
            }
        }
        // Overwrite a run of bytes (numbers, xref offsets, dictionary keys).
        _ => {
            let i = rng.below(b.len());
            let n = 1 + rng.below(64);
            for j in i..(i + n).min(b.len()) {
                b[j] = b"0123456789 /<>[]()R"[rng.below(19)];
            }
        }
    }
    b
}

#[test]
fn mutation_pass_never_panics_and_stays_bounded() {
    let list = floors();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let opts = ExtractOptions {
        time_limit: Some(Duration::from_secs(20)),
        max_document_bytes: 256 << 20,
        ..ExtractOptions::default()
    };
    let per_file = 12;
    let mut runs = 0;
    let mut panics = Vec::new();
    for (name, _) in list.iter().take(12) {
        let bytes = std::fs::read(fixtures().join(name)).unwrap_or_default();
        for k in 0..per_file {
            let m = mutate(&mut rng, &bytes, k);
            runs += 1;
            let _ = pdf::page_count(&m);
            if let Err(PdfError::Panic(msg)) = pdf::extract(&m, &opts) {
                panics.push(format!("{name} mutation {k}: {msg}"));
            }
        }
    }
    assert!(runs >= 60);
    assert!(panics.is_empty(), "panics: {panics:#?}");
    if let Some(mb) = peak_rss_mb() {
        assert!(mb < 2048, "peak RSS {mb} MB");
    }
}
