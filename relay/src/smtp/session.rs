//! One SMTP session (submission or the inbound MX): greeting, EHLO,
//! STARTTLS, AUTH, and transactions, as a loop over the client's bytes. Replies to pipelined
//! commands are collected and written when the client's input runs dry.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{EhloResponse, Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info};

use super::{Mode, Submission};
use crate::accept::{AcceptError, RecipientStatus};
use crate::domain::{EmailAddress, Stream};
use crate::routes::Inbound;
use crate::store::ApiKeyRecord;

/// How long a new connection is watched for a TLS ClientHello before the
/// greeting goes out. A client speaking implicit TLS sends it at once; a
/// plain SMTP client waits for the greeting.
const TLS_SNIFF: Duration = Duration::from_millis(300);
/// Protocol errors (unknown commands, bad syntax) a session may make
/// before it is closed.
const MAX_ERRORS: usize = 20;
/// Longest AUTH response line.
const MAX_AUTH_LINE: usize = 16 * 1024;

/// The connection, plain or after TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A command, owned (smtp-proto's borrow the input buffer).
enum Command {
    Ehlo,
    Helo,
    Mail {
        size: usize,
    },
    Rcpt(String),
    Data,
    Auth {
        mechanism: u64,
        initial: String,
    },
    StartTls,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    /// Parsed, but not something a submission server does (BDAT, ETRN,
    /// EXPN, …).
    Unsupported(&'static str),
}

fn own(r: Request<std::borrow::Cow<'_, str>>) -> Command {
    match r {
        Request::Ehlo { .. } => Command::Ehlo,
        Request::Helo { .. } => Command::Helo,
        Request::Lhlo { .. } => Command::Unsupported("LHLO"),
        Request::Mail { from } => Command::Mail { size: from.size },
        Request::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
        Request::Data => Command::Data,
        Request::Auth {
            mechanism,
            initial_response,
        } => Command::Auth {
            mechanism,
            initial: initial_response.into_owned(),
        },
        Request::StartTls => Command::StartTls,
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Help { .. } => Command::Help,
        other => Command::Unsupported(other.name()),
    }
}

/// What the session knows.
struct State {
    helo: bool,
    tls: bool,
    key: Option<ApiKeyRecord>,
    /// A transaction: MAIL given, and its recipients so far.
    mail: bool,
    recipients: Vec<EmailAddress>,
    /// On the inbound MX, what each recipient's mail is.
    kinds: Vec<Inbound>,
    errors: usize,
}

impl State {
    fn reset(&mut self) {
        self.mail = false;
        self.recipients.clear();
        self.kinds.clear();
    }
}

/// The session's input: bytes read and not yet consumed.
struct Input {
    buf: Vec<u8>,
    pos: usize,
    /// Dropping the rest of an over-long line.
    skipping: bool,
}

impl Input {
    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn consume_all(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }
}

/// A connection over a limit: told why, closed.
pub(super) async fn refuse(mut tcp: TcpStream, why: &str) {
    let _ = tcp
        .write_all(format!("421 4.7.0 {why}; try again later\r\n").as_bytes())
        .await;
    let _ = tcp.shutdown().await;
}

pub(super) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    sub: &Submission,
    stop: watch::Receiver<bool>,
) {
    let mut io = Io::Plain(tcp);
    let mut implicit = false;
    if let (Some(tls), Io::Plain(tcp)) = (&sub.tls, &io) {
        let mut first = [0u8; 1];
        // 0x16: a TLS handshake record, the start of every ClientHello.
        if let Ok(Ok(1)) = tokio::time::timeout(TLS_SNIFF, tcp.peek(&mut first)).await
            && first[0] == 0x16
        {
            let Io::Plain(tcp) = io else { unreachable!() };
            match tokio::time::timeout(
                sub.app.accept.settings.header_timeout,
                tls.acceptor().accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => io = Io::Tls(Box::new(s)),
                Ok(Err(e)) => return debug!(error = %e, "implicit TLS handshake failed"),
                Err(_) => return debug!("implicit TLS handshake timed out"),
            }
            implicit = true;
        }
    }
    let mut session = Session {
        sub,
        peer,
        state: State {
            helo: false,
            tls: implicit,
            key: None,
            mail: false,
            recipients: Vec::new(),
            kinds: Vec::new(),
            errors: 0,
        },
        out: Vec::new(),
        stop,
    };
    if let Err(e) = session.serve(io).await {
        debug!(error = %e, "SMTP session ended");
    }
}

