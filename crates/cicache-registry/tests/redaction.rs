//! Issue 21 item 8: a server or proxy that echoes the request headers in its error page must
//! not put the credentials or the registry token into an error, on the tag client
//! ([`OciClient`]) and on the `oci://` store path ([`OciBackend`]) alike.
//!
//! The server here is a NAMED FAKE for a fault the real registry cannot show: distribution
//! never echoes request headers, but proxies, WAFs and debug servers in front of registries
//! do. It runs on 127.0.0.1 in the test, speaks just enough HTTP/1.1 (one request per
//! connection) to answer the registry's authentication dance (a Basic or a Bearer challenge,
//! a token endpoint), and answers every authenticated request with an error page that
//! repeats each request header, the token and the password in several shapes, padded to
//! well over the length an error may quote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use cicache_registry::store::OciBackend;
use cicache_registry::{Credentials, OciClient, OciOptions, Secret, Target};
use cicache_store::backend::{Backend, OpenOptions, PutMode};

const USER: &str = "ci-bot";
const PASSWORD: &str = "pw-Sup3rSecret-71c9";
const TOKEN: &str = "tok-eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig_x-42";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `WWW-Authenticate: Basic`, then every request answered 500 with the headers echoed.
    Basic500,
    /// `WWW-Authenticate: Bearer` with a token endpoint, then 400 with the headers echoed.
    Bearer400,
    /// A Bearer challenge whose token endpoint itself answers 502 with the headers echoed
    /// (the Basic credentials the client sends there).
    TokenEndpoint502,
}

struct Echo {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn start(mode: Mode) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, me) = (stop.clone(), addr.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(c) = conn {
                let me = me.clone();
                std::thread::spawn(move || answer(c, mode, &me));
            }
        }
    });
    Echo { addr, stop }
}

fn answer(mut conn: TcpStream, mode: Mode, me: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let length = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let request_line = head.first().cloned().unwrap_or_default();
    let auth = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let echo = || {
        // The page a debugging proxy shows: every header, the request line, the headers
        // again in JSON, then the secrets in the shapes a query string would hold them.
        let mut page = String::from("request could not be served, headers:\r\n");
        for h in head.iter().skip(1) {
            page.push_str(h);
            page.push_str("\r\n");
        }
        page.push_str(&format!("request: {request_line}\r\n"));
        let json: Vec<String> = head
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| format!("{k:?}:[{:?}]", v.trim()))
            .collect();
        page.push_str(&format!("{{\"headers\":{{{}}}}}\r\n", json.join(",")));
        page.push_str(&format!(
            "retry with ?token={TOKEN}&password={PASSWORD}&X-Amz-Security-Token=FQoGZX{PASSWORD}\r\n"
        ));
        page.push_str(&"padding ".repeat(400));
        page
    };
    let (status, extra, body) = if request_line.contains("/token") {
        if mode == Mode::TokenEndpoint502 {
            ("502 Bad Gateway", String::new(), echo())
        } else {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            );
            if auth == expected {
                (
                    "200 OK",
                    String::new(),
                    format!("{{\"token\":\"{TOKEN}\"}}"),
                )
            } else {
                ("401 Unauthorized", String::new(), "{}".into())
            }
        }
    } else if auth.is_empty() {
        let challenge = match mode {
            Mode::Basic500 => "Basic realm=\"fake\"".to_string(),
            _ => format!(
                "Bearer realm=\"http://{me}/token\",service=\"fake\",scope=\"repository:ci/cache:pull\""
            ),
        };
        (
            "401 Unauthorized",
            format!("WWW-Authenticate: {challenge}\r\n"),
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}"
                .into(),
        )
    } else if mode == Mode::Basic500 {
        ("500 Internal Server Error", String::new(), echo())
    } else {
        ("400 Bad Request", String::new(), echo())
    };
    let head_only = request_line.starts_with("HEAD ");
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    );
}

fn creds() -> Credentials {
    Credentials {
        username: USER.into(),
        password: Secret::new(PASSWORD),
        source: "a test".into(),
    }
}

/// The error must hold none of the secrets, in any encoding the client sent them in, and
/// be short; where the server's page went into it, the marker shows what was taken out.
fn assert_clean(what: &str, err: &str) {
    assert_no_secrets(what, err);
    assert!(err.contains("<redacted>"), "{what}: {err}");
}

fn assert_no_secrets(what: &str, err: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for secret in [
        PASSWORD,
        TOKEN,
        basic.as_str(),
        "c2VjcmV0LXRva2Vu",
        "FQoGZX",
    ] {
        assert!(!err.contains(secret), "{what}: {secret:?} leaked in: {err}");
    }
    assert!(
        err.len() < 1200,
        "{what}: the server's page is not cut short ({} bytes): {err}",
        err.len()
    );
}

#[test]
fn the_tag_client_redacts_echoed_credentials_and_tokens() {
    for mode in [Mode::Basic500, Mode::Bearer400, Mode::TokenEndpoint502] {
        let server = start(mode);
        let target = Target::parse(&format!("{}/ci/cache", server.addr)).unwrap();
        let client = OciClient::new(
            &target,
            Some(creds()),
            &OciOptions {
                plain_http: Some(true),
                timeout: Some(Duration::from_secs(10)),
            },
        );
        let err = client.tags().expect_err("the server refuses").to_string();
        assert_clean(&format!("tags, {mode:?}"), &err);
        assert!(err.contains("HTTP 50") || err.contains("HTTP 400"), "{err}");
        let err = client
            .put_manifest("x", "application/vnd.oci.image.manifest.v1+json", b"{}")
            .expect_err("the server refuses")
            .to_string();
        assert_clean(&format!("put_manifest, {mode:?}"), &err);
    }
}

#[test]
fn the_oci_store_redacts_echoed_credentials_and_tokens() {
    for mode in [Mode::Basic500, Mode::Bearer400, Mode::TokenEndpoint502] {
        let server = start(mode);
        let store = OciBackend::open(
            &format!("{}/ci/cache", server.addr),
            Some(creds()),
            &OpenOptions {
                timeout: Some(Duration::from_secs(10)),
            },
        )
        .unwrap();
        let err = store
            .get("cicache-v1/refs/main/k")
            .err()
            .expect("the server refuses")
            .to_string();
        assert_clean(&format!("get, {mode:?}"), &err);
        assert!(err.contains(&server.addr), "names the store: {err}");
        let err = store
            .put_bytes("cicache-v1/leases/x.json", b"{}", PutMode::Overwrite)
            .expect_err("the server refuses")
            .to_string();
        // Its first request is a blob HEAD: no page to quote, and nothing leaks either.
        assert_no_secrets(&format!("put_bytes, {mode:?}"), &err);
        let err = format!("{:?}", store.list("cicache-v1/refs/").expect_err("refused"));
        assert_clean(&format!("list (Debug), {mode:?}"), &err);
    }
}
