//! `lopdf_extract_pdf FILE`: lopdf's own `Document::extract_text`, page by page, pages followed by
//! form feeds; the baseline bench/pdf_quality.py compares our extractor with.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: lopdf_extract_pdf FILE");
        std::process::exit(2);
    };
    let doc = match lopdf::Document::load(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("load error: {e}");
            std::process::exit(1);
        }
    };
    let mut out = String::new();
    for (num, _) in doc.get_pages() {
        out.push_str(&doc.extract_text(&[num]).unwrap_or_default());
        out.push('\x0c');
    }
    print!("{out}");
}
