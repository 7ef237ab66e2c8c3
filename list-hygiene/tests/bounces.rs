//! Each bounce fixture, in the shape a real MTA produces, must give exactly
//! these recipients, classes and references.

use list_hygiene::bounce::{Bounce, BounceClass, Kind, parse};

fn load(name: &str) -> Bounce {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&raw).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (address, action, status, class) of each recipient.
fn summary(b: &Bounce) -> Vec<(&str, &str, Option<&str>, BounceClass)> {
    b.recipients
        .iter()
        .map(|r| {
            (
                r.address.as_str(),
                r.action.as_str(),
                r.status.as_deref(),
                r.class,
            )
        })
        .collect()
}

#[test]
fn postfix_dsn_user_unknown_is_hard_and_names_the_original() {
    let b = load("postfix-dsn-user-unknown.eml");
    assert_eq!(b.kind, Kind::Dsn);
    assert_eq!(
        summary(&b),
        [(
            "dana.whitfield@customer.example",
            "failed",
            Some("5.1.1"),
            BounceClass::Hard
        )]
    );
    assert!(
        b.recipients[0]
            .diagnostic
            .as_deref()
            .unwrap()
            .contains("User unknown in virtual mailbox table")
    );
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("<0193a6f2-7c1e-7b40-9d1a-3f2b8c4e5a10@shop.example>")
    );
    let verp = b.verp.unwrap();
    assert_eq!(verp.message_id, "0193a6f2-7c1e-7b40-9d1a-3f2b8c4e5a10");
    assert_eq!(verp.recipient_index, 0);
}

#[test]
fn gmail_over_quota_is_mailbox_full() {
    let b = load("gmail-dsn-mailbox-full.eml");
    assert_eq!(b.kind, Kind::Dsn);
    assert_eq!(
        summary(&b),
        [(
            "sam.ortega@gmail.example",
            "failed",
            Some("5.2.2"),
            BounceClass::MailboxFull
        )]
    );
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("<0193a7b1-1f00-7c2e-8a55-6e0d4f1c2b3a@shop.example>")
    );
    assert_eq!(b.verp.unwrap().recipient_index, 3);
}

#[test]
fn office365_recipient_not_found_is_hard() {
    let b = load("office365-dsn-recipient-not-found.eml");
    assert_eq!(b.kind, Kind::Dsn);
    assert_eq!(
        summary(&b),
        [(
            "j.doe@contoso.example",
            "failed",
            Some("5.1.10"),
            BounceClass::Hard
        )]
    );
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("<0193a6f2-7c1e-7b40-9d1a-3f2b8c4e5a11@shop.example>")
    );
}

#[test]
fn an_exchange_text_ndr_without_a_report_part_is_read_from_its_body() {
    let b = load("exchange-text-ndr.eml");
    assert_eq!(b.kind, Kind::NonStandard);
    assert_eq!(
        summary(&b),
        [(
            "p.meyer@legacy-corp.example",
            "failed",
            Some("5.1.1"),
            BounceClass::Hard
        )]
    );
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("<0193a6f3-0000-7000-8000-000000000002@shop.example>")
    );
    assert!(b.verp.is_none());
}

#[test]
fn qmail_no_mailbox_is_hard() {
    let b = load("qmail.eml");
    assert_eq!(b.kind, Kind::NonStandard);
    assert_eq!(
        summary(&b),
        [(
            "kim.lee@oldisp.example",
            "failed",
            Some("5.1.1"),
            BounceClass::Hard
        )]
    );
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("<0193a6f2-7c1e-7b40-9d1a-3f2b8c4e5a12@shop.example>")
    );
}

#[test]
fn exim_failed_addresses_are_hard() {
    let b = load("exim.eml");
    assert_eq!(b.kind, Kind::NonStandard);
    assert_eq!(
        summary(&b),
        [(
            "alex@hosting-customer.example",
            "failed",
            Some("5.1.1"),
            BounceClass::Hard
        )]
    );
    assert!(
        b.recipients[0]
            .diagnostic
            .as_deref()
            .unwrap()
            .contains("User unknown")
    );
}

#[test]
fn yahoo_legacy_no_account_is_hard_and_undefined_permanent_without_a_status_code() {
    let b = load("yahoo-legacy.eml");
    assert_eq!(
        summary(&b),
        [(
            "chris.w@yahoo.example",
            "failed",
            Some("5.0.0"),
            BounceClass::Hard
        )]
    );
    assert_eq!(b.verp.unwrap().recipient_index, 7);
}

#[test]
fn a_spam_block_is_policy_not_the_address() {
    let b = load("dsn-policy-block.eml");
    assert_eq!(
        summary(&b),
        [(
            "robin@strict-isp.example",
            "failed",
            Some("5.7.1"),
            BounceClass::Policy
        )]
    );
}

#[test]
fn a_delay_notice_is_transient() {
    let b = load("dsn-delayed.eml");
    assert_eq!(
        summary(&b),
        [(
            "ops@partner.example",
            "delayed",
            Some("4.4.7"),
            BounceClass::Transient
        )]
    );
}

