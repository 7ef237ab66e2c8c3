//! `mailroom check-domain` against a real authoritative DNS server on
//! loopback, one zone per way a sending domain is commonly misconfigured,
//! and `GET /v1/domains` on a running relay.

use std::net::SocketAddr;
use std::path::Path;

use mailroom_e2e::dns::{Zone, serve};
use mailroom_e2e::relay::{self, DkimKey, Relay, create_key, keygen, run_cli};
use serde_json::Value;

const SOURCE: &str = "192.0.2.10";
const HELO: &str = "mta.good.example";

/// Records every scenario shares: the relay's address with forward-
/// confirmed reverse DNS, and a mail host for return paths.
fn base_zone() -> Zone {
    let mut z = Zone::new();
    z.addr(HELO, SOURCE.parse().unwrap())
        .ptr(SOURCE.parse().unwrap(), HELO)
        .addr("mx.good.example", "192.0.2.25".parse().unwrap());
    z
}

/// Everything a domain needs to pass, except its DKIM key.
fn good_domain(z: &mut Zone, domain: &str) {
    z.txt(domain, &format!("v=spf1 ip4:{SOURCE} -all"))
        .txt(
            &format!("_dmarc.{domain}"),
            &format!("v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"),
        )
        .mx(domain, 10, "mx.good.example")
        .txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=20261201")
        .txt(
            &format!("_smtp._tls.{domain}"),
            &format!("v=TLSRPTv1; rua=mailto:tls@{domain}"),
        );
}

fn publish(z: &mut Zone, key: &DkimKey) {
    z.txt(&key.dns_name, &key.dns_value);
}

/// A config signing `domain` with `key`, sending from SOURCE as HELO,
/// with `rest` appended (tables).
fn config(dir: &Path, name: &str, domain: &str, key: &DkimKey, rest: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let selector = key
        .dns_name
        .split("._domainkey.")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(
        &path,
        format!(
            "hostname = \"{HELO}\"\npublic_url = \"https://mail.{domain}\"\n\
             [[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey = \"{}\"\n\
             [streams.transactional]\nsource_address = \"{SOURCE}\"\n\
             [streams.marketing]\nsource_address = \"{SOURCE}\"\n{rest}",
            key.path.display()
        ),
    )
    .unwrap();
    path
}

/// Runs check-domain (off the async runtime, which serves the DNS zone);
/// returns the exit code and the report.
async fn check(config: &Path, dns: SocketAddr, extra: &[&str]) -> (i32, Value, String) {
    let mut args: Vec<String> = [
        "check-domain",
        "--config",
        config.to_str().unwrap(),
        "--dns-server",
        &dns.to_string(),
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&refs)
    })
    .await
    .unwrap();
    let report = out
        .lines()
        .next()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .unwrap_or(Value::Null);
    (code, report, err)
}

/// The checks with `id`, as (subject, status, summary).
fn checks<'a>(report: &'a Value, id: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {report}"))
        .iter()
        .filter(|c| c["id"] == id)
        .map(|c| {
            (
                c["subject"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["summary"].as_str().unwrap(),
            )
        })
        .collect()
}

fn status_of<'a>(report: &'a Value, id: &str) -> Vec<&'a str> {
    checks(report, id).into_iter().map(|(_, s, _)| s).collect()
}

/// The fix of the first check with `id`.
fn fix_of(report: &Value, id: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .and_then(|c| c["fix"].as_str())
        .unwrap_or_else(|| panic!("no fix for {id} in {report}"))
        .to_owned()
}

