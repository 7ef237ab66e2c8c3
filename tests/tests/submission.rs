//! SMTP submission end to end: lettre (what shop platforms' PHP mailers
//! amount to) and a hand-driven client against the real binary, the
//! message then delivered to a real SMTP sink.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mailroom_e2e::dkim::Published;
use mailroom_e2e::relay::{self, Relay, create_key, keygen, run_cli};
use mailroom_e2e::smtp_client::Client;
use mailroom_e2e::smtp_sink::SmtpSink;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    database: String,
    relay: Relay,
    smtp: std::net::SocketAddr,
    cert_pem: String,
    published: Published,
    sink: SmtpSink,
}

/// A relay with a submission listener (TLS from a self-signed
/// certificate for `localhost`, its own: the HTTP API stays plain), both streams delivering to a sink,
/// `shop.example` signed with an Ed25519 key. `top` goes at the top of
/// the config, `extra` under `[submission]`, `marketing` under
/// `[streams.marketing]`.
async fn setup(top: &str, extra: &str, marketing: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let database = relay::database(d, false).await.unwrap();
    let sink = SmtpSink::start().await;
    let key = keygen(d, "shop.example", "s1", "ed25519");
    let published = Published::default();
    published.publish(&key.dns_name, &key.dns_value);
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(d.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(d.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    let config = d.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{database}\"\nhostname = \"relay.test\"\n{top}\n\
             [[dkim]]\ndomain = \"shop.example\"\nselector = \"s1\"\nkey = \"{k}\"\n\
             [submission]\nlisten = [\"127.0.0.1:0\"]\n\
             tls_cert = \"{cert}\"\ntls_key = \"{tkey}\"\n{extra}\n{routes}",
            cert = d.join("cert.pem").display(),
            tkey = d.join("key.pem").display(),
            k = key.path.display(),
            routes = relay::both_streams_to(&sink.url()).replace(
                "[streams.marketing]\n",
                &format!("[streams.marketing]\n{marketing}\n")
            ),
        ),
    )
    .unwrap();
    let relay = Relay::start(&config, &[]);
    let smtp = relay.listening("SMTP submission").await;
    Setup {
        _dir: dir,
        config,
        database,
        relay,
        smtp,
        cert_pem: c.cert.pem(),
        published,
        sink,
    }
}