#[test]
fn too_many_recipients_is_policy() {
    let b = load("too-many-recipients.eml");
    assert_eq!(
        summary(&b),
        [(
            "team@bigco.example",
            "failed",
            Some("5.5.3"),
            BounceClass::Policy
        )]
    );
}

#[test]
fn a_plain_text_user_unknown_reply_is_hard() {
    let b = load("plain-text-user-unknown.eml");
    assert_eq!(b.kind, Kind::NonStandard);
    assert_eq!(
        summary(&b),
        [(
            "pat@small-host.example",
            "failed",
            Some("5.0.0"),
            BounceClass::Hard
        )]
    );
}

#[test]
fn an_out_of_office_reply_is_not_a_bounce() {
    let b = load("vacation-auto-reply.eml");
    assert_eq!(b.kind, Kind::AutoReply);
    assert!(b.recipients.is_empty());
}

#[test]
fn an_ordinary_message_is_not_a_bounce() {
    let b = load("not-a-bounce.eml");
    assert_eq!(b.kind, Kind::NotABounce);
    assert!(b.recipients.is_empty());
}

#[test]
fn garbage_is_an_error_or_not_a_bounce_never_a_panic() {
    assert!(parse(b"").is_err());
    assert!(parse(b"\r\n\r\n").is_err());
    let b = parse(b"Subject: x\r\n\r\n\x00\xff garbage 550 <a@b.example>:").unwrap();
    assert_ne!(b.kind, Kind::Dsn);
}

mod properties {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = list_hygiene::bounce::parse(&bytes);
        }

        /// Whatever the bytes, a recipient is always an RFC 5321 address.
        #[test]
        fn every_recipient_is_an_address(
            lines in proptest::collection::vec("[ -~]{0,80}", 0..40),
        ) {
            let raw = format!(
                "From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\n\r\n{}",
                lines.join("\r\n")
            );
            if let Ok(b) = list_hygiene::bounce::parse(raw.as_bytes()) {
                for r in &b.recipients {
                    prop_assert!(
                        list_hygiene::email::EmailAddress::parse(&r.address).is_ok(),
                        "{:?}", r.address
                    );
                }
            }
        }

        /// A fixture stored with LF, CRLF or bare CR line ends reads the same.
        #[test]
        fn line_endings_never_change_what_is_read(pick in 0usize..64, style in 0usize..3) {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
            let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            let raw = std::fs::read(&names[pick % names.len()]).unwrap();
            let lf: Vec<u8> = String::from_utf8_lossy(&raw).replace("\r\n", "\n").into_bytes();
            let restyled: Vec<u8> = match style {
                0 => lf.clone(),
                1 => String::from_utf8_lossy(&lf).replace('\n', "\r\n").into_bytes(),
                _ => String::from_utf8_lossy(&lf).replace('\n', "\r").into_bytes(),
            };
            let a = list_hygiene::bounce::parse(&lf).map(|b| b.recipients).ok();
            let b = list_hygiene::bounce::parse(&restyled).map(|b| b.recipients).ok();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn arbitrary_report_bodies_never_panic(
            fields in "[ -~\t\r\n]{0,600}",
            text in "\\PC{0,300}",
        ) {
            let raw = format!(
                "From: MAILER-DAEMON@x.example\r\nSubject: Undeliverable\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n\r\n{text}\r\n\
                 --b\r\nContent-Type: message/delivery-status\r\n\r\n{fields}\r\n--b--\r\n"
            );
            let _ = list_hygiene::bounce::parse(raw.as_bytes());
        }
    }
}

/// Hostile sizes read in time linear in the input: a 20 MB DSN (a huge
/// returned original), a 20 MB text bounce of address lines, and 20 MB on
/// one line. The bound is loose (a debug build, a busy machine): it is
/// there to catch a quadratic path, which would take hours, not to time
/// the parser (docs/performance.md does that).
#[test]
fn twenty_megabyte_inputs_read_in_bounded_time() {
    const SIZE: usize = 20 << 20;
    let dsn_head = "From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
        --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
        Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
        --b\r\nContent-Type: message/rfc822\r\n\r\nSubject: original\r\n\r\n";
    let mut dsn = dsn_head.as_bytes().to_vec();
    while dsn.len() < SIZE {
        dsn.extend_from_slice(b"user unknown <x@y.example>: 550 mailbox full quota exceeded\r\n");
    }
    dsn.extend_from_slice(b"\r\n--b--\r\n");
    let mut text = b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n\r\n".to_vec();
    let mut n = 0;
    while text.len() < SIZE {
        text.extend_from_slice(
            format!("<u{n}@d.example>:\r\n550 5.1.1 no such user\r\n\r\n").as_bytes(),
        );
        n += 1;
    }
    let mut line = b"From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable\r\n\r\n".to_vec();
    line.resize(SIZE, b'<');
    for (name, raw) in [("dsn", &dsn), ("text", &text), ("one line", &line)] {
        let t = std::time::Instant::now();
        let b = parse(raw).expect("a message");
        let took = t.elapsed();
        eprintln!(
            "{name}: {} MB in {took:?}, {} recipients",
            raw.len() >> 20,
            b.recipients.len()
        );
        assert!(
            took < std::time::Duration::from_secs(60),
            "{name}: {took:?}"
        );
    }
}

