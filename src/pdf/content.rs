//! Content-stream interpreter for text: graphics state (CTM, q/Q), text state and matrices,
//! text-showing operators (Tj, TJ, ', "), form XObjects (recursively, depth-limited) and marked
//! content with `/ActualText`. Emits positioned glyphs to the page layout.
//!
//! Owns the PDF imaging model as far as text needs it; nothing about fonts' internals or lines.

use std::collections::HashMap;
use std::rc::Rc;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId};

use super::PdfError;
use super::font::Font;
use super::layout::{PageLayout, PlacedGlyph};
use super::util::{Budget, deref, dict_of, name_of, stream_bytes};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    /// self × other (apply self first, then other).
    fn mul(&self, o: &Matrix) -> Matrix {
        let a = &self.0;
        let b = &o.0;
        Matrix([
            a[0] * b[0] + a[1] * b[2],
            a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2],
            a[2] * b[1] + a[3] * b[3],
            a[4] * b[0] + a[5] * b[2] + b[4],
            a[4] * b[1] + a[5] * b[3] + b[5],
        ])
    }

    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.0;
        (x * m[0] + y * m[2] + m[4], x * m[1] + y * m[3] + m[5])
    }

    fn apply_vec(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.0;
        (x * m[0] + y * m[2], x * m[1] + y * m[3])
    }

    fn translate(tx: f32, ty: f32) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, tx, ty])
    }

    fn from_operands(ops: &[Object]) -> Option<Matrix> {
        if ops.len() < 6 {
            return None;
        }
        let mut m = [0.0f32; 6];
        for (i, o) in ops[..6].iter().enumerate() {
            m[i] = num(o)?;
        }
        m.iter().all(|v| v.is_finite()).then_some(Matrix(m))
    }
}

fn num(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) if r.is_finite() => Some(*r),
        _ => None,
    }
}

#[derive(Clone)]
struct GState {
    ctm: Matrix,
    font: Option<Rc<Font>>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    hscale: f32,
    leading: f32,
    rise: f32,
}

impl GState {
    fn new(ctm: Matrix) -> Self {
        GState {
            ctm,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            hscale: 1.0,
            leading: 0.0,
            rise: 0.0,
        }
    }
}

/// Fonts already prepared in this document, keyed by the address of their dictionary (stable
/// while the document is borrowed).
#[derive(Default)]
pub struct FontCache {
    fonts: HashMap<usize, Rc<Font>>,
    fallback: Option<Rc<Font>>,
}

impl FontCache {
    fn get(&mut self, doc: &Document, dict: &Dictionary, budget: &mut Budget<'_>) -> Rc<Font> {
        let key = dict as *const Dictionary as usize;
        if let Some(f) = self.fonts.get(&key) {
            return f.clone();
        }
        let f = Rc::new(Font::load(doc, dict, budget));
        self.fonts.insert(key, f.clone());
        f
    }

    fn fallback(&mut self) -> Rc<Font> {
        self.fallback
            .get_or_insert_with(|| Rc::new(Font::fallback()))
            .clone()
    }
}

/// An open marked-content span carrying `/ActualText`.
struct ActualText {
    text: String,
    /// Whether the replacement has been emitted (with the first glyph of the span).
    emitted: bool,
}

/// Interprets the content of one page (and the forms it draws).
pub struct Interpreter<'d, 'b, 'o> {
    doc: &'d Document,
    budget: &'b mut Budget<'o>,
    fonts: &'b mut FontCache,
    layout: PageLayout,
    /// Form XObjects being drawn (cycle guard).
    form_stack: Vec<ObjectId>,
    /// Marked-content stack: `Some` for spans with ActualText.
    marked: Vec<Option<ActualText>>,
}

impl<'d, 'b, 'o> Interpreter<'d, 'b, 'o> {
    pub fn new(
        doc: &'d Document,
        budget: &'b mut Budget<'o>,
        fonts: &'b mut FontCache,
        layout: PageLayout,
    ) -> Self {
        Interpreter {
            doc,
            budget,
            fonts,
            layout,
            form_stack: Vec::new(),
            marked: Vec::new(),
        }
    }

    pub fn into_layout(self) -> PageLayout {
        self.layout
    }

