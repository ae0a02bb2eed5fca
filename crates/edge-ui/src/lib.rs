//! The web dashboard: its HTML, script and style are compiled into the
//! binary, so `edge server` serves it at `/ui/` with no separate process, no
//! CDN and no files to install (air-gapped sites get it too). The page talks
//! to the same `/v1` API as the CLI, with the caller's token, so it can do
//! nothing the token could not.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

/// One embedded file: its name under `/ui/`, media type and bytes.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        mime: "image/svg+xml",
        body: include_bytes!("../assets/icon.svg"),
    },
];

/// The page may load only its own files and talk only to its own server:
/// a job name or a log line with markup in it cannot run script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's entity tag: a hash of the bytes, so a browser revalidates
/// after an upgrade and gets a 304 otherwise.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut h = DefaultHasher::new();
            a.body.hash(&mut h);
            format!("\"{:016x}\"", h.finish())
        })
        .collect()
});

/// The total size of the embedded assets, for the README's figure and the
/// test that holds the dashboard small.
pub fn assets_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// `/ui/` and its files, and `/` sending a browser there. It carries no
/// state and no authentication: the assets are public, the data is not.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, h: HeaderMap| async move { serve(&file, &h) }),
        )
}

fn serve(name: &str, req: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no dashboard file {name:?}\n"),
        )
            .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.mime)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_a_strict_policy() {
        let index = get("/ui/", None).await;
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            index.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self';")
        );
        for (path, mime) in [
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/icon.svg", "image/svg+xml"),
        ] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], mime, "{path}");
        }
        for path in ["/", "/ui"] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(r.headers()[header::LOCATION], "/ui/");
        }
    }

    #[tokio::test]
    async fn an_unknown_or_climbing_name_is_not_found() {
        for path in ["/ui/nope.js", "/ui/..%2F..%2Fetc%2Fpasswd", "/ui/%00"] {
            assert_eq!(
                get(path, None).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn a_browser_with_the_current_copy_gets_not_modified() {
        let first = get("/ui/app.js", None).await;
        let tag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(
            get("/ui/app.js", Some(&tag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            get("/ui/app.js", Some("\"old\"")).await.status(),
            StatusCode::OK
        );
    }

    #[test]
    fn every_script_and_style_the_page_loads_is_embedded() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for a in &ASSETS[1..] {
            assert!(
                html.contains(&format!("/ui/{}", a.name)),
                "{} not linked",
                a.name
            );
        }
        // Inline script or style would be refused by the policy.
        assert!(!html.contains("<script>") && !html.contains("style="));
    }

    /// The Architecture Invariant of this crate: nothing from the API is
    /// parsed as markup or code.
    #[test]
    fn the_script_never_turns_text_into_markup_or_code() {
        let js = std::str::from_utf8(ASSETS[1].body).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "createContextualFragment",
        ] {
            assert!(!js.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn the_dashboard_stays_small() {
        assert!(assets_size() < 200 * 1024, "{} bytes", assets_size());
    }
}
