//! Reading an HTML body the way a mail client shows it: which text is
//! visible, which is hidden and how, what the preview shows, the links and
//! the images.
//!
//! The document streams from the parser (`markup`) into a walker that
//! carries inherited style on an explicit stack, so a 10,000-deep document
//! costs heap, not call stack.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::markup::{self, Handler};

/// How a piece of text is (not) shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visibility {
    Visible,
    /// Hidden by CSS or attribute; the reason names the mechanism.
    Hidden(&'static str),
    /// 0–2px font.
    Tiny,
    /// Same colour as the background, or transparent.
    Invisible,
}

/// A run of text in one block with one visibility.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub text: String,
    pub visibility: Visibility,
    /// Segments of the same block share this number.
    pub block: usize,
    /// Preheader padding characters (&zwnj;, &nbsp; ...) in the raw text.
    pub spacers: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub href: String,
    /// Visible text inside the anchor.
    pub text: String,
    pub has_image: bool,
    pub visible: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub src: String,
    pub alt: Option<String>,
    /// 1×1 (or smaller) images: open-tracking pixels, not content.
    pub pixel: bool,
}

#[derive(Debug, Default)]
pub(crate) struct HtmlFacts {
    pub segments: Vec<Segment>,
    pub links: Vec<Link>,
    pub images: Vec<Image>,
    /// Elements no email should carry: script, form, iframe, object ...
    pub active_elements: Vec<&'static str>,
    /// External stylesheet hrefs and `@import`s.
    pub stylesheets: Vec<String>,
    /// Parse errors that mean broken structure (not a missing doctype).
    pub structure_errors: Vec<String>,
}

impl HtmlFacts {
    /// All visible text, blocks separated by newlines.
    pub(crate) fn visible_text(&self) -> String {
        let mut out = String::new();
        let mut last_block = None;
        for s in self
            .segments
            .iter()
            .filter(|s| s.visibility == Visibility::Visible)
        {
            if !out.is_empty() {
                out.push(if last_block == Some(s.block) {
                    ' '
                } else {
                    '\n'
                });
            }
            out.push_str(&s.text);
            last_block = Some(s.block);
        }
        out
    }
}

/// Elements that start a new line of text (a new block for the preheader).
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "body"
            | "br"
            | "center"
            | "dd"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "header"
            | "hr"
            | "li"
            | "main"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "table"
            | "tbody"
            | "td"
            | "tfoot"
            | "th"
            | "thead"
            | "tr"
            | "ul"
    ) || markup::is_heading(name)
}