    /// Run a content stream with the given resources and initial CTM.
    pub fn run(
        &mut self,
        data: &[u8],
        resources: Option<&'d Dictionary>,
        ctm: [f32; 6],
        depth: usize,
    ) -> Result<(), PdfError> {
        let mut gs = GState::new(Matrix(ctm));
        let mut stack: Vec<GState> = Vec::new();
        let mut tm = Matrix::IDENTITY;
        let mut tlm = Matrix::IDENTITY;
        let marked_base = self.marked.len();
        for op in Content::decode_iter(data) {
            let Ok(op) = op else { break };
            self.budget.tick_op()?;
            if self.layout.full() {
                break;
            }
            let ops = &op.operands;
            match op.operator.as_str() {
                "q" if stack.len() < 256 => stack.push(gs.clone()),
                "q" => {}
                "Q" => {
                    if let Some(s) = stack.pop() {
                        gs = s;
                    }
                }
                "cm" => {
                    if let Some(m) = Matrix::from_operands(ops) {
                        gs.ctm = m.mul(&gs.ctm);
                    }
                }
                "BT" => {
                    tm = Matrix::IDENTITY;
                    tlm = Matrix::IDENTITY;
                }
                "ET" => {}
                "Tc" => gs.char_spacing = ops.first().and_then(num).unwrap_or(0.0),
                "Tw" => gs.word_spacing = ops.first().and_then(num).unwrap_or(0.0),
                "Tz" => gs.hscale = ops.first().and_then(num).unwrap_or(100.0) / 100.0,
                "TL" => gs.leading = ops.first().and_then(num).unwrap_or(0.0),
                "Ts" => gs.rise = ops.first().and_then(num).unwrap_or(0.0),
                "Tf" => {
                    if let (Some(Object::Name(name)), Some(size)) =
                        (ops.first(), ops.get(1).and_then(num))
                    {
                        gs.size = size;
                        gs.font = Some(self.lookup_font(resources, name));
                    }
                }
                "Td" | "TD" => {
                    let tx = ops.first().and_then(num).unwrap_or(0.0);
                    let ty = ops.get(1).and_then(num).unwrap_or(0.0);
                    if op.operator == "TD" {
                        gs.leading = -ty;
                    }
                    tlm = Matrix::translate(tx, ty).mul(&tlm);
                    tm = tlm;
                }
                "Tm" => {
                    if let Some(m) = Matrix::from_operands(ops) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = Matrix::translate(0.0, -gs.leading).mul(&tlm);
                    tm = tlm;
                }
                "Tj" => {
                    if let Some(Object::String(s, _)) = ops.first() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                "'" => {
                    tlm = Matrix::translate(0.0, -gs.leading).mul(&tlm);
                    tm = tlm;
                    if let Some(Object::String(s, _)) = ops.first() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                "\"" => {
                    gs.word_spacing = ops.first().and_then(num).unwrap_or(gs.word_spacing);
                    gs.char_spacing = ops.get(1).and_then(num).unwrap_or(gs.char_spacing);
                    tlm = Matrix::translate(0.0, -gs.leading).mul(&tlm);
                    tm = tlm;
                    if let Some(Object::String(s, _)) = ops.get(2) {
                        self.show(&gs, &mut tm, s);
                    }
                }
                "TJ" => {
                    if let Some(Object::Array(items)) = ops.first() {
                        for item in items {
                            match item {
                                Object::String(s, _) => self.show(&gs, &mut tm, s),
                                other => {
                                    if let Some(n) = num(other) {
                                        let vertical = gs.font.as_ref().is_some_and(|f| f.vertical);
                                        let t = -n / 1000.0 * gs.size;
                                        tm = if vertical {
                                            Matrix::translate(0.0, t).mul(&tm)
                                        } else {
                                            Matrix::translate(t * gs.hscale, 0.0).mul(&tm)
                                        };
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    if let Some(Object::Name(name)) = ops.first() {
                        self.draw_xobject(resources, name, &gs, depth)?;
                    }
                }
                "BMC" => self.marked.push(None),
                "BDC" => {
                    let props = match ops.get(1) {
                        Some(Object::Dictionary(d)) => Some(d),
                        Some(Object::Name(n)) => resources
                            .and_then(|r| r.get(b"Properties").ok())
                            .and_then(|p| dict_of(self.doc, p))
                            .and_then(|p| p.get(n).ok())
                            .and_then(|o| dict_of(self.doc, o)),
                        _ => None,
                    };
                    let actual = props
                        .and_then(|p| p.get(b"ActualText").ok())
                        .map(|o| deref(self.doc, o))
                        .and_then(|o| lopdf::decode_text_string(o).ok())
                        .map(|text| ActualText {
                            text,
                            emitted: false,
                        });
                    self.marked.push(actual);
                }
                "EMC" if self.marked.len() > marked_base => {
                    self.marked.pop();
                }
                _ => {}
            }
        }
        self.marked.truncate(marked_base);
        Ok(())
    }

    fn lookup_font(&mut self, resources: Option<&'d Dictionary>, name: &[u8]) -> Rc<Font> {
        let dict = resources
            .and_then(|r| r.get(b"Font").ok())
            .and_then(|f| dict_of(self.doc, f))
            .and_then(|f| f.get(name).ok())
            .and_then(|o| dict_of(self.doc, o));
        match dict {
            Some(d) => self.fonts.get(self.doc, d, self.budget),
            None => self.fonts.fallback(),
        }
    }

    fn draw_xobject(
        &mut self,
        resources: Option<&'d Dictionary>,
        name: &[u8],
        gs: &GState,
        depth: usize,
    ) -> Result<(), PdfError> {
        let doc = self.doc;
        let Some(obj) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|x| dict_of(doc, x))
            .and_then(|x| x.get(name).ok())
        else {
            return Ok(());
        };
        self.draw_form(obj, resources, gs.ctm, None, depth)
    }

    /// Draw a form XObject (`obj`, possibly a reference) with the CTM in force. With `rect`, the
    /// form is an annotation appearance: its transformed BBox is fitted into the rectangle.
    fn draw_form(
        &mut self,
        obj: &'d Object,
        resources: Option<&'d Dictionary>,
        ctm: Matrix,
        rect: Option<[f32; 4]>,
        depth: usize,
    ) -> Result<(), PdfError> {
        let doc = self.doc;
        let id = match obj {
            Object::Reference(id) => Some(*id),
            _ => None,
        };
        let Object::Stream(stream) = deref(doc, obj) else {
            return Ok(());
        };
        let subtype = stream
            .dict
            .get(b"Subtype")
            .ok()
            .and_then(|o| name_of(doc, o));
        if subtype != Some(b"Form") && !(rect.is_some() && subtype.is_none()) {
            return Ok(());
        }
        if depth + 1 > self.budget.opts().max_xobject_depth {
            return Err(PdfError::LimitExceeded("form XObject nesting depth"));
        }
        if let Some(id) = id
            && self.form_stack.contains(&id)
        {
            return Ok(());
        }
        let numbers = |key: &[u8]| -> Option<Vec<Object>> {
            match stream.dict.get(key).ok().map(|o| deref(doc, o)) {
                Some(Object::Array(a)) => Some(a.iter().map(|o| deref(doc, o).clone()).collect()),
                _ => None,
            }
        };
        let matrix = numbers(b"Matrix")
            .and_then(|v| Matrix::from_operands(&v))
            .unwrap_or(Matrix::IDENTITY);
        let mut base = ctm;
        if let Some([rx0, ry0, rx1, ry1]) = rect {
            let bbox: Vec<f32> = numbers(b"BBox")
                .map(|v| v.iter().filter_map(num).collect())
                .unwrap_or_default();
            if bbox.len() == 4 {
                let pts = [
                    matrix.apply(bbox[0], bbox[1]),
                    matrix.apply(bbox[2], bbox[1]),
                    matrix.apply(bbox[0], bbox[3]),
                    matrix.apply(bbox[2], bbox[3]),
                ];
                let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
                for (x, y) in pts {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x);
                    y1 = y1.max(y);
                }
                let (bw, bh) = (x1 - x0, y1 - y0);
                let sx = if bw.abs() > 1e-6 {
                    (rx1 - rx0) / bw
                } else {
                    1.0
                };
                let sy = if bh.abs() > 1e-6 {
                    (ry1 - ry0) / bh
                } else {
                    1.0
                };
                let a = Matrix([sx, 0.0, 0.0, sy, rx0 - x0 * sx, ry0 - y0 * sy]);
                base = a.mul(&ctm);
            }
        }
        let form_res = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| dict_of(doc, o))
            .or(resources);
        let Some(data) = stream_bytes(doc, obj, self.budget) else {
            return Ok(());
        };
        self.budget.check_bytes()?;
        let ctm = matrix.mul(&base);
        if let Some(id) = id {
            self.form_stack.push(id);
        }
        let r = self.run(&data, form_res, ctm.0, depth + 1);
        if id.is_some() {
            self.form_stack.pop();
        }
        r
    }

    /// Draw the normal appearances of a page's annotations (form fields, stamps, signatures), as
    /// a viewer shows them. Hidden and popup annotations are skipped.
    pub fn draw_annotations(
        &mut self,
        page: &'d Dictionary,
        ctm: [f32; 6],
    ) -> Result<(), PdfError> {
        let doc = self.doc;
        let Some(Object::Array(annots)) = page.get(b"Annots").ok().map(|o| deref(doc, o)) else {
            return Ok(());
        };
        let need_appearances = doc
            .trailer
            .get(b"Root")
            .ok()
            .and_then(|o| dict_of(doc, o))
            .and_then(|c| c.get(b"AcroForm").ok())
            .and_then(|o| dict_of(doc, o))
            .and_then(|f| f.get(b"NeedAppearances").ok())
            .map(|o| matches!(deref(doc, o), Object::Boolean(true)))
            .unwrap_or(false);
        for a in annots.iter().take(2000) {
            let Some(ad) = dict_of(doc, a) else { continue };
            let flags = crate::num::f32_to_i64(
                ad.get(b"F")
                    .ok()
                    .and_then(|o| super::util::num_of(doc, o))
                    .unwrap_or(0.0),
            );
            let subtype = ad
                .get(b"Subtype")
                .ok()
                .and_then(|o| name_of(doc, o))
                .unwrap_or(b"");
            if flags & (2 | 32) != 0 || subtype == b"Popup" || subtype == b"Link" {
                continue;
            }
            // The form asks viewers to build field appearances from the values: a text field
            // shows its value, whatever its (stale or empty) appearance stream holds.
            if need_appearances && subtype == b"Widget" && self.draw_field_value(ad, ctm) {
                continue;
            }
            let Some(ap) = ad.get(b"AP").ok().and_then(|o| dict_of(doc, o)) else {
                continue;
            };
            let Some(n) = ap.get(b"N").ok() else { continue };
            let appearance: &'d Object = match deref(doc, n) {
                Object::Stream(_) => n,
                Object::Dictionary(states) => {
                    let Some(state) = ad.get(b"AS").ok().and_then(|o| name_of(doc, o)) else {
                        continue;
                    };
                    match states.get(state) {
                        Ok(o) => o,
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            let rect: Vec<f32> = match ad.get(b"Rect").ok().map(|o| deref(doc, o)) {
                Some(Object::Array(r)) => r
                    .iter()
                    .filter_map(|o| super::util::num_of(doc, o))
                    .collect(),
                _ => continue,
            };
            if rect.len() != 4 {
                continue;
            }
            let r = [
                rect[0].min(rect[2]),
                rect[1].min(rect[3]),
                rect[0].max(rect[2]),
                rect[1].max(rect[3]),
            ];
            self.draw_form(appearance, None, Matrix(ctm), Some(r), 0)?;
        }
        Ok(())
    }

    /// Place the value of a text field (`/FT /Tx`, `/V`, both inheritable from parent fields)
    /// inside its widget's rectangle, at the size its `/DA` asks for. Returns whether the widget
    /// is such a field.
    fn draw_field_value(&mut self, widget: &'d Dictionary, ctm: [f32; 6]) -> bool {
        let doc = self.doc;
        let field_attr = |key: &[u8]| -> Option<&'d Object> {
            let mut d = widget;
            for _ in 0..16 {
                if let Ok(v) = d.get(key) {
                    return Some(deref(doc, v));
                }
                d = d.get(b"Parent").ok().and_then(|p| dict_of(doc, p))?;
            }
            None
        };
        if !matches!(field_attr(b"FT"), Some(Object::Name(n)) if n.as_slice() == b"Tx") {
            return false;
        }
        let value = match field_attr(b"V") {
            Some(v @ Object::String(..)) => lopdf::decode_text_string(v).unwrap_or_default(),
            _ => String::new(),
        };
        let rect: Vec<f32> = match widget.get(b"Rect").ok().map(|o| deref(doc, o)) {
            Some(Object::Array(r)) => r
                .iter()
                .filter_map(|o| super::util::num_of(doc, o))
                .collect(),
            _ => Vec::new(),
        };
        if rect.len() != 4 || value.trim().is_empty() {
            return true;
        }
        let (x0, y0) = (rect[0].min(rect[2]), rect[1].min(rect[3]));
        let h = (rect[1] - rect[3]).abs();
        // "/Helv 11 Tf" in the default appearance; 0 means auto-size.
        let da = match field_attr(b"DA") {
            Some(Object::String(b, _)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let toks: Vec<&str> = da.split_whitespace().collect();
        let size = toks
            .iter()
            .position(|t| *t == "Tf")
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| toks[i].parse::<f32>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or((0.7 * h).clamp(4.0, 12.0))
            .min(1000.0);
        let tx = |x: f32, y: f32| {
            (
                x * ctm[0] + y * ctm[2] + ctm[4],
                x * ctm[1] + y * ctm[3] + ctm[5],
            )
        };
        let (ux, uy) = (ctm[0], ctm[1]);
        let len = (ux * ux + uy * uy).sqrt();
        let dir = if len > 0.0 && len.is_finite() {
            (ux / len, uy / len)
        } else {
            (1.0, 0.0)
        };
        let mut baseline = y0 + (h - size).max(0.0) / 2.0 + 0.22 * size;
        for line in value.lines().take(200) {
            let w = 0.5 * size * line.chars().count() as f32;
            let (gx, gy) = tx(x0 + 2.0, baseline);
            let (ex, ey) = tx(x0 + 2.0 + w, baseline);
            self.layout.push(PlacedGlyph {
                text: line,
                x: gx,
                y: gy,
                end_x: ex,
                end_y: ey,
                pen_x: ex,
                pen_y: ey,
                dir,
                size: size * len,
                is_space: false,
            });
            baseline -= 1.15 * size;
        }
        true
    }

    /// Show a string: decode codes, place each glyph, advance the text matrix.
    fn show(&mut self, gs: &GState, tm: &mut Matrix, bytes: &[u8]) {
        let font = match &gs.font {
            Some(f) => f.clone(),
            None => self.fonts.fallback(),
        };
        let size = gs.size;
        let hscale = gs.hscale;
        let vertical = font.vertical;
        // ActualText replaces the glyphs of its span: the first glyph carries it, others are empty.
        let actual_idx = self.marked.iter().rposition(|m| m.is_some());
        let layout = &mut self.layout;
        let marked = &mut self.marked;
        let em_scale = if font.is_type3() {
            font.size_scale
        } else {
            1.0
        };
        font.decode(bytes, |g| {
            let trm = tm.mul(&gs.ctm);
            // Text rendering matrix applied to the glyph origin (with rise).
            let (ox, oy) = trm.apply(0.0, gs.rise);
            let spacing = gs.char_spacing
                + if g.is_space_code {
                    gs.word_spacing
                } else {
                    0.0
                };
            let (adv_x, adv_y) = if vertical {
                (0.0, -(g.width * size + spacing))
            } else {
                ((g.width * size + spacing) * hscale, 0.0)
            };
            // The glyph's own extent (without Tc/Tw): letter-spaced text shows gaps, as it looks.
            let (px, py) = trm.apply(adv_x, adv_y + gs.rise);
            let (ex, ey) = if g.width <= 0.0 {
                // Unknown width: only the pen position says where the glyph ends.
                (px, py)
            } else if vertical {
                trm.apply(0.0, -(g.width * size) + gs.rise)
            } else {
                trm.apply(g.width * size * hscale, gs.rise)
            };
            let d = if vertical {
                trm.apply_vec(0.0, -1.0)
            } else {
                trm.apply_vec(1.0, 0.0)
            };
            let len = (d.0 * d.0 + d.1 * d.1).sqrt();
            let dir = if len > 0.0 && len.is_finite() {
                (d.0 / len, d.1 / len)
            } else {
                (1.0, 0.0)
            };
            let up = trm.apply_vec(0.0, 1.0);
            let em = (size * em_scale).abs() * (up.0 * up.0 + up.1 * up.1).sqrt();
            let text: &str = match actual_idx.and_then(|i| marked[i].as_mut()) {
                Some(at) => {
                    if at.emitted {
                        ""
                    } else {
                        at.emitted = true;
                        at.text.as_str()
                    }
                }
                None => g.text,
            };
            let is_space = text == " " || text == "\u{a0}";
            layout.push(PlacedGlyph {
                text,
                x: ox,
                y: oy,
                end_x: ex,
                end_y: ey,
                pen_x: px,
                pen_y: py,
                dir,
                size: em,
                is_space,
            });
            *tm = Matrix::translate(adv_x, adv_y).mul(tm);
        });
    }
}
