//! Page layout: turns positioned glyphs (device space, in content order) into lines of words.
//! Decides word gaps from glyph positions and font size, line breaks from baseline changes, drops
//! duplicated glyphs (fake bold, shadows) and orders lines top-to-bottom, columns left to right.
//!
//! Owns geometry only; fonts and the content stream are the interpreter's business.

use unicode_normalization::UnicodeNormalization;

/// One positioned glyph, in device space.
pub struct PlacedGlyph<'a> {
    pub text: &'a str,
    /// Origin (on the baseline).
    pub x: f32,
    pub y: f32,
    /// Pen position after the glyph.
    pub end_x: f32,
    pub end_y: f32,
    /// Pen position after the glyph's advance including character/word spacing (Tc/Tw).
    pub pen_x: f32,
    pub pen_y: f32,
    /// Unit vector of the writing direction.
    pub dir: (f32, f32),
    /// Font size (em) in device space.
    pub size: f32,
    /// The glyph is a space character (code 32 or text " ").
    pub is_space: bool,
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // extents are for the column pass
struct Line {
    text: String,
    dir: (f32, f32),
    /// First glyph origin.
    x0: f32,
    y0: f32,
    /// Pen position after the last glyph.
    end_x: f32,
    end_y: f32,
    /// Pen position (with Tc/Tw) after the last glyph.
    pen_x: f32,
    pen_y: f32,
    /// Baseline reference (last glyph origin).
    base_x: f32,
    base_y: f32,
    size: f32,
    /// Recent glyphs as (position along the line, first char), for duplicate detection.
    marks: Vec<(f32, char)>,
    /// The last single-character glyph: (start, end along the line, byte index in `text`, char).
    last: Option<(f32, f32, usize, char)>,
    /// The last glyph: where its text starts and ends in `text` (the next glyph goes after it,
    /// or before it when drawn to its left), where it starts along the line, whether it is
    /// right-to-left script, and whether it was itself drawn to the left of its predecessor.
    g_idx: usize,
    g_end: usize,
    g_start: f32,
    g_rtl: bool,
    g_left: bool,
    /// Where the space glyph just appended starts along the line: a glyph drawn from there
    /// takes the space back (zero-width joiners drawn as spaces and undone by kerning).
    space_from: Option<f32>,
    /// The gap (along the line) at each space put in from glyph positions, in order; `None`
    /// once the line has spaces of another kind (space glyphs, insertions).
    gaps: Option<Vec<f32>>,
    /// Letter spacing undone by TJ offsets has been seen on this line (see `place_after`).
    tc_undone: bool,
    /// Zero-width combining marks just appended: where they start in `text` and the span of
    /// their positions along the line. Fonts that shape right-to-left text draw a mark before
    /// the letter it sits on, so a word gap opening at that letter goes before the marks.
    pending_marks: Option<(usize, f32, f32)>,
    /// Extent along x/y in device space (for ordering).
    min_x: f32,
    max_x: f32,
    order: usize,
}

/// Where a glyph goes relative to the current line (`PageLayout::place`).
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// The glyph starts a new line.
    new_line: bool,
    /// A word gap opens before the glyph.
    space_before: bool,
    /// Drawn to the left of the previous glyph (right-to-left text shown in logical order, as
    /// LuaTeX does): its text goes before that glyph's, keeping the line in visual order.
    before_prev: bool,
    /// The distance moved along the line since the previous glyph (the wider of the pen's
    /// and the outline's), kept for lines whose letters are spaced out.
    gap: f32,
}

impl Placement {
    const NEW_LINE: Placement = Placement {
        new_line: true,
        space_before: false,
        before_prev: false,
        gap: 0.0,
    };
}

/// A combining mark drawn with no advance (Arabic and Hebrew vowel signs, shaped by the
/// producer): it never opens a word gap, and the gap to the next letter is measured from the
/// letter before it.
fn is_zero_width_mark(g: &PlacedGlyph<'_>) -> bool {
    !g.text.is_empty()
        && g.text
            .chars()
            .all(unicode_normalization::char::is_combining_mark)
        && (g.end_x - g.x).abs() + (g.end_y - g.y).abs() < 0.01 * g.size.abs().max(1.0)
}

/// The text's only character, if it has exactly one.
fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

