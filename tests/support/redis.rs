//! A real `redis-server` (Debian's), started on a free port of 127.0.0.1 and stopped by
//! its PID. It writes its data to a temporary directory on shutdown, so a stop and a start
//! on the same port keep what it held, as a restarted production Redis with persistence
//! does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let bin = std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    assert!(
        bin.is_file(),
        "these tests drive a real Redis, but {} does not exist. Install it with \
         `apt-get install redis-server`, or set REDIS_SERVER to the binary.",
        bin.display()
    );
    bin
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: super::free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        r.resume();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A gateway configuration (`support::config_toml*`) with its sessions in this Redis.
    pub fn store_in(&self, toml: &str) -> String {
        toml.replacen(
            "[session]\n",
            &format!(
                "[session]\nstore = \"redis\"\nredis_url = \"{}\"\n",
                self.url()
            ),
            1,
        )
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "3600 1",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM: it saves its data first) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// Every key and its value (strings as they are, sets joined with spaces).
    pub fn dump(&self) -> Vec<(String, String, i64)> {
        let mut c = self.client().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let kind: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
                let value = match kind.as_str() {
                    "string" => redis::cmd("GET").arg(&k).query(&mut c).unwrap(),
                    "set" => redis::cmd("SMEMBERS")
                        .arg(&k)
                        .query::<Vec<String>>(&mut c)
                        .unwrap()
                        .join(" "),
                    other => format!("<{other}>"),
                };
                let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut c).unwrap();
                (k, value, ttl)
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster of three masters (no replicas), each a real `redis-server` on a free
/// port of 127.0.0.1, joined with `redis-cli --cluster create`; stopped by PID.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| super::free_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new(binary())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            nodes.push(child);
        }
        let cluster = RedisCluster {
            nodes,
            ports,
            _dir: dir,
        };
        for port in &cluster.ports {
            wait_for_ping(*port);
        }
        let cli = binary().with_file_name("redis-cli");
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let status = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Every node must agree that all slots are served before the cluster is usable.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &cluster.ports {
            loop {
                let info: String = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never became ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// Every key of every node.
    pub fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for port in &self.ports {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
            out.extend(keys);
        }
        out
    }
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
