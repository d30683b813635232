//! Behaviour tests of `rq_worker::pdf` on small PDFs built here: font setups (ToUnicode with
//! bfrange arrays, /Differences, Type0 Identity-H, Type3), word gaps from TJ offsets, form
//! XObjects, ActualText, page selection, typed errors and limits.

use rq_worker::pdf::{self, ExtractOptions, PdfError};

/// Assemble a PDF from object bodies (object i+1 = bodies[i]); the catalog must be object 1.
fn build_pdf(bodies: &[String]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{}\nendobj\n", i + 1, b).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", bodies.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R /Info << /Producer (unit test) >> >>\nstartxref\n{xref}\n%%EOF\n", bodies.len() + 1)
            .as_bytes(),
    );
    out
}

fn stream(dict: &str, data: &str) -> String {
    format!(
        "<< {dict} /Length {} >>\nstream\n{data}\nendstream",
        data.len()
    )
}

/// One page (object 3) with content `content` (object 4) and font resources `fonts`, followed by
/// `extra` objects numbered from 5.
fn one_page(fonts: &str, content: &str, extra: &[String]) -> Vec<u8> {
    let mut objs = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << {fonts} >> /XObject << /X1 6 0 R >> >> /Contents 4 0 R >>"
        ),
        stream("", content),
    ];
    objs.extend_from_slice(extra);
    build_pdf(&objs)
}

const HELV: &str =
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";

fn text(bytes: &[u8]) -> String {
    match pdf::extract(bytes, &ExtractOptions::default()) {
        Ok(d) => d.pages.join("\x0c"),
        Err(e) => panic!("extract failed: {e}"),
    }
}

#[test]
fn simple_font_words_lines_and_tj_gaps() {
    let content = "BT /F1 12 Tf 72 700 Td (Hello) Tj [(W) 80 (or) -20 (ld) -400 (again)] TJ 0 -14 Td (Second line) Tj ET";
    let pdf = one_page("/F1 5 0 R", content, &[HELV.to_string()]);
    let d = pdf::extract(&pdf, &ExtractOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.page_count, 1);
    assert_eq!(d.producer.as_deref(), Some("unit test"));
    assert!(!d.encrypted);
    // "Hello" and "World" touch (no gap): pdftotext also reads "HelloWorld".
    assert_eq!(d.pages[0], "HelloWorld again\nSecond line\n");
}

#[test]
fn differences_with_unknown_names_keep_the_font() {
    let font = "<< /Type /Font /Subtype /Type1 /BaseFont /Foo /FirstChar 65 /LastChar 70 /Widths [500 500 500 500 500 500] \
        /Encoding << /Type /Encoding /BaseEncoding /WinAnsiEncoding /Differences [65 /f_i /uni00E9 /bogus.name /u1F600 /Zcaron] >> >>";
    let pdf = one_page(
        "/F1 5 0 R",
        "BT /F1 10 Tf 10 10 Td (ABCDE) Tj ET",
        &[font.to_string()],
    );
    // f_i -> "fi", uni00E9 -> é, unknown -> base encoding's 'C', u1F600 -> 😀, Zcaron -> Ž
    assert_eq!(text(&pdf), "fiéC😀Ž\n");
}

#[test]
fn type0_identity_h_with_tounicode_ranges() {
    let cmap = "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
        1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
        2 beginbfrange <0001> <0003> <0041> <0010> <0011> [<0078> <00660066>] endbfrange\n\
        1 beginbfchar <0020> <0020> endbfchar\n\
        endcmap end end";
    let font = "<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H /DescendantFonts [6 0 R] /ToUnicode 7 0 R >>";
    let cid = "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /X /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 600 /W [1 [500 500 500] 16 17 400] >>";
    let pdf = one_page(
        "/F1 5 0 R",
        "BT /F1 10 Tf 10 10 Td <000100020003002000100011> Tj ET",
        &[font.to_string(), cid.to_string(), stream("", cmap)],
    );
    assert_eq!(text(&pdf), "ABC xff\n");
}

#[test]
fn type3_font_with_differences() {
    let font = "<< /Type /Font /Subtype /Type3 /FontBBox [0 0 10 10] /FontMatrix [0.01 0 0 0.01 0 0] \
        /CharProcs << >> /Encoding << /Type /Encoding /Differences [1 /H /i /space] >> /FirstChar 1 /LastChar 3 /Widths [60 30 30] >>";
    let pdf = one_page(
        "/F1 5 0 R",
        "BT /F1 12 Tf 10 10 Td <010203010202> Tj ET",
        &[font.to_string()],
    );
    assert_eq!(text(&pdf), "Hi Hii\n");
}

#[test]
fn form_xobjects_and_actual_text() {
    let content = "BT /F1 12 Tf 72 700 Td /Span << /ActualText (replaced) >> BDC (xyz) Tj EMC ET q 1 0 0 1 0 -100 cm /X1 Do Q";
    let form = stream(
        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F2 5 0 R >> >>",
        "BT /F2 12 Tf 72 700 Td (in a form) Tj ET",
    );
    let pdf = one_page("/F1 5 0 R", content, &[HELV.to_string(), form]);
    // The form is drawn 100pt lower: a new block, so a blank line (as pdftotext).
    assert_eq!(text(&pdf), "replaced\n\nin a form\n");
}