impl Line {
    /// A new line at `g` (its `order` among the page's lines). A space glyph opening a line
    /// (`space_only`) puts no text in it but moves the pen past it; any other glyph's text is
    /// added next, from its origin.
    fn open(g: &PlacedGlyph<'_>, size: f32, order: usize, space_only: bool) -> Line {
        let (end_x, end_y, pen_x, pen_y, g_start, min_x, max_x) = if space_only {
            (
                g.end_x,
                g.end_y,
                g.pen_x,
                g.pen_y,
                dot((g.x, g.y), g.dir).min(dot((g.end_x, g.end_y), g.dir)),
                g.x.min(g.end_x),
                g.x.max(g.end_x),
            )
        } else {
            (g.x, g.y, g.x, g.y, dot((g.x, g.y), g.dir), g.x, g.x)
        };
        Line {
            text: String::new(),
            dir: g.dir,
            x0: g.x,
            y0: g.y,
            end_x,
            end_y,
            pen_x,
            pen_y,
            base_x: g.x,
            base_y: g.y,
            size,
            marks: Vec::new(),
            last: None,
            g_idx: 0,
            g_end: 0,
            g_start,
            g_rtl: false,
            g_left: false,
            space_from: None,
            gaps: Some(Vec::new()),
            tc_undone: false,
            pending_marks: None,
            min_x,
            max_x,
            order,
        }
    }

    /// Where `g` starts and ends along this line (its origin and its end, in that order along
    /// the line's direction).
    fn span(&self, g: &PlacedGlyph<'_>) -> (f32, f32) {
        let a = dot((g.x, g.y), self.dir);
        let b = dot((g.end_x, g.end_y), self.dir);
        (a.min(b), a.max(b))
    }

    /// A glyph on this line's baseline but behind the pen (`along`, less than zero): a
    /// duplicate of a glyph already drawn there (fake bold: `None`); right-to-left text drawn
    /// leftwards, or a mark over a glyph of such a run (before the previous glyph); a step back
    /// of up to three ems (after it); else a new line.
    fn place_behind(
        &self,
        g: &PlacedGlyph<'_>,
        along: f32,
        size_ref: f32,
        word_gap: f32,
    ) -> Option<Placement> {
        if let Some(c) = g.text.chars().next() {
            let pos = dot((g.x, g.y), self.dir);
            let tol = 0.2 * size_ref;
            if self
                .marks
                .iter()
                .rev()
                .take(256)
                .any(|(p, m)| *m == c && (p - pos).abs() < tol)
            {
                return None;
            }
        }
        let (gs, ge) = self.span(g);
        let leftward = ge <= self.g_start + 0.1 * size_ref && ge > gs;
        let rtl = self.g_rtl || g.text.chars().any(is_rtl);
        let mut at = Placement::NEW_LINE;
        if along > -3.0 * size_ref || (leftward && rtl) {
            at.new_line = false;
            if leftward && rtl {
                at.before_prev = true;
                at.space_before = self.g_start - ge > word_gap * size_ref;
            } else if self.g_left && gs < self.g_start + 0.5 * size_ref {
                // A mark over a glyph of a leftward run.
                at.before_prev = true;
            }
        }
        Some(at)
    }

    /// A glyph on this line's baseline at or past the pen (`along`): after the last glyph,
    /// with a word gap when the pen moved on (TJ offsets, Td) by more than the word-gap ratio,
    /// or letter spacing (Tc) opens gaps wider than `letter_gap`. Zero-width marks open none.
    fn place_after(
        &mut self,
        g: &PlacedGlyph<'_>,
        along: f32,
        size_ref: f32,
        mark_only: bool,
        params: &LayoutParams,
    ) -> Placement {
        let along_pen = dot((g.x - self.pen_x, g.y - self.pen_y), self.dir);
        // Glyphs pulled back well behind the pen: the producer sets the word space as letter
        // spacing (Tc) and undoes it inside words with TJ offsets. On such a line the pen says
        // nothing; the gap between the outlines decides with the word-gap ratio.
        if along_pen < -0.2 * size_ref && along.abs() < 0.1 * size_ref {
            self.tc_undone = true;
        }
        let space_before = along_pen > params.word_gap * size_ref
            || along > params.letter_gap * size_ref
            || ((self.tc_undone || along_pen < -0.2 * size_ref)
                && along > params.word_gap * size_ref);
        Placement {
            new_line: false,
            space_before: space_before && !mark_only,
            before_prev: false,
            gap: along_pen.max(along),
        }
    }

    /// Put `g`'s text on the line where `at` says: composed with the letter under it, inside
    /// the line, as a space, or at the end.
    fn add(&mut self, g: &PlacedGlyph<'_>, size: f32, mark_only: bool, at: Placement) {
        let (s0, s1) = self.span(g);
        let composed = match single_char(g.text) {
            Some(c) if !at.space_before && !at.before_prev => self.compose_accent(c, (s0, s1)),
            _ => false,
        };
        if composed {
            return;
        }
        let at_end = !at.before_prev && self.g_end == self.text.len();
        let is_blank = g.is_space || g.text.chars().all(char::is_whitespace) && !g.text.is_empty();
        if !at_end {
            self.insert_inside(g, at, is_blank);
        } else if is_blank {
            self.append_space(s0);
        } else if !g.text.is_empty() {
            self.append_glyph(g, size, mark_only, at, (s0, s1));
        }
    }

