//! Attachments: any on marketing mail, dangerous types on any, total size.

use super::Context;
use crate::report::Findings;
use crate::rules::{LIMITS, Rule};

/// Extensions providers block or quarantine: programs, scripts, macro
/// documents and disk images that carry them.
const DANGEROUS_EXTENSIONS: &[&str] = &[
    "exe", "scr", "bat", "cmd", "com", "pif", "cpl", "msi", "msp", "jar", "js", "jse", "vbs",
    "vbe", "wsf", "wsh", "ps1", "psm1", "hta", "lnk", "reg", "inf", "sh", "app", "apk", "dll",
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "ppsm", "sldm", "iso", "img",
    "vhd", "vhdx",
];

const DANGEROUS_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-ms-installer",
    "application/x-executable",
    "application/x-sh",
    "application/x-bat",
    "application/javascript",
    "text/javascript",
    "application/x-javascript",
    "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.ms-excel.sheet.macroenabled.12",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12",
    "application/java-archive",
    "application/hta",
    "application/x-iso9660-image",
];

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    let attachments = &cx.email.attachments;
    for a in attachments {
        let name = a.filename.as_deref().unwrap_or("(unnamed)");
        let ext = a
            .filename
            .as_deref()
            .and_then(|f| f.rsplit_once('.'))
            .map(|(_, e)| e.trim().to_ascii_lowercase());
        let dangerous = ext
            .as_deref()
            .is_some_and(|e| DANGEROUS_EXTENSIONS.contains(&e))
            || DANGEROUS_TYPES.contains(&a.content_type.as_str());
        if dangerous {
            out.add(
                Rule::DangerousAttachment,
                format!(
                    "{name} ({}) is an executable, script or macro-bearing file.",
                    a.content_type
                ),
                Some(name.into()),
            );
        }
        if !a.inline {
            out.add(
                Rule::AttachmentOnMarketing,
                format!("{name} is attached to a marketing message."),
                Some(name.into()),
            );
        }
    }
    let total: usize = attachments.iter().map(|a| a.size).sum();
    if total > LIMITS.max_attachment_bytes {
        out.add(
            Rule::AttachmentsTooLarge,
            format!(
                "Attachments total {:.1} MB; keep them under {} MB.",
                total as f64 / 1_048_576.0,
                LIMITS.max_attachment_bytes / 1_048_576
            ),
            None,
        );
    }
}