struct Session<'a> {
    sub: &'a Submission,
    peer: SocketAddr,
    state: State,
    /// Replies not yet written.
    out: Vec<u8>,
    stop: watch::Receiver<bool>,
}

/// How handling a command ends.
enum Next {
    Continue,
    Close,
    StartTls,
    /// Read the message (after `354`).
    Data,
    /// Read an AUTH continuation line, for this mechanism step.
    AuthLine(AuthStep),
}

#[derive(Clone, Copy)]
enum AuthStep {
    Plain,
    LoginUser,
    LoginPassword,
}

impl Session<'_> {
    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self, io: &mut Io) -> io::Result<()> {
        if !self.out.is_empty() {
            io.write_all(&self.out).await?;
            io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads more input; Ok(false) at end of input or when the wait runs out
    /// (after telling the client).
    async fn fill(&mut self, io: &mut Io, input: &mut Input, wait: Duration) -> io::Result<bool> {
        self.flush(io).await?;
        if input.is_empty() {
            input.consume_all();
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut stop = self.stop.clone();
        let read = tokio::select! {
            r = tokio::time::timeout(wait, io.read(&mut chunk)) => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let n = match read {
            Some(Ok(r)) => r?,
            Some(Err(_)) => {
                self.reply("421 4.4.2 Timeout: closing the connection");
                self.flush(io).await?;
                return Ok(false);
            }
            None => {
                self.reply("421 4.3.2 Shutting down; try again shortly");
                self.flush(io).await?;
                return Ok(false);
            }
        };
        if n == 0 {
            return Ok(false);
        }
        input.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    async fn serve(&mut self, mut io: Io) -> io::Result<()> {
        let hostname = self.sub.app.accept.settings.hostname.clone();
        self.reply(&format!("220 {hostname} ESMTP mailroom"));
        let mut input = Input {
            buf: Vec::new(),
            pos: 0,
            skipping: false,
        };
        let mut receiver = RequestReceiver::default();
        let command_timeout = self.sub.app.accept.settings.submission.command_timeout;
        loop {
            if input.skipping {
                match input.rest().iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        input.pos += i + 1;
                        input.skipping = false;
                    }
                    None => {
                        input.consume_all();
                        if !self.fill(&mut io, &mut input, command_timeout).await? {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            let parsed = {
                let rest = &input.buf[input.pos..];
                let mut iter = rest.iter();
                let r = receiver.ingest(&mut iter).map(own);
                let left = iter.as_slice().len();
                (r, rest.len() - left)
            };
            let (result, used) = parsed;
            input.pos += used;
            let next = match result {
                Ok(cmd) => self.command(cmd).await,
                Err(ProtoError::NeedsMoreData { .. }) => {
                    if !self.fill(&mut io, &mut input, command_timeout).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(ProtoError::ResponseTooLong) => {
                    input.skipping = true;
                    self.error("500 5.5.2 Line too long (at most 4096 bytes)")
                }
                Err(ProtoError::UnknownCommand) => self.error("500 5.5.2 Unknown command"),
                Err(ProtoError::InvalidSenderAddress) => {
                    self.error("501 5.1.7 Bad sender address syntax")
                }
                Err(ProtoError::InvalidRecipientAddress) => {
                    self.error("501 5.1.3 Bad recipient address syntax")
                }
                Err(ProtoError::SyntaxError { syntax }) => {
                    self.error(&format!("501 5.5.4 Syntax: {syntax}"))
                }
                Err(ProtoError::InvalidParameter { param }) => {
                    self.error(&format!("501 5.5.4 Invalid parameter {param}"))
                }
                Err(ProtoError::UnsupportedParameter { param }) => {
                    self.error(&format!("504 5.5.4 Unsupported parameter {param}"))
                }
                Err(_) => self.error("500 5.5.2 Syntax error"),
            };
            match next {
                Next::Continue => {}
                Next::Close => {
                    self.flush(&mut io).await?;
                    let _ = io.shutdown().await;
                    return Ok(());
                }
                Next::StartTls => {
                    self.flush(&mut io).await?;
                    // Anything the client sent after STARTTLS, before the
                    // handshake, is dropped unread (CVE-2011-0411).
                    input.consume_all();
                    receiver = RequestReceiver::default();
                    let Io::Plain(tcp) = io else {
                        return Ok(());
                    };
                    let tls = self
                        .sub
                        .tls
                        .as_ref()
                        .expect("STARTTLS only offered with TLS");
                    io = match tokio::time::timeout(
                        self.sub.app.accept.settings.header_timeout,
                        tls.acceptor().accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(s)) => Io::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            debug!(error = %e, "STARTTLS handshake failed");
                            return Ok(());
                        }
                        Err(_) => return Ok(()),
                    };
                    // RFC 3207 §4.2: forget everything said before TLS,
                    // a plaintext AUTH (allow_plaintext_auth) included.
                    self.state.helo = false;
                    self.state.key = None;
                    self.state.tls = true;
                    self.state.reset();
                }
                Next::Data => {
                    if !self.data(&mut io, &mut input).await? {
                        return Ok(());
                    }
                }
                Next::AuthLine(mut step) => loop {
                    let Some(line) = self.line(&mut io, &mut input, command_timeout).await? else {
                        return Ok(());
                    };
                    match self.auth_continue(step, &line).await {
                        Some(next) => step = next,
                        None => break,
                    }
                },
            }
            if self.state.errors >= MAX_ERRORS {
                self.reply("421 4.7.0 Too many errors; closing the connection");
                self.flush(&mut io).await?;
                return Ok(());
            }
        }
    }

    fn error(&mut self, reply: &str) -> Next {
        self.state.errors += 1;
        self.reply(reply);
        Next::Continue
    }

    /// Whether AUTH may be offered and used now (never on the MX).
    fn auth_allowed(&self) -> bool {
        self.sub.mode == Mode::Submission
            && (self.state.tls || self.sub.app.accept.settings.submission.allow_plaintext_auth)
    }

    async fn command(&mut self, cmd: Command) -> Next {
        let settings = &self.sub.app.accept.settings;
        match cmd {
            Command::Ehlo => {
                self.state.helo = true;
                self.state.reset();
                let mut ehlo = EhloResponse::new(settings.hostname.as_str());
                ehlo.capabilities = smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_SMTP_UTF8
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES
                    | smtp_proto::EXT_DSN;
                ehlo.size = settings.max_request_bytes;
                if self.sub.tls.is_some() && !self.state.tls {
                    ehlo.capabilities |= smtp_proto::EXT_START_TLS;
                }
                if self.auth_allowed() {
                    ehlo.capabilities |= smtp_proto::EXT_AUTH;
                    ehlo.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                }
                let _ = ehlo.write(&mut self.out);
                Next::Continue
            }
            Command::Helo => {
                self.state.helo = true;
                self.state.reset();
                let host = settings.hostname.clone();
                self.reply(&format!("250 {host}"));
                Next::Continue
            }
            Command::StartTls => {
                if self.state.tls {
                    self.error("503 5.5.1 TLS is already active")
                } else if self.sub.tls.is_none() {
                    self.error("454 4.7.0 TLS not available")
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    Next::StartTls
                }
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, &initial).await,
            Command::Mail { size } => {
                if !self.state.helo {
                    self.error("503 5.5.1 Say EHLO first")
                } else if self.state.key.is_none() && self.sub.mode == Mode::Submission {
                    // Never an open relay: submission is for keys only.
                    self.error("530 5.7.0 Authentication required")
                } else if self.state.mail {
                    self.error("503 5.5.1 A transaction is already open (RSET first)")
                } else if size > settings.max_request_bytes {
                    self.reply(&format!(
                        "552 5.3.4 The message is over the size limit of {} bytes",
                        settings.max_request_bytes
                    ));
                    Next::Continue
                } else {
                    // The envelope sender is replaced with the VERP return
                    // path; it is accepted, not used.
                    self.state.mail = true;
                    self.reply("250 2.1.0 Sender OK");
                    Next::Continue
                }
            }
            Command::Rcpt(address) => self.rcpt(&address).await,
            Command::Data => {
                if !self.state.mail {
                    self.error("503 5.5.1 MAIL first")
                } else if self.state.recipients.is_empty() {
                    self.error("554 5.5.1 No valid recipients")
                } else {
                    self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
                    Next::Data
                }
            }
            Command::Rset => {
                self.state.reset();
                self.reply("250 2.0.0 OK");
                Next::Continue
            }
            Command::Noop => {
                self.reply("250 2.0.0 OK");
                Next::Continue
            }
            Command::Quit => {
                self.reply("221 2.0.0 Bye");
                Next::Close
            }
            Command::Vrfy => {
                self.reply("252 2.5.0 Cannot verify; send and see");
                Next::Continue
            }
            Command::Help => {
                self.reply("214 2.0.0 See https://github.com/mailroom/mailroom docs/api.md");
                Next::Continue
            }
            Command::Unsupported(name) => {
                self.error(&format!("502 5.5.1 {name} is not supported here"))
            }
        }
    }

    /// The stream the key sends on when it has one; None when the message
    /// will say (a key for both streams).
    fn known_stream(&self) -> Option<Stream> {
        match self.state.key.as_ref()?.streams.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    async fn rcpt(&mut self, address: &str) -> Next {
        if !self.state.mail {
            return self.error("503 5.5.1 MAIL first");
        }
        let max = self.sub.app.accept.settings.submission.max_recipients;
        if self.state.recipients.len() >= max {
            self.reply(&format!(
                "452 4.5.3 Too many recipients (at most {max} per message)"
            ));
            return Next::Continue;
        }
        let address = match EmailAddress::parse(address) {
            Ok(a) => a,
            Err(e) => return self.error(&format!("501 5.1.3 Bad recipient address: {e}")),
        };
        if self.sub.mode == Mode::Inbound {
            let Some(kind) = self.sub.inbound_kind(&address) else {
                self.reply(&format!("550 5.1.1 <{address}>: no such mailbox here"));
                return Next::Continue;
            };
            self.state.recipients.push(address);
            self.state.kinds.push(kind);
            self.reply("250 2.1.5 Recipient OK");
            return Next::Continue;
        }
        if let Some(stream) = self.known_stream() {
            let target = [(
                address.to_string().to_lowercase(),
                address.domain().to_string(),
            )];
            match self
                .sub
                .app
                .accept
                .suppressions
                .check(&self.sub.app.accept.store, stream, &target)
                .await
            {
                Ok(found) => {
                    if let Some(Some(reason)) = found.first() {
                        self.reply(&format!(
                            "550 5.7.1 <{address}> is on the {stream} suppression list ({reason}); not sent"
                        ));
                        return Next::Continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "checking the suppression list at RCPT failed");
                    self.reply("451 4.3.0 Temporary failure checking the recipient; try again");
                    return Next::Continue;
                }
            }
        }
        self.state.recipients.push(address);
        self.reply("250 2.1.5 Recipient OK");
        Next::Continue
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) -> Next {
        if self.sub.mode == Mode::Inbound {
            return self
                .error("503 5.5.1 No AUTH here: this is the MX for mailroom's own addresses");
        }
        if self.state.key.is_some() {
            return self.error("503 5.5.1 Already authenticated");
        }
        if !self.auth_allowed() {
            return self.error(
                "538 5.7.11 Encryption required for requested authentication mechanism (STARTTLS first)",
            );
        }
        if let Some(wait) = self.sub.app.accept.limits.lockout.locked(self.peer.ip()) {
            self.reply(&format!(
                "421 4.7.0 Too many failed authentications from this address; try again in {}s",
                wait.as_secs().max(1)
            ));
            return Next::Close;
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.reply("334 ");
                Next::AuthLine(AuthStep::Plain)
            }
            smtp_proto::AUTH_PLAIN => match self.auth_continue(AuthStep::Plain, initial).await {
                Some(step) => Next::AuthLine(step),
                None => Next::Continue,
            },
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                self.reply("334 VXNlcm5hbWU6");
                Next::AuthLine(AuthStep::LoginUser)
            }
            smtp_proto::AUTH_LOGIN => {
                match self.auth_continue(AuthStep::LoginUser, initial).await {
                    Some(step) => Next::AuthLine(step),
                    None => Next::Continue,
                }
            }
            _ => self.error("504 5.5.4 Unrecognized authentication type (PLAIN or LOGIN)"),
        }
    }

    /// Handles one AUTH response line; the step that needs another line
    /// (LOGIN's password, after its user name), with the prompt queued.
    async fn auth_continue(&mut self, step: AuthStep, line: &str) -> Option<AuthStep> {
        let line = line.trim();
        if line == "*" {
            self.reply("501 5.0.0 Authentication cancelled");
            return None;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(line) else {
            self.state.errors += 1;
            self.reply("501 5.5.2 Cannot decode the response (base64)");
            return None;
        };
        let password = match step {
            // authzid NUL authcid NUL password (RFC 4616); the user name
            // is not used: the password is the API key.
            AuthStep::Plain => decoded
                .split(|&b| b == 0)
                .nth(2)
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            AuthStep::LoginUser => {
                self.reply("334 UGFzc3dvcmQ6");
                return Some(AuthStep::LoginPassword);
            }
            AuthStep::LoginPassword => Some(String::from_utf8_lossy(&decoded).into_owned()),
        };
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            self.auth_failed("malformed");
            return None;
        };
        match self
            .sub
            .app
            .keys
            .verify(&self.sub.app.accept.store, &password)
            .await
        {
            Ok(Some(key)) if !key.streams.is_empty() => {
                info!(key_id = %key.id, "SMTP client authenticated");
                self.state.key = Some(key);
                self.reply("235 2.7.0 Authentication successful");
            }
            Ok(Some(_)) => {
                self.reply("535 5.7.8 This API key may not send mail (it has no stream)");
            }
            Ok(None) => self.auth_failed("unknown"),
            Err(e) => {
                tracing::warn!(error = %e, "looking up an API key for SMTP AUTH failed");
                self.reply("454 4.7.0 Temporary authentication failure");
            }
        }
        None
    }

    fn auth_failed(&mut self, reason: &'static str) {
        let m = &self.sub.app.accept.metrics;
        m.auth_failures
            .get_or_create(&crate::metrics::Reason { reason })
            .inc();
        if self.sub.app.accept.limits.lockout.failed(self.peer.ip()) {
            m.lockouts.inc();
            tracing::warn!(ip = %self.peer.ip(), "client locked out after repeated authentication failures");
        }
        self.reply("535 5.7.8 Authentication credentials invalid");
    }

    /// One line (an AUTH response), without its line ending; None when
    /// the client went away.
    async fn line(
        &mut self,
        io: &mut Io,
        input: &mut Input,
        wait: Duration,
    ) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = input.rest().iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&input.rest()[..i])
                    .trim_end_matches('\r')
                    .to_owned();
                input.pos += i + 1;
                return Ok(Some(line));
            }
            if input.rest().len() > MAX_AUTH_LINE {
                self.reply("500 5.5.2 Line too long");
                self.flush(io).await?;
                return Ok(None);
            }
            if !self.fill(io, input, wait).await? {
                return Ok(None);
            }
        }
    }

    /// Reads the message after `354` and hands it to the pipeline; Ok(false)
    /// when the session must end.
    async fn data(&mut self, io: &mut Io, input: &mut Input) -> io::Result<bool> {
        let settings = &self.sub.app.accept.settings;
        let max = settings.max_request_bytes;
        let deadline = tokio::time::Instant::now() + settings.submission.data_timeout;
        let mut receiver = DataReceiver::new();
        let mut message = Vec::new();
        let mut too_big = false;
        loop {
            let done = {
                let rest = &input.buf[input.pos..];
                let mut iter = rest.iter();
                let done = receiver.ingest(&mut iter, &mut message);
                input.pos += rest.len() - iter.as_slice().len();
                done
            };
            if message.len() > max {
                // Keep reading to the end, storing nothing: the client
                // gets one clear refusal instead of a broken connection.
                too_big = true;
                message.clear();
            }
            if done {
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                self.reply("421 4.4.2 Timeout: the message took too long; closing the connection");
                self.flush(io).await?;
                return Ok(false);
            }
            if !self.fill(io, input, left).await? {
                return Ok(false);
            }
        }
        if too_big {
            self.state.reset();
            self.reply(&format!(
                "552 5.3.4 The message is over the size limit of {max} bytes"
            ));
            return Ok(true);
        }
        let reply = self.submit(&message).await;
        self.state.reset();
        self.reply(&reply);
        Ok(true)
    }

    /// The pipeline's answer to one message, as an SMTP reply.
    async fn submit(&self, message: &[u8]) -> String {
        if self.sub.mode == Mode::Inbound {
            return self.received(message).await;
        }
        let key = self.state.key.as_ref().expect("MAIL needs AUTH");
        match self
            .sub
            .app
            .accept
            .accept_raw(key, &self.state.recipients, message)
            .await
        {
            Ok(receipt) => {
                let suppressed = receipt
                    .recipients
                    .iter()
                    .filter(|r| matches!(r.status, RecipientStatus::Suppressed { .. }))
                    .count();
                info!(message_id = %receipt.id, stream = %receipt.stream, recipients = receipt.recipients.len(), "accepted over SMTP");
                if suppressed == 0 {
                    format!("250 2.0.0 OK queued as {}", receipt.id)
                } else {
                    format!(
                        "250 2.0.0 OK queued as {} ({suppressed} recipient(s) on the suppression list, not sent)",
                        receipt.id
                    )
                }
            }
            Err(e) => refusal(&e),
        }
    }
}