    /// Accents drawn over a letter (TeX's \'e with old encodings): when the one-character glyph
    /// `c` (spanning `s0..s1`) overlaps the single-character glyph that ends the line and one
    /// of them is a combining accent over the other, a letter, the two become the composed
    /// character. Whether they did.
    fn compose_accent(&mut self, c: char, (s0, s1): (f32, f32)) -> bool {
        let Some((ps, pe, idx, pc)) = self.last else {
            return false;
        };
        let overlap = s1.min(pe) - s0.max(ps);
        let minw = (s1 - s0).min(pe - ps);
        if minw > 0.0 && overlap > 0.4 * minw && idx + pc.len_utf8() == self.text.len() {
            let pair = match (combining_mark(c), combining_mark(pc)) {
                (Some(m), None) if pc.is_alphabetic() => Some((pc, m)),
                (None, Some(m)) if c.is_alphabetic() => Some((c, m)),
                _ => None,
            };
            if let Some((base, mark)) = pair {
                let base = match base {
                    '\u{131}' => 'i',
                    '\u{237}' => 'j',
                    b => b,
                };
                self.text.truncate(idx);
                self.text.extend([base, mark].into_iter().nfc());
                self.last = None;
                self.g_idx = idx;
                self.g_end = self.text.len();
                return true;
            }
        }
        false
    }

    /// Insert `g`'s text inside the line, before or after the previous glyph (`at`), with the
    /// spaces a blank glyph or a word gap calls for. The line's spaces are no longer only gaps.
    fn insert_inside(&mut self, g: &PlacedGlyph<'_>, at: Placement, is_blank: bool) {
        self.gaps = None;
        let mut piece = String::new();
        if !is_blank {
            for ch in g.text.chars() {
                if ch.is_control() {
                    continue;
                }
                piece.push(if ch.is_whitespace() { ' ' } else { ch });
            }
        }
        let (gs, _) = self.span(g);
        let anchor = if at.before_prev {
            self.g_idx
        } else {
            self.g_end
        };
        let pos = anchor.min(self.text.len());
        if self.text.is_char_boundary(pos) {
            let before_len = if is_blank || (at.space_before && !at.before_prev) {
                let prev_space = self.text[..pos].ends_with(' ') || pos == 0;
                usize::from(!prev_space)
            } else {
                0
            };
            let after_space = is_blank || (at.space_before && at.before_prev);
            let mut ins = String::with_capacity(piece.len() + 2);
            if before_len == 1 {
                ins.push(' ');
            }
            ins.push_str(&piece);
            if after_space && !piece.is_empty() && !self.text[pos..].starts_with(' ') {
                ins.push(' ');
            }
            if !ins.is_empty() {
                self.text.insert_str(pos, &ins);
            }
            self.g_idx = pos + before_len;
            self.g_end = self.g_idx + piece.len();
            self.g_start = gs;
            self.g_left = at.before_prev;
            if !piece.is_empty() {
                self.g_rtl = piece.chars().any(is_rtl);
            }
            self.last = None;
        }
    }

    /// A blank glyph (starting at `s0`) at the end of the line: one space, which the next glyph
    /// may take back (see `space_from`).
    fn append_space(&mut self, s0: f32) {
        self.gaps = None;
        if !self.text.is_empty() && !self.text.ends_with(' ') {
            self.text.push(' ');
            self.space_from = Some(s0);
        }
        self.g_idx = self.text.len();
        self.g_end = self.text.len();
        self.g_start = s0;
        self.g_left = false;
    }

    /// `g`'s text (not blank, spanning `s0..s1`) at the end of the line, after a word gap if
    /// `at` opens one (before the zero-width marks drawn just before it, when they sit on it).
    fn append_glyph(
        &mut self,
        g: &PlacedGlyph<'_>,
        size: f32,
        mark_only: bool,
        at: Placement,
        (s0, s1): (f32, f32),
    ) {
        if !mark_only {
            self.take_back_space(s0, size, at.space_before);
        }
        let pending = self.pending_marks.take();
        if mark_only {
            let pos = dot((g.x, g.y), self.dir);
            self.pending_marks = Some(match pending {
                Some((i, a, b)) => (i, a.min(pos), b.max(pos)),
                None => (self.text.len(), pos, pos),
            });
        }
        let marks_on_this = pending.filter(|&(i, a, b)| {
            a >= s0 - 0.1 * size && b <= s1 + 0.1 * size && i > 0 && self.text.is_char_boundary(i)
        });
        if let (true, Some((i, _, _))) = (at.space_before && !mark_only, marks_on_this) {
            // The marks belong to this letter: the gap goes before them.
            if !self.text[..i].ends_with(' ') {
                self.text.insert(i, ' ');
                if let Some(v) = self.gaps.as_mut() {
                    v.push(at.gap);
                }
            }
        } else if at.space_before && !self.text.is_empty() && !self.text.ends_with(' ') {
            self.text.push(' ');
            if let Some(v) = self.gaps.as_mut() {
                if v.len() < 4096 {
                    v.push(at.gap);
                } else {
                    self.gaps = None;
                }
            }
        }
        self.push_text(g, (s0, s1));
    }

