//! Streams an HTML body to a [`Handler`] as a mail client would nest it:
//! html5gum's WHATWG tokenizer, and a cut-down version of the standard's
//! tree construction on an explicit stack of open elements.
//!
//! Lint needs each element's attributes, its place among its ancestors
//! (hidden, tiny, silent text is inherited) and the text; it never needs
//! the tree itself. So instead of building a document (html5ever's tree
//! builder, half of a newsletter's lint time with its tokenizer), the
//! events go straight to the walker. What the standard's tree construction
//! does that changes *nesting* is kept:
//!
//! - void elements (`img`, `br` …) never hold content;
//! - elements whose end tag may be left out are closed where the standard
//!   closes them: a block element closes an open `p`, `li` closes the open
//!   `li`, a table cell, row or section the previous one, `option` the open
//!   `option`, a heading a directly open heading, `a` an open `a`;
//! - an end tag closes the nearest open element of its name and everything
//!   opened inside it, except that an end tag for a phrasing element never
//!   closes a block element (`<span><div></span>` leaves the `div` open) and
//!   none reaches past a table, cell or other scope boundary;
//! - content other than metadata ends the `<head>`, and a `<head>` after
//!   it is ignored;
//! - `<x/>` closes itself inside `svg` and `math`, nowhere else;
//! - content written inside a table but outside its cells sits beside the
//!   table (foster-parenting): `<table bgcolor=black><font color=black>x`
//!   shows black text on the page, not on the table.
//!
//! Left out, with what it changes: the adoption agency's re-opening of
//! mis-nested formatting elements (`<b><p>x</b>y` leaves `y` outside the
//! `b`), and a `<body>` that comes after content (text before `<body
//! bgcolor=black>`, or a second `<body>`) lending its attributes to what
//! came before it. docs/performance.md compares the findings with those
//! of html5ever's full tree on 6,287 real messages.
//!
//! Mis-nested and unclosed elements are reported in words, for
//! `html.malformed` (the first [`MAX_ERRORS`]).

use std::borrow::Cow;
use std::convert::Infallible;
use std::ops::Range;

use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Emitter, ForwardingEmitter, Span, Tokenizer};

/// What the parse reports, in document order.
///
/// `depth` says where content sits: its ancestors are the first `depth`
/// elements opened and not yet closed. That is all of them, except for
/// content written straight inside a table (not in a cell), which
/// browsers move before the table ("foster-parenting"): its ancestors are
/// the table's.
pub(crate) trait Handler {
    /// A start tag, lower-cased name and attributes as written (character
    /// references decoded; a repeated attribute keeps its first value).
    fn open(&mut self, name: &str, attrs: &[(&str, &str)], depth: usize);
    /// The element opened last is closed (explicitly or implicitly).
    fn close(&mut self, name: &str);
    /// Text, and the name of the element opened last ("" at the top).
    fn text(&mut self, text: &str, depth: usize, parent: &str);
}

/// How many open elements an end tag or scope test looks through. A real
/// template nests a few dozen deep; hostile input that nests 10,000 deep
/// and then closes what isn't open would otherwise cost the depth squared.
const MAX_SEARCH: usize = 256;

/// At most this many problems are kept for the finding.
const MAX_ERRORS: usize = 20;

/// Parses `html`, calling `handler` for every element and text, and
/// returns the structural problems found (at most [`MAX_ERRORS`]).
pub(crate) fn parse(html: &str, handler: &mut impl Handler) -> Vec<String> {
    let html = normalise_newlines(html);
    let mut builder = Builder {
        handler,
        stack: Vec::with_capacity(64),
        tag: Tag::default(),
        open: [0; 4],
        head_seen: false,
        in_body: false,
        errors: Vec::new(),
    };
    let mut emitter = CallbackEmitter::new(|event: CallbackEvent<'_>, _: Span<()>| {
        builder.event(event);
        None::<Infallible>
    });
    // Raw text after <style>, <script>, <title>, <textarea> …: what the tree
    // builder would tell the tokenizer, decided from the tag name alone.
    emitter.naively_switch_states(true);
    // A &str reader can't fail.
    let _ = Tokenizer::new_with_emitter(&*html, Quiet(emitter)).finish();
    builder.end();
    builder.errors
}

