//! The built-in HTTPS listener: a handshake with the configured certificate,
//! a new certificate picked up on SIGHUP, and the limits slow clients meet
//! (headers and handshakes within `header_timeout`, whole requests within
//! `request_timeout`).

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn write_cert(dir: &std::path::Path) -> Vec<u8> {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    c.cert.pem().into_bytes()
}

fn trusting(pem: &[u8]) -> reqwest::Client {
    mailroom_e2e::http_client()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Waits until the server closes `stream` (read returns 0 or fails);
/// panics if it is still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn https_with_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let first = write_cert(dir.path());
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{database}\"\ncapture = true\nheader_timeout = \"1s\"\n\
             [tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
            c = dir.path().join("cert.pem").display(),
            k = dir.path().join("key.pem").display()
        ),
    )
    .unwrap();
    let relay = Relay::start(&config, &[]);
    let https = relay.base.replacen("http://", "https://", 1);
    let addr = relay.base.trim_start_matches("http://").to_string();

    let r = trusting(&first)
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = mailroom_e2e::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        plain
            .get(format!("{}/healthz", relay.base))
            .send()
            .await
            .is_err()
    );

    // A new certificate, then SIGHUP: new connections get it.
    let second = write_cert(dir.path());
    assert!(
        trusting(&second)
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &relay.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = trusting(&second)
            .get(format!("{https}/healthz"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        trusting(&first)
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );

    // A client that never starts its handshake is dropped.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    closed_within(&mut idle, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{database}\"\ncapture = true\nheader_timeout = \"1s\"\nrequest_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    let key = relay::create_key(&database, "shop", &["transactional"]);
    let relay = Relay::start(&config, &[]);
    let addr = relay.base.trim_start_matches("http://").to_string();

    // Headers trickled in and never finished: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_within(&mut slow, Duration::from_secs(5)).await;

    // A body that never arrives: 408 when the request timeout runs out.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"fr"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = stalled.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The server still serves others meanwhile.
    let (code, _) = relay.get_json("/healthz", "").await;
    assert_eq!(code, 200);
}
