//! A small HTTP client for the console's tests (hyper's), speaking to one
//! address, with the headers a browser would send where a test needs them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;

/// A client of one server.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// A header's value as text (`""` if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Http {
    /// A client of `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Http { client: Client::builder(TokioExecutor::new()).build_http(), addr }
    }

    /// `http://addr` (what a browser sends as `Origin` from the console's pages).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path` with `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers, Vec::new()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[]).await
    }

    /// `POST path` with `form` encoded as a browser's form, and `headers`
    /// (add `Origin` yourself: a test of the origin check decides it).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut h = headers.to_vec();
        h.push(("content-type", "application/x-www-form-urlencoded"));
        self.send("POST", path, &h, body.into_bytes()).await
    }

    /// Any request.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut req = hyper::Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("a valid request");
        let res = self.client.request(req).await.expect("the console answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("a whole body").to_bytes();
        Reply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }
}

/// The value of the first `name="form_token" value="…"` in a page.
pub fn form_token(page: &str) -> Option<String> {
    let at = page.find("name=\"form_token\" value=\"")? + "name=\"form_token\" value=\"".len();
    let rest = &page[at..];
    Some(rest[..rest.find('"')?].to_owned())
}
