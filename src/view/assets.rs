//! The page, its script, style and icon, embedded in the binary: the
//! viewer needs no network and no files at run time. Compressed once at
//! start; a test holds script and style to their size budget.

use bytes::Bytes;

use crate::serve::Gzip;

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub plain: Bytes,
    pub gzip: Bytes,
}

pub struct Assets(Vec<Asset>);

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

impl Assets {
    pub fn new() -> Assets {
        let mut gz = Gzip::default();
        Assets(
            FILES
                .iter()
                .map(|&(path, content_type, body)| {
                    let mut out = Vec::new();
                    gz.compress(body, &mut out);
                    Asset {
                        path,
                        content_type,
                        plain: Bytes::from_static(body),
                        gzip: Bytes::from(out),
                    }
                })
                .collect(),
        )
    }

    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.0.iter().find(|a| a.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget of the issue: script and style at most 150 KB gzip'd
    /// (at the best compression a CDN would serve, not our fast one).
    #[test]
    fn script_and_style_fit_the_budget() {
        use std::io::Write as _;
        let mut total = 0;
        for (path, _, body) in FILES {
            if path.ends_with(".js") || path.ends_with(".css") {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(body).unwrap();
                total += e.finish().unwrap().len();
            }
        }
        assert!(total <= 150_000, "{total} bytes gzip'd");
        assert!(total > 5_000, "the script is there ({total} bytes)");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (path, _, body) in FILES {
            let text = std::str::from_utf8(body).unwrap();
            for bad in ["http://", "https://", "//cdn", "<script>", "style=\""] {
                // The SVG's xmlns is a name, not a request.
                if *path == "/favicon.svg" && bad == "http://" {
                    continue;
                }
                assert!(!text.contains(bad), "{path} contains {bad}");
            }
        }
    }
}