#[test]
fn recursive_form_is_bounded() {
    // The form draws itself: the cycle guard stops it.
    let form = stream(
        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /X1 6 0 R >> /Font << /F1 5 0 R >> >>",
        "BT /F1 12 Tf 72 700 Td (loop) Tj ET /X1 Do",
    );
    let pdf = one_page("/F1 5 0 R", "/X1 Do", &[HELV.to_string(), form]);
    assert_eq!(text(&pdf), "loop\n");
}

#[test]
fn page_selection_and_count() {
    let pdf = one_page(
        "/F1 5 0 R",
        "BT /F1 12 Tf 72 700 Td (one) Tj ET",
        &[HELV.to_string()],
    );
    assert_eq!(pdf::page_count(&pdf).ok(), Some(1));
    let opts = ExtractOptions {
        pages: Some((2, 2)),
        ..ExtractOptions::default()
    };
    assert!(matches!(
        pdf::extract(&pdf, &opts),
        Err(PdfError::PageOutOfRange(2, 1))
    ));
}

#[test]
fn limits_and_cancellation_are_typed_errors() {
    let many = "BT /F1 12 Tf 72 700 Td (x) Tj ET ".repeat(2000);
    let pdf = one_page("/F1 5 0 R", &many, &[HELV.to_string()]);
    let opts = ExtractOptions {
        max_ops_per_page: 1000,
        ..ExtractOptions::default()
    };
    assert!(matches!(
        pdf::extract(&pdf, &opts),
        Err(PdfError::LimitExceeded(_))
    ));
    let opts = ExtractOptions {
        cancel: Some(std::sync::Arc::new(|| true)),
        ..ExtractOptions::default()
    };
    assert!(matches!(
        pdf::extract(&pdf, &opts),
        Err(PdfError::Cancelled)
    ));
    assert!(matches!(
        pdf::extract(b"not a pdf at all", &ExtractOptions::default()),
        Err(PdfError::Parse(_))
    ));
}

#[test]
fn ligatures_are_normalised_by_default() {
    let font = "<< /Type /Font /Subtype /Type1 /BaseFont /Foo /FirstChar 65 /LastChar 65 /Widths [500] \
        /Encoding << /Differences [65 /fi] >> >>";
    let pdf = one_page(
        "/F1 5 0 R",
        "BT /F1 10 Tf 10 10 Td (A) Tj ET",
        &[font.to_string()],
    );
    assert_eq!(text(&pdf), "fi\n");
    let opts = ExtractOptions {
        normalization: pdf::Normalization::None,
        ..ExtractOptions::default()
    };
    let d = pdf::extract(&pdf, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.pages[0], "\u{FB01}\n");
}

#[test]
fn decompression_bomb_is_bounded() {
    use std::io::Write;
    // 64 MiB of spaces deflates to ~64 KiB; the per-stream limit (1 MiB here) stops it.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        z.write_all(&chunk).unwrap_or_default();
    }
    let data = z.finish().unwrap_or_default();
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    let objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        [
            format!(
                "<< /Length {} /Filter /FlateDecode >>\nstream\n",
                data.len()
            )
            .into_bytes(),
            data,
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ];
    for (i, o) in objs.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(o);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(b"xref\n0 5\n0000000000 65535 f \n");
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    let opts = ExtractOptions {
        max_stream_bytes: 1 << 20,
        ..ExtractOptions::default()
    };
    match pdf::extract(&pdf, &opts) {
        Ok(d) => assert_eq!(d.pages, vec![String::new()]),
        Err(e) => assert!(matches!(e, PdfError::LimitExceeded(_)), "{e}"),
    }
    // The document limit applies across streams too.
    let opts = ExtractOptions {
        max_document_bytes: 1 << 20,
        ..ExtractOptions::default()
    };
    assert!(matches!(
        pdf::extract(&pdf, &opts),
        Err(PdfError::LimitExceeded(_))
    ));
}

#[test]
fn text_field_values_show_when_the_form_needs_appearances() {
    // The widget's appearance stream is empty, but the form asks viewers to rebuild it from
    // the field value (/V, here inherited from the parent field).
    let objs = vec![
        "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [5 0 R] /NeedAppearances true >> >>"
            .to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Annots [6 0 R] >>"
            .to_string(),
        stream("", "BT /F1 12 Tf ET"),
        "<< /FT /Tx /T (name) /V (Alice Smith) /DA (/Helv 11 Tf 0 g) /Kids [6 0 R] >>".to_string(),
        "<< /Type /Annot /Subtype /Widget /Parent 5 0 R /Rect [100 700 300 716] /AP << /N 7 0 R >> >>"
            .to_string(),
        stream("/Type /XObject /Subtype /Form /BBox [0 0 200 16]", "/Tx BMC EMC"),
    ];
    assert_eq!(text(&build_pdf(&objs)), "Alice Smith\n");
}
