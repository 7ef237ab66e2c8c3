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
fn an_unsubscribe_request_is_neither_a_bounce_nor_a_complaint() {
    // Apple Mail's request to a List-Unsubscribe mailto: address, marked
    // auto-replied like a vacation reply.
    let apple = b"From: reader@icloud.example\r\nTo: unsubscribe+tok@shop.example\r\n\
        Subject: unsubscribe\r\nAuto-Submitted: auto-replied\r\nX-Apple-Unsubscribe: true\r\n\r\n\
        Apple Mail sent this email to unsubscribe from the message \"Spring sale\".\r\n";
    // Another client's: only the subject the RFC 2369 link asked for.
    let plain = b"From: reader@mail.example\r\nTo: unsubscribe+tok@shop.example\r\n\
        Subject: Unsubscribe\r\n\r\nThis message was automatically generated.\r\n";
    for raw in [&apple[..], &plain[..]] {
        let b = parse(raw).expect("a message");
        assert_eq!(b.kind, Kind::UnsubscribeRequest);
        assert!(b.recipients.is_empty());
    }
    // A vacation reply stays one, and a bounce about "unsubscribe" mail
    // is still a bounce.
    assert_eq!(load("vacation-auto-reply.eml").kind, Kind::AutoReply);
    let bounce = b"From: MAILER-DAEMON@mx.example\r\nTo: bounces@shop.example\r\n\
        Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\r\n\
        <gone@customer.example>: host mx.customer.example said: 550 5.1.1 User unknown\r\n";
    assert_eq!(parse(bounce).expect("a bounce").kind, Kind::NonStandard);
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
    // A report of 1,000 recipients without a diagnostic, each explained
    // from a 20 MB notice that never names them.
    let mut silent = b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\n"
        .to_vec();
    while silent.len() < SIZE {
        silent.extend_from_slice(
            b"The following list of recipients failed: somebody@else.example\r\n",
        );
    }
    silent.extend_from_slice(b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n");
    for i in 0..1000 {
        silent.extend_from_slice(
            format!(
                "Final-Recipient: rfc822; r{i}@d.example\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    silent.extend_from_slice(b"--b--\r\n");
    // A forwarded bounce, every line quoted: read twice (as is, unquoted).
    let mut quoted = b"From: pat@shop.example\r\nSubject: Fwd: Returned mail\r\n\r\n".to_vec();
    while quoted.len() < SIZE {
        quoted.extend_from_slice(
            b"> did not reach the following recipient(s):\r\n> x@y.example on today\r\n",
        );
    }
    for (name, raw) in [
        ("dsn", &dsn),
        ("text", &text),
        ("one line", &line),
        ("silent report", &silent),
        ("quoted", &quoted),
    ] {
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

/// `headers` and `body` (LF line ends) as one message with CRLF.
fn message(headers: &str, body: &str) -> Vec<u8> {
    format!("{headers}\n\n{body}")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn failed(raw: &[u8]) -> Vec<(String, String, Option<String>, BounceClass)> {
    parse(raw)
        .unwrap()
        .recipients
        .into_iter()
        .map(|r| (r.address, r.action, r.status, r.class))
        .collect()
}

#[test]
fn a_notice_listing_its_failed_recipients_one_to_a_line_is_read() {
    let from = "From: Mail Delivery <mailer-daemon@mx.example>\nSubject: Delivery status notification: error";
    // `address: reason` lines under the list's heading.
    let raw = message(
        from,
        "An error occurred delivering a message for the following\n  list of recipients:\n\n\
         kim@customer.example: 550 5.1.1 No such mailbox\n\
         lee@other.example: Domain does not exist\n\n\
         Below is a copy of the original message:\n\nTo: someone@else.example\n",
    );
    let got = failed(&raw);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].3),
        ("kim@customer.example", BounceClass::Hard)
    );
    assert_eq!(got[0].2.as_deref(), Some("5.1.1"));
    assert_eq!(
        (got[1].0.as_str(), got[1].3),
        ("lee@other.example", BounceClass::Hard)
    );

    // The address alone, then "because:" and the reason below the list.
    let raw = message(
        "From: Postmaster@corp.example\nSubject: DELIVERY FAILURE: User kim not listed",
        "Your message\n  Subject: Order 1001\nwas not delivered to:\n\n  kim@corp.example\n\n\
         because:\n\n  User kim (kim@corp.example) not listed in the directory\n",
    );
    assert_eq!(failed(&raw)[0].3, BounceClass::Hard);

    // "address on DATE", the reason indented below it.
    let raw = message(
        "From: System Administrator <postmaster@corp.example>\nSubject: Undeliverable: Order 1001",
        "Your message\n  To: kim@corp.example\ndid not reach the following recipient(s):\n\n\
         kim@corp.example on Thu, 29 Apr 2010 00:00:00 -0000\n    The recipient name is not recognized\n",
    );
    let got = failed(&raw);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].3, BounceClass::Hard);

    // The reason first, then the address (IMail).
    let raw = message(
        "From: \"Postmaster\" <postmaster@isp.example>\nSubject: Undeliverable Mail",
        "User mailbox exceeds allowed size: kim@isp.example\n\nOriginal message follows.\n",
    );
    assert_eq!(failed(&raw)[0].3, BounceClass::MailboxFull);
}

#[test]
fn a_delay_warning_reports_delayed_not_failed() {
    let raw = message(
        "From: Mail Delivery Subsystem <mailer-daemon@mail.example>\nSubject: Delivery Status Notification (Delay)",
        "THIS IS A WARNING MESSAGE ONLY.\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n\
         Delivery to the following recipient has been delayed:\n\n     kim@customer.example\n\n\
         Message will be retried for 2 more day(s)\n",
    );
    let got = failed(&raw);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "delayed");
    assert_eq!(got[0].2.as_deref(), Some("4.0.0"));
    assert_eq!(got[0].3, BounceClass::Transient);
}

#[test]
fn report_fields_in_a_text_body_and_a_quoted_forwarded_bounce_are_read() {
    // A multipart/report whose MIME structure was lost: the fields are text.
    let raw = message(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\nSubject: Returned mail: see transcript for details",
        "   ----- Transcript of session follows -----\n550 5.1.1 <kim@customer.example>... User unknown\n\n\
         Reporting-MTA: dns; mx.example\n\nFinal-Recipient: RFC822; kim@customer.example\n\
         Action: failed\nStatus: 5.1.1\n",
    );
    assert_eq!(
        failed(&raw),
        [(
            "kim@customer.example".to_string(),
            "failed".to_string(),
            Some("5.1.1".to_string()),
            BounceClass::Hard
        )]
    );
    // Forwarded by a person, every line quoted.
    let raw = message(
        "From: Pat <pat@shop.example>\nSubject: Fwd: Returned mail: see transcript for details",
        "See below.\n\n> From: Mail Delivery Subsystem <MAILER-DAEMON>\n> Subject: Returned mail\n>\n\
         >    ----- The following addresses had permanent fatal errors -----\n> <kim@customer.example>\n\
         >     (reason: 550 5.1.1 <kim@customer.example>... User unknown)\n>\n> bye\n",
    );
    let got = failed(&raw);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].3),
        ("kim@customer.example", BounceClass::Hard)
    );
}

