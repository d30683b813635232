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