fn transport(s: &Setup, tls: &str, key: &str) -> AsyncSmtpTransport<Tokio1Executor> {
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(s.cert_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let tls = match tls {
        "starttls" => Tls::Required(params),
        "implicit" => Tls::Wrapper(params),
        _ => Tls::None,
    };
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(s.smtp.port())
        .tls(tls)
        .credentials(Credentials::new("apikey".into(), key.into()))
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

fn message(message_id: &str, stream_header: Option<&str>) -> Message {
    let mut b = Message::builder()
        .from("Shop <orders@shop.example>".parse().unwrap())
        .to("ana@customer.example".parse().unwrap())
        .bcc("hidden@customer.example".parse().unwrap())
        .subject("Your order 1001")
        .message_id(Some(message_id.into()));
    if let Some(stream) = stream_header {
        b = b.raw_header(lettre::message::header::HeaderValue::new(
            lettre::message::header::HeaderName::new_from_ascii_str("X-Mailroom-Stream"),
            stream.into(),
        ));
    }
    b.header(ContentType::TEXT_PLAIN)
        .body("Thank you for your order.\r\n".to_string())
        .unwrap()
}

#[tokio::test]
async fn lettre_submits_over_starttls_and_implicit_tls_on_one_port_and_the_mail_arrives_signed() {
    let s = setup("", "", "").await;
    let key = create_key(&s.database, "shop", &["transactional"]);
    for (i, tls) in ["starttls", "implicit"].into_iter().enumerate() {
        let id = format!("<order-1001-{i}@shop.example>");
        let reply = transport(&s, tls, &key)
            .send(message(&id, None))
            .await
            .unwrap_or_else(|e| panic!("{tls}: {e}"));
        let text = reply.message().collect::<Vec<_>>().join(" ");
        assert!(
            reply.code().to_string() == "250" && text.contains("queued as"),
            "{text}"
        );
    }
    let received = s.sink.wait_for(4, Duration::from_secs(30)).await;
    // Two messages, each to the To and the Bcc recipient.
    assert_eq!(received.len(), 4);
    for r in &received {
        let text = r.text();
        assert!(
            text.contains("Message-ID: <order-1001-0@shop.example>")
                || text.contains("Message-ID: <order-1001-1@shop.example>"),
            "the client's Message-ID is kept: {text}"
        );
        // The Bcc recipient gets a copy; no header names it.
        assert!(
            !text.contains("hidden@customer.example"),
            "Bcc stripped: {text}"
        );
        assert!(
            r.mail_from.starts_with("bounces+"),
            "VERP return path: {}",
            r.mail_from
        );
        let signatures = s.published.verify(&r.data).await;
        assert_eq!(signatures[0].0, "shop.example");
    }
}

fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or(reply)
}

#[tokio::test]
async fn auth_streams_suppression_and_the_lint_gate_answer_with_precise_codes() {
    let s = setup(
        "",
        "allow_plaintext_auth = true\nmax_recipients = 5",
        "lint_max_score = 10.0",
    )
    .await;
    let transactional = create_key(&s.database, "shop", &["transactional"]);
    let both = create_key(&s.database, "both", &["transactional", "marketing"]);
    let (code_, out, err) = run_cli(&[
        "suppressions",
        "add",
        "--database",
        &s.database,
        "gone@customer.example",
        "--reason",
        "hard_bounce",
    ]);
    assert_eq!(code_, 0, "{out}{err}");
    // The relay's suppression filter picks additions up every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut c, greeting) = Client::connect(s.smtp).await;
    assert!(greeting.starts_with("220 relay.test"), "{greeting}");
    let ehlo = c.cmd("EHLO shop.example").await;
    for ext in [
        "STARTTLS",
        "AUTH PLAIN LOGIN",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "SIZE",
    ] {
        assert!(ehlo.contains(ext), "{ext} in {ehlo}");
    }
    // Never an open relay.
    assert!(
        c.cmd("MAIL FROM:<x@shop.example>")
            .await
            .starts_with("530 5.7.0")
    );
    assert!(c.auth("mr_bogus_key").await.starts_with("535 5.7.8"));
    assert!(c.auth(&transactional).await.starts_with("235 "));
    assert!(c.cmd("MAIL FROM:<x@shop.example>").await.starts_with("250"));
    let r = c.cmd("RCPT TO:<gone@customer.example>").await;
    assert!(
        r.starts_with("550 5.7.1") && r.contains("suppression list"),
        "{r}"
    );
    assert!(c.cmd("RCPT TO:<not an address>").await.starts_with("501"));
    assert!(
        c.cmd("RCPT TO:<ana@customer.example>")
            .await
            .starts_with("250")
    );
    for i in 0..4 {
        c.cmd(&format!("RCPT TO:<r{i}@customer.example>")).await;
    }
    let r = c.cmd("RCPT TO:<r9@customer.example>").await;
    assert!(r.starts_with("452 4.5.3"), "{r}");
    // The key is transactional only; a message asking for marketing is refused.
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"From: orders@shop.example\r\nTo: ana@customer.example\r\nX-Mailroom-Stream: marketing\r\nSubject: hi\r\n\r\nhello\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("550 5.7.1") && r.contains("marketing"), "{r}");
    assert!(c.cmd("QUIT").await.starts_with("221"));

    // A key for both streams picks marketing with the header; the lint
    // gate then refuses a spammy message, naming its findings.
    let (mut c, _) = Client::connect(s.smtp).await;
    c.cmd("EHLO shop.example").await;
    assert!(c.auth(&both).await.starts_with("235"));
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<ana@customer.example>").await;
    c.cmd("DATA").await;
    c.send(b"From: deals@shop.example\r\nTo: ana@customer.example\r\nX-PM-Message-Stream: broadcast\r\nSubject: FREE!!! ACT NOW!!! 100% FREE CASH $$$\r\nContent-Type: text/html\r\n\r\n<html><body><p style=\"color:#fff\">FREE CASH click here now winner</p><a href=\"http://192.0.2.1/x\">CLICK HERE</a></body></html>\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("550 5.7.1") && r.contains("lint gate"), "{r}");
    // A clean one goes through on marketing, with list headers added.
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<ana@customer.example>").await;
    c.cmd("DATA").await;
    c.send(b"From: news@shop.example\r\nTo: ana@customer.example\r\nX-Mailroom-Stream: marketing\r\nSubject: Our autumn collection\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <autumn@shop.example>\r\n\r\nHello Ana, the autumn collection is in the shop.\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
    let id = r.trim().rsplit(' ').next().unwrap().to_owned();
    let (status, body) = s.relay.get_json(&format!("/v1/messages/{id}"), &both).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stream"], "marketing", "{body}");
    let got = s
        .sink
        .wait_for_copy(&id, "ana@customer.example", Duration::from_secs(30))
        .await;
    let text = got.text();
    assert!(text.contains("Message-ID: <autumn@shop.example>"), "{text}");
    assert!(text.contains("List-Unsubscribe:"), "{text}");
    assert!(!text.contains("X-Mailroom-Stream"), "{text}");
    assert!(
        text.contains("Date: Tue, 01 Dec 2026 10:00:00 +0000"),
        "{text}"
    );
}

#[tokio::test]
async fn plaintext_auth_is_refused_and_hostile_input_gets_errors_not_a_crash() {
    let s = setup("max_request_bytes = 100000", "max_recipients = 10000", "").await;
    let key = create_key(&s.database, "shop", &["transactional"]);

    let (mut c, _) = Client::connect(s.smtp).await;
    let ehlo = c.cmd("EHLO x").await;
    assert!(!ehlo.contains("AUTH"), "no AUTH offered before TLS: {ehlo}");
    assert!(c.auth(&key).await.starts_with("538 5.7.11"));
    // Garbage and a 1 MB line: errors, then the session still works.
    assert!(code(&c.cmd("\u{1}\u{2}garbage").await).starts_with('5'));
    c.send(&vec![b'A'; 1 << 20]).await;
    c.send(b"\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("500 5.5.2 Line too long"), "{r}");
    assert!(c.cmd("NOOP").await.starts_with("250"), "still answering");
    c.cmd("QUIT").await;

    // Over STARTTLS: 10,000 RCPT pipelined, a message with bare LFs, one
    // too big, and a client that stops mid-DATA.
    let tcp = TcpStream::connect(s.smtp).await.unwrap();
    let mut tls = starttls(tcp, &s.cert_pem).await;
    tls.cmd("EHLO x").await;
    assert!(tls.auth(&key).await.starts_with("235"));
    tls.cmd("MAIL FROM:<>").await;
    let mut pipelined = Vec::new();
    for i in 0..10_000 {
        pipelined.extend_from_slice(format!("RCPT TO:<r{i}@customer.example>\r\n").as_bytes());
    }
    tls.send(&pipelined).await;
    for _ in 0..10_000 {
        assert!(tls.reply().await.starts_with("250"));
    }
    tls.cmd("RSET").await;
    tls.cmd("MAIL FROM:<>").await;
    tls.cmd("RCPT TO:<lf@customer.example>").await;
    tls.cmd("DATA").await;
    // A bare "\n.\n" does not end the message (no SMTP smuggling).
    tls.send(b"From: orders@shop.example\r\nTo: lf@customer.example\r\nSubject: lf\r\n\r\nline\n.\nMAIL FROM:<smuggled@evil.example>\n\r\n.\r\n").await;
    let r = tls.reply().await;
    assert!(r.starts_with("250"), "{r}");
    tls.cmd("MAIL FROM:<>").await;
    tls.cmd("RCPT TO:<big@customer.example>").await;
    tls.cmd("DATA").await;
    let mut big = b"From: orders@shop.example\r\nSubject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 200_000));
    big.extend_from_slice(b"\r\n.\r\n");
    tls.send(&big).await;
    let r = tls.reply().await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    tls.cmd("MAIL FROM:<>").await;
    tls.cmd("RCPT TO:<cut@customer.example>").await;
    tls.cmd("DATA").await;
    tls.send(b"From: orders@shop.example\r\nSubject: cut\r\n\r\nhalf a mess")
        .await;
    drop(tls);

    let received = s.sink.wait_for(1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = s.sink.received();
    assert_eq!(
        all.len(),
        1,
        "only the LF message is delivered: {:?}",
        all.iter().map(|r| r.rcpt_to.clone()).collect::<Vec<_>>()
    );
    let text = received[0].text();
    assert!(
        text.contains("line\r\n.\r\nMAIL FROM:<smuggled@evil.example>"),
        "{text}"
    );
}

/// A TLS client after STARTTLS on a plain connection.
async fn starttls(tcp: TcpStream, pem: &str) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut plain = BufReader::new(tcp);
    let mut line = String::new();
    plain.read_line(&mut line).await.unwrap();
    plain.get_mut().write_all(b"EHLO x\r\n").await.unwrap();
    loop {
        line.clear();
        plain.read_line(&mut line).await.unwrap();
        if line.as_bytes()[3] == b' ' {
            break;
        }
    }
    plain.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
    line.clear();
    plain.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220 2.0.0"), "{line}");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = connector
        .connect("localhost".try_into().unwrap(), plain.into_inner())
        .await
        .unwrap();
    Client::new(stream)
}

#[tokio::test]
async fn a_message_answered_250_survives_a_sigkill() {
    // Delivery paused: the message can only be in the store.
    let s = setup("", "allow_plaintext_auth = true", "").await;
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace(
            "[streams.transactional]\n",
            "[streams.transactional]\npaused = true\n",
        ),
    )
    .unwrap();
    let Setup {
        relay,
        sink,
        config,
        database,
        _dir,
        ..
    } = s;
    relay.kill();
    let relay = Relay::start(&config, &[]);
    let smtp = relay.listening("SMTP submission").await;
    let key = create_key(&database, "shop", &["transactional"]);
    let (mut c, _) = Client::connect(smtp).await;
    c.cmd("EHLO x").await;
    assert!(c.auth(&key).await.starts_with("235"));
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<kept@customer.example>").await;
    c.cmd("DATA").await;
    c.send(b"From: orders@shop.example\r\nTo: kept@customer.example\r\nSubject: kept\r\n\r\nkept\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
    let id = r.trim().rsplit(' ').next().unwrap().to_owned();
    // Killed at once; restarted with delivery on.
    relay.kill();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("paused = true\n", "")).unwrap();
    let _relay = Relay::start(&config, &[]);
    let got = sink
        .wait_for_copy(&id, "kept@customer.example", Duration::from_secs(30))
        .await;
    assert!(got.text().contains("Subject: kept"));
}

/// Failed AUTH counts towards the same per-address lockout as bad API
/// keys over HTTP.
#[tokio::test]
async fn failed_auth_shares_the_http_lockout() {
    let s = setup(
        "[limits]\nauth_failures = 3",
        "allow_plaintext_auth = true",
        "",
    )
    .await;
    let key = create_key(&s.database, "shop", &["transactional", "lists"]);
    let (mut c, _) = Client::connect(s.smtp).await;
    c.cmd("EHLO x").await;
    for _ in 0..3 {
        assert!(c.auth("mr_wrong").await.starts_with("535 5.7.8"));
    }
    let r = c.auth(&key).await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    let (status, body) = s.relay.get_json("/v1/lists", &key).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("locked_out")),
        "{body}"
    );
}

/// The return-path MX: a bounce for mail sent through submission, sent
/// to its VERP address, suppresses the recipient the VERP names; a
/// `mailto:` unsubscribe works the same way; every other address, and
/// AUTH, is refused.
#[tokio::test]
async fn the_inbound_mx_takes_bounces_and_unsubscribes_for_its_own_addresses_only() {
    let s = setup(
        "[inbound]\nlisten = [\"127.0.0.1:0\"]\nfeedback_addresses = [\"fbl@bounces.shop.example\"]",
        "allow_plaintext_auth = true",
        "return_path = \"bounces.shop.example\"",
    )
    .await;
    let mx = s.relay.listening("SMTP inbound").await;
    let key = create_key(&s.database, "shop", &["marketing", "suppressions"]);

    // Two marketing messages out, one to each of two addresses.
    let mut ids = Vec::new();
    for to in ["ana@customer.example", "ben@customer.example"] {
        let (mut c, _) = Client::connect(s.smtp).await;
        c.cmd("EHLO x").await;
        assert!(c.auth(&key).await.starts_with("235"));
        c.cmd("MAIL FROM:<>").await;
        c.cmd(&format!("RCPT TO:<{to}>")).await;
        c.cmd("DATA").await;
        c.send(
            format!(
                "From: news@shop.example\r\nTo: {to}\r\nSubject: News\r\n\r\nNews for you.\r\n.\r\n"
            )
            .as_bytes(),
        )
        .await;
        let r = c.reply().await;
        assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
        ids.push(r.trim().rsplit(' ').next().unwrap().to_owned());
    }
    let ana = s
        .sink
        .wait_for_copy(&ids[0], "ana@customer.example", Duration::from_secs(30))
        .await;
    let ben = s
        .sink
        .wait_for_copy(&ids[1], "ben@customer.example", Duration::from_secs(30))
        .await;
    assert!(
        ana.mail_from.ends_with("@bounces.shop.example"),
        "{}",
        ana.mail_from
    );

    let (mut c, greeting) = Client::connect(mx).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let ehlo = c.cmd("EHLO mx.customer.example").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(c.auth(&key).await.starts_with("503"));
    c.cmd("MAIL FROM:<>").await;
    for foreign in [
        "someone@elsewhere.example",
        "postmaster@shop.example",
        "random@bounces.shop.example",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{foreign}>")).await;
        assert!(r.starts_with("550 5.1.1"), "{foreign}: {r}");
    }
    // A hard bounce for Ana's copy, to its VERP address; it also names Ben,
    // whom it can't speak for.
    let r = c.cmd(&format!("RCPT TO:<{}>", ana.mail_from)).await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(format!(
        "From: MAILER-DAEMON@mx.customer.example\r\nTo: <{}>\r\nSubject: Undelivered Mail\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.example\r\n\r\n\
         Final-Recipient: rfc822; ana@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n\
         Final-Recipient: rfc822; ben@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--s--\r\n.\r\n",
        ana.mail_from
    ).as_bytes())
    .await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0"), "{r}");

    // Ben unsubscribes by mail, to the mailto: address of his copy.
    let list = ben
        .text()
        .lines()
        .find(|l| l.starts_with("List-Unsubscribe:"))
        .unwrap()
        .to_owned();
    let mailto = list
        .split("<mailto:")
        .nth(1)
        .and_then(|m| m.split('?').next())
        .unwrap()
        .to_owned();
    c.cmd("MAIL FROM:<ben@customer.example>").await;
    assert!(
        c.cmd(&format!("RCPT TO:<{mailto}>"))
            .await
            .starts_with("250")
    );
    c.cmd("DATA").await;
    c.send(
        format!(
            "From: ben@customer.example\r\nTo: <{mailto}>\r\nSubject: unsubscribe\r\n\r\n\r\n.\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(c.reply().await.starts_with("250"));
    c.cmd("QUIT").await;

    let (status, body) = s.relay.get_json("/v1/suppressions", &key).await;
    assert_eq!(status, 200, "{body}");
    let entries: Vec<(String, String)> = body["suppressions"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        entries.contains(&("ana@customer.example".into(), "hard_bounce".into())),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("ben@customer.example".into(), "unsubscribe".into())),
        "{entries:?}"
    );
    assert!(
        !entries.contains(&("ben@customer.example".into(), "hard_bounce".into())),
        "the bounce for Ana's copy doesn't suppress Ben: {entries:?}"
    );
}

/// The submission certificate is reloaded on SIGHUP, like the HTTP one.
#[tokio::test]
async fn the_submission_certificate_is_reloaded_on_sighup() {
    let s = setup("", "", "").await;
    let tcp = TcpStream::connect(s.smtp).await.unwrap();
    let mut c = starttls(tcp, &s.cert_pem).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));

    let next = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = s.config.parent().unwrap();
    std::fs::write(dir.join("cert.pem"), next.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), next.signing_key.serialize_pem()).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &s.relay.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if s.relay
            .log()
            .iter()
            .any(|l| l.contains("TLS certificate reloaded"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only a client trusting the new certificate gets through now.
    let tcp = TcpStream::connect(s.smtp).await.unwrap();
    let mut c = starttls(tcp, &next.cert.pem()).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

/// Random bytes, SMTP verbs and line breaks mixed, on many connections:
/// the relay answers or closes, and keeps serving.
#[tokio::test]
async fn random_input_never_takes_the_listener_down() {
    let s = setup("", "allow_plaintext_auth = true", "").await;
    let key = create_key(&s.database, "shop", &["transactional"]);
    let words: [&[u8]; 12] = [
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"RCPT TO:<c@d.example>\r\n",
        b"DATA\r\n",
        b"\r\n.\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"STARTTLS\r\n",
        b"BDAT 10 LAST\r\n",
        b"\n.\n",
        b"\r\n",
        b"\0\xff\xfe",
    ];
    // xorshift: reproducible without a dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        let mut input = Vec::new();
        for _ in 0..(rnd() % 40) {
            match rnd() % 3 {
                0 => input.extend_from_slice(words[(rnd() % 12) as usize]),
                _ => input.extend((0..rnd() % 64).map(|_| (rnd() & 0xff) as u8)),
            }
        }
        let mut tcp = TcpStream::connect(s.smtp).await.unwrap();
        let _ = tcp.write_all(&input).await;
        let _ = tcp.shutdown().await;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink),
        )
        .await;
        assert!(read.is_ok(), "the session ended after the client's EOF");
    }
    let (mut c, _) = Client::connect(s.smtp).await;
    c.cmd("EHLO x").await;
    assert!(c.auth(&key).await.starts_with("235"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

/// One client can't hold every session: past `max_connections_per_client`
/// it is told to come back later, and a closed session frees its place.
#[tokio::test]
async fn connections_per_client_are_limited() {
    let s = setup("", "max_connections_per_client = 2", "").await;
    let (mut a, ga) = Client::connect(s.smtp).await;
    let (_b, gb) = Client::connect(s.smtp).await;
    assert!(ga.starts_with("220") && gb.starts_with("220"));
    let (_c, gc) = Client::connect(s.smtp).await;
    assert!(gc.starts_with("421 4.7.0"), "{gc}");
    a.cmd("QUIT").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_d, gd) = Client::connect(s.smtp).await;
    assert!(gd.starts_with("220"), "{gd}");
}

/// A client that goes quiet, between commands or inside DATA, is closed
/// after its timeout with a 421, and nothing half-sent is stored.
#[tokio::test]
async fn slow_clients_are_timed_out() {
    let s = setup(
        "",
        "allow_plaintext_auth = true\ncommand_timeout = \"1s\"\ndata_timeout = \"2s\"",
        "",
    )
    .await;
    let key = create_key(&s.database, "shop", &["transactional"]);
    let (mut idle, _) = Client::connect(s.smtp).await;
    let t = std::time::Instant::now();
    let r = idle.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Trickling DATA a byte at a time, each within the command timeout,
    // still hits the DATA timeout.
    let (mut c, _) = Client::connect(s.smtp).await;
    c.cmd("EHLO x").await;
    assert!(c.auth(&key).await.starts_with("235"));
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<slow@customer.example>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"From: orders@shop.example\r\nSubject: slow\r\n\r\n")
        .await;
    let t = std::time::Instant::now();
    let mut closed = false;
    while t.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if c.writer.write_all(b"x").await.is_err() || c.writer.flush().await.is_err() {
            closed = true;
            break;
        }
        let mut line = String::new();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(10), c.reader.read_line(&mut line)).await
        {
            assert!(n == 0 || line.starts_with("421 4.4.2"), "{line}");
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.sink.count(), 0);
}