    /// The space glyph just appended is taken back when the next glyph (starting at `s0`) is
    /// drawn from where it started (zero-width joiners drawn as spaces and undone by kerning),
    /// unless a word gap opens there anyway.
    fn take_back_space(&mut self, s0: f32, size: f32, space_before: bool) {
        if let Some(sf) = self.space_from.take()
            && s0 <= sf + 0.05 * size
            && !space_before
            && self.text.ends_with(' ')
        {
            self.text.pop();
        }
    }

    /// Append `g`'s text (control characters dropped, whitespace as one space) and make it the
    /// line's last glyph, remembered for composing accents and spotting duplicates.
    fn push_text(&mut self, g: &PlacedGlyph<'_>, (s0, s1): (f32, f32)) {
        let start = self.text.len();
        for ch in g.text.chars() {
            if ch.is_control() {
                continue;
            }
            if ch.is_whitespace() {
                if !self.text.ends_with(' ') {
                    self.text.push(' ');
                }
            } else {
                self.text.push(ch);
            }
        }
        self.g_idx = start;
        self.g_end = self.text.len();
        self.g_start = s0;
        self.g_rtl = g.text.chars().any(is_rtl);
        self.g_left = false;
        // Only a glyph whose character the line now ends with (a control character is dropped and
        // a space may merge with the one before it, so the text need not end with it).
        self.last = single_char(g.text)
            .filter(|c| self.text.ends_with(*c))
            .map(|c| (s0, s1, self.text.len() - c.len_utf8(), c));
        if let Some(c) = g.text.chars().next() {
            if self.marks.len() >= 1024 {
                self.marks.drain(..512);
            }
            self.marks.push((dot((g.x, g.y), self.dir), c));
        }
    }

    /// Move the pen, baseline and extent past `g`, and the font size up to `g`'s (`size`).
    fn advance(&mut self, g: &PlacedGlyph<'_>, size: f32, mark_only: bool) {
        self.pending_marks = self.pending_marks.filter(|_| mark_only);
        self.end_x = g.end_x;
        self.end_y = g.end_y;
        self.pen_x = g.pen_x;
        self.pen_y = g.pen_y;
        self.base_x = g.x;
        self.base_y = g.y;
        if !g.text.is_empty() && !g.is_space {
            self.size = if self.text.len() == g.text.len() {
                size
            } else {
                self.size.max(size)
            };
        }
        self.min_x = self.min_x.min(g.x).min(g.end_x);
        self.max_x = self.max_x.max(g.x).max(g.end_x);
    }
}

/// Layout tuning.
#[derive(Debug, Clone, Copy)]
pub struct LayoutParams {
    /// Gap (fraction of the font size) above which two glyphs belong to different words. 0.1
    /// matches pdftotext best on the corpus (0.08: 0.979, 0.1: 0.985, 0.15: 0.978 word F1 per file
    /// on a 19-file sample; CJK justification is the sensitive case).
    pub word_gap: f32,
    /// Gap between glyph outlines (fraction of the font size) above which letter-spaced text
    /// (Tc) is read as separate words; OCR layers use Tc below it to fit words to the scan.
    pub letter_gap: f32,
    /// Rejoin words hyphenated at a line end ("con-" / "taining" → "containing", the lines
    /// joined), as pdftotext does. Off (the default, as the extraction issue asks: chunking
    /// decides) keeps the hyphen and the line break.
    pub rejoin_hyphens: bool,
}

impl Default for LayoutParams {
    fn default() -> Self {
        LayoutParams {
            word_gap: 0.1,
            letter_gap: 0.3,
            rejoin_hyphens: false,
        }
    }
}

/// Builds the text of one page.
pub struct PageLayout {
    lines: Vec<Line>,
    cur: Option<Line>,
    params: LayoutParams,
    bytes: usize,
    max_bytes: usize,
    /// The visible page area in device space (x0, y0, x1, y1): glyphs wholly outside are dropped.
    clip: Option<(f32, f32, f32, f32)>,
}

fn dot(a: (f32, f32), b: (f32, f32)) -> f32 {
    a.0 * b.0 + a.1 * b.1
}

fn cross(a: (f32, f32), b: (f32, f32)) -> f32 {
    a.0 * b.1 - a.1 * b.0
}

impl PageLayout {
    pub fn new(params: LayoutParams, max_bytes: usize) -> Self {
        PageLayout {
            lines: Vec::new(),
            cur: None,
            params,
            bytes: 0,
            max_bytes,
            clip: None,
        }
    }

    /// Drop glyphs that lie outside this area (the page's crop box, in device space).
    pub fn set_clip(&mut self, x0: f32, y0: f32, x1: f32, y1: f32) {
        if x1 > x0 && y1 > y0 {
            self.clip = Some((x0, y0, x1, y1));
        }
    }

