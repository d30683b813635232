//! `pdf_debug FILE [PAGE]`: prints a page's dictionary, raw content and decoded operators, to
//! investigate extraction problems by hand.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: pdf_debug FILE [PAGE]");
        std::process::exit(2);
    };
    let page: u32 = args.next().and_then(|p| p.parse().ok()).unwrap_or(1);
    let doc = match lopdf::Document::load(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("load error: {e}");
            std::process::exit(1);
        }
    };
    let pages = doc.get_pages();
    println!("pages: {}", pages.len());
    if std::env::var("PDF_CENSUS").is_ok() {
        census(&doc);
    }
    let Some(id) = pages.get(&page) else { return };
    println!("page dict: {:?}", doc.get_object(*id));
    let content = doc.get_page_content(*id);
    println!(
        "content ({} bytes): {:?}",
        content.len(),
        String::from_utf8_lossy(&content[..content.len().min(2000)])
    );
    for op in lopdf::content::Content::decode_iter(&content).take(200) {
        println!("{op:?}");
    }
}

/// Object census of a loaded document (`PDF_CENSUS=1`): counts and stream bytes by /Type or kind.
#[allow(dead_code)]
fn census(doc: &lopdf::Document) {
    use std::collections::BTreeMap;
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for o in doc.objects.values() {
        let (k, n) = match o {
            lopdf::Object::Dictionary(d) => (
                format!(
                    "dict {}",
                    d.get(b"Type")
                        .ok()
                        .and_then(|t| t.as_name().ok())
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default()
                ),
                0,
            ),
            lopdf::Object::Stream(s) => (
                format!(
                    "stream {}",
                    s.dict
                        .get(b"Type")
                        .or(s.dict.get(b"Subtype"))
                        .ok()
                        .and_then(|t| t.as_name().ok())
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default()
                ),
                s.content.len(),
            ),
            other => (other.enum_variant().to_string(), 0),
        };
        let e = m.entry(k).or_default();
        e.0 += 1;
        e.1 += n;
    }
    for (k, (c, b)) in m {
        println!("{c:8} {b:12} {k}");
    }
}