/// Elements whose text is never shown.
fn is_silent(name: &str) -> bool {
    matches!(
        name,
        "head" | "script" | "style" | "title" | "noscript" | "template" | "textarea" | "select"
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Background {
    Colour([u8; 3]),
    /// A background image: the text colour can't be compared.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    silent: bool,
    hidden: Option<&'static str>,
    tiny: bool,
    /// `None` = transparent.
    colour: Option<[u8; 3]>,
    background: Background,
    anchor: Option<usize>,
}

impl Frame {
    fn root() -> Frame {
        Frame {
            silent: false,
            hidden: None,
            tiny: false,
            colour: Some([0, 0, 0]),
            // Mail clients render on white unless told otherwise.
            background: Background::Colour([255, 255, 255]),
            anchor: None,
        }
    }

    fn visibility(&self) -> Visibility {
        if let Some(reason) = self.hidden {
            return Visibility::Hidden(reason);
        }
        if self.tiny {
            return Visibility::Tiny;
        }
        match (self.colour, self.background) {
            (None, _) => Visibility::Invisible,
            (Some(fg), Background::Colour(bg)) if close(fg, bg) => Visibility::Invisible,
            _ => Visibility::Visible,
        }
    }
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

/// One CSS declaration that bears on visibility, its value lower-cased
/// and without its `!important`, which `important` keeps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declaration<'a> {
    pub prop: &'static str,
    pub value: Cow<'a, str>,
    pub important: bool,
}

/// Splits a CSS declaration list ("a: b; c: url(x;y)") into lower-cased
/// declarations, keeping the properties that affect visibility. Quotes and
/// parentheses are respected so a `;` inside `url(...)` doesn't split a
/// declaration.
pub(crate) fn declarations(css: &str) -> Vec<Declaration<'_>> {
    let mut out = Vec::new();
    // Most inline styles have neither quotes nor parentheses: then every
    // `;` ends a declaration, and one SIMD search over the value says so
    // (the byte loop below costs over ten instructions a byte; the bench's
    // newsletter has 26 KB in 317 style attributes, 195 of them plain).
    if memchr::memchr3(b'"', b'\'', b'(', css.as_bytes()).is_none() {
        let mut from = 0;
        for semicolon in memchr::memchr_iter(b';', css.as_bytes()) {
            push_declaration(&css[from..semicolon], &mut out);
            from = semicolon + 1;
        }
        push_declaration(&css[from..], &mut out);
        return out;
    }
    for_each_part(css, |b| b == b';', |decl| push_declaration(decl, &mut out));
    out
}

/// Calls `part` with each piece of `value` between separator bytes that
/// stand outside quotes and parentheses: the `;` of a declaration list,
/// the spaces of a shorthand (`rgba(26, 137, 23, 1) none` is two parts,
/// not five). Pieces may be empty.
fn for_each_part<'a>(
    value: &'a str,
    is_separator: impl Fn(u8) -> bool,
    mut part: impl FnMut(&'a str),
) {
    let mut depth = 0usize;
    let mut quote = None;
    let mut start = 0;
    for (i, b) in value.bytes().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') => depth = depth.saturating_sub(1),
            (None, _) if depth == 0 && is_separator(b) => {
                part(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    part(&value[start..]);
}

/// The properties that decide whether text shows; the rest (margins,
/// fonts, borders: most of an email's CSS) are skipped without allocating.
fn visibility_property(prop: &str) -> Option<&'static str> {
    Some(match prop {
        "display" => "display",
        "visibility" => "visibility",
        "opacity" => "opacity",
        "overflow" => "overflow",
        "max-height" => "max-height",
        "height" => "height",
        "max-width" => "max-width",
        "width" => "width",
        "position" => "position",
        "left" => "left",
        "top" => "top",
        "text-indent" => "text-indent",
        "color" => "color",
        "background" => "background",
        "background-color" => "background-color",
        "background-image" => "background-image",
        "font-size" => "font-size",
        _ => return None,
    })
}

fn push_declaration<'a>(decl: &'a str, out: &mut Vec<Declaration<'a>>) {
    let Some((prop, value)) = decl.split_once(':') else {
        return;
    };
    // CSS whitespace is ASCII only (CSS Syntax §4.2): "display:none" followed
    // by a no-break space is not `none` to a browser, so not to us either.
    let prop = prop.trim_ascii();
    let known = if prop.bytes().any(|b| b.is_ascii_uppercase()) {
        visibility_property(&prop.to_ascii_lowercase())
    } else {
        visibility_property(prop)
    };
    let Some(known) = known else {
        return;
    };
    let mut value = value.trim_ascii();
    let mut important = false;
    // Compared as bytes: the tenth byte from the end may sit inside a
    // multi-byte character (found by fuzzing), and when the last ten are
    // "!important" the cut falls on the ASCII '!'.
    if let Some(start) = value.len().checked_sub(10)
        && value.as_bytes()[start..].eq_ignore_ascii_case(b"!important")
    {
        value = value[..start].trim_ascii_end();
        important = true;
    }
    // Values are nearly always written in lower case already.
    let value = if value.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(value.to_ascii_lowercase())
    } else {
        Cow::Borrowed(value)
    };
    out.push(Declaration {
        prop: known,
        value,
        important,
    });
}

fn parse_colour(value: &str) -> Option<Option<[u8; 3]>> {
    let value = value.trim();
    if value == "transparent" {
        return Some(None);
    }
    let c = csscolorparser::parse(value).ok()?;
    if c.a < 0.05 {
        return Some(None);
    }
    let [r, g, b, _] = c.to_rgba8();
    Some(Some([r, g, b]))
}

/// Size in CSS pixels of a font-size value; `None` when relative to
/// something we don't track (keywords, percentages of unknown parents).
fn font_px(value: &str) -> Option<f64> {
    let value = value.trim();
    let (num, unit) = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .map_or((value, ""), |i| value.split_at(i));
    let n: f64 = num.parse().ok()?;
    Some(match unit.trim() {
        "" | "px" => n,
        "pt" => n * 4.0 / 3.0,
        "em" | "rem" => n * 16.0,
        "%" => n * 0.16,
        _ => return None,
    })
}

fn length_is_zero(value: &str) -> bool {
    font_px(value).is_some_and(|px| px <= 0.0)
}

