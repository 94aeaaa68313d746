//! Trailing slashes trimmed and repeated slashes merged before routing, as poem's
//! `NormalizePath` with `TrailingSlash::Trim` does, but only for a path that needs it: poem's
//! copies every path and runs a regex over it, ~1,000 instructions on each request.

use std::str::FromStr;

use poem::http::uri::PathAndQuery;
use poem::http::Uri;
use poem::{Endpoint, Request, Result};

/// Wraps an endpoint: `/a//b/` reaches it as `/a/b`, `//` as `/`.
pub struct TrimSlashes<E>(pub E);

/// The normal form of `path`, or `None` when it is already normal.
fn normalized(path: &str) -> Option<String> {
    if !((path.len() > 1 && path.ends_with('/')) || path.contains("//")) {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    (out != path).then_some(out)
}

impl<E: Endpoint> Endpoint for TrimSlashes<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        if let Some(path) = normalized(req.uri().path()) {
            let mut parts = req.uri().clone().into_parts();
            let with_query = match parts.path_and_query.as_ref().and_then(|pq| pq.query()) {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            // Built from a valid path by dropping slashes: it stays valid.
            if let Ok(pq) = PathAndQuery::from_str(&with_query) {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        self.0.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn only_paths_with_extra_slashes_change() {
        for path in ["/", "/api/v1/status", "/secret/abc", "/a/b.c"] {
            assert_eq!(normalized(path), None, "{path}");
        }
        for (path, normal) in [
            ("//", "/"),
            ("///", "/"),
            ("/api/v1/status/", "/api/v1/status"),
            ("/api/v1/status///", "/api/v1/status"),
            ("//api//v1/status", "/api/v1/status"),
            ("/secret//abc/", "/secret/abc"),
        ] {
            assert_eq!(normalized(path).as_deref(), Some(normal), "{path}");
        }
    }
}