#[test]
fn a_report_without_a_diagnostic_takes_its_reason_from_the_notice() {
    let raw = message(
        "From: Mailer Daemon <MAILER-DAEMON@mx.example>\nSubject: Delivery status notification: failed\n\
         MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"",
        "--b\nContent-Type: text/plain\n\nThe following list of recipients failed:\n\n\
         kim@customer.example: 550 5.7.26 Multiple authentication checks failed\n\n\
         --b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n\
         Final-Recipient: rfc822; kim@customer.example\nAction: failed\nStatus: 5.0.0\n\n--b--\n",
    );
    let b = parse(&raw).unwrap();
    assert_eq!(b.kind, Kind::Dsn);
    let r = &b.recipients[0];
    assert_eq!(
        r.status.as_deref(),
        Some("5.7.26"),
        "the diagnostic's code is more specific"
    );
    assert_eq!(r.reason.map(|r| r.as_str()), Some("auth_failure"));
    assert_eq!(r.class, BounceClass::Policy);
}

#[test]
fn the_returned_originals_one_recipient_stands_in_when_the_notice_names_none() {
    let notice = "   ----- Transcript of session follows -----\n\
                  421 mx.customer.example (smtp)... Deferred: Connection timed out\n\n\
                  \x20  ----- Unsent message follows -----\nFrom: orders@shop.example\n";
    let headers = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\nSubject: Returned mail: Cannot send message for 4 days";
    let one = message(
        headers,
        &format!("{notice}To: kim@customer.example\nSubject: Order\n\nHi\n"),
    );
    let got = failed(&one);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "kim@customer.example");
    // Sent to two: which one failed is anybody's guess.
    let two = message(
        headers,
        &format!("{notice}To: kim@customer.example, lee@customer.example\nSubject: Order\n\nHi\n"),
    );
    assert!(failed(&two).is_empty());
}

#[test]
fn addresses_in_ordinary_mail_are_not_failed_recipients() {
    // A newsletter footer: the same shape as a notice's list, but nothing
    // says a delivery failed.
    let raw = message(
        "From: Weekly <news@list.example>\nSubject: This week's issue",
        "Lots of news.\n\nTo unsubscribe, please e-mail the following address:\n      leave-1234@list.example\n\n\
         Contact us:\n<editor@list.example>\n",
    );
    assert!(failed(&raw).is_empty());
    // An out-of-office reply quoting a session transcript.
    let raw = message(
        "From: Pat <pat@friend.example>\nSubject: Re: mail problem",
        "My server said:\n>>> RCPT To:<kim@customer.example>\n<<< 550 5.1.1 User unknown\nAny idea?\n",
    );
    assert!(failed(&raw).is_empty());
}

/// Inputs the fuzzer once crashed the reader with (`tests/fuzz-found/`):
/// each reads as a message, without a panic.
#[test]
fn inputs_the_fuzzer_found_read_without_a_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-found");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).expect("tests/fuzz-found") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).expect("read");
            let b = parse(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for r in &b.recipients {
                assert!(list_hygiene::email::EmailAddress::parse(&r.address).is_ok());
            }
            read += 1;
        }
    }
    assert!(read >= 1);
}