#[test]
fn x_failed_recipients_names_them_when_the_body_does_not() {
    let raw = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n\
        Subject: Delivery Status Notification (Failure)\r\n\
        X-Failed-Recipients: shop-news@groups.example, MAILER-DAEMON@groups.example\r\n\r\n\
        The group you tried to contact may not exist.\r\n";
    let b = parse(raw.as_bytes()).unwrap();
    let got: Vec<_> = b.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(got, ["shop-news@groups.example"]);
    assert_eq!(b.kind, Kind::NonStandard);
}

#[test]
fn exims_notice_names_the_recipient_not_the_quoted_sender() {
    let raw = "From: Mail Delivery System <Mailer-Daemon@mx.example>\r\n\
        Subject: Mail delivery failed: returning message to sender\r\n\r\n\
        A message sent by\r\n\r\n  <orders@shop.example>\r\n\r\n\
        could not be delivered to one or more of its recipients. The following\r\n\
        address(es) failed:\r\n\r\n  pat@customer.example\r\n\
        \x20   all hosts have been failing for a long time and were last tried after this message arrived\r\n";
    let b = parse(raw.as_bytes()).unwrap();
    assert_eq!(b.recipients.len(), 1, "{:?}", b.recipients);
    assert_eq!(b.recipients[0].address, "pat@customer.example");
    assert_eq!(b.recipients[0].class, BounceClass::Transient);
}

#[test]
fn a_dsn_field_saying_rfc822_is_not_a_compliance_rejection() {
    let d = list_hygiene::bounce::diagnose(
        None,
        "Final-Recipient: rfc822; kuroneko@example.org 550 5.3.5 Internal System Error",
    );
    assert_eq!(
        d.reason,
        Some(list_hygiene::bounce::BounceReason::SystemError)
    );
}

#[test]
fn an_address_after_words_saying_delivery_to_it_failed_is_read() {
    for line in [
        "There was an error delivering your mail to <kim@customer.example>.",
        "Could not be delivered to: <kim@customer.example>",
        "Reason:  Unable to deliver message to <kim@customer.example> (and other recipients)",
        "SMTP Server <mx.customer.example> rejected recipient <kim@customer.example> (Error following RCPT command).",
    ] {
        let raw = format!(
            "From: MAILER-DAEMON@mx.example\r\nSubject: Mail delivery failed\r\n\r\n{line}\r\n\r\nThe mail system\r\n"
        );
        let b = parse(raw.as_bytes()).unwrap();
        let got: Vec<_> = b.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(got, ["kim@customer.example"], "{line}");
    }
    // The same words in mail that is not a bounce name nobody.
    let chat = "From: pat@friend.example\r\nSubject: lunch\r\n\r\n\
        My note could not be delivered to: <kim@customer.example> yesterday\r\n";
    assert!(parse(chat.as_bytes()).unwrap().recipients.is_empty());
}

#[test]
fn amazon_ses_notifications_name_their_bounced_recipients() {
    let note = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"Kim@Customer.example","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"source":"orders@shop.example"}}"#;
    let email = format!(
        "From: no-reply@sns.amazonaws.com\r\nSubject: AWS Notification Message\r\n\r\n{note}\r\n\r\n--\r\nIf you wish to stop receiving notifications ...\r\n"
    );
    let sns = format!(
        "From: relay@shop.example\r\nSubject: SNS\r\n\r\n{{\"Type\" : \"Notification\", \"Message\" : {}}}\r\n",
        serde_json::to_string(note).unwrap()
    );
    for raw in [email, sns] {
        let b = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            summary(&b),
            [(
                "kim@customer.example",
                "failed",
                Some("5.1.1"),
                BounceClass::Hard
            )],
            "{raw}"
        );
    }
    // A delivery notification is not a bounce.
    let delivered = "From: no-reply@sns.amazonaws.com\r\nSubject: AWS Notification Message\r\n\r\n\
        {\"notificationType\":\"Delivery\",\"delivery\":{\"recipients\":[\"kim@customer.example\"]}}\r\n";
    assert!(parse(delivered.as_bytes()).unwrap().recipients.is_empty());
}

#[test]
fn a_bounce_naming_nobody_still_says_what_failed() {
    let raw = "From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable mail\r\n\r\n\
        Your message could not be stored for the recipient: the mailbox is full.\r\n";
    let b = parse(raw.as_bytes()).unwrap();
    assert!(b.recipients.is_empty());
    let u = b.unnamed.expect("the failure without its recipient");
    assert_eq!(
        (u.class, u.status.as_str()),
        (BounceClass::MailboxFull, "5.0.0")
    );
    // Mail that doesn't present itself as a bounce has none.
    let chat =
        parse(b"From: pat@friend.example\r\nSubject: hi\r\n\r\nmy mailbox is full\r\n").unwrap();
    assert_eq!(chat.unnamed, None);
}