/// The tokenizer without its per-byte checks for characters the standard
/// calls parse errors (controls, noncharacters): lint reads structure, not
/// conformance, and the checks cost a fifth of the tokenizer's time.
struct Quiet<E>(E);

impl<E: Emitter> ForwardingEmitter for Quiet<E> {
    type Token = E::Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.0
    }

    fn should_emit_errors(&mut self) -> bool {
        false
    }
}

/// CR LF and lone CR as LF: the HTML standard's input preprocessing, done
/// once here with memchr. Mail bodies arrive with CRLF line ends, and the
/// tokenizer stops its fast scans at every CR to do the same by itself.
fn normalise_newlines(html: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\r', html.as_bytes()).is_none() {
        return Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut from = 0;
    // memchr's SIMD search: std's `find` costs ~3 instructions a byte here.
    for cr in memchr::memchr_iter(b'\r', html.as_bytes()) {
        out.push_str(&html[from..cr]);
        out.push('\n');
        from = cr + 1;
        if html.as_bytes().get(from) == Some(&b'\n') {
            from += 1;
        }
    }
    out.push_str(&html[from..]);
    Cow::Owned(out)
}

/// The tokenizer reads a &str and hands out whole names, values and runs
/// of text, so they are UTF-8; `std`'s check (an ASCII fast path) is
/// cheaper than the lossy conversion's, which only runs if that were wrong.
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The start tag being read: its name and attributes, kept in one buffer
/// that every tag reuses.
#[derive(Default)]
struct Tag {
    text: String,
    name: Range<usize>,
    attrs: Vec<(Range<usize>, Range<usize>)>,
}

impl Tag {
    fn push(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(&utf8(bytes));
        start..self.text.len()
    }
}

struct Builder<'h, H> {
    handler: &'h mut H,
    /// Names of the open elements, outermost first.
    stack: Vec<Box<str>>,
    tag: Tag,
    /// How many `html`, `body`, `svg` and `math` elements are open (see
    /// [`counted`]): asked at every start tag, so counted rather than
    /// searched for down a stack that hostile input makes deep.
    open: [usize; 4],
    /// Only the first `<head>` counts, and only before the body's content
    /// begins; the standard ignores any other.
    head_seen: bool,
    in_body: bool,
    errors: Vec<String>,
}

