//! A real nginx (Debian's `nginx-light` at `/usr/sbin/nginx`, or `NGINX=/path`), on a
//! configuration the test gives, in the foreground (`master_process off`), killed by its
//! PID when dropped. Without nginx the tests that use it fail; they never pass silently.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let bin = std::env::var_os("NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        bin.is_file(),
        "these tests drive a real nginx, but {} does not exist. Install it with \
         `apt-get install nginx-light` (or `apt-get install nginx`), or set NGINX to the \
         nginx binary.",
        bin.display()
    );
    bin
}

/// Replaces `from` in `text`, which must occur exactly once (so a changed example fails
/// here instead of testing something else).
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the configuration should contain `{from}` exactly once"
    );
    text.replace(from, to)
}

impl Nginx {
    /// Starts nginx with `http_conf` (what goes inside `http { }`) listening on `port`,
    /// and waits until it accepts connections.
    pub async fn start(port: u16, http_conf: &str) -> Nginx {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        // nginx started as root runs as `nobody` and must reach its temp directories.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("site.conf"), http_conf).unwrap();
        let main = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        nginx.wait_listening().await;
        nginx
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Polls the port until nginx accepts; fails at once if nginx exited.
    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {} within 10 s:\n{}",
                self.addr,
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> super::RawResponse {
        super::get(self.addr, path, headers).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `master_process off`: the child is the only nginx process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
