//! A lean document tree for html5ever: elements keep the attributes exactly
//! as the tokenizer produced them and nothing else, so building, walking and
//! freeing the tree costs little next to the parse itself.
//!
//! The tree builder may move nodes after creating them (mis-nested
//! formatting elements, content foster-parented out of tables), so the
//! checks walk the finished tree rather than the parser's events.

use std::borrow::Cow;
use std::cell::{Ref, RefCell};

use ego_tree::{NodeId, Tree};
use html5ever::tendril::{StrTendril, TendrilSink as _};
use html5ever::tree_builder::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{Attribute, QualName, expanded_name, local_name, ns};

pub(crate) enum Node {
    Document,
    /// A `<template>`'s contents.
    Fragment,
    Element(Element),
    Text(StrTendril),
    /// Comments, doctypes, processing instructions: nothing a reader sees.
    Other,
}

pub(crate) struct Element {
    name: QualName,
    attrs: Vec<Attribute>,
}

impl Element {
    pub(crate) fn name(&self) -> &str {
        &self.name.local
    }

    /// (local name, value) of each attribute, as written.
    pub(crate) fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|a| (&*a.name.local, &*a.value))
    }
}

pub(crate) struct Document {
    pub tree: Tree<Node>,
    /// What the parser had to repair, in html5ever's words.
    pub errors: Vec<Cow<'static, str>>,
}

/// Parses a whole HTML document the way browsers do (WHATWG algorithm).
pub(crate) fn parse(html: &str) -> Document {
    let sink = Sink(RefCell::new(Document {
        tree: Tree::new(Node::Document),
        errors: Vec::new(),
    }));
    let html = normalise_newlines(html);
    html5ever::parse_document(sink, Default::default()).one(&*html)
}

/// CR LF and lone CR as LF: the HTML standard's input preprocessing,
/// done before html5ever sees the text. Mail bodies arrive with CRLF line
/// ends, and each CR takes html5ever off its SIMD path and through the
/// tree builder as a one-character token (~600 instructions a line, 3 %
/// of a 60 KB newsletter's lint); an LF stays on the fast path. The
/// document parsed is the same.
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

struct Sink(RefCell<Document>);

impl Sink {
    fn append_text(parent: &mut ego_tree::NodeMut<'_, Node>, text: StrTendril) {
        // Adjacent text nodes are merged, as the tree builder expects.
        if let Some(mut last) = parent.last_child()
            && let Node::Text(t) = last.value()
        {
            t.push_tendril(&text);
            return;
        }
        parent.append(Node::Text(text));
    }
}

impl TreeSink for Sink {
    type Handle = NodeId;
    type Output = Document;
    type ElemName<'a> = Ref<'a, QualName>;

    fn finish(self) -> Document {
        self.0.into_inner()
    }

    fn parse_error(&self, msg: Cow<'static, str>) {
        self.0.borrow_mut().errors.push(msg);
    }

    fn get_document(&self) -> NodeId {
        self.0.borrow().tree.root().id()
    }

    fn elem_name<'a>(&'a self, target: &'a NodeId) -> Ref<'a, QualName> {
        Ref::map(self.0.borrow(), |doc| {
            match doc.tree.get(*target).map(|n| n.value()) {
                Some(Node::Element(e)) => &e.name,
                // The tree builder only asks for the names of elements.
                _ => unreachable!("elem_name on a non-element"),
            }
        })
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, _: ElementFlags) -> NodeId {
        let template = name.expanded() == expanded_name!(html "template");
        let mut doc = self.0.borrow_mut();
        let mut node = doc.tree.orphan(Node::Element(Element { name, attrs }));
        if template {
            node.append(Node::Fragment);
        }
        node.id()
    }

    fn create_comment(&self, _: StrTendril) -> NodeId {
        self.0.borrow_mut().tree.orphan(Node::Other).id()
    }

    fn create_pi(&self, _: StrTendril, _: StrTendril) -> NodeId {
        self.0.borrow_mut().tree.orphan(Node::Other).id()
    }

    fn append(&self, parent: &NodeId, child: NodeOrText<NodeId>) {
        let mut doc = self.0.borrow_mut();
        let Some(mut parent) = doc.tree.get_mut(*parent) else {
            return;
        };
        match child {
            NodeOrText::AppendNode(id) => {
                parent.append_id(id);
            }
            NodeOrText::AppendText(text) => Sink::append_text(&mut parent, text),
        }
    }

    fn append_based_on_parent_node(
        &self,
        element: &NodeId,
        prev_element: &NodeId,
        child: NodeOrText<NodeId>,
    ) {
        let has_parent = self
            .0
            .borrow()
            .tree
            .get(*element)
            .is_some_and(|n| n.parent().is_some());
        if has_parent {
            self.append_before_sibling(element, child);
        } else {
            self.append(prev_element, child);
        }
    }

    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {
        self.0.borrow_mut().tree.root_mut().append(Node::Other);
    }

    fn get_template_contents(&self, target: &NodeId) -> NodeId {
        let doc = self.0.borrow();
        // create_element gave every template a Fragment as its first child.
        doc.tree
            .get(*target)
            .and_then(|n| n.first_child())
            .map_or(*target, |n| n.id())
    }

    fn same_node(&self, x: &NodeId, y: &NodeId) -> bool {
        x == y
    }

    fn set_quirks_mode(&self, _: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &NodeId, new_node: NodeOrText<NodeId>) {
        let mut doc = self.0.borrow_mut();
        if let NodeOrText::AppendNode(id) = new_node
            && let Some(mut n) = doc.tree.get_mut(id)
        {
            n.detach();
        }
        let Some(mut sibling) = doc.tree.get_mut(*sibling) else {
            return;
        };
        if sibling.parent().is_none() {
            return;
        }
        match new_node {
            NodeOrText::AppendNode(id) => {
                sibling.insert_id_before(id);
            }
            NodeOrText::AppendText(text) => {
                if let Some(mut prev) = sibling.prev_sibling()
                    && let Node::Text(t) = prev.value()
                {
                    t.push_tendril(&text);
                    return;
                }
                sibling.insert_before(Node::Text(text));
            }
        }
    }

    fn add_attrs_if_missing(&self, target: &NodeId, attrs: Vec<Attribute>) {
        let mut doc = self.0.borrow_mut();
        let Some(mut node) = doc.tree.get_mut(*target) else {
            return;
        };
        if let Node::Element(e) = node.value() {
            for attr in attrs {
                if !e.attrs.iter().any(|a| a.name == attr.name) {
                    e.attrs.push(attr);
                }
            }
        }
    }

    fn remove_from_parent(&self, target: &NodeId) {
        if let Some(mut n) = self.0.borrow_mut().tree.get_mut(*target) {
            n.detach();
        }
    }

    fn reparent_children(&self, node: &NodeId, new_parent: &NodeId) {
        if let Some(mut parent) = self.0.borrow_mut().tree.get_mut(*new_parent) {
            parent.reparent_from_id_append(*node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_newlines;

    #[test]
    fn newlines_are_normalised_as_the_html_standard_says() {
        assert_eq!(
            normalise_newlines("a\r\nb\rc\n\r\r\nd\r"),
            "a\nb\nc\n\n\nd\n"
        );
        assert!(matches!(
            normalise_newlines("no carriage return\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