impl<H: Handler> Builder<'_, H> {
    fn event(&mut self, event: CallbackEvent<'_>) {
        match event {
            CallbackEvent::OpenStartTag { name } => {
                self.tag.text.clear();
                self.tag.attrs.clear();
                self.tag.name = self.tag.push(name);
            }
            CallbackEvent::AttributeName { name } => {
                let name = self.tag.push(name);
                let end = name.end;
                self.tag.attrs.push((name, end..end));
            }
            CallbackEvent::AttributeValue { value } => {
                let value = self.tag.push(value);
                if let Some(last) = self.tag.attrs.last_mut() {
                    last.1 = value;
                }
            }
            CallbackEvent::CloseStartTag { self_closing } => self.start_tag(self_closing),
            CallbackEvent::EndTag { name } => self.end_tag(&utf8(name)),
            CallbackEvent::String { value } => self.text(&utf8(value)),
            CallbackEvent::Comment { .. }
            | CallbackEvent::Doctype { .. }
            | CallbackEvent::Error(_) => {}
        }
    }

    fn start_tag(&mut self, self_closing: bool) {
        let mut tag = std::mem::take(&mut self.tag);
        let name = match &tag.text[tag.name.clone()] {
            "image" => "img",
            name => name,
        };
        if !name.is_empty() && self.admit(name) {
            let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(tag.attrs.len());
            for (n, v) in &tag.attrs {
                let n = &tag.text[n.clone()];
                if !attrs.iter().any(|(seen, _)| *seen == n) {
                    attrs.push((n, &tag.text[v.clone()]));
                }
            }
            let depth = self.content_depth(!is_table_content(name));
            self.handler.open(name, &attrs, depth);
            // `<path/>` closes itself inside SVG or MathML; `<div/>` in
            // HTML doesn't.
            let foreign = self.is_open("svg") || self.is_open("math");
            if is_void(name) || (self_closing && foreign) {
                self.handler.close(name);
            } else {
                if let Some(i) = counted(name) {
                    self.open[i] += 1;
                }
                self.stack.push(name.into());
            }
        }
        tag.name = 0..0;
        self.tag = tag;
    }

    /// Closes what the start tag `name` implicitly closes; false if the tag
    /// is to be dropped (a second `<html>`, `<head>` or `<body>`).
    fn admit(&mut self, name: &str) -> bool {
        match name {
            "html" | "body" if self.is_open(name) => return false,
            "head" if self.head_seen || self.in_body => return false,
            "head" => self.head_seen = true,
            "html" => {}
            _ if !is_head_content(name) => self.in_body = true,
            _ => {}
        }
        if self.current() == "head" && !is_head_content(name) {
            self.pop_implied();
        }
        if closes_p(name)
            && let Some(at) = self.find("p", is_button_scope_boundary)
        {
            self.close_to(at, name, false);
        }
        match name {
            "li" => self.close_list_item(&["li"], name),
            "dd" | "dt" => self.close_list_item(&["dd", "dt"], name),
            _ if is_heading(name) && is_heading(self.current()) => {
                self.error(format!("<{name}> opened inside <{}>", self.current()));
                self.pop_implied();
            }
            "a" => {
                if let Some(at) = self.find("a", is_scope_boundary) {
                    self.error("<a> opened inside another <a>".to_string());
                    self.close_to(at, name, false);
                }
            }
            "td" | "th" => self.close_cell_part(&["td", "th"], &["tr", "table"], name),
            "tr" => self.close_cell_part(&["tr"], &["table"], name),
            "tbody" | "thead" | "tfoot" => {
                self.close_cell_part(&["tbody", "thead", "tfoot"], &["table"], name)
            }
            "option" if self.current() == "option" => self.pop_implied(),
            "optgroup" => {
                if self.current() == "option" {
                    self.pop_implied();
                }
                if self.current() == "optgroup" {
                    self.pop_implied();
                }
            }
            _ => {}
        }
        true
    }

    /// `li` closes an open `li` (`dd`/`dt` likewise) unless a block other
    /// than `address`, `div` or `p` lies between.
    fn close_list_item(&mut self, items: &[&str], by: &str) {
        let at = self.find_any(items, |n| {
            is_special(n) && !matches!(n, "address" | "div" | "p")
        });
        if let Some(at) = at {
            self.close_to(at, by, false);
        }
    }

    /// A cell closes the open cell of its row, a row the open row of its
    /// table, a section the open section.
    fn close_cell_part(&mut self, parts: &[&str], boundaries: &[&str], by: &str) {
        if let Some(at) = self.find_any(parts, |n| boundaries.contains(&n) || n == "template") {
            self.close_to(at, by, false);
        }
    }

    fn end_tag(&mut self, name: &str) {
        match name {
            // Their end is the end of the document.
            "html" | "body" => return,
            "br" => {
                // `</br>` is a `<br>`, in every browser.
                let depth = self.content_depth(true);
                self.handler.open("br", &[], depth);
                self.handler.close("br");
                return;
            }
            _ if is_void(name) => return,
            _ => {}
        }
        let at = match name {
            // A table's parts close the open cell: only a table bounds them.
            "table" | "tbody" | "thead" | "tfoot" | "tr" => {
                self.find(name, |n| matches!(n, "html" | "table" | "template"))
            }
            _ if is_special(name) => self.find(name, is_scope_boundary),
            // An end tag for a phrasing element doesn't reach past a block.
            _ => self.find(name, is_special),
        };
        match at {
            Some(at) => self.close_to(at, name, true),
            None => self.error(format!("</{name}> closes no open <{name}>")),
        }
    }

    fn text(&mut self, text: &str) {
        // Text other than white space ends the head; the tree builder puts
        // it in the body.
        let blank = text.trim().is_empty();
        if !blank {
            self.in_body = true;
            if self.current() == "head" {
                self.pop_implied();
            }
        }
        let depth = self.content_depth(!blank);
        let parent = self.stack.last().map_or("", |n| &**n);
        self.handler.text(text, depth, parent);
    }

    /// The depth new content sits at (see [`Handler`]): inside the current
    /// element, unless that is a table or one of its rows or sections,
    /// where only cells and table parts belong, and the content is
    /// `fostered` (not a table part, not white space): then beside the
    /// innermost table.
    fn content_depth(&self, fostered: bool) -> usize {
        let in_table_body = matches!(self.current(), "table" | "tbody" | "thead" | "tfoot" | "tr");
        if fostered && in_table_body {
            self.stack
                .iter()
                .rposition(|n| &**n == "table")
                .unwrap_or(self.stack.len())
        } else {
            self.stack.len()
        }
    }

    fn end(&mut self) {
        while let Some(name) = self.stack.last() {
            if !ends_implicitly(name) {
                let message = format!("<{name}> is never closed");
                self.error(message);
            }
            self.pop_implied();
        }
    }

    fn current(&self) -> &str {
        self.stack.last().map_or("", |n| n)
    }

    /// Whether an element of a [`counted`] name is open.
    fn is_open(&self, name: &str) -> bool {
        debug_assert!(counted(name).is_some(), "<{name}> is not counted");
        counted(name).is_some_and(|i| self.open[i] > 0)
    }

    /// The position of the innermost open `name`, looking no further than
    /// an element `stop` accepts.
    fn find(&self, name: &str, stop: impl Fn(&str) -> bool) -> Option<usize> {
        self.find_any(&[name], stop)
    }

    fn find_any(&self, names: &[&str], stop: impl Fn(&str) -> bool) -> Option<usize> {
        for (at, open) in self.stack.iter().enumerate().rev().take(MAX_SEARCH) {
            if names.contains(&&**open) {
                return Some(at);
            }
            if stop(open) {
                return None;
            }
        }
        None
    }

    /// Closes the element at `at` and everything opened inside it, noting
    /// each one whose end tag the standard doesn't let one leave out. `by`
    /// names the tag that closes them, an end tag if `end`.
    fn close_to(&mut self, at: usize, by: &str, end: bool) {
        while self.stack.len() > at + 1 {
            let inner = self.stack.last().map_or("", |n| n);
            if !ends_implicitly(inner) {
                let slash = if end { "/" } else { "" };
                let message = format!("<{inner}> is still open at <{slash}{by}>");
                self.error(message);
            }
            self.pop_implied();
        }
        self.pop_implied();
    }

    fn pop_implied(&mut self) {
        if let Some(name) = self.stack.pop() {
            if let Some(i) = counted(&name) {
                self.open[i] -= 1;
            }
            self.handler.close(&name);
        }
    }

    fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        }
    }
}