    /// Whether the page's text reached its size limit (further glyphs are ignored).
    pub fn full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    /// Add one glyph, in content order. It is dropped when the page is full, when its position
    /// is not finite, when it lies outside the clip area, or when it repeats a glyph already
    /// drawn at the same place (fake bold, shadows). Otherwise it joins the current line (after
    /// the last glyph, with a word gap when the distance says so; before it when drawn to its
    /// left in right-to-left text; composed with the letter under it when it is an accent) or
    /// starts a new line.
    pub fn push(&mut self, g: PlacedGlyph<'_>) {
        if !self.takes(&g) {
            return;
        }
        let size = if g.size.is_finite() && g.size > 0.01 {
            g.size
        } else {
            1.0
        };
        let mark_only = is_zero_width_mark(&g);
        let Some(mut at) = self.place(&g, size, mark_only) else {
            // A duplicate.
            return;
        };
        if at.new_line && self.continues_cjk_column(&g, size) {
            at.new_line = false;
        }
        if at.new_line {
            if let Some(done) = self.cur.take() {
                self.finish_line(done);
            }
            // A line never starts with a space; remember the pen position though.
            let space_only = g.is_space && g.text.trim().is_empty();
            self.cur = Some(Line::open(&g, size, self.lines.len(), space_only));
            if space_only {
                return;
            }
        }
        let Some(cur) = self.cur.as_mut() else { return };
        let before = cur.text.len();
        cur.add(&g, size, mark_only, at);
        self.bytes += cur.text.len() - before;
        if mark_only && !at.new_line {
            // Marks leave the pen where the letter before them ended.
            return;
        }
        cur.advance(&g, size, mark_only);
    }

    /// Whether `g` can go on the page: there is room left, its position is finite and it is
    /// not wholly outside the clip area.
    fn takes(&self, g: &PlacedGlyph<'_>) -> bool {
        if self.full()
            || !(g.x.is_finite() && g.y.is_finite() && g.end_x.is_finite() && g.end_y.is_finite())
        {
            return false;
        }
        if let Some((x0, y0, x1, y1)) = self.clip {
            // As pdftotext: a glyph is on the page while its origin is not past the right or
            // top edge and its end not before the left or bottom edge.
            let (gx1, gy1) = (g.x.max(g.end_x), g.y.max(g.end_y));
            if gx1 < x0 || g.x > x1 || gy1 < y0 || g.y > y1 {
                return false;
            }
        }
        true
    }

    /// Where `g` goes relative to the current line: on it (see `Line::place_behind` and
    /// `Line::place_after`), on a new line (another direction, another baseline, no line yet),
    /// or nowhere (`None`: a duplicate). `size` is `g`'s usable font size.
    fn place(&mut self, g: &PlacedGlyph<'_>, size: f32, mark_only: bool) -> Option<Placement> {
        let params = self.params;
        if let Some(cur) = self.cur.as_mut()
            && dot(cur.dir, g.dir) > 0.95
        {
            let delta = (g.x - cur.end_x, g.y - cur.end_y);
            let along = dot(delta, cur.dir);
            let from_base = (g.x - cur.base_x, g.y - cur.base_y);
            let perp = cross(cur.dir, from_base).abs();
            let size_ref = size.max(cur.size);
            let small = size.min(cur.size);
            // Same line while the baselines differ by less than half an em (pdftotext's
            // rule too: a text rise of half the font size is another line).
            if perp < 0.5 * size_ref && perp <= 1.2 * small.max(size_ref * 0.5) {
                return if along < -0.05 * size_ref {
                    cur.place_behind(g, along, size_ref, params.word_gap)
                } else {
                    Some(cur.place_after(g, along, size_ref, mark_only, &params))
                };
            }
        }
        Some(Placement::NEW_LINE)
    }

    /// CJK set vertically with a horizontal font (each glyph placed under the previous one):
    /// whether `g` carries on the current line's column, which is kept together as one line.
    fn continues_cjk_column(&self, g: &PlacedGlyph<'_>, size: f32) -> bool {
        if let (Some(cur), Some(c)) = (self.cur.as_ref(), g.text.chars().next())
            && let Some(p) = cur.text.chars().last()
            && is_cjk(c)
            && is_cjk(p)
        {
            let d = (g.x - cur.base_x, g.y - cur.base_y);
            let along = dot(d, g.dir);
            let down = cross(g.dir, d);
            return along.abs() < 0.3 * size && down < -0.3 * size && down > -2.0 * size;
        }
        false
    }

    fn finish_line(&mut self, mut l: Line) {
        let t = l.text.trim_end();
        if t.is_empty() {
            return;
        }
        l.text.truncate(t.len());
        l.marks = Vec::new();
        if let Some(gaps) = l.gaps.take()
            && let Some(t) = join_spaced_letters(&l.text, &gaps, l.size)
        {
            l.text = t;
        }
        self.lines.push(l);
    }