/// The value declarations in cascade order give `prop`: the last one's.
fn last_value<'d>(decls: &'d [Declaration<'_>], prop: &str) -> Option<&'d str> {
    decls
        .iter()
        .rev()
        .find(|d| d.prop == prop)
        .map(|d| d.value.as_ref())
}

/// Why declarations in cascade order hide an element, if they do.
fn hides(decls: &[Declaration<'_>]) -> Option<&'static str> {
    let get = |name: &str| last_value(decls, name);
    if get("display") == Some("none") {
        return Some("display:none");
    }
    if matches!(get("visibility"), Some("hidden" | "collapse")) {
        return Some("visibility:hidden");
    }
    if get("opacity")
        .and_then(|o| o.parse::<f64>().ok())
        .is_some_and(|o| o < 0.05)
    {
        return Some("opacity:0");
    }
    let clipped = get("overflow") == Some("hidden");
    let zero = |p| get(p).is_some_and(length_is_zero);
    if clipped && (zero("max-height") || zero("height") || zero("max-width") || zero("width")) {
        return Some("zero size with overflow:hidden");
    }
    let far = |p| get(p).and_then(font_px).is_some_and(|px| px <= -500.0);
    if (get("position") == Some("absolute") && (far("left") || far("top"))) || far("text-indent") {
        return Some("moved off-screen");
    }
    None
}

/// Applies colour, background and font-size declarations to `frame`;
/// true when a width or height of at most 1px makes an image a pixel.
fn apply(frame: &mut Frame, decls: &[Declaration<'_>]) -> bool {
    let mut pixel = false;
    for d in decls {
        let value = d.value.as_ref();
        match d.prop {
            "color" => {
                if let Some(c) = parse_colour(value) {
                    frame.colour = c;
                }
            }
            "background-color" => match parse_colour(value) {
                Some(Some(c)) => frame.background = Background::Colour(c),
                Some(None) => {}
                None => frame.background = Background::Unknown,
            },
            "background" => {
                if value.contains("url(") || value.contains("gradient") {
                    frame.background = Background::Unknown;
                } else {
                    // The first part that reads as a colour is the colour.
                    let mut colour = None;
                    for_each_part(
                        value,
                        |b| b.is_ascii_whitespace(),
                        |part| {
                            if colour.is_none() && !part.is_empty() {
                                colour = parse_colour(part);
                            }
                        },
                    );
                    if let Some(Some(c)) = colour {
                        frame.background = Background::Colour(c);
                    }
                }
            }
            "background-image" if value != "none" => {
                frame.background = Background::Unknown;
            }
            "font-size" => {
                if let Some(px) = font_px(value) {
                    frame.tiny = px <= crate::rules::LIMITS.tiny_font_px;
                }
            }
            "width" | "height" => pixel |= font_px(value).is_some_and(|px| px <= 1.0),
            _ => {}
        }
    }
    pixel
}

/// What the walker takes from `<style>` blocks.
#[derive(Default)]
struct Stylesheet {
    /// The visibility declarations of the simple `.class` / `tag.class`
    /// rules at the top level, by class, in stylesheet order. Templates
    /// size and colour their buttons this way (MJML sets `font-size:0` on
    /// rows and gives the button's class its size), so the walker applies
    /// them before an element's own `style`.
    classes: ClassRules,
    /// Classes that some rule the walker doesn't apply (one inside
    /// `@media`, or behind a descendant selector such as `form .b`) gives
    /// a `display` other than `none`: a mobile-only block or the
    /// interactive half of a template, hidden by default and shown in some
    /// clients. What a reader may see is not hidden text.
    revealed: HashSet<String, fnv::FnvBuildHasher>,
}

/// Reads one `<style>` block into `out`. Rules inside `@media` apply only
/// to some screens: they never hide, but they can reveal.
/// `css` is a block's text without its comments (`strip_comments`).
fn class_rules(css: &str, out: &mut Stylesheet) {
    let mut depth = 0usize;
    // Whether the open top-level block is an at-rule (`@media`, ...).
    let mut in_at_rule = false;
    let mut selector_start = 0;
    let mut selector = "";
    let mut body_start = 0;
    for (i, c) in css.char_indices() {
        match c {
            '{' => {
                let sel = css[selector_start..i].trim();
                match (depth, in_at_rule) {
                    (0, _) if sel.starts_with('@') => {
                        in_at_rule = true;
                        selector_start = i + 1;
                    }
                    (0, _) | (1, true) => {
                        selector = sel;
                        body_start = i + 1;
                    }
                    _ => {}
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                match (depth, in_at_rule) {
                    (0, false) => {
                        let decls = declarations(&css[body_start..i]);
                        if !decls.is_empty() {
                            add_rule(selector, &decls, &mut out.classes);
                            add_reveals(selector, &decls, true, &mut out.revealed);
                        }
                    }
                    (0, true) => in_at_rule = false,
                    (1, true) => add_reveals(
                        selector,
                        &declarations(&css[body_start..i]),
                        false,
                        &mut out.revealed,
                    ),
                    _ => {}
                }
                if depth <= 1 {
                    selector_start = i + 1;
                }
            }
            // `@import url(x);` and `@charset "x";` end without a block.
            ';' if depth == 0 || (depth == 1 && in_at_rule) => selector_start = i + 1,
            _ => {}
        }
    }
}

/// Records the class of each selector's last compound (`.b` in `form .b`)
/// when the rule shows it and the walker doesn't apply the rule itself: it
/// sits inside `@media` (`applied` false) or its selector isn't simple.
fn add_reveals(
    selector: &str,
    decls: &[Declaration<'_>],
    applied: bool,
    out: &mut HashSet<String, fnv::FnvBuildHasher>,
) {
    if last_value(decls, "display").is_none_or(|d| d == "none") {
        return;
    }
    for sel in selector.split(',') {
        if applied && simple_class(sel).is_some() {
            continue;
        }
        let last = sel
            .trim()
            .rsplit(|c: char| c.is_ascii_whitespace() || matches!(c, '>' | '+' | '~'))
            .next()
            .unwrap_or("");
        if let Some((_, class)) = last.rsplit_once('.') {
            let class = class.split(|c| !is_class_char(c)).next().unwrap_or("");
            if !class.is_empty() && out.len() < 10_000 {
                out.insert(class.to_string());
            }
        }
    }
}

/// The class of a simple `.class` / `tag.class` selector, the only kind
/// the walker applies.
fn simple_class(selector: &str) -> Option<&str> {
    let (tag, class) = selector.trim().split_once('.')?;
    (tag.bytes().all(|b| b.is_ascii_alphanumeric())
        && !class.is_empty()
        && class.chars().all(is_class_char))
    .then_some(class)
}

/// A character the walker accepts in a class name.
fn is_class_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

fn add_rule(selector: &str, decls: &[Declaration<'_>], out: &mut ClassRules) {
    for sel in selector.split(',') {
        if let Some(class) = simple_class(sel) {
            let rules = out.entry(class.to_string()).or_default();
            for d in decls {
                // The later declaration wins (an important one over a normal
                // one): keeping one a property bounds the work per element,
                // however often a hostile stylesheet repeats a class.
                if rules
                    .iter()
                    .any(|r| r.prop == d.prop && r.important && !d.important)
                {
                    continue;
                }
                rules.retain(|r| r.prop != d.prop);
                rules.push(Declaration {
                    prop: d.prop,
                    value: Cow::Owned(d.value.clone().into_owned()),
                    important: d.important,
                });
            }
        }
    }
}

/// Class name → its rules' visibility declarations, the last of each
/// property, in stylesheet order.
type ClassRules = HashMap<String, Vec<Declaration<'static>>, fnv::FnvBuildHasher>;

fn strip_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("*/")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    out.push_str(rest);
    out
}

struct Walker {
    facts: HtmlFacts,
    stack: Vec<Frame>,
    styles: Stylesheet,
    block: usize,
}

/// The attributes the walker reads, found in one pass over the element's
/// attributes rather than one scan per lookup.
#[derive(Default)]
struct Attrs<'a> {
    hidden: bool,
    class: Option<&'a str>,
    color: Option<&'a str>,
    bgcolor: Option<&'a str>,
    background: bool,
    style: Option<&'a str>,
    href: Option<&'a str>,
    rel: Option<&'a str>,
    src: Option<&'a str>,
    alt: Option<&'a str>,
    width: Option<&'a str>,
    height: Option<&'a str>,
}

impl<'a> Attrs<'a> {
    fn of(attrs: &[(&'a str, &'a str)]) -> Attrs<'a> {
        let mut a = Attrs::default();
        for &(name, value) in attrs {
            match name {
                "hidden" => a.hidden = true,
                "class" => a.class = Some(value),
                "color" => a.color = Some(value),
                "bgcolor" => a.bgcolor = Some(value),
                "background" => a.background = true,
                "style" => a.style = Some(value),
                "href" => a.href = Some(value),
                "rel" => a.rel = Some(value),
                "src" => a.src = Some(value),
                "alt" => a.alt = Some(value),
                "width" => a.width = Some(value),
                "height" => a.height = Some(value),
                _ => {}
            }
        }
        a
    }
}

impl Walker {
    /// What content at `depth` inherits: its parent's frame, or the page's
    /// at the top.
    fn inherited(&self, depth: usize) -> Frame {
        depth
            .checked_sub(1)
            .and_then(|parent| self.stack.get(parent))
            .copied()
            .unwrap_or_else(Frame::root)
    }
}

impl Handler for Walker {
    fn open(&mut self, name: &str, attrs: &[(&str, &str)], depth: usize) {
        let attrs = Attrs::of(attrs);
        let mut frame = self.inherited(depth);
        if is_silent(name) {
            frame.silent = true;
        }
        if is_block(name) {
            self.block += 1;
        }
        match name {
            "script" => self.facts.active_elements.push("script"),
            "form" => self.facts.active_elements.push("form"),
            "iframe" | "frame" | "frameset" => self.facts.active_elements.push("iframe"),
            "object" | "embed" | "applet" => self.facts.active_elements.push("object"),
            "link" => {
                let rel = attrs.rel.unwrap_or_default().to_ascii_lowercase();
                let href = attrs.href.unwrap_or_default().trim();
                if rel.split_whitespace().any(|r| r == "stylesheet") && !is_web_font(href) {
                    self.facts.stylesheets.push(href.to_string());
                }
            }
            _ => {}
        }
        if attrs.hidden {
            frame.hidden.get_or_insert("hidden attribute");
        }
        if let Some(colour) = attrs.color.and_then(parse_colour) {
            frame.colour = colour;
        }
        if let Some(Some(bg)) = attrs.bgcolor.and_then(parse_colour) {
            frame.background = Background::Colour(bg);
        }
        if attrs.background {
            frame.background = Background::Unknown;
        }
        // The cascade's order: presentational attributes, then the
        // `<style>` blocks' class rules, then the element's own style, then
        // the class rules' `!important` declarations (which beat a normal
        // inline one), then the inline `!important` ones. A template that
        // hides its interactive version inline and shows it with
        // `.shown { display:block !important }` shows it.
        let inline = attrs.style.map(declarations).unwrap_or_default();
        let mut matched: Vec<&Declaration<'static>> = Vec::new();
        if !self.styles.classes.is_empty()
            && let Some(classes) = attrs.class
        {
            for class in classes.split_whitespace() {
                if let Some(decls) = self.styles.classes.get(class) {
                    matched.extend(decls);
                }
            }
        }
        let cascaded;
        let decls: &[Declaration<'_>] = if matched.is_empty() {
            &inline
        } else {
            fn borrowed<'a>(d: &'a Declaration<'_>) -> Declaration<'a> {
                Declaration {
                    prop: d.prop,
                    value: Cow::Borrowed(d.value.as_ref()),
                    important: d.important,
                }
            }
            let mut all = Vec::with_capacity(matched.len() + inline.len());
            for important in [false, true] {
                all.extend(
                    matched
                        .iter()
                        .filter(|d| d.important == important)
                        .map(|d| borrowed(d)),
                );
                all.extend(
                    inline
                        .iter()
                        .filter(|d| d.important == important)
                        .map(borrowed),
                );
            }
            cascaded = all;
            &cascaded
        };
        if let Some(reason) = hides(decls) {
            let revealed = !self.styles.revealed.is_empty()
                && attrs.class.is_some_and(|classes| {
                    classes
                        .split_whitespace()
                        .any(|c| self.styles.revealed.contains(c))
                });
            if !revealed {
                frame.hidden.get_or_insert(reason);
            }
        }
        let mut pixel = apply(&mut frame, decls);
        match name {
            "a" | "area" => {
                if let Some(href) = attrs.href {
                    frame.anchor = Some(self.facts.links.len());
                    self.facts.links.push(Link {
                        href: href.trim().to_string(),
                        text: String::new(),
                        has_image: false,
                        visible: frame.visibility() == Visibility::Visible,
                    });
                }
            }
            "img" => {
                let tiny_attr = |a: Option<&str>| {
                    a.and_then(|v| v.trim_end_matches("px").trim().parse::<f64>().ok())
                        .is_some_and(|v| v <= 1.0)
                };
                pixel |= tiny_attr(attrs.width) || tiny_attr(attrs.height);
                if let Some(i) = frame.anchor {
                    self.facts.links[i].has_image = true;
                }
                self.facts.images.push(Image {
                    src: attrs.src.unwrap_or_default().trim().to_string(),
                    alt: attrs.alt.map(str::to_string),
                    pixel: pixel || frame.hidden.is_some(),
                });
            }
            _ => {}
        }
        self.stack.push(frame);
    }

    fn close(&mut self, name: &str) {
        if is_block(name) {
            self.block += 1;
        }
        self.stack.pop();
    }

    fn text(&mut self, text: &str, depth: usize, parent: &str) {
        let frame = self.inherited(depth);
        if frame.silent {
            if parent == "style" {
                // A commented-out rule or @import is no rule at all.
                let css = strip_comments(text);
                class_rules(&css, &mut self.styles);
                for url in imports(&css) {
                    if !is_web_font(url) {
                        self.facts
                            .stylesheets
                            .push(format!("@import {url}").trim_end().to_string());
                    }
                }
            }
            return;
        }
        if text.trim().is_empty() {
            return;
        }
        let spacers = text.chars().filter(|c| is_spacer(*c)).count();
        let visibility = frame.visibility();
        if let Some(i) = frame.anchor
            && visibility == Visibility::Visible
        {
            push_words(&mut self.facts.links[i].text, text);
        }
        match self.facts.segments.last_mut() {
            Some(last) if last.block == self.block && last.visibility == visibility => {
                push_words(&mut last.text, text);
                last.spacers += spacers;
            }
            _ => {
                let mut segment = Segment {
                    text: String::with_capacity(text.len()),
                    visibility,
                    block: self.block,
                    spacers,
                };
                push_words(&mut segment.text, text);
                self.facts.segments.push(segment);
            }
        }
    }
}

/// Appends `text` to `out` with whitespace runs collapsed to one space.
fn push_words(out: &mut String, text: &str) {
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Characters templates repeat after a preheader so the inbox preview
/// ends there instead of running on into the body.
pub(crate) fn is_spacer(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{2007}'
            | '\u{200B}'
            | '\u{200C}'
            | '\u{200D}'
            | '\u{2060}'
            | '\u{FEFF}'
    )
}

/// Font services whose stylesheets only declare `@font-face`: a client
/// that drops one falls back to the next font of the stack, and every
/// template that uses a brand font links one.
const WEB_FONT_HOSTS: &[&str] = &[
    "fonts.googleapis.com",
    "use.typekit.net",
    "p.typekit.net",
    "fonts.bunny.net",
    "fast.fonts.net",
    "cloud.typography.com",
    "fonts.cdnfonts.com",
    "api.fontshare.com",
];

fn is_web_font(url: &str) -> bool {
    let url = url.trim();
    let rest = url
        .strip_prefix("https:")
        .or_else(|| url.strip_prefix("http:"))
        .unwrap_or(url);
    let Some(rest) = rest.strip_prefix("//") else {
        return false;
    };
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or("");
    WEB_FONT_HOSTS.iter().any(|h| host.eq_ignore_ascii_case(h))
}

/// The URLs of a style block's `@import` rules (`@import url(x)`,
/// `@import "x"`); an import whose URL can't be read gives "".
fn imports(css: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (at, _) in css.match_indices("@import") {
        let rest = css[at + "@import".len()..].trim_start();
        let url = if let Some(r) = rest.strip_prefix("url(") {
            r.split(')').next().unwrap_or("")
        } else {
            rest.split(|c: char| c.is_ascii_whitespace() || c == ';')
                .next()
                .unwrap_or("")
        };
        out.push(url.trim().trim_matches(['"', '\'']));
        if out.len() >= 20 {
            break;
        }
    }
    out
}

/// Walks the document once and collects what the checks need.
pub(crate) fn analyse(html: &str) -> HtmlFacts {
    let mut walker = Walker {
        facts: HtmlFacts::default(),
        stack: Vec::with_capacity(64),
        styles: Stylesheet::default(),
        block: 0,
    };
    walker.facts.structure_errors = markup::parse(html, &mut walker);
    walker.facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visibilities(html: &str) -> Vec<(String, Visibility)> {
        analyse(html)
            .segments
            .into_iter()
            .map(|s| (s.text, s.visibility))
            .collect()
    }

    #[test]
    fn hidden_tiny_and_invisible_text_is_told_apart() {
        let segs = visibilities(
            r#"<body><p>Shown</p>
               <div style="display:none">gone</div>
               <p style="font-size:1px">small</p>
               <p style="color:#fff">white on white</p>
               <div style="background-color:#000"><span style="color:white">white on black</span></div>
               <div style="background:url(x.png)"><span style="color:#fff">on image</span></div>
               <p style="max-height:0;overflow:hidden">collapsed</p></body>"#,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s == t).unwrap().1;
        assert_eq!(v("Shown"), Visibility::Visible);
        assert_eq!(v("gone"), Visibility::Hidden("display:none"));
        assert_eq!(v("small"), Visibility::Tiny);
        assert_eq!(v("white on white"), Visibility::Invisible);
        assert_eq!(v("white on black"), Visibility::Visible);
        assert_eq!(v("on image"), Visibility::Visible);
        assert_eq!(
            v("collapsed"),
            Visibility::Hidden("zero size with overflow:hidden")
        );
    }

    #[test]
    fn nesting_is_the_browsers_not_the_markups() {
        // Text written in a black table outside its cells is shown beside
        // the table, on the page; a block ends a hidden paragraph; a
        // phrase's end tag doesn't end a block opened inside it, a block's
        // ends the phrase left open inside.
        let segs = visibilities(
            r##"<table bgcolor="#000000"><font color="#000000">Name:____</font>
               <tr><td><font color="#000000">in the cell</font></td></tr></table>
               <p style="display:none">hidden<div>shown by the div</div>
               <span style="display:none"><div>in</span>still hidden</div></span>
               <div style="display:none"><span>x</div></span>after the div"##,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s.contains(t)).unwrap().1;
        assert_eq!(v("Name:____"), Visibility::Visible);
        assert_eq!(v("in the cell"), Visibility::Invisible);
        assert_eq!(v("hidden"), Visibility::Hidden("display:none"));
        assert_eq!(v("shown by the div"), Visibility::Visible);
        assert_eq!(v("still hidden"), Visibility::Hidden("display:none"));
        assert_eq!(v("after the div"), Visibility::Visible);
    }

    #[test]
    fn classes_hidden_by_a_style_block_are_hidden_but_media_queries_are_not() {
        let segs = visibilities(
            r#"<style>/* x */ .preheader { display: none !important; }
               @media (max-width: 600px) { .desktop { display:none } }</style>
               <span class="preheader">preview</span><p class="desktop">wide</p>"#,
        );
        assert!(matches!(segs[0].1, Visibility::Hidden(_)));
        assert_eq!(segs[1].1, Visibility::Visible);
    }

    #[test]
    fn class_rules_size_and_colour_text_before_its_own_style() {
        // MJML's pattern: rows at font-size 0, the button's class sizes it.
        let segs = visibilities(
            r#"<style>.button { font-size: 14px; color: #ffffff; background: #006ce1; }
               .gone { display: none } .gone { display: block }</style>
               <table><tr style="font-size:0px"><td><a class="button" href="https://a.example">Shop now</a></td></tr>
               <tr style="font-size:0px"><td><span>collapsed</span></td></tr></table>
               <p class="button" style="font-size:0">inline wins</p>
               <p class="gone">shown again</p>"#,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s == t).unwrap().1;
        assert_eq!(v("Shop now"), Visibility::Visible);
        assert_eq!(v("collapsed"), Visibility::Tiny);
        assert_eq!(v("inline wins"), Visibility::Tiny);
        assert_eq!(v("shown again"), Visibility::Visible, "the later rule wins");
    }

    #[test]
    fn a_block_some_rule_shows_is_not_hidden_text() {
        // A mobile-only block revealed under @media and the interactive half
        // of a review mail revealed behind `form`: alternates, not hiding.
        let segs = visibilities(
            r#"<style>@import url(x.css); @media (max-width:600px) { .m { display:block !important } }
               form .b, .z > .x { display: block !important }
               @font-face { font-family: x; src: url(y) }
               .gone { display: none }</style>
               <div class="m" style="display:none;max-height:0;overflow:hidden">mobile</div>
               <div class="b" style="display:none">interactive</div>
               <div class="gone">never</div>
               <div style="display:none">buster</div>"#,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s == t).unwrap().1;
        assert_eq!(v("mobile"), Visibility::Visible);
        assert_eq!(v("interactive"), Visibility::Visible);
        assert!(matches!(v("never"), Visibility::Hidden(_)));
        assert!(matches!(v("buster"), Visibility::Hidden(_)));
    }

    #[test]
    fn rules_under_media_and_behind_descendant_selectors_only_reveal() {
        let mut sheet = Stylesheet::default();
        class_rules(
            "@charset \"utf-8\"; @media print { .p, .q > .r { display: block } .s { display: none } }
             form .b { display: inline !important } #id form .b { display: none }
             .simple { display: block } div.t { color: red }",
            &mut sheet,
        );
        let mut revealed: Vec<_> = sheet.revealed.iter().map(String::as_str).collect();
        revealed.sort_unstable();
        assert_eq!(revealed, ["b", "p", "r"]);
        let mut applied: Vec<_> = sheet.classes.keys().map(String::as_str).collect();
        applied.sort_unstable();
        assert_eq!(applied, ["simple", "t"], "only simple selectors apply");
    }

    #[test]
    fn an_important_class_rule_beats_the_inline_style_and_a_normal_one_does_not() {
        // Interactive templates hide their alternates inline and reveal
        // one from the stylesheet.
        let segs = visibilities(
            r#"<style>.d { display: block !important } .c { display: none !important }
               .n { display: block }</style>
               <div class="d" style="display:none">revealed</div>
               <div class="c" style="display:block">concealed</div>
               <div class="n" style="display:none">still hidden</div>
               <div class="c" style="display:block !important">inline important</div>"#,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s == t).unwrap().1;
        assert_eq!(v("revealed"), Visibility::Visible);
        assert!(matches!(v("concealed"), Visibility::Hidden(_)));
        assert!(matches!(v("still hidden"), Visibility::Hidden(_)));
        assert_eq!(v("inline important"), Visibility::Visible);
    }

    #[test]
    fn a_class_repeated_in_the_stylesheet_keeps_one_declaration_a_property() {
        let mut rules = Stylesheet::default();
        class_rules(
            &".a { color: red; font-size: 1px }".repeat(10_000),
            &mut rules,
        );
        class_rules(".a { color: blue }", &mut rules);
        let kept: Vec<_> = rules.classes["a"]
            .iter()
            .map(|d| (d.prop, d.value.as_ref()))
            .collect();
        assert_eq!(kept, [("font-size", "1px"), ("color", "blue")]);
    }

    #[test]
    fn a_background_shorthand_with_a_functional_colour_is_read_whole() {
        let segs = visibilities(
            r#"<div style="background-color:#FAFAFA"><a href="https://m.example"
               style="background: rgba(26, 137, 23, 1); color: rgba(255, 255, 255, 1)">Control</a>
               <span style="color:#fff">white on grey</span></div>"#,
        );
        let v = |t: &str| segs.iter().find(|(s, _)| s == t).unwrap().1;
        assert_eq!(v("Control"), Visibility::Visible);
        assert_eq!(v("white on grey"), Visibility::Invisible);
        let mut parts = Vec::new();
        for_each_part(
            "rgba(26, 137, 23, 1) url('x y.png')  no-repeat",
            |b| b.is_ascii_whitespace(),
            |p| parts.push(p),
        );
        assert_eq!(
            parts,
            ["rgba(26, 137, 23, 1)", "url('x y.png')", "", "no-repeat"]
        );
    }

    #[test]
    fn links_images_and_active_elements_are_collected() {
        let facts = analyse(
            r#"<a href=" https://shop.example/a ">Shop <b>now</b></a>
               <a href="https://x.example"><img src="p.png"></a>
               <img src="t.gif" width="1" height="1" alt="">
               <script>alert(1)</script><form></form><iframe></iframe>
               <link rel="stylesheet" href="https://cdn.example/s.css">"#,
        );
        assert_eq!(facts.links[0].href, "https://shop.example/a");
        assert_eq!(facts.links[0].text, "Shop now");
        assert!(facts.links[1].has_image);
        assert_eq!(facts.images.len(), 2);
        assert!(facts.images[1].pixel);
        assert_eq!(facts.active_elements, ["script", "form", "iframe"]);
        assert_eq!(facts.stylesheets, ["https://cdn.example/s.css"]);
    }

    #[test]
    fn web_fonts_are_not_external_stylesheets() {
        let facts = analyse(
            r#"<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Inter">
               <link rel="stylesheet" href="//use.typekit.net/abc.css">
               <style>@import url('https://fonts.googleapis.com/css?family=Lato');
               @import "https://cdn.example/theme.css"; @import url(https://evil.example/x.css);
               /* @import url(https://old.example/gone.css); */</style>"#,
        );
        assert_eq!(
            facts.stylesheets,
            [
                "@import https://cdn.example/theme.css",
                "@import https://evil.example/x.css"
            ]
        );
    }

    #[test]
    fn declarations_respect_parentheses_and_quotes() {
        let pairs = |css| -> Vec<(&str, String, bool)> {
            declarations(css)
                .into_iter()
                .map(|d| (d.prop, d.value.into_owned(), d.important))
                .collect()
        };
        assert_eq!(
            pairs("background: url('a;b.png'); margin: 0; COLOR: Red !important;"),
            [
                ("background", "url('a;b.png')".into(), false),
                ("color", "red".into(), true)
            ],
            "margin is not a visibility property"
        );
        // A multi-byte character where "!important" would start: no panic.
        assert_eq!(
            pairs("width:0\u{FFFD}\u{FFFD}\u{FFFD}px"),
            [("width", "0\u{FFFD}\u{FFFD}\u{FFFD}px".into(), false)]
        );
        // Only ASCII whitespace is CSS whitespace: a no-break space makes
        // the value something else, which browsers ignore.
        let d = declarations(" display :\tnone\u{A0}; COLOR:red\n");
        assert_eq!(d[0].value, "none\u{A0}");
        assert_eq!(d[1].value, "red");
        assert_eq!(hides(&d), None);
    }
}
