//! The rule table: every rule's stable id, severity, prior and fix, and
//! every numeric threshold the checks use; docs/lint-rules.md explains
//! each entry. What a rule is worth is learned (`model`, docs/lint-model.md).

use serde::Serialize;

/// How much a finding matters to a mailbox provider's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Advice: small or no effect on filtering on its own.
    Info,
    /// Filters penalise it; fix before a large send.
    Warning,
    /// A pattern of spam or phishing; expect the junk folder or a block.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Where a rule looks; used to group the documentation and the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Content,
    Preheader,
    Links,
    Images,
    Html,
    Structure,
    Attachments,
    Compliance,
    Headers,
}

/// One row of the rule table.
#[derive(Debug)]
pub struct RuleInfo {
    pub rule: Rule,
    /// Stable id, `category.name`; never reused for another meaning.
    pub id: &'static str,
    pub category: Category,
    pub severity: Severity,
    /// The hand-set points the rule had before the score was learned:
    /// training starts its weight at `prior × model::PRIOR_SCALE` (log-odds)
    /// and pulls it there where the data says little. What a finding adds
    /// is the learned weight (`model::MODEL`), not this. 0 for the rules
    /// whose weight is the sum of learned features (the `*.pattern` rules,
    /// `content.spammy-wording`) and for trigger phrases (each phrase in
    /// data/phrases.txt has its own prior).
    pub prior: f64,
    /// Only checked on marketing mail.
    pub marketing_only: bool,
    /// What the rule catches, in one line.
    pub title: &'static str,
    /// What the sender should do about it.
    pub fix: &'static str,
}

macro_rules! rules {
    ($(
        $variant:ident {
            id: $id:literal, $cat:ident, $sev:ident, prior: $prior:expr,
            $scope:ident,
            title: $title:literal,
            fix: $fix:literal $(,)?
        }
    ),* $(,)?) => {
        /// A lint rule. `Rule::info()` gives its row of [`RULES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Rule { $($variant),* }

        /// Every rule, in the order the documentation lists them.
        pub static RULES: &[RuleInfo] = &[$(
            RuleInfo {
                rule: Rule::$variant,
                id: $id,
                category: Category::$cat,
                severity: Severity::$sev,
                prior: $prior,
                marketing_only: rules!(@scope $scope),
                title: $title,
                fix: $fix,
            }
        ),*];
    };
    (@scope any) => { false };
    (@scope marketing) => { true };
}

impl Rule {
    pub fn info(self) -> &'static RuleInfo {
        // The table is generated from the same list as the enum, in order.
        &RULES[self as usize]
    }

    pub fn id(self) -> &'static str {
        self.info().id
    }
}