/// The elements [`Builder::is_open`] answers for, and their slot in its
/// counts.
fn counted(name: &str) -> Option<usize> {
    match name {
        "html" => Some(0),
        "body" => Some(1),
        "svg" => Some(2),
        "math" => Some(3),
        _ => None,
    }
}

/// Elements that never hold content.
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area"
            | "base"
            | "basefont"
            | "bgsound"
            | "br"
            | "col"
            | "embed"
            | "frame"
            | "hr"
            | "img"
            | "input"
            | "keygen"
            | "link"
            | "meta"
            | "param"
            | "source"
            | "track"
            | "wbr"
    )
}

/// Elements whose end tag the standard lets one leave out (closing them
/// implicitly is no error).
fn ends_implicitly(name: &str) -> bool {
    matches!(
        name,
        "html"
            | "head"
            | "body"
            | "p"
            | "li"
            | "dd"
            | "dt"
            | "option"
            | "optgroup"
            | "rb"
            | "rp"
            | "rt"
            | "rtc"
            | "colgroup"
            | "caption"
            | "thead"
            | "tbody"
            | "tfoot"
            | "tr"
            | "td"
            | "th"
    )
}

/// What may stay in the `<head>`; anything else ends it.
fn is_head_content(name: &str) -> bool {
    matches!(
        name,
        "base"
            | "basefont"
            | "bgsound"
            | "link"
            | "meta"
            | "noframes"
            | "noscript"
            | "script"
            | "style"
            | "template"
            | "title"
    )
}