    /// The page text: one line per text line, in reading order, each ending with `\n`.
    pub fn finish(mut self) -> String {
        if let Some(done) = self.cur.take() {
            self.finish_line(done);
        }
        let lines = reading_order(self.lines);
        let mut out = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
        let mut prev: Option<&Line> = None;
        for (i, l) in lines.iter().enumerate() {
            if let Some(p) = prev {
                // A blank line between blocks: a vertical gap well over the line spacing.
                let gap = p.y0 - l.y0;
                if l.dir.0 > 0.9 && p.dir.0 > 0.9 && gap > 2.2 * p.size.max(l.size) {
                    out.push('\n');
                }
            }
            let t = l.text.trim_start();
            if t.chars().any(is_rtl) {
                out.push_str(&visual_to_logical(t));
            } else if let Some(stem) = lines
                .get(i + 1)
                .filter(|_| self.params.rejoin_hyphens)
                .and_then(|n| hyphen_joins(l, n))
            {
                // A word hyphenated at the line end: rejoined, as pdftotext does.
                out.push_str(stem.trim_start());
                prev = Some(l);
                continue;
            } else {
                out.push_str(t);
            }
            out.push('\n');
            prev = Some(l);
        }
        out
    }
}

/// `line` ends with a word broken by a hyphen and `next` carries on below it (same direction,
/// the next line of the paragraph, starting with a lower-case letter): `line`'s text without the
/// hyphen, to be followed directly by `next`.
fn hyphen_joins<'a>(line: &'a Line, next: &Line) -> Option<&'a str> {
    let stem = line.text.strip_suffix('-')?;
    if !stem.chars().next_back().is_some_and(char::is_alphabetic) {
        return None;
    }
    if !next
        .text
        .trim_start()
        .chars()
        .next()
        .is_some_and(char::is_lowercase)
        || next.text.chars().any(is_rtl)
    {
        return None;
    }
    if dot(line.dir, next.dir) < 0.99 {
        return None;
    }
    // The next line sits below, within a normal line spacing.
    let size = line.size.max(next.size);
    let below = cross(line.dir, (next.x0 - line.x0, next.y0 - line.y0));
    if below >= -0.5 * size || below <= -2.2 * size {
        return None;
    }
    Some(stem)
}

/// A line made only of single characters with gaps between them (letter-spaced text such as
/// "C O N T E N T S", or justified CJK): gaps up to 1.3 times the smallest one (at most 0.4 em)
/// are letter spacing, not word breaks, so those characters are joined, as pdftotext does.
/// `gaps` are the gaps at the line's spaces, in order. `None` when the line is not like that.
fn join_spaced_letters(text: &str, gaps: &[f32], size: f32) -> Option<String> {
    if gaps.is_empty() || text.split(' ').count() != gaps.len() + 1 {
        return None;
    }
    if !text.split(' ').all(|w| w.chars().count() == 1) {
        return None;
    }
    let min = gaps.iter().copied().fold(f32::MAX, f32::min);
    if min.is_nan() || min <= 0.0 {
        return None;
    }
    let threshold = (1.3 * min).min(0.4 * size);
    let mut out = String::with_capacity(text.len());
    for (i, w) in text.split(' ').enumerate() {
        if i > 0 && gaps[i - 1] >= threshold {
            out.push(' ');
        }
        out.push_str(w);
    }
    Some(out)
}

/// Han, kana, hangul and CJK punctuation/full-width forms.
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF | 0x20000..=0x2FFFF)
}

/// The combining form of a spacing accent, as TeX and old fonts draw them.
fn combining_mark(c: char) -> Option<char> {
    Some(match c {
        '\u{B4}' | '\u{2CA}' => '\u{301}',
        '`' | '\u{2CB}' => '\u{300}',
        '\u{2C6}' | '^' => '\u{302}',
        '\u{2DC}' | '~' => '\u{303}',
        '\u{A8}' => '\u{308}',
        '\u{2DA}' => '\u{30A}',
        '\u{B8}' => '\u{327}',
        '\u{2C7}' => '\u{30C}',
        '\u{2D8}' => '\u{306}',
        '\u{2DD}' => '\u{30B}',
        '\u{2DB}' => '\u{328}',
        '\u{AF}' | '\u{2C9}' => '\u{304}',
        '\u{2D9}' => '\u{307}',
        _ => return None,
    })
}

/// Hebrew, Arabic, Syriac, Thaana, NKo and their presentation forms; not the Arabic-Indic
/// digits, which are written left to right like any number.
fn is_rtl(c: char) -> bool {
    matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
        && !matches!(c as u32, 0x0660..=0x0669 | 0x06F0..=0x06F9)
}