impl Session<'_> {
    /// Mail to the relay's own addresses, handed to the inbound webhooks'
    /// handlers once per recipient, with the `Delivered-To` a receiving
    /// MTA adds (which is where they look for the VERP path or token).
    /// A message they can't use is still taken (`250`): refusing a bounce
    /// makes the sender bounce the bounce. Only a failure on our side is
    /// `451`, so the sender retries.
    async fn received(&self, message: &[u8]) -> String {
        let mut handled = Vec::new();
        for (address, kind) in self.state.recipients.iter().zip(&self.state.kinds) {
            let mut data = format!("Delivered-To: {address}\r\n").into_bytes();
            data.extend_from_slice(message);
            match crate::routes::inbound(&self.sub.app, *kind, data).await {
                Ok(answer) => {
                    info!(?kind, %address, answer = %answer, "inbound mail handled");
                    handled.push(address.to_string());
                }
                Err(e) if e.status.is_server_error() => {
                    return "451 4.3.0 Temporary failure processing the message; try again".into();
                }
                Err(e) => {
                    info!(?kind, %address, error = %e.message, "inbound mail not usable; dropped");
                }
            }
        }
        format!(
            "250 2.0.0 OK ({} of {} recipient(s) processed)",
            handled.len(),
            self.state.recipients.len()
        )
    }
}

