//! Links: counts, domains, shorteners, IP hosts, plain http, look-alike link
//! text, redirectors, tracking wrappers and broken hrefs.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use url::{Host, Url};

use super::{COMMON_SITES, Context, IMPERSONATED_SITES, SHORTENERS, TRACKERS, is_merge_tag, site};
use crate::report::Findings;
use crate::rules::{LIMITS, Rule};

/// Facts about the links, for the summary and the model.
pub(crate) struct LinkStats {
    /// Distinct web (http/https) URLs.
    pub links: usize,
    pub domains: usize,
    /// Distinct web URLs over plain http.
    pub http: usize,
    /// Links to the From address's site.
    pub to_sender: usize,
    /// Links whose host is IDN (punycode).
    pub punycode: usize,
    /// Links with a query string over 200 characters.
    pub long_query: usize,
    /// Top-level domains of the linked sites.
    pub tlds: Vec<String>,
    pub sites: BTreeMap<String, usize>,
}

static TEXT_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>"')\]]+"#).expect("regex"));
/// Text that reads as an address: "www.bank.example", "https://...".
static LOOKS_LIKE_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(https?://)?(www\.)?[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}(/\S*)?$")
        .expect("regex")
});

struct LinkRef<'a> {
    href: &'a str,
    text: &'a str,
}

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) -> LinkStats {
    let mut http = 0;
    let mut punycode = 0;
    let mut long_query = 0;
    let links: Vec<LinkRef<'_>> = match &cx.html {
        Some(h) => h
            .links
            .iter()
            .map(|l| LinkRef {
                href: &l.href,
                text: &l.text,
            })
            .collect(),
        None => cx
            .email
            .text
            .as_deref()
            .map(|t| {
                TEXT_URL
                    .find_iter(t)
                    .map(|m| LinkRef {
                        href: m.as_str(),
                        text: "",
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };

    // Distinct web URLs: the same product linked from its image and its
    // button is one link to a reader and to a filter.
    let mut web = std::collections::HashSet::new();
    // site → number of links to it
    let mut sites: BTreeMap<String, usize> = BTreeMap::new();
    // An href seen before was checked then; only its text can differ.
    let mut checked = std::collections::HashSet::new();
    for link in &links {
        let href = link.href;
        if !checked.insert(href) {
            if let Some(link_site) = Url::parse(href)
                .ok()
                .and_then(|u| u.host_str().and_then(site))
            {
                text_mismatch(link, &link_site, cx.from_site.as_deref(), out);
            }
            continue;
        }
        let lower = href.to_ascii_lowercase();
        if href.is_empty() || href == "#" {
            out.add(
                Rule::EmptyHref,
                "A link has no destination.".into(),
                Some(describe(link)),
            );
            continue;
        }
        if is_merge_tag(href)
            || lower.starts_with("mailto:")
            || lower.starts_with("tel:")
            || lower.starts_with("sms:")
            || href.starts_with('#')
        {
            continue;
        }
        if ["javascript:", "vbscript:", "data:"]
            .iter()
            .any(|s| lower.starts_with(s))
        {
            out.add(
                Rule::MalformedHref,
                "A link runs a script or embeds data instead of pointing to a page.".into(),
                Some(href.into()),
            );
            continue;
        }
        let url = match Url::parse(href) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                out.add(
                    Rule::RelativeHref,
                    "A relative link has no site to be relative to in an email.".into(),
                    Some(href.into()),
                );
                continue;
            }
            Err(e) => {
                out.add(
                    Rule::MalformedHref,
                    format!("A link can't be parsed: {e}."),
                    Some(href.into()),
                );
                continue;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            out.add(
                Rule::MalformedHref,
                format!("A link uses the unsupported scheme \"{}:\".", url.scheme()),
                Some(href.into()),
            );
            continue;
        }
        web.insert(href);
        if url.query().is_some_and(|q| q.len() > 200) {
            long_query += 1;
        }
        if url.scheme() == "http" {
            http += 1;
            out.add(
                Rule::Insecure,
                "A link uses plain http.".into(),
                Some(href.into()),
            );
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => {
                out.add(
                    Rule::IpHost,
                    "A link points to a raw IP address.".into(),
                    Some(href.into()),
                );
                continue;
            }
            None => continue,
        };
        if host.starts_with("xn--") || host.contains(".xn--") {
            punycode += 1;
        }
        let link_site = site(&host).unwrap_or_else(|| host.clone());
        *sites.entry(link_site.clone()).or_default() += 1;
        if SHORTENERS.contains(host.as_str()) || SHORTENERS.contains(link_site.as_str()) {
            out.add(
                Rule::Shortener,
                format!("A link goes through the URL shortener {host}."),
                Some(href.into()),
            );
        }
        if TRACKERS.contains(link_site.as_str()) {
            out.add(
                Rule::TrackingWrapper,
                format!("A link is wrapped by the shared tracking domain {link_site}."),
                Some(href.into()),
            );
        }
        if let Some(target) = embedded_url(&url)
            && target
                .host_str()
                .is_some_and(|t| site(t) != Some(link_site.clone()))
        {
            out.add(
                Rule::OpenRedirect,
                format!(
                    "A link on {host} redirects to {}.",
                    target.host_str().unwrap_or("")
                ),
                Some(href.into()),
            );
        }
        text_mismatch(link, &link_site, cx.from_site.as_deref(), out);
    }

    let web = web.len();
    if web > LIMITS.max_links {
        out.add(
            Rule::TooManyLinks,
            format!("The message links to {web} different URLs."),
            None,
        );
    }
    if sites.len() > LIMITS.max_link_domains {
        out.add(
            Rule::ManyLinkDomains,
            format!("Links go to {} different domains.", sites.len()),
            Some(sites.keys().cloned().collect::<Vec<_>>().join(", ")),
        );
    }
    if let Some(from) = &cx.from_site {
        for (s, n) in &sites {
            if s != from
                && !COMMON_SITES.contains(s.as_str())
                && !TRACKERS.contains(s.as_str())
                && !SHORTENERS.contains(s.as_str())
            {
                out.add(
                    Rule::UnrelatedDomain,
                    format!("{n} link(s) go to {s}, which is not the sender's domain {from}."),
                    Some(s.clone()),
                );
            }
        }
    }
    let to_sender = cx
        .from_site
        .as_ref()
        .and_then(|from| sites.get(from))
        .copied()
        .unwrap_or(0);
    let mut tlds: Vec<String> = sites
        .keys()
        .filter_map(|s| s.rsplit('.').next())
        .map(str::to_string)
        .collect();
    tlds.sort_unstable();
    tlds.dedup();
    LinkStats {
        links: web,
        domains: sites.len(),
        http,
        to_sender,
        punycode,
        long_query,
        tlds,
        sites,
    }
}

/// Link text that reads as an address on another site than the link's.
///
/// A link to the sender's own site is exempt: brands send every link
/// through their own click-tracking host (`crm.ba.com` behind a shown
/// `www.britishairways.com`, `e.mktg.torrid.com` behind a gift-card
/// partner's address), and sending a reader to yourself deceives no one —
/// unless the text shows a site phishing imitates (`data/impersonated-sites.txt`):
/// "www.paypal.com" linked to the sender's own domain is the classic phish.
/// (In the training corpora three quarters of the legitimate mail's
/// mismatches went to the From site, a fifth of spam's.)
fn text_mismatch(link: &LinkRef<'_>, link_site: &str, from_site: Option<&str>, out: &mut Findings) {
    let Some(shown) = shown_site(link.text) else {
        return;
    };
    if shown == link_site
        || (from_site == Some(link_site) && !IMPERSONATED_SITES.contains(shown.as_str()))
    {
        return;
    }
    out.add(
        Rule::TextMismatch,
        format!("The link text shows {shown} but the link goes to {link_site}."),
        Some(format!("{} → {}", link.text, link.href)),
    );
}

/// A URL carried in the query (`?url=https://...`, `?q=http://...`).
fn embedded_url(url: &Url) -> Option<Url> {
    url.query_pairs().find_map(|(_, v)| {
        let v = v.trim();
        let lower = v.to_ascii_lowercase();
        (lower.starts_with("http://") || lower.starts_with("https://"))
            .then(|| Url::parse(v).ok())
            .flatten()
    })
}

/// The site a link's text claims to go to, when the text is an address.
fn shown_site(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches(['.', ',', '/']);
    if !LOOKS_LIKE_URL.is_match(text) {
        return None;
    }
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let url = Url::parse(&with_scheme).ok()?;
    site(url.host_str()?)
}

fn describe(link: &LinkRef<'_>) -> String {
    if link.text.is_empty() {
        format!("href=\"{}\"", link.href)
    } else {
        format!("\"{}\" (href=\"{}\")", link.text, link.href)
    }
}