fn ready(report: &Value, provider: &str) -> bool {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["provider"] == provider)
        .unwrap()["ready"]
        .as_bool()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_set_up_domain_passes_and_each_common_mistake_is_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut z = base_zone();

    // All good, with an RSA key (an Ed25519-only key is a warning).
    let good = keygen(d, "good.example", "s1", "rsa");
    good_domain(&mut z, "good.example");
    publish(&mut z, &good);

    // No SPF; two SPF records; 11 lookups; an include loop.
    let nospf = keygen(d, "nospf.example", "s1", "ed25519");
    publish(&mut z, &nospf);
    z.txt("_dmarc.nospf.example", "v=DMARC1; p=none");
    let twospf = keygen(d, "twospf.example", "s1", "ed25519");
    publish(&mut z, &twospf);
    z.txt("twospf.example", &format!("v=spf1 ip4:{SOURCE} -all"))
        .txt("twospf.example", "v=spf1 include:_spf.esp.example ~all");
    let many = keygen(d, "many.example", "s1", "ed25519");
    publish(&mut z, &many);
    let terms: Vec<String> = (1..=11).map(|i| format!("a:h{i}.many.example")).collect();
    for i in 1..=11 {
        z.addr(
            &format!("h{i}.many.example"),
            "198.51.100.1".parse().unwrap(),
        );
    }
    // The address last, so evaluation reaches the 11th lookup first.
    z.txt(
        "many.example",
        &format!("v=spf1 {} ip4:{SOURCE} -all", terms.join(" ")),
    );
    let looping = keygen(d, "loop.example", "s1", "ed25519");
    publish(&mut z, &looping);
    z.txt(
        "loop.example",
        &format!("v=spf1 ip4:{SOURCE} include:spf.loop2.example -all"),
    )
    .txt("spf.loop2.example", "v=spf1 include:loop.example -all");

    // Three names that don't exist: void lookups, which mail-auth doesn't
    // count, so its evaluation passes on the ip4: after them.
    let void = keygen(d, "void.example", "s1", "ed25519");
    publish(&mut z, &void);
    z.txt(
        "void.example",
        &format!("v=spf1 a:gone1.void.example a:gone2.void.example mx:gone3.void.example ip4:{SOURCE} -all"),
    );

    // Marketing through a smarthost, and links over plain http.
    let hosted = keygen(d, "hosted.example", "s1", "rsa");
    good_domain(&mut z, "hosted.example");
    publish(&mut z, &hosted);

    let dns = serve(z).await;

    let (code, r, err) = check(&config(d, "good", "good.example", &good, ""), dns, &[]).await;
    assert_eq!(code, 0, "{err}\n{r}");
    for id in [
        "spf.record",
        "spf.lookups",
        "spf.authorizes",
        "dkim.key",
        "dmarc.record",
        "dmarc.reports",
        "dmarc.alignment",
        "return_path.alignment",
        "rdns",
        "transport.mta_sts",
        "transport.tls_rpt",
        "unsubscribe",
    ] {
        let s = status_of(&r, id);
        assert!(
            !s.is_empty() && s.iter().all(|s| *s == "pass"),
            "{id}: {s:?}\n{r}"
        );
    }
    // Without [inbound], that MX host must forward bounces to the webhook.
    assert_eq!(status_of(&r, "return_path.mx"), ["warn"], "{r}");
    assert_eq!(r["status"], "warn");
    let with_mx = config(
        d,
        "good-mx",
        "good.example",
        &good,
        "[inbound]\nlisten = [\"127.0.0.1:25\"]\n",
    );
    let (code, r, _) = check(&with_mx, dns, &[]).await;
    assert_eq!(code, 0);
    assert_eq!(status_of(&r, "return_path.mx"), ["pass"], "{r}");
    // Only BIMI's information is left.
    assert_eq!(r["status"], "info", "{r}");
    for p in ["gmail", "yahoo", "microsoft"] {
        assert!(ready(&r, p), "{p}: {r}");
    }
    // The DKIM probe really was verified against the published key.
    let dkim = checks(&r, "dkim.key");
    assert!(dkim[0].2.contains("RSA-2048"), "{dkim:?}");

    let (code, r, _) = check(&config(d, "nospf", "nospf.example", &nospf, ""), dns, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(status_of(&r, "spf.record"), ["fail"]);
    let fix = fix_of(&r, "spf.record");
    assert_eq!(
        fix,
        format!("nospf.example. TXT \"v=spf1 ip4:{SOURCE} -all\"")
    );
    assert!(!ready(&r, "gmail") && !ready(&r, "microsoft"));
    // p=none is enough for the providers, but not a pass.
    assert_eq!(status_of(&r, "dmarc.record"), ["warn"]);

    let (code, r, _) = check(&config(d, "two", "twospf.example", &twospf, ""), dns, &[]).await;
    assert_eq!(code, 1);
    let spf = checks(&r, "spf.record");
    assert_eq!(spf[0].1, "fail");
    assert!(spf[0].2.starts_with("2 SPF records"), "{spf:?}");

    let (code, r, _) = check(&config(d, "many", "many.example", &many, ""), dns, &[]).await;
    assert_eq!(code, 1);
    let lookups = checks(&r, "spf.lookups");
    assert_eq!(lookups[0].1, "fail");
    assert!(
        lookups[0].2.starts_with("11 DNS-querying terms"),
        "{lookups:?}"
    );
    // mail-auth's evaluation agrees: a permerror, so nothing is authorised.
    let auth = checks(&r, "spf.authorizes");
    assert!(auth[0].2.contains("spf=permerror"), "{auth:?}");

    let (code, r, _) = check(&config(d, "loop", "loop.example", &looping, ""), dns, &[]).await;
    assert_eq!(code, 1);
    let lookups = checks(&r, "spf.lookups");
    assert_eq!(lookups[0].1, "fail");
    assert!(
        lookups[0]
            .2
            .contains("loops: loop.example → spf.loop2.example → loop.example"),
        "{lookups:?}"
    );

    let (code, r, _) = check(&config(d, "void", "void.example", &void, ""), dns, &[]).await;
    assert_eq!(code, 1);
    let lookups = checks(&r, "spf.lookups");
    assert_eq!(lookups[0].1, "fail");
    assert!(
        lookups[0].2.starts_with("3 lookups return nothing"),
        "{lookups:?}"
    );
    assert_eq!(status_of(&r, "spf.authorizes"), ["pass"]);

    let cfg = config(
        d,
        "hosted",
        "hosted.example",
        &hosted,
        "route = \"smtp://smtp.esp.example:587?tls=required\"\n",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("https://mail.hosted.example", "http://mail.hosted.example");
    std::fs::write(&cfg, text).unwrap();
    let (code, r, _) = check(&cfg, dns, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(status_of(&r, "unsubscribe"), ["fail"]);
    let spf = checks(&r, "spf.authorizes");
    assert_eq!(spf.len(), 2, "{spf:?}");
    assert_eq!((spf[0].0, spf[0].1), ("hosted.example (marketing)", "info"));
    assert!(
        spf[0].2.contains("delivers through smtp.esp.example"),
        "{spf:?}"
    );
    assert_eq!(
        (spf[1].0, spf[1].1),
        ("hosted.example from 192.0.2.10", "pass")
    );
    // Each stream aligns its own way: only transactional's SPF is known.
    let alignment = checks(&r, "dmarc.alignment");
    assert_eq!(alignment.len(), 2, "{alignment:?}");
    assert!(!ready(&r, "gmail") && ready(&r, "microsoft"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_dmarc_return_path_and_reverse_dns_mistakes_fail_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut z = base_zone();

    // A published key that isn't the one mailroom signs with.
    let mismatch = keygen(d, "mismatch.example", "s1", "rsa");
    let other = keygen(d, "other-key.example", "s1", "rsa");
    good_domain(&mut z, "mismatch.example");
    z.txt(&mismatch.dns_name, &other.dns_value);

    // The selector is a CNAME to the key at an ESP's zone (what Amazon SES
    // and SendGrid ask customers to publish).
    let cname = keygen(d, "cname.example", "s1", "rsa");
    good_domain(&mut z, "cname.example");
    z.cname(&cname.dns_name, "s1.dkim.esp.example")
        .txt("s1.dkim.esp.example", &cname.dns_value);

    // No DMARC record anywhere.
    let nodmarc = keygen(d, "nodmarc.example", "s1", "rsa");
    z.txt("nodmarc.example", &format!("v=spf1 ip4:{SOURCE} -all"));
    publish(&mut z, &nodmarc);

    // DMARC only on the organisational domain.
    let org = keygen(d, "news.org.example", "s1", "rsa");
    good_domain(&mut z, "news.org.example");
    z.txt("_dmarc.org.example", "v=DMARC1; p=quarantine");
    // good_domain put a record at the subdomain too; this zone has none.
    z.remove("_dmarc.news.org.example");
    publish(&mut z, &org);

    // The return path at an unrelated domain.
    let misaligned = keygen(d, "misaligned.example", "s1", "rsa");
    good_domain(&mut z, "misaligned.example");
    good_domain(&mut z, "bounces.elsewhere.example");
    publish(&mut z, &misaligned);

    // Source addresses without PTR, and with a PTR that doesn't resolve back.
    let ptr = keygen(d, "ptr.example", "s1", "rsa");
    publish(&mut z, &ptr);
    z.txt("ptr.example", "v=spf1 ip4:192.0.2.20 ip4:192.0.2.30 -all")
        .txt("_dmarc.ptr.example", "v=DMARC1; p=reject")
        .mx("ptr.example", 10, "mx.good.example")
        .ptr("192.0.2.30".parse().unwrap(), "mta.wrong.example")
        .addr("mta.wrong.example", "192.0.2.99".parse().unwrap());

    let dns = serve(z).await;

    let (code, r, _) = check(
        &config(d, "mm", "mismatch.example", &mismatch, ""),
        dns,
        &[],
    )
    .await;
    assert_eq!(code, 1);
    let dkim = checks(&r, "dkim.key");
    assert_eq!(dkim[0].1, "fail");
    assert!(dkim[0].2.contains("doesn't match"), "{dkim:?}");
    let fix = fix_of(&r, "dkim.key");
    assert_eq!(
        fix,
        format!("{}. TXT \"{}\"", mismatch.dns_name, mismatch.dns_value)
    );
    // SPF still aligns, so DMARC passes, on SPF alone.
    assert_eq!(status_of(&r, "dmarc.alignment"), ["warn"], "{r}");
    assert_eq!(
        checks(&r, "dmarc.alignment")[0].0,
        "transactional and marketing streams"
    );

    let (code, r, _) = check(&config(d, "cn", "cname.example", &cname, ""), dns, &[]).await;
    assert_eq!(code, 0, "{r}");
    let dkim = &r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "dkim.key")
        .unwrap()
        .clone();
    assert_eq!(dkim["status"], "pass", "{dkim}");
    assert!(
        dkim["evidence"][0]
            .as_str()
            .unwrap()
            .contains("is a CNAME to s1.dkim.esp.example"),
        "{dkim}"
    );

    let (code, r, _) = check(&config(d, "nd", "nodmarc.example", &nodmarc, ""), dns, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(status_of(&r, "dmarc.record"), ["fail"]);
    assert!(status_of(&r, "dmarc.alignment").is_empty());
    assert!(!ready(&r, "gmail") && !ready(&r, "yahoo") && !ready(&r, "microsoft"));

    let (code, r, _) = check(&config(d, "org", "news.org.example", &org, ""), dns, &[]).await;
    assert_eq!(code, 0, "{r}");
    let dmarc = checks(&r, "dmarc.record");
    assert_eq!(dmarc[0].0, "_dmarc.org.example");
    assert_eq!(dmarc[0].1, "pass", "{dmarc:?}");
    assert!(
        dmarc[0].2.contains("inherited from org.example"),
        "{dmarc:?}"
    );
    assert_eq!(r["organizational_domain"], "org.example");
    assert_eq!(status_of(&r, "dmarc.alignment"), ["pass"]);

    let rest = "return_path = \"bounces.elsewhere.example\"\n";
    let cfg = config(d, "mis", "misaligned.example", &misaligned, "")
        .to_str()
        .unwrap()
        .to_owned();
    // Both streams' return path moves to the other domain.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "[streams.transactional]\n",
            &format!("[streams.transactional]\n{rest}"),
        )
        .replace(
            "[streams.marketing]\n",
            &format!("[streams.marketing]\n{rest}"),
        );
    std::fs::write(&cfg, text).unwrap();
    let (code, r, _) = check(Path::new(&cfg), dns, &[]).await;
    assert_eq!(code, 0, "{r}");
    let rp = checks(&r, "return_path.alignment");
    assert_eq!(rp.len(), 1);
    assert_eq!(rp[0].0, "bounces.elsewhere.example");
    assert_eq!(rp[0].1, "warn");
    let alignment = checks(&r, "dmarc.alignment");
    assert!(
        alignment
            .iter()
            .all(|(_, s, m)| *s == "pass" && m.contains("through DKIM (SPF doesn't align")),
        "{alignment:?}"
    );

    // Streams without a source address: the public address comes from --ip.
    let cfg = config(d, "ptr", "ptr.example", &ptr, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("source_address = \"{SOURCE}\"\n"), "");
    std::fs::write(&cfg, text).unwrap();
    let (code, r, _) = check(&cfg, dns, &["--ip", "192.0.2.20", "--ip", "192.0.2.30"]).await;
    assert_eq!(code, 1);
    let rdns = checks(&r, "rdns");
    assert_eq!(rdns.len(), 2, "{rdns:?}");
    assert_eq!((rdns[0].0, rdns[0].1), ("192.0.2.20", "fail"));
    assert!(rdns[0].2.contains("no PTR record"), "{rdns:?}");
    assert_eq!((rdns[1].0, rdns[1].1), ("192.0.2.30", "fail"));
    assert!(rdns[1].2.contains("doesn't resolve back"), "{rdns:?}");
    assert_eq!(status_of(&r, "spf.authorizes"), ["pass", "pass"]);
    assert!(!ready(&r, "gmail") && ready(&r, "microsoft"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_dns_is_an_error_not_a_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "good.example", "s1", "ed25519");
    let cfg = config(dir.path(), "c", "good.example", &key, "");
    // Nothing listens on this UDP port (bound, then dropped).
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, r, err) = check(&cfg, closed, &[]).await;
    assert_eq!(code, 2, "{r}");
    assert!(err.contains("DNS lookup of"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_the_same_checks_to_an_admin_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut z = base_zone();
    let key = keygen(d, "good.example", "s1", "rsa");
    good_domain(&mut z, "good.example");
    publish(&mut z, &key);
    let dns = serve(z).await;
    let database = relay::database(d, false).await.unwrap();
    let cfg = config(d, "relay", "good.example", &key, "");
    // The relay's own settings: its store, capture mode, the test DNS.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("database = \"{database}\"\ncapture = true\ndns_servers = [\"{dns}\"]\n{text}"),
    )
    .unwrap();
    let admin = create_key(&database, "dashboard", &["admin"]);
    let sender = create_key(&database, "shop", &["transactional"]);
    let relay = Relay::start(&cfg, &[]);

    let (code, body) = relay.get_json("/v1/domains", &admin).await;
    assert_eq!(code, 200, "{body}");
    let report = &body["domains"][0];
    assert_eq!(report["domain"], "good.example");
    assert_eq!(status_of(report, "dkim.key"), ["pass"]);
    assert_eq!(status_of(report, "spf.authorizes"), ["pass"]);

    // The CLI says the same.
    let (_, cli, _) = check(&cfg, dns, &[]).await;
    let ids = |r: &Value| -> Vec<(String, String)> {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].to_string(), c["status"].to_string()))
            .collect()
    };
    assert_eq!(ids(report), ids(&cli));

    let (code, body) = relay.get_json("/v1/domains", &sender).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    let (code, body) = relay
        .get_json("/v1/domains?domain=elsewhere.example", &admin)
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("unknown_domain"))
    );
}
