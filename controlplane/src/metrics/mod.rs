//! Prometheus text exposition on an optional HTTP listener. The control
//! loop renders the page (it owns the state); this thread only serves the
//! latest rendering, so a slow or hostile scraper never touches the
//! gateway's state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// The page the control loop writes and the listener serves.
pub type Page = Arc<RwLock<String>>;

/// Binds `addr` and serves `page` at `/metrics` on a thread of its own.
pub fn serve(addr: SocketAddr, page: Page) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("esprit-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                answer(conn, &page);
            }
        })?;
    Ok(local)
}

fn answer(mut conn: TcpStream, page: &Page) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // Read the request head, bounded in size and time.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (status, body) =
        if first.starts_with(b"GET /metrics ") || first.starts_with(b"GET /metrics\r") {
            let text = page.read().map(|p| p.clone()).unwrap_or_default();
            ("200 OK", text)
        } else {
            ("404 Not Found", "try /metrics\n".to_string())
        };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Writes Prometheus text exposition.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// One sample; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            self.out.push_str(&format!("{{{}}}", l.join(",")));
        }
        self.out.push_str(&format!(" {value}\n"));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format_and_escaping() {
        let mut e = Exposition::default();
        e.family("esprit_drops_total", "counter", "Packets dropped.");
        e.sample("esprit_drops_total", &[("reason", "re\"play")], 3);
        e.sample("esprit_up", &[], 1);
        assert_eq!(
            e.finish(),
            "# HELP esprit_drops_total Packets dropped.\n# TYPE esprit_drops_total counter\nesprit_drops_total{reason=\"re\\\"play\"} 3\nesprit_up 1\n"
        );
    }

    #[test]
    fn serves_the_page_and_refuses_other_paths() {
        let page: Page = Arc::new(RwLock::new("esprit_up 1\n".into()));
        let addr = serve("127.0.0.1:0".parse().unwrap(), page.clone()).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("esprit_up 1\n"),
            "{ok}"
        );
        *page.write().unwrap() = "esprit_up 2\n".into();
        assert!(get("/metrics").ends_with("esprit_up 2\n"));
        assert!(get("/etc/passwd").starts_with("HTTP/1.1 404"));
        // Garbage and silence do not stop the listener.
        let mut junk = TcpStream::connect(addr).unwrap();
        junk.write_all(&[0xff; 9000]).unwrap();
        drop(junk);
        assert!(get("/metrics").contains("200 OK"));
    }
}