/// What a table, its sections and rows may hold; anything else written
/// there is foster-parented.
fn is_table_content(name: &str) -> bool {
    matches!(
        name,
        "caption"
            | "colgroup"
            | "col"
            | "tbody"
            | "thead"
            | "tfoot"
            | "tr"
            | "td"
            | "th"
            | "table"
            | "style"
            | "script"
            | "template"
            | "form"
            | "input"
    )
}

/// Start tags that close an open `p` ("close a p element" in the standard).
fn closes_p(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "center"
            | "details"
            | "dialog"
            | "dir"
            | "div"
            | "dl"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "header"
            | "hgroup"
            | "hr"
            | "dd"
            | "dt"
            | "li"
            | "listing"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "p"
            | "plaintext"
            | "pre"
            | "search"
            | "section"
            | "summary"
            | "table"
            | "ul"
            | "xmp"
    ) || is_heading(name)
}

pub(crate) fn is_heading(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
}

/// The elements an end tag or scope test stops at ("has an element in
/// scope").
fn is_scope_boundary(name: &str) -> bool {
    matches!(
        name,
        "applet" | "caption" | "html" | "table" | "td" | "th" | "marquee" | "object" | "template"
    )
}

fn is_button_scope_boundary(name: &str) -> bool {
    name == "button" || is_scope_boundary(name)
}

