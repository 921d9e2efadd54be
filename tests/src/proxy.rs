//! A TCP proxy for partition tests: traffic can be held (a partition) and
//! released (it heals: what was held arrives then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy whose traffic can be held (a partition) and released (the
/// partition heals: what was held arrives then).
#[derive(Debug)]
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// While true, traffic is held (a partition); set false to heal.
    pub held: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy in front of the server of database URL `url`
    /// (`scheme://user@host:port/db`); returns it and the same URL through it.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let (prefix, rest) = url.split_once('@').expect("a URL with user@host");
        let (host_port, dbname) = rest.split_once('/').expect("a URL with /database");
        let proxy = Proxy::start(host_port.to_owned()).await;
        let via = format!("{prefix}@127.0.0.1:{}/{dbname}", proxy.port);
        (proxy, via)
    }

    /// Starts a proxy to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy on loopback");
        let port = listener.local_addr().expect("the proxy's address").port();
        let held = Arc::new(AtomicBool::new(false));
        let h = Arc::clone(&held);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Arc::clone(&h)));
                tokio::spawn(pump(sr, cw, Arc::clone(&h)));
            }
        });
        Proxy { port, held, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes one way; while the partition holds, bytes read are kept
/// until it heals (bounded: the test's partition lasts seconds).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    held: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for _ in 0..6_000 {
            if !held.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