/// A refused message as an SMTP reply with its enhanced status code.
fn refusal(e: &AcceptError) -> String {
    match e {
        AcceptError::ForbiddenStream(s) => {
            format!("550 5.7.1 This API key may not send on the {s} stream")
        }
        AcceptError::RateLimited {
            stream,
            retry_after,
        } => format!(
            "451 4.7.1 This key is over its {stream} messages_per_hour; retry in {}s",
            retry_after.as_secs().max(1)
        ),
        AcceptError::NoDkimKey { .. } | AcceptError::UnknownStream(_) => {
            format!("550 5.7.1 {e}")
        }
        AcceptError::Invalid(why) => format!("554 5.6.0 {why}"),
        AcceptError::LintFailed { report, max, .. } => {
            let mut findings: Vec<&lint::Finding> = report.findings.iter().collect();
            findings.sort_by(|a, b| b.points.total_cmp(&a.points));
            let top: Vec<String> = findings
                .iter()
                .take(3)
                .map(|f| format!("{} ({})", f.rule, f.message))
                .collect();
            format!(
                "550 5.7.1 Refused by the lint gate: spam-risk score {:.1} over {max:.1}; {}",
                report.score,
                top.join("; ")
            )
            .replace(['\r', '\n'], " ")
        }
        AcceptError::ShuttingDown => "421 4.3.2 Shutting down; try again shortly".into(),
        _ => {
            tracing::error!(error = %e, "accepting a message over SMTP failed");
            "451 4.3.0 Temporary failure storing the message; try again".into()
        }
    }
}