/// The standard's "special" elements: blocks and containers that an end
/// tag for a phrasing element can't close.
fn is_special(name: &str) -> bool {
    is_void(name)
        || is_scope_boundary(name)
        || matches!(
            name,
            "address"
                | "article"
                | "aside"
                | "blockquote"
                | "body"
                | "button"
                | "center"
                | "colgroup"
                | "dd"
                | "details"
                | "dir"
                | "div"
                | "dl"
                | "dt"
                | "fieldset"
                | "figcaption"
                | "figure"
                | "footer"
                | "form"
                | "frameset"
                | "head"
                | "header"
                | "hgroup"
                | "iframe"
                | "li"
                | "listing"
                | "main"
                | "menu"
                | "nav"
                | "noembed"
                | "noframes"
                | "noscript"
                | "ol"
                | "p"
                | "plaintext"
                | "pre"
                | "script"
                | "search"
                | "section"
                | "select"
                | "style"
                | "summary"
                | "tbody"
                | "textarea"
                | "tfoot"
                | "thead"
                | "title"
                | "tr"
                | "ul"
                | "wbr"
                | "xmp"
        )
        || is_heading(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events as a string: `<a x=1>` open, `</a>` close, text quoted;
    /// `@n` after content that sits at depth n rather than inside the
    /// element opened last.
    #[derive(Default)]
    struct Trace(String, usize);

    impl Handler for Trace {
        fn open(&mut self, name: &str, attrs: &[(&str, &str)], depth: usize) {
            self.0.push('<');
            self.0.push_str(name);
            if depth != self.1 {
                self.0.push_str(&format!("@{depth}"));
            }
            self.1 += 1;
            for (n, v) in attrs {
                self.0.push_str(&format!(" {n}={v}"));
            }
            self.0.push('>');
        }
        fn close(&mut self, name: &str) {
            self.1 -= 1;
            self.0.push_str(&format!("</{name}>"));
        }
        fn text(&mut self, text: &str, depth: usize, _: &str) {
            self.0.push_str(&format!("{text:?}"));
            if depth != self.1 {
                self.0.push_str(&format!("@{depth}"));
            }
        }
    }

    fn trace(html: &str) -> (String, Vec<String>) {
        let mut t = Trace::default();
        let errors = parse(html, &mut t);
        (t.0, errors)
    }

    #[test]
    fn elements_nest_as_the_tree_builder_nests_them() {
        let cases = [
            // A block closes an open p; li the open li; void elements hold nothing.
            ("<p>a<div>b</div>", r#"<p>"a"</p><div>"b"</div>"#),
            (
                "<ul><li>a<li>b</ul>",
                r#"<ul><li>"a"</li><li>"b"</li></ul>"#,
            ),
            ("<img src=x>a", r#"<img src=x></img>"a""#),
            // Cells, rows and sections close their open predecessor.
            (
                "<table><tr><td>a<td>b<tr><td>c</table>",
                r#"<table><tr><td>"a"</td><td>"b"</td></tr><tr><td>"c"</td></tr></table>"#,
            ),
            // A phrasing end tag doesn't close a block; a block's closes all inside.
            (
                "<span><div>a</span>b</div>",
                r#"<span><div>"a""b"</div></span>"#,
            ),
            ("<div><span>a</div>b", r#"<div><span>"a"</span></div>"b""#),
            // Text and body elements end the head.
            (
                "<head><title>t</title>hi",
                r#"<head><title>"t"</title></head>"hi""#,
            ),
            // Raw text, references, duplicate attributes, `</br>`.
            (
                "<style>p<b>{}</style><a href=x href=y title=&amp;>",
                r#"<style>"p<b>{}"</style><a href=x title=&></a>"#,
            ),
            ("a</br>b", r#""a"<br></br>"b""#),
            // What is written in a table outside its cells sits beside it.
            (
                "<div><table><font>a</font><tr><td>b</td> </tr></table></div>",
                r#"<div><table><font@1>"a"</font><tr><td>"b"</td>" "</tr></table></div>"#,
            ),
            // Self-closing tags close only in SVG and MathML; one head.
            (
                "<svg><path/></svg><div/>x",
                r#"<svg><path></path></svg><div>"x"</div>"#,
            ),
            ("<head></head><p>a<head>b", r#"<head></head><p>"a""b"</p>"#),
        ];
        for (html, want) in cases {
            assert_eq!(trace(html).0, want, "{html}");
        }
    }

    #[test]
    fn mis_nesting_and_unclosed_elements_are_reported_and_optional_ends_are_not() {
        assert!(trace("<p>a<li>b<table><tr><td>c</table>").1.is_empty());
        let (_, errors) = trace("<div><b>a</div></i><span>");
        assert_eq!(
            errors,
            [
                "<b> is still open at </div>",
                "</i> closes no open <i>",
                "<span> is never closed"
            ]
        );
    }

    #[test]
    fn hostile_nesting_stays_linear() {
        let html = format!(
            "{}{}{}",
            "<div>".repeat(20_000),
            "<body>".repeat(20_000),
            "</p>".repeat(20_000)
        );
        let (events, errors) = trace(&html);
        assert_eq!(events.matches("<div>").count(), 20_000);
        assert_eq!(events.matches("<body>").count(), 1);
        assert_eq!(events.matches("</div>").count(), 20_000);
        assert_eq!(errors.len(), MAX_ERRORS);
    }

    #[test]
    fn newlines_are_normalised_as_the_html_standard_says() {
        assert_eq!(
            normalise_newlines("a\r\nb\rc\n\r\r\nd\r"),
            "a\nb\nc\n\n\nd\n"
        );
        assert!(matches!(
            normalise_newlines("no carriage return\n"),
            Cow::Borrowed(_)
        ));
    }
}