rules! {
    // ---- content -------------------------------------------------------
    TriggerPhrase { id: "content.trigger-phrase", Content, Warning, prior: 0.0, any,
        title: "Words and phrases that spam filters weigh against a message",
        fix: "Rephrase in plain, specific language about what the reader gets; drop hype and urgency words." },
    ObfuscatedWord { id: "content.obfuscated-word", Content, Error, prior: 3.0, any,
        title: "A trigger word disguised with digits, symbols, spacing or look-alike letters",
        fix: "Write the word normally. Filters undo the disguise and then penalise both the word and the attempt." },
    MixedScriptWord { id: "content.mixed-script-word", Content, Error, prior: 3.0, any,
        title: "A word mixing alphabets (e.g. Latin with Cyrillic look-alikes)",
        fix: "Type the word in one alphabet; mixed-script words are a classic filter-evasion and phishing sign." },
    CapsWords { id: "content.caps-words", Content, Warning, prior: 1.0, any,
        title: "Many words in ALL CAPS",
        fix: "Use sentence case; emphasise with layout or bold instead of capitals." },
    CapsSubject { id: "content.caps-subject", Content, Warning, prior: 1.5, any,
        title: "Subject line mostly in capitals",
        fix: "Write the subject in sentence case." },
    ExclamationRun { id: "content.exclamation-run", Content, Warning, prior: 1.6, any,
        title: "Runs of exclamation marks (!!) or several in the subject",
        fix: "Use one exclamation mark at most, and none in the subject." },
    MoneyRun { id: "content.money-run", Content, Warning, prior: 1.0, any,
        title: "Runs of currency symbols ($$$)",
        fix: "State prices plainly (\"$25\"); never use symbol runs as decoration." },
    PercentDiscount { id: "content.percent-discount", Content, Info, prior: 1.0, any,
        title: "Percentage discounts in the subject or repeated in the body",
        fix: "Lead with the product or benefit; mention the discount once." },
    FakeReplyPrefix { id: "content.fake-reply-prefix", Content, Error, prior: 2.0, any,
        title: "Subject starts with RE:/FWD: but the message replies to nothing",
        fix: "Remove the prefix: on a first message it misleads the reader, and filters know it." },
    EmojiOverload { id: "content.emoji-overload", Content, Warning, prior: 1.6, any,
        title: "Too many emoji in the subject or body",
        fix: "Keep to one emoji in the subject and a few in the body." },
    SubjectLength { id: "content.subject-length", Content, Info, prior: 0.3, any,
        title: "Subject line very long (truncated on phones) or very short",
        fix: "Aim for 20 to 60 characters that say what the email is about." },
    SubjectMissing { id: "content.subject-missing", Content, Warning, prior: 1.5, any,
        title: "No subject line",
        fix: "Give every message a subject that says what it is about." },

    SpammyWording { id: "content.spammy-wording", Content, Warning, prior: 0.0, any,
        title: "Wording that the model learned from spam rather than from legitimate mail",
        fix: "Say plainly what the reader gets from whom; the evidence lists the words that weigh most." },

    // ---- preheader -----------------------------------------------------
    PreheaderMissing { id: "preheader.missing", Preheader, Warning, prior: 0.5, any,
        title: "No preheader: the inbox preview shows a fragment of the layout",
        fix: "Add a hidden preheader element at the top of the body with 40–130 characters of preview text." },
    PreheaderLength { id: "preheader.length", Preheader, Info, prior: 0.3, any,
        title: "Preheader too short or too long",
        fix: "Write 40–130 characters: long enough to fill the preview, short enough not to be cut mid-sentence." },
    PreheaderRepeatsSubject { id: "preheader.repeats-subject", Preheader, Info, prior: 0.5, any,
        title: "Preheader repeats the subject",
        fix: "Use the preheader to add to the subject, not repeat it." },
    PreheaderBoilerplate { id: "preheader.boilerplate", Preheader, Warning, prior: 0.8, any,
        title: "The preview shows boilerplate such as \"View this email in your browser\"",
        fix: "Put a real preheader before the web-version link, or move that link lower." },
    PreheaderRunsIntoBody { id: "preheader.runs-into-body", Preheader, Info, prior: 0.3, any,
        title: "Short preheader with no padding: the preview runs on into body text",
        fix: "Lengthen the preheader or pad it with &zwnj;&nbsp; after the text so the preview ends cleanly." },

    // ---- links ---------------------------------------------------------
    TooManyLinks { id: "links.too-many", Links, Info, prior: 0.5, any,
        title: "A very large number of links",
        fix: "Keep the links that matter; filters and readers distrust link-stuffed mail." },
    ManyLinkDomains { id: "links.many-domains", Links, Warning, prior: 0.8, any,
        title: "Links to many different domains",
        fix: "Link mostly to your own domain; each extra domain's reputation is added to yours." },
    UnrelatedDomain { id: "links.unrelated-domain", Links, Info, prior: 1.0, any,
        title: "Link domain unrelated to the From domain",
        fix: "Link to your own domain (or a subdomain of it); use a branded tracking domain." },
    Shortener { id: "links.shortener", Links, Error, prior: 4.0, any,
        title: "URL shortener link",
        fix: "Use the full destination URL: shorteners hide the target and are heavily abused, so filters block them." },
    IpHost { id: "links.ip-host", Links, Error, prior: 5.0, any,
        title: "Link to a raw IP address",
        fix: "Link to a domain name; IP-address links are a phishing hallmark." },
    Insecure { id: "links.insecure", Links, Info, prior: 1.0, any,
        title: "Plain http:// link",
        fix: "Use https:// links." },
    TextMismatch { id: "links.text-mismatch", Links, Error, prior: 6.0, any,
        title: "Link text shows one address but the link goes to another domain",
        fix: "Make the visible URL match the destination, or use descriptive text instead of a URL." },
    OpenRedirect { id: "links.open-redirect", Links, Warning, prior: 2.0, any,
        title: "Link passes through a redirector carrying another URL",
        fix: "Link straight to the destination; open redirectors are abused by phishers and filters treat them so." },
    TrackingWrapper { id: "links.tracking-wrapper", Links, Info, prior: 0.3, any,
        title: "Click-tracking wrapper on a shared tracking domain",
        fix: "Use a branded tracking (CNAME) domain under your own domain." },
    EmptyHref { id: "links.empty-href", Links, Info, prior: 0.9, any,
        title: "Link with an empty or \"#\" href",
        fix: "Give the link its destination or remove it." },
    RelativeHref { id: "links.relative-href", Links, Warning, prior: 1.5, any,
        title: "Relative link: it cannot work in an email",
        fix: "Use an absolute https:// URL." },
    MalformedHref { id: "links.malformed-href", Links, Warning, prior: 2.4, any,
        title: "Link that is malformed or uses a script/unsupported scheme",
        fix: "Use a well-formed https://, mailto: or tel: link." },

    LinkPattern { id: "links.pattern", Links, Warning, prior: 0.0, any,
        title: "Link patterns (count, sites, http, link to the sender's own site) that the model learned from spam",
        fix: "Link mainly to your own domain over https, and keep the number of other sites small." },

    // ---- images --------------------------------------------------------
    LowTextRatio { id: "images.low-text-ratio", Images, Warning, prior: 1.0, any,
        title: "Little text for the number of images",
        fix: "Add real text alongside the images; filters cannot read images and distrust mail that is mostly pictures." },
    ImageOnly { id: "images.image-only", Images, Error, prior: 2.5, any,
        title: "The message is essentially one or more images with no text",
        fix: "Put the message in HTML text; keep images as illustration. Many readers block images by default." },
    MissingAlt { id: "images.missing-alt", Images, Info, prior: 0.8, any,
        title: "Image without alt text",
        fix: "Add alt text describing the image (alt=\"\" for spacers)." },

    // ---- html ----------------------------------------------------------
    HiddenText { id: "html.hidden-text", Html, Error, prior: 4.0, any,
        title: "Many hidden words (display:none, zero size, invisible colour) that the visible body never uses: hash-busting",
        fix: "Remove hidden text that isn't the preheader or a copy of visible content; hidden unrelated words are how spammers feed filters." },
    TinyText { id: "html.tiny-text", Html, Error, prior: 3.0, any,
        title: "Text in a 0–2px font",
        fix: "Remove the text or give it a readable size." },
    InvisibleColor { id: "html.invisible-color", Html, Error, prior: 4.0, any,
        title: "Text coloured the same as its background",
        fix: "Give text a colour that contrasts with its background, or remove it." },
    Script { id: "html.script", Html, Error, prior: 3.0, any,
        title: "<script> in the message",
        fix: "Remove scripts: no mail client runs them and filters treat them as an attack." },
    Form { id: "html.form", Html, Warning, prior: 1.5, any,
        title: "<form> in the message",
        fix: "Link to a form on your website instead; forms in mail are a credential-phishing pattern." },
    Iframe { id: "html.iframe", Html, Error, prior: 2.0, any,
        title: "<iframe> or <frame> in the message",
        fix: "Remove frames; link to the content instead." },
    Embed { id: "html.embed", Html, Error, prior: 2.0, any,
        title: "<object>, <embed> or <applet> in the message",
        fix: "Remove embedded objects; link to the content instead." },
    ExternalStylesheet { id: "html.external-stylesheet", Html, Info, prior: 0.3, any,
        title: "External stylesheet (<link rel=stylesheet> or @import)",
        fix: "Inline the CSS or put it in a <style> element; most clients drop external stylesheets." },
    MalformedHtml { id: "html.malformed", Html, Info, prior: 0.5, any,
        title: "Broken or unbalanced HTML",
        fix: "Validate the HTML and close every tag; clients repair broken markup differently." },

    // ---- structure -----------------------------------------------------
    NoTextPart { id: "structure.no-text-part", Structure, Warning, prior: 0.8, any,
        title: "HTML without a plain-text alternative",
        fix: "Send multipart/alternative with a text/plain part that says the same as the HTML." },
    PartsDiffer { id: "structure.parts-differ", Structure, Warning, prior: 1.0, any,
        title: "The text and HTML parts say different things",
        fix: "Generate the text part from the same content as the HTML." },
    GmailClipping { id: "structure.gmail-clipping", Structure, Warning, prior: 1.0, any,
        title: "HTML larger than Gmail's ~102 KB clipping limit",
        fix: "Shrink the HTML (inline less CSS, fewer nested tables, minify); Gmail hides everything after the cut, including the unsubscribe link." },

    LayoutPattern { id: "structure.layout", Structure, Warning, prior: 0.0, any,
        title: "Layout (MIME parts, length, hidden text, capitals, exclamation marks) that the model learned from spam",
        fix: "Send HTML with a text alternative, real text beside the images, and sentence case." },

    // ---- attachments ---------------------------------------------------
    AttachmentOnMarketing { id: "attachments.on-marketing", Attachments, Warning, prior: 1.5, marketing,
        title: "Attachment on a marketing message",
        fix: "Link to the file on your website instead of attaching it." },
    DangerousAttachment { id: "attachments.dangerous-type", Attachments, Error, prior: 10.0, any,
        title: "Executable, script or macro-bearing attachment",
        fix: "Never attach programs, scripts or macro documents; most providers reject them outright." },
    AttachmentsTooLarge { id: "attachments.too-large", Attachments, Warning, prior: 1.0, any,
        title: "Attachments larger in total than providers accept comfortably",
        fix: "Link to large files instead of attaching them." },

    // ---- compliance (marketing) ----------------------------------------
    NoUnsubscribeLink { id: "compliance.no-unsubscribe-link", Compliance, Error, prior: 2.0, marketing,
        title: "No visible unsubscribe link",
        fix: "Add a clearly labelled unsubscribe link to the footer (CAN-SPAM, GDPR and the Gmail/Yahoo sender rules require it)." },
    NoListUnsubscribe { id: "compliance.no-list-unsubscribe", Compliance, Error, prior: 1.5, marketing,
        title: "No List-Unsubscribe header (RFC 2369)",
        fix: "Add List-Unsubscribe with an https: (and optionally mailto:) unsubscribe URI." },
    NoOneClick { id: "compliance.no-one-click", Compliance, Warning, prior: 1.0, marketing,
        title: "No one-click unsubscribe (RFC 8058)",
        fix: "Add \"List-Unsubscribe-Post: List-Unsubscribe=One-Click\" with an https: URI in List-Unsubscribe; Gmail and Yahoo require it of bulk senders." },
    NoPostalAddress { id: "compliance.no-postal-address", Compliance, Warning, prior: 0.8, marketing,
        title: "No postal address found",
        fix: "Put the sender's physical postal address in the footer (CAN-SPAM requires one)." },
    NoreplyAddress { id: "compliance.noreply-address", Compliance, Info, prior: 0.5, marketing,
        title: "Replies go to a no-reply address",
        fix: "Use a Reply-To that a person or your helpdesk reads; replies are a positive engagement signal." },
    NoPersonalization { id: "compliance.no-personalization", Compliance, Info, prior: 0.3, marketing,
        title: "No personalization",
        fix: "Address the reader (name, recent order, preferences); identical bulk text looks like spam to filters." },

    // ---- headers -------------------------------------------------------
    MissingDate { id: "headers.missing-date", Headers, Warning, prior: 1.0, any,
        title: "No Date header",
        fix: "Let your mail system add a Date header (RFC 5322 requires one)." },
    MissingMessageId { id: "headers.missing-message-id", Headers, Warning, prior: 1.0, any,
        title: "No Message-ID header",
        fix: "Let your mail system add a Message-ID under your own domain." },
    FromNameAddress { id: "headers.from-name-address", Headers, Error, prior: 2.0, any,
        title: "From display name carries an address or a domain other than the sender's",
        fix: "Use your brand name alone as the display name." },
    FromNameMixedScript { id: "headers.from-name-mixed-script", Headers, Error, prior: 2.5, any,
        title: "From display name mixes alphabets (look-alike brand name)",
        fix: "Write the display name in one alphabet." },
    ReplyToUnrelated { id: "headers.reply-to-unrelated", Headers, Warning, prior: 1.0, any,
        title: "Reply-To on a domain unrelated to From",
        fix: "Use a Reply-To on your own domain." },
    HeaderPattern { id: "headers.pattern", Headers, Warning, prior: 0.0, any,
        title: "Sender headers (From, Reply-To, Message-ID, To, subject shape) that the model learned from spam",
        fix: "Send from your own domain with your brand as the name, Message-ID and Reply-To on the same domain." },
}