/// Glyphs arrive in visual (left-to-right) order; a line with right-to-left script is turned
/// into logical order: the whole line reversed, then left-to-right runs (Latin, digits) restored.
fn visual_to_logical(line: &str) -> String {
    let rev: Vec<char> = line.chars().rev().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < rev.len() {
        if rev[i].is_alphanumeric() && !is_rtl(rev[i]) {
            // A left-to-right run: extend over LTR chars and inner neutrals (". , - /" between them).
            let mut j = i;
            let mut end = i;
            while j < rev.len() && !is_rtl(rev[j]) {
                if rev[j].is_alphanumeric() {
                    end = j;
                }
                j += 1;
            }
            out.extend(rev[i..=end].iter().rev());
            i = end + 1;
        } else {
            out.push(mirror(rev[i]));
            i += 1;
        }
    }
    out
}

fn mirror(c: char) -> char {
    match c {
        '(' => ')',
        ')' => '(',
        '[' => ']',
        ']' => '[',
        '{' => '}',
        '}' => '{',
        '<' => '>',
        '>' => '<',
        '«' => '»',
        '»' => '«',
        _ => c,
    }
}

/// Order lines for reading. Content order is kept, except that the horizontal lines of a page
/// are sorted top-to-bottom within each detected column when the content order jumps around.
fn reading_order(lines: Vec<Line>) -> Vec<Line> {
    // Today: keep content order (producers nearly always emit text in reading order, and the
    // order of columns is theirs to know). `order`, `x0`, `min_x`, `max_x` are kept for the
    // column pass.
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str, x: f32, y: f32, w: f32) -> PlacedGlyph<'_> {
        PlacedGlyph {
            text,
            x,
            y,
            end_x: x + w,
            end_y: y,
            pen_x: x + w,
            pen_y: y,
            dir: (1.0, 0.0),
            size: 10.0,
            is_space: text == " ",
        }
    }

    #[test]
    fn rtl_lines_in_logical_order() {
        // Visual order "ABC 12 <alef><beh>" with Hebrew-free Arabic letters after reversal.
        assert_eq!(
            visual_to_logical("\u{0628}\u{0627} 2006 \u{0646}"),
            "\u{0646} 2006 \u{0627}\u{0628}"
        );
    }

    #[test]
    fn arabic_indic_digits_stay_left_to_right() {
        // Visual "١٣٩٧ <seen><feh>": the number keeps its digit order in logical order.
        assert_eq!(
            visual_to_logical("\u{661}\u{663}\u{669}\u{667} \u{641}\u{633}"),
            "\u{633}\u{641} \u{661}\u{663}\u{669}\u{667}"
        );
    }

    #[test]
    fn glyphs_drawn_leftwards_are_right_to_left_text() {
        // LuaTeX shows Arabic in logical order, each glyph left of the previous one, and a wider
        // leftward gap between words: alef lam (word 1), then beh (word 2).
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("\u{627}", 100.0, 100.0, 3.0));
        p.push(g("\u{644}", 95.0, 100.0, 5.0));
        p.push(g("\u{628}", 85.0, 100.0, 5.0));
        // A left-to-right run inside, drawn left of the Arabic, its letters rightwards.
        p.push(g("A", 70.0, 100.0, 5.0));
        p.push(g("B", 75.0, 100.0, 5.0));
        assert_eq!(p.finish(), "\u{627}\u{644} \u{628} AB\n");
    }

    #[test]
    fn zero_width_marks_neither_open_nor_misplace_word_gaps() {
        // Shaped Arabic in visual order, as XeTeX draws it: each vowel sign (zero advance) is
        // drawn before the letter it sits on, offset to the right of the previous letter's end.
        // Visual: dal, meem, fatha (over hah), hah, lam, alef = logical "الحَمد"; then a word gap
        // before a waw carrying a damma, drawn damma first.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("\u{62F}", 60.0, 100.0, 4.0));
        p.push(g("\u{645}", 64.0, 100.0, 4.0));
        p.push(g("\u{64E}", 69.5, 101.5, 0.0));
        p.push(g("\u{62D}", 68.0, 100.0, 5.5));
        p.push(g("\u{644}", 73.5, 100.0, 2.0));
        p.push(g("\u{627}", 75.5, 100.0, 1.5));
        p.push(g("\u{64F}", 82.0, 101.0, 0.0));
        p.push(g("\u{648}", 80.0, 100.0, 3.0));
        assert_eq!(
            p.finish(),
            "\u{648}\u{64F} \u{627}\u{644}\u{62D}\u{64E}\u{645}\u{62F}\n"
        );
    }

    #[test]
    fn a_space_taken_back_by_the_next_glyph_is_dropped() {
        // A space glyph (a zero-width non-joiner drawn as a space) after which the next glyph
        // starts where the space did: no gap on the page, no space in the text.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("a", 0.0, 100.0, 5.0));
        p.push(g(" ", 5.0, 100.0, 3.0));
        p.push(g("b", 5.0, 100.0, 5.0));
        p.push(g(" ", 10.0, 100.0, 3.0));
        p.push(g("c", 13.0, 100.0, 5.0));
        assert_eq!(p.finish(), "ab c\n");
    }

    #[test]
    fn half_an_em_off_the_baseline_is_another_line() {
        // Text rise (Ts) of half the font size starts a new line, as pdftotext has it; a
        // smaller shift (a superscript) stays on the line.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("a", 0.0, 100.0, 5.0));
        p.push(g("b", 5.0, 105.0, 5.0));
        p.push(g("c", 10.0, 103.0, 5.0));
        assert_eq!(p.finish(), "a\nbc\n");
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("a", 0.0, 100.0, 5.0));
        p.push(g("2", 5.0, 104.0, 5.0));
        assert_eq!(p.finish(), "a2\n");
    }

    #[test]
    fn letter_spaced_lines_are_joined() {
        // Single letters with even gaps (0.34 em): letter spacing, one word.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        for (i, c) in ["b", "b", "b", "b"].into_iter().enumerate() {
            p.push(g(c, i as f32 * 8.4, 100.0, 5.0));
        }
        assert_eq!(p.finish(), "bbbb\n");
        // A clearly wider gap stays a word break; lines with longer words are left alone.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        for (c, x) in [("a", 0.0), ("b", 7.0), ("c", 20.0), ("d", 27.0)] {
            p.push(g(c, x, 100.0, 5.0));
        }
        p.push(g("x", 0.0, 80.0, 5.0));
        p.push(g("y", 5.0, 80.0, 5.0));
        p.push(g("z", 14.0, 80.0, 5.0));
        assert_eq!(p.finish(), "ab cd\nxy z\n");
    }

    #[test]
    fn letter_spacing_undone_inside_words_marks_word_gaps() {
        // Tc of 0.27 em on every glyph (pen 2.7 past each outline), pulled back by TJ inside
        // words; between words the next glyph sits at the pen: a 0.27 em gap, a word break.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        let mut push = |c, x: f32| {
            p.push(PlacedGlyph {
                text: c,
                x,
                y: 100.0,
                end_x: x + 5.0,
                end_y: 100.0,
                pen_x: x + 7.7,
                pen_y: 100.0,
                dir: (1.0, 0.0),
                size: 10.0,
                is_space: false,
            })
        };
        push("a", 0.0);
        push("l", 5.0);
        push("l", 10.0);
        push("f", 17.7);
        push("i", 22.7);
        assert_eq!(p.finish(), "all fi\n");
    }

    #[test]
    fn glyphs_past_the_page_edge_are_dropped() {
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.set_clip(0.0, 0.0, 20.0, 200.0);
        p.push(g("a", 9.0, 100.0, 5.0));
        p.push(g("b", 14.0, 100.0, 5.0));
        p.push(g("c", 19.0, 100.0, 5.0)); // starts inside, ends outside: kept
        p.push(g("d", 24.0, 100.0, 5.0)); // starts past the edge: dropped
        p.push(g("e", -8.0, 90.0, 5.0)); // ends before the left edge: dropped
        assert_eq!(p.finish(), "abc\n");
    }

    #[test]
    fn hyphenated_words_are_rejoined() {
        let rejoin = LayoutParams {
            rejoin_hyphens: true,
            ..LayoutParams::default()
        };
        let mut p = PageLayout::new(rejoin, 1 << 20);
        p.push(g("con-", 0.0, 100.0, 20.0));
        p.push(g("taining", 0.0, 88.0, 35.0));
        p.push(g("well-", 0.0, 76.0, 25.0));
        p.push(g("Known", 0.0, 64.0, 25.0)); // capital: kept apart
        assert_eq!(p.finish(), "containing\nwell-\nKnown\n");
        // The default keeps them as they are.
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("con-", 0.0, 100.0, 20.0));
        p.push(g("taining", 0.0, 88.0, 35.0));
        assert_eq!(p.finish(), "con-\ntaining\n");
    }

    #[test]
    fn words_lines_and_duplicates() {
        let mut p = PageLayout::new(LayoutParams::default(), 1 << 20);
        p.push(g("H", 0.0, 100.0, 5.0));
        p.push(g("i", 5.2, 100.0, 3.0));
        p.push(g("y", 11.5, 100.0, 5.0)); // 3.3 gap: a word break
        p.push(g("H", 0.3, 100.0, 5.0)); // fake bold duplicate
        p.push(g("N", 0.0, 88.0, 5.0));
        p.push(g(" ", 5.0, 88.0, 2.5));
        p.push(g("x", 7.5, 88.0, 5.0));
        p.push(g("\u{A8}", 20.5, 88.0, 4.0)); // accent drawn over the next letter
        p.push(g("u", 20.0, 88.0, 5.0));
        assert_eq!(p.finish(), "Hi y\nN x \u{FC}\n");
    }
}
