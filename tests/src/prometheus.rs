//! Reading the Prometheus endpoint in tests: one scrape over plain HTTP, and
//! the sum of a metric's samples.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body of one `GET /metrics` from `addr` (the answer must be a 200).
pub async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read the answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200"), "{head}");
    body.to_owned()
}

/// Sum of the samples of `name` whose labels include all of `labels`.
pub fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))))
                .then(|| v.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
