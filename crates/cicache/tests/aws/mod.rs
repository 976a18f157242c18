//! The moto server of test/lib/moto.sh for the binary's tests: its URL, a bucket on it, and
//! a command pointed at it with moto's test keys.
#![allow(dead_code)]

use std::process::Command;

/// The moto server's URL, or `None` (the test is skipped) outside test/run.sh.
pub fn moto() -> Option<String> {
    match std::env::var("CICACHE_TEST_MOTO_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("CICACHE_TEST_MOTO_URL is not set; test/run.sh starts moto");
            }
            eprintln!("skipped: CICACHE_TEST_MOTO_URL is not set (test/lib/moto.sh)");
            None
        }
    }
}

/// Creates a bucket on moto with a plain path-style PUT (moto checks no signature).
pub fn create_bucket(moto: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = moto.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Points `c` at `endpoint` (moto, or a closed port) in us-east-1, with or without moto's
/// test keys.
pub fn aws(c: &mut Command, endpoint: &str, keys: bool) {
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1");
    if keys {
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
}