/// Numeric thresholds the checks compare against. One place, so tuning is a
/// one-line change and docs/lint-rules.md can quote them.
pub struct Limits {
    pub subject_max_chars: usize,
    pub subject_min_chars: usize,
    /// Share of letters in upper case that makes a subject "shouting".
    pub subject_caps_ratio: f64,
    pub subject_caps_min_letters: usize,
    /// Share of (3+ letter) words in ALL CAPS that fires content.caps-words.
    pub caps_word_ratio: f64,
    pub caps_word_min: usize,
    pub subject_max_emoji: usize,
    pub body_max_emoji: usize,
    /// Emoji per word above which the body counts as overloaded.
    pub body_emoji_per_word: f64,
    pub body_max_percent_discounts: usize,
    pub preheader_min_chars: usize,
    pub preheader_max_chars: usize,
    /// A preheader shorter than this needs padding or the preview runs on.
    pub preheader_run_in_chars: usize,
    /// Spacer characters (&zwnj;, &nbsp; ...) that count as padding.
    pub preheader_padding_chars: usize,
    pub max_links: usize,
    pub max_link_domains: usize,
    /// Visible text characters per image below which the ratio is low.
    pub min_text_per_image: usize,
    /// Fewer visible words than this with images present = image-only.
    pub image_only_max_words: usize,
    /// Word-set similarity (Jaccard) below which text and HTML "differ".
    pub parts_min_similarity: f64,
    pub gmail_clip_bytes: usize,
    /// Font sizes at or below this many CSS pixels count as hidden.
    pub tiny_font_px: f64,
    pub max_attachment_bytes: usize,
}

