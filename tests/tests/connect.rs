//! Connecting by URL: bad input gives a clear error, in bounded time, never
//! a hang or a panic.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::{Backend, Store, StoreError, StoreOptions};
use std::time::Duration;

/// Generous outer bound: the connect timeout under test is much shorter.
const MUST_RETURN_WITHIN: Duration = Duration::from_secs(20);

async fn connect(opts: StoreOptions) -> Result<Store, StoreError> {
    tokio::time::timeout(MUST_RETURN_WITHIN, Store::connect_with(opts))
        .await
        .expect("connect must return an error within its timeout, not hang")
}

#[tokio::test]
async fn unknown_scheme_is_rejected_with_the_supported_list() {
    let err = connect(StoreOptions::new("mysql://root@localhost/db")).await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedScheme { ref scheme, .. } if scheme == "mysql"), "{err}");
    assert!(err.to_string().contains("sqlite://"), "the message says what is supported: {err}");
}

#[tokio::test]
async fn malformed_urls_are_rejected() {
    for url in ["", "   ", "not a url", "postgres://", "sqlite://"] {
        let err = connect(StoreOptions::new(url)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{url:?} gave {err}");
    }
}

#[tokio::test]
async fn sqlite_file_in_a_missing_directory_is_rejected() {
    let err = connect(StoreOptions::new("sqlite:///definitely/not/here/hydra.db?mode=rwc")).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn sqlite_file_without_mode_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let store = connect(StoreOptions::new(format!("sqlite://{}", path.display()))).await.expect("created");
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(path.exists());
}

#[tokio::test]
async fn sqlite_memory_works_and_migrates() {
    let store = connect(StoreOptions::new("sqlite::memory:")).await.expect("in-memory store");
    assert!(store.list_executions(&hydra_store::ExecutionFilter::new("x")).await.unwrap().is_empty());
}

#[tokio::test]
async fn refused_postgres_port_fails_within_the_connect_timeout() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opts =
        StoreOptions::new(format!("postgres://u:secret@127.0.0.1:{port}/db")).connect_timeout(Duration::from_secs(2));
    let err = connect(opts).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(!text.contains("secret"), "passwords never reach error messages: {text}");
    assert!(text.contains(&port.to_string()), "the message names the server: {text}");
}

#[tokio::test]
async fn silent_postgres_server_fails_within_the_connect_timeout() {
    // Accepts TCP connections and never answers, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let opts = StoreOptions::new(format!("postgres://u@127.0.0.1:{port}/db")).connect_timeout(Duration::from_secs(1));
    let err = connect(opts).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    hold.abort();
}

#[tokio::test]
async fn missing_postgres_database_is_a_clear_error() {
    let admin = hydra_tests::pg_admin_url();
    let url = format!("{}/no_such_database_here", admin.rsplit_once('/').unwrap().0);
    let err = connect(StoreOptions::new(url).connect_timeout(Duration::from_secs(3))).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
}