pub const LIMITS: Limits = Limits {
    subject_max_chars: 78,
    subject_min_chars: 4,
    subject_caps_ratio: 0.6,
    subject_caps_min_letters: 6,
    caps_word_ratio: 0.2,
    caps_word_min: 5,
    subject_max_emoji: 2,
    body_max_emoji: 10,
    body_emoji_per_word: 0.05,
    body_max_percent_discounts: 3,
    preheader_min_chars: 40,
    preheader_max_chars: 130,
    preheader_run_in_chars: 90,
    preheader_padding_chars: 30,
    max_links: 50,
    max_link_domains: 6,
    min_text_per_image: 80,
    image_only_max_words: 25,
    parts_min_similarity: 0.3,
    gmail_clip_bytes: 102 * 1024,
    tiny_font_px: 2.0,
    max_attachment_bytes: 10 * 1024 * 1024,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_rule_row_matches_its_variant_and_ids_are_unique() {
        let mut seen = HashSet::new();
        for (i, row) in RULES.iter().enumerate() {
            assert_eq!(row.rule as usize, i, "{} out of order", row.id);
            assert!(seen.insert(row.id), "duplicate id {}", row.id);
            let prefix = row.id.split('.').next().unwrap();
            let category = serde_json::to_value(row.category).unwrap();
            assert_eq!(
                category, prefix,
                "{} filed under {:?}",
                row.id, row.category
            );
            assert!(row.prior >= 0.0, "{}: negative prior", row.id);
        }
    }
}
