//! The systemd unit and the Kubernetes manifests under `deploy/` agree with the gateway and
//! with each other:
//!
//! - every YAML document under `deploy/kubernetes/` is a named Kubernetes object, and each
//!   `kustomization.yaml` lists exactly the manifests beside it;
//! - each Deployment's `gateway.toml` (from its ConfigMap) loads with
//!   `portcullis::config::load` once the pod's volumes are laid out in a temporary
//!   directory, with the secrets read from where the Secret is mounted; the shipped
//!   placeholder session secret is refused;
//! - the probes hit `/readyz` and `/healthz` on the port `server.admin_listen` binds, the
//!   Service targets `server.listen` and never the admin port, and labels, selectors and
//!   the PodDisruptionBudget select the same pods;
//! - pods are locked down (non-root as in the Dockerfile, read-only root, no capabilities,
//!   seccomp) and get more time to stop than the gateway needs to drain;
//! - in the sidecar example the application listens on loopback only and the gateway is
//!   its only way in;
//! - `deploy/systemd/portcullis.service` starts `serve -c`, reloads with SIGHUP, is
//!   hardened, waits longer than the drain, and hands the example `gateway.toml` its
//!   secrets through credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::providers::{Format, Toml};
use figment::value::Value;
use figment::Figment;
use portcullis::config::{self, Config, ConfigErrors, EnvOverrides};
use yaml_rust2::{Yaml, YamlLoader};

/// `server.shutdown_grace` when the file does not set it.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// === YAML access ===

/// The value at a dot path (`spec.template.spec`), if every step exists.
fn opt<'a>(y: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    let mut cur = y;
    for step in path.split('.') {
        cur = &cur[step];
        if cur.is_badvalue() {
            return None;
        }
    }
    Some(cur)
}

fn get<'a>(y: &'a Yaml, path: &str, what: &str) -> &'a Yaml {
    opt(y, path).unwrap_or_else(|| panic!("{what}: no {path}"))
}

fn get_str<'a>(y: &'a Yaml, path: &str, what: &str) -> &'a str {
    get(y, path, what)
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {path} is not a string"))
}

fn get_i64(y: &Yaml, path: &str, what: &str) -> i64 {
    get(y, path, what)
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: {path} is not an integer"))
}

fn get_vec<'a>(y: &'a Yaml, path: &str, what: &str) -> &'a [Yaml] {
    get(y, path, what)
        .as_vec()
        .unwrap_or_else(|| panic!("{what}: {path} is not a list"))
}

fn opt_vec<'a>(y: &'a Yaml, path: &str) -> &'a [Yaml] {
    opt(y, path)
        .and_then(Yaml::as_vec)
        .map_or(&[], Vec::as_slice)
}

fn opt_bool(y: &Yaml, path: &str) -> Option<bool> {
    opt(y, path).and_then(Yaml::as_bool)
}

/// A map of strings (labels, selectors, ConfigMap data).
fn string_map(y: &Yaml, what: &str) -> BTreeMap<String, String> {
    let hash = y
        .as_hash()
        .unwrap_or_else(|| panic!("{what}: not a mapping"));
    hash.iter()
        .map(|(k, v)| {
            let k = k
                .as_str()
                .unwrap_or_else(|| panic!("{what}: non-string key"));
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{what}.{k}: not a string (quote it)"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The strings of a list (`command`, `args`, `capabilities.drop`).
fn strings(items: &[Yaml], what: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i.as_str()
                .unwrap_or_else(|| panic!("{what}: {i:?} is not a string"))
                .to_owned()
        })
        .collect()
}

// === manifests ===

/// One YAML document of one file.
struct Doc {
    file: PathBuf,
    yaml: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        self.yaml["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.yaml["metadata"]["name"].as_str().unwrap_or("")
    }

    fn what(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file.display())
    }
}

/// Every `.yaml` / `.yml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn parse_docs(file: &Path) -> Vec<Doc> {
    let docs = YamlLoader::load_from_str(&read(file))
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", file.display()));
    docs.into_iter()
        .filter(|y| !y.is_null())
        .map(|yaml| Doc {
            file: file.to_path_buf(),
            yaml,
        })
        .collect()
}

/// The manifests of one directory that `kubectl apply -k` applies together.
struct Bundle {
    dir: &'static str,
    docs: Vec<Doc>,
}

impl Bundle {
    fn load(dir: &'static str) -> Bundle {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo_file(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
                    && p.file_name().is_some_and(|n| n != "kustomization.yaml")
            })
            .collect();
        files.sort();
        Bundle {
            dir,
            docs: files.iter().flat_map(|f| parse_docs(f)).collect(),
        }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Doc> {
        self.docs.iter().filter(|d| d.kind() == kind).collect()
    }

    fn one(&self, kind: &str) -> &Doc {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "{}: expected one {kind}", self.dir);
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Doc {
        self.docs
            .iter()
            .find(|d| d.kind() == kind && d.name() == name)
            .unwrap_or_else(|| panic!("{}: no {kind} named {name:?}", self.dir))
    }
}

// === the pod, laid out on disk ===

/// A Deployment's pod template with its gateway container, and the pod's volumes
/// written below a temporary root the way the kubelet would mount them.
struct Pod<'a> {
    bundle: &'a Bundle,
    deployment: &'a Doc,
    spec: &'a Yaml,
    gateway: &'a Yaml,
    root: tempfile::TempDir,
    /// Every file mounted into the gateway container, by its path in the pod.
    files: BTreeMap<String, Mounted>,
}

/// Where a mounted file comes from.
#[derive(Debug, Clone)]
struct Mounted {
    /// `ConfigMap` or `Secret`.
    kind: &'static str,
    name: String,
    key: String,
    content: String,
}

impl<'a> Pod<'a> {
    fn new(bundle: &'a Bundle) -> Pod<'a> {
        let deployment = bundle.one("Deployment");
        let spec = get(&deployment.yaml, "spec.template.spec", &deployment.what());
        let gateways: Vec<&Yaml> = get_vec(spec, "containers", &deployment.what())
            .iter()
            .filter(|c| {
                c["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("portcullis:"))
            })
            .collect();
        assert_eq!(
            gateways.len(),
            1,
            "{}: one container runs the portcullis image",
            deployment.what()
        );
        let mut pod = Pod {
            bundle,
            deployment,
            spec,
            gateway: gateways[0],
            root: tempfile::tempdir().unwrap(),
            files: BTreeMap::new(),
        };
        for mount in opt_vec(pod.gateway, "volumeMounts") {
            let files = pod.mount(mount);
            pod.files.extend(files);
        }
        pod
    }

    fn what(&self) -> String {
        self.deployment.what()
    }

    fn containers(&self) -> &'a [Yaml] {
        get_vec(self.spec, "containers", &self.what())
    }

    fn container(&self, name: &str) -> &'a Yaml {
        self.containers()
            .iter()
            .find(|c| c["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no container {name:?}", self.what()))
    }

    fn volume(&self, name: &str) -> &'a Yaml {
        opt_vec(self.spec, "volumes")
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no volume {name:?}", self.what()))
    }

    /// Where an absolute path inside the gateway container is on this machine.
    fn host_path(&self, in_pod: &str) -> PathBuf {
        assert!(in_pod.starts_with('/'), "{in_pod:?} is not absolute");
        self.root.path().join(in_pod.trim_start_matches('/'))
    }

    /// Writes a ConfigMap or Secret volume's files under its mount path; returns them by
    /// their path in the pod.
    fn mount(&self, mount: &Yaml) -> Vec<(String, Mounted)> {
        let what = self.what();
        let volume = self.volume(get_str(mount, "name", &what));
        let mount_path = get_str(mount, "mountPath", &what);
        assert!(
            opt(mount, "subPath").is_none(),
            "{what}: {mount_path} uses subPath, which never sees ConfigMap or Secret updates"
        );
        let (kind, name, data, items) = if let Some(cm) = opt(volume, "configMap") {
            let name = get_str(cm, "name", &what);
            let doc = self.bundle.named("ConfigMap", name);
            let data = string_map(get(&doc.yaml, "data", &doc.what()), &doc.what());
            ("ConfigMap", name, data, opt_vec(cm, "items"))
        } else if let Some(secret) = opt(volume, "secret") {
            let name = get_str(secret, "secretName", &what);
            let data = secret_data(self.bundle.named("Secret", name));
            ("Secret", name, data, opt_vec(secret, "items"))
        } else {
            panic!("{what}: volume for {mount_path} is neither a ConfigMap nor a Secret")
        };
        // Without `items` every key becomes a file; with them, only those, at their paths.
        let layout: Vec<(String, String)> = if items.is_empty() {
            data.keys().map(|k| (k.clone(), k.clone())).collect()
        } else {
            items
                .iter()
                .map(|i| {
                    (
                        get_str(i, "key", &what).to_owned(),
                        get_str(i, "path", &what).to_owned(),
                    )
                })
                .collect()
        };
        let mut out = Vec::new();
        for (key, rel) in layout {
            let content = data
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: {mount_path} wants {kind} key {key:?}"));
            let in_pod = format!("{}/{rel}", mount_path.trim_end_matches('/'));
            let file = self.host_path(&in_pod);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, content).unwrap();
            let mounted = Mounted {
                kind,
                name: name.to_owned(),
                key,
                content: content.clone(),
            };
            out.push((in_pod, mounted));
        }
        out
    }

    /// The mounted file at a path in the pod.
    fn mounted(&self, in_pod: &str) -> &Mounted {
        self.files
            .get(in_pod)
            .unwrap_or_else(|| panic!("{}: {in_pod} is in no mounted volume", self.what()))
    }

    /// `serve -c PATH` from the gateway's args (or command), as a path in the pod.
    fn config_path(&self) -> String {
        let what = self.what();
        let args = strings(
            opt_vec(self.gateway, "command")
                .iter()
                .chain(opt_vec(self.gateway, "args"))
                .cloned()
                .collect::<Vec<_>>()
                .as_slice(),
            &what,
        );
        let serve = args.iter().position(|a| a == "serve");
        let c = args.iter().position(|a| a == "-c" || a == "--config");
        match (serve, c) {
            (Some(s), Some(c)) if s < c && c + 1 < args.len() => args[c + 1].clone(),
            _ => panic!("{what}: the gateway does not run `serve -c FILE`: {args:?}"),
        }
    }

    /// The `PORTCULLIS_*` configuration variables the container sets, with `*_FILE` paths
    /// moved below the temporary root.
    fn env(&self) -> Vec<(String, String)> {
        let what = self.what();
        opt_vec(self.gateway, "env")
            .iter()
            .map(|e| {
                let name = get_str(e, "name", &what).to_owned();
                let value = opt(e, "value")
                    .and_then(Yaml::as_str)
                    .unwrap_or_else(|| panic!("{what}: env {name} is not a plain value"));
                let value = if name.ends_with("_FILE") {
                    self.host_path(value).display().to_string()
                } else {
                    value.to_owned()
                };
                (name, value)
            })
            .collect()
    }

    /// Loads the gateway's configuration as the container would see it, after replacing
    /// the files that `replace` names (paths in the pod).
    fn load_config(&self, replace: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        for (path, content) in replace {
            std::fs::write(self.host_path(path), content).unwrap();
        }
        let file_keys = self.file_keys();
        let path = self.host_path(&self.config_path());
        // Files the configuration names are absolute paths in the pod; point the same keys
        // at the files laid out here (environment overrides win over the file).
        let mut vars = self.env();
        for (key, in_pod) in file_keys {
            assert!(
                self.files.contains_key(&in_pod),
                "{}: {key} = {in_pod:?} is in no mounted volume",
                self.what()
            );
            vars.push((env_var(&key), self.host_path(&in_pod).display().to_string()));
        }
        config::load(&path, &EnvOverrides::from_vars(vars))
    }

    /// The `*_file` keys of the gateway's configuration file and their paths in the pod.
    fn file_keys(&self) -> Vec<(String, String)> {
        let in_pod = self.config_path();
        let source = self.mounted(&in_pod);
        assert_eq!(source.kind, "ConfigMap", "{}: {in_pod}", self.what());
        file_keys(&self.host_path(&in_pod))
    }

    /// The container port that `port` (a number or a port name) means in this pod, and the
    /// container that declares it.
    fn resolve_port(&self, port: &Yaml) -> (u16, Option<&'a Yaml>) {
        if let Some(n) = port.as_i64() {
            let owner = self.containers().iter().find(|c| {
                opt_vec(c, "ports")
                    .iter()
                    .any(|p| p["containerPort"].as_i64() == Some(n))
            });
            return (u16::try_from(n).unwrap(), owner);
        }
        let name = port
            .as_str()
            .unwrap_or_else(|| panic!("{}: port {port:?}", self.what()));
        for c in self.containers() {
            for p in opt_vec(c, "ports") {
                if p["name"].as_str() == Some(name) {
                    let n = get_i64(p, "containerPort", &self.what());
                    return (u16::try_from(n).unwrap(), Some(c));
                }
            }
        }
        panic!("{}: no container port named {name:?}", self.what())
    }

    fn template_labels(&self) -> BTreeMap<String, String> {
        let what = self.what();
        string_map(
            get(
                &self.deployment.yaml,
                "spec.template.metadata.labels",
                &what,
            ),
            &what,
        )
    }
}

/// A Secret's keys and values (`stringData` and base64 `data`).
fn secret_data(doc: &Doc) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(d) = opt(&doc.yaml, "data") {
        for (k, v) in string_map(d, &doc.what()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .unwrap_or_else(|e| panic!("{}: data.{k} is not base64: {e}", doc.what()));
            out.insert(k, String::from_utf8(bytes).unwrap());
        }
    }
    if let Some(d) = opt(&doc.yaml, "stringData") {
        out.extend(string_map(d, &doc.what()));
    }
    out
}

/// Every `*_file` key of a configuration file, as `(dot.path, value)`.
fn file_keys(config_file: &Path) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        if let Value::Dict(_, dict) = value {
            for (k, v) in dict {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    Value::String(_, s) if k.ends_with("_file") => out.push((key, s.clone())),
                    _ => walk(&key, v, out),
                }
            }
        }
    }
    let value: Value = Figment::from(Toml::file(config_file)).extract().unwrap();
    let mut out = Vec::new();
    walk("", &value, &mut out);
    out
}

/// `oidc.client_secret_file` -> `PORTCULLIS_OIDC__CLIENT_SECRET_FILE`.
fn env_var(key: &str) -> String {
    format!(
        "PORTCULLIS_{}",
        key.split('.')
            .map(str::to_ascii_uppercase)
            .collect::<Vec<_>>()
            .join("__")
    )
}

/// `["sleep", "5"]` as a preStop hook -> 5 s; no hook -> 0.
fn pre_stop_sleep(container: &Yaml, what: &str) -> Duration {
    let Some(hook) = opt(container, "lifecycle.preStop") else {
        return Duration::ZERO;
    };
    if let Some(s) = opt(hook, "sleep.seconds") {
        return Duration::from_secs(s.as_i64().unwrap().try_into().unwrap());
    }
    let cmd = strings(get_vec(hook, "exec.command", what), what);
    match cmd.as_slice() {
        [sleep, n] if sleep == "sleep" || sleep.ends_with("/sleep") => {
            Duration::from_secs(n.parse().unwrap())
        }
        _ => panic!("{what}: preStop is not a plain sleep: {cmd:?}"),
    }
}

/// The `uid` of the runtime stage's `USER uid[:gid]` in the Dockerfile.
fn dockerfile_uid() -> i64 {
    let dockerfile = read(&repo_file("Dockerfile"));
    let user = dockerfile
        .lines()
        .rfind(|l| l.trim_start().starts_with("USER "))
        .expect("the Dockerfile sets USER");
    let uid = user.trim()["USER ".len()..].split(':').next().unwrap();
    uid.parse()
        .unwrap_or_else(|_| panic!("the Dockerfile's USER {uid:?} is not numeric"))
}

/// A session secret of the length `openssl rand -base64 48` prints.
const GENERATED_SESSION_SECRET: &str = "q4xY0bE1m7o2W9v3K8c5R6t1Z0a9N2s7D4f3G6h5J8k1L0p3";

// === the checks shared by both Deployments ===

/// Everything both Deployments must satisfy; returns the loaded configuration.
fn check_gateway_pod(pod: &Pod<'_>) -> Config {
    let cfg = check_config_and_secrets(pod);
    check_probes_and_service(pod, &cfg);
    check_selectors(pod);
    check_security(pod);
    check_stop(pod, &cfg);
    cfg
}

/// The ConfigMap's `gateway.toml` loads, with its secrets read from the Secret's files.
fn check_config_and_secrets(pod: &Pod<'_>) -> Config {
    let what = pod.what();

    // Every secret the configuration reads from a file comes from a Secret, never from the
    // ConfigMap or the image.
    let file_keys: BTreeMap<String, String> = pod.file_keys().into_iter().collect();
    for key in ["oidc.client_secret_file", "session.secret_file"] {
        let in_pod = file_keys
            .get(key)
            .unwrap_or_else(|| panic!("{what}: {key} is not set"));
        let source = pod.mounted(in_pod);
        assert_eq!(
            source.kind, "Secret",
            "{what}: {key} = {in_pod} comes from {} {:?}, key {:?}",
            source.kind, source.name, source.key
        );
    }
    let session_file = &file_keys["session.secret_file"];
    let client_secret = pod.mounted(&file_keys["oidc.client_secret_file"]).clone();

    // The shipped placeholder session secret is refused, so the manifests cannot run
    // unedited.
    let errors = pod
        .load_config(&[])
        .expect_err("the placeholder session secret must be refused");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["session.secret"], "{what}: {errors}");
    assert!(
        errors.0[0].message.contains("at least 32 bytes"),
        "{errors}"
    );

    // With a real one in its place, the configuration is valid and uses both files.
    let cfg = match pod.load_config(&[(session_file, GENERATED_SESSION_SECRET)]) {
        Ok(cfg) => cfg,
        Err(e) => panic!("{what}: gateway.toml is invalid:\n{e}"),
    };
    // Except `session.state_dir` (logouts kept across restarts), which the files under
    // deploy/ do not set yet: `check` warns about it for every cookie-store setup.
    let warnings: Vec<_> = cfg
        .warnings
        .iter()
        .filter(|w| w.key != "session.state_dir")
        .collect();
    assert!(warnings.is_empty(), "{what}: {warnings:?}");
    let session = cfg.session.as_ref().expect("a session for browser logins");
    assert_eq!(session.secret.expose(), GENERATED_SESSION_SECRET);
    let read = cfg.oidc.client_secret.as_ref().expect("oidc.client_secret");
    assert_eq!(read.expose(), client_secret.content, "{what}");

    // No other container sees the gateway's secrets.
    for c in pod.containers() {
        if std::ptr::eq(c, pod.gateway) {
            continue;
        }
        for m in opt_vec(c, "volumeMounts") {
            let v = pod.volume(get_str(m, "name", &what));
            assert!(
                opt(v, "secret").is_none(),
                "{what}: container {} mounts a Secret",
                c["name"].as_str().unwrap_or("?")
            );
        }
    }
    cfg
}

/// Probes on the admin listener; the Service on the main listener only.
fn check_probes_and_service(pod: &Pod<'_>, cfg: &Config) {
    let what = pod.what();

    // The kubelet connects to the pod IP, so the admin listener binds every address.
    let admin = cfg.server.admin_listen;
    assert!(
        admin.ip().is_unspecified(),
        "{what}: server.admin_listen = {admin} is not reachable by the kubelet"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let http_get = get(pod.gateway, &format!("{probe}.httpGet"), &what);
        assert_eq!(get_str(http_get, "path", &what), path, "{what}: {probe}");
        let (port, owner) = pod.resolve_port(get(http_get, "port", &what));
        assert_eq!(
            port,
            admin.port(),
            "{what}: {probe} is not on server.admin_listen"
        );
        assert!(owner.is_some_and(|c| std::ptr::eq(c, pod.gateway)));
    }

    // The gateway container declares the main port, and the Service targets it and
    // nothing else.
    let listen = cfg.server.listen;
    assert!(
        listen.ip().is_unspecified(),
        "{what}: server.listen = {listen}"
    );
    assert!(
        opt_vec(pod.gateway, "ports")
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(i64::from(listen.port()))),
        "{what}: the gateway container does not declare port {}",
        listen.port()
    );
    let service = pod.bundle.one("Service");
    let ports = get_vec(&service.yaml, "spec.ports", &service.what());
    assert!(!ports.is_empty());
    for p in ports {
        let target = opt(p, "targetPort").unwrap_or(&p["port"]);
        let (port, owner) = pod.resolve_port(target);
        assert_ne!(
            port,
            admin.port(),
            "{}: exposes the admin port",
            service.what()
        );
        assert_eq!(
            port,
            listen.port(),
            "{}: targets {port}, not server.listen",
            service.what()
        );
        assert!(
            owner.is_some_and(|c| std::ptr::eq(c, pod.gateway)),
            "{}: targets a port the gateway container does not declare",
            service.what()
        );
    }
}

/// The Deployment, its Service and its PodDisruptionBudget select the same pods.
fn check_selectors(pod: &Pod<'_>) {
    let what = pod.what();
    let labels = pod.template_labels();
    let selects = |selector: &Yaml, who: &str| {
        let sel = string_map(selector, who);
        assert!(!sel.is_empty(), "{who}: empty selector");
        for (k, v) in &sel {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{who}: selects {k}={v}, the pods lack it"
            );
        }
        sel
    };
    let deployment = selects(
        get(&pod.deployment.yaml, "spec.selector.matchLabels", &what),
        &what,
    );
    let service = pod.bundle.one("Service");
    let by_service = selects(
        get(&service.yaml, "spec.selector", &service.what()),
        &service.what(),
    );
    assert_eq!(by_service, deployment, "{}", service.what());
    let pdb = pod.bundle.one("PodDisruptionBudget");
    let by_pdb = selects(
        get(&pdb.yaml, "spec.selector.matchLabels", &pdb.what()),
        &pdb.what(),
    );
    assert_eq!(by_pdb, deployment, "{}", pdb.what());
    for c in opt_vec(pod.spec, "topologySpreadConstraints") {
        selects(get(c, "labelSelector.matchLabels", &what), &what);
    }

    let replicas = get_i64(&pod.deployment.yaml, "spec.replicas", &what);
    let min_available = get_i64(&pdb.yaml, "spec.minAvailable", &pdb.what());
    assert!(
        (1..replicas).contains(&min_available),
        "{}: minAvailable {min_available} with {replicas} replicas would block every drain",
        pdb.what()
    );
}

/// Non-root (the image's user), read-only root, no capabilities, seccomp, resources.
fn check_security(pod: &Pod<'_>) {
    let what = pod.what();
    let pod_sc = opt(pod.spec, "securityContext");
    let pod_level = |key: &str| pod_sc.and_then(|s| opt(s, key));
    for c in pod.containers() {
        let name = c["name"].as_str().unwrap_or("?");
        let who = format!("{what}, container {name}");
        let sc = get(c, "securityContext", &who);
        let non_root = opt(sc, "runAsNonRoot").or_else(|| pod_level("runAsNonRoot"));
        assert_eq!(non_root.and_then(Yaml::as_bool), Some(true), "{who}");
        assert_eq!(
            opt_bool(sc, "allowPrivilegeEscalation"),
            Some(false),
            "{who}"
        );
        assert_eq!(opt_bool(sc, "readOnlyRootFilesystem"), Some(true), "{who}");
        assert_eq!(
            strings(get_vec(sc, "capabilities.drop", &who), &who),
            ["ALL"],
            "{who}"
        );
        assert!(
            opt_vec(sc, "capabilities.add").is_empty(),
            "{who} adds capabilities"
        );
        let seccomp = opt(sc, "seccompProfile.type").or_else(|| pod_level("seccompProfile.type"));
        assert_eq!(
            seccomp.and_then(Yaml::as_str),
            Some("RuntimeDefault"),
            "{who}"
        );
        for kind in ["requests.cpu", "requests.memory", "limits.memory"] {
            assert!(
                opt(c, &format!("resources.{kind}")).is_some(),
                "{who}: no resources.{kind}"
            );
        }
    }
    let uid = opt(pod.gateway, "securityContext.runAsUser").or_else(|| pod_level("runAsUser"));
    assert_eq!(
        uid.and_then(Yaml::as_i64),
        Some(dockerfile_uid()),
        "{what}: not the image's user"
    );
    assert_eq!(
        opt_bool(pod.spec, "automountServiceAccountToken"),
        Some(false),
        "{what}: the gateway needs no Kubernetes API token"
    );
}

/// preStop, then SIGTERM and the drain, all before the kubelet's SIGKILL.
fn check_stop(pod: &Pod<'_>, cfg: &Config) {
    let what = pod.what();
    let grace = get_i64(pod.spec, "terminationGracePeriodSeconds", &what);
    let needed = pre_stop_sleep(pod.gateway, &what) + cfg.server.shutdown_grace;
    assert!(
        Duration::from_secs(grace.try_into().unwrap()) > needed,
        "{what}: terminationGracePeriodSeconds {grace} <= preStop + shutdown_grace ({needed:?})"
    );
}

// === Kubernetes ===

#[test]
fn every_kubernetes_manifest_is_a_named_object() {
    let files = yaml_files(&repo_file("deploy/kubernetes"));
    let mut kinds = BTreeMap::<String, usize>::new();
    for file in &files {
        let docs = parse_docs(file);
        assert!(!docs.is_empty(), "{}: no document", file.display());
        for doc in docs {
            let where_ = doc.file.display().to_string();
            assert!(
                doc.yaml["apiVersion"]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{where_}: no apiVersion"
            );
            assert!(!doc.kind().is_empty(), "{where_}: no kind");
            if doc.kind() != "Kustomization" {
                assert!(!doc.name().is_empty(), "{where_}: no metadata.name");
                assert!(
                    opt(&doc.yaml, "metadata.namespace").is_none(),
                    "{where_}: hard-codes a namespace (kubectl -n decides)"
                );
            }
            *kinds.entry(doc.kind().to_owned()).or_default() += 1;
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "Kustomization",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= 2,
            "expected a {kind} in both the gateway and the sidecar example: {kinds:?}"
        );
    }
}

#[test]
fn kustomizations_list_exactly_the_manifests_beside_them() {
    let files = yaml_files(&repo_file("deploy/kubernetes"));
    let kustomizations: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "kustomization.yaml"))
        .collect();
    // The gateway, the sidecar example, and the Redis overlay on the gateway.
    assert_eq!(kustomizations.len(), 3, "{kustomizations:?}");
    for k in kustomizations {
        let dir = k.parent().unwrap();
        let doc = &parse_docs(k)[0];
        let listed: BTreeSet<String> =
            strings(get_vec(&doc.yaml, "resources", &doc.what()), &doc.what())
                .into_iter()
                // An overlay's base is a directory, not a manifest beside it.
                .filter(|r| !r.starts_with("../"))
                .collect();
        let present: BTreeSet<String> = files
            .iter()
            .filter(|f| f.parent() == Some(dir) && *f != k)
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(listed, present, "{}", k.display());
    }
}

#[test]
fn no_service_selects_another_deployments_pods() {
    // Both examples may be applied to one namespace.
    let docs: Vec<Doc> = yaml_files(&repo_file("deploy/kubernetes"))
        .iter()
        .flat_map(|f| parse_docs(f))
        .collect();
    let pods: Vec<(String, BTreeMap<String, String>)> = docs
        .iter()
        .filter(|d| d.kind() == "Deployment")
        .map(|d| {
            let labels = get(&d.yaml, "spec.template.metadata.labels", &d.what());
            (d.what(), string_map(labels, &d.what()))
        })
        .collect();
    for s in docs.iter().filter(|d| d.kind() == "Service") {
        let sel = string_map(get(&s.yaml, "spec.selector", &s.what()), &s.what());
        let matched: Vec<&String> = pods
            .iter()
            .filter(|(_, labels)| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(w, _)| w)
            .collect();
        assert_eq!(matched.len(), 1, "{} selects {matched:?}", s.what());
    }
}

#[test]
fn gateway_deployment_serves_the_configmap_behind_its_service() {
    let bundle = Bundle::load("deploy/kubernetes");
    let pod = Pod::new(&bundle);
    let cfg = check_gateway_pod(&pod);
    let what = pod.what();

    assert_eq!(get_i64(&pod.deployment.yaml, "spec.replicas", &what), 2);
    assert_eq!(pod.containers().len(), 1, "{what}: the gateway alone");
    assert_eq!(get_str(pod.gateway, "image", &what), "portcullis:latest");
    assert_eq!(pod.config_path(), "/etc/portcullis/gateway.toml");
    assert_eq!(cfg.server.listen.port(), 8080);
    assert_eq!(cfg.server.admin_listen.port(), 9090);
    let (admin, _) = pod.resolve_port(&Yaml::String("admin".into()));
    assert_eq!(admin, 9090, "{what}: the admin port is named \"admin\"");
    assert!(
        cfg.server.public_url.scheme() == "https",
        "{what}: browsers reach the gateway over https (secure cookies)"
    );
    assert_eq!(
        opt_bool(pod.spec, "enableServiceLinks"),
        Some(false),
        "{what}: no PORTCULLIS_SERVICE_* variables for the Service named portcullis"
    );
}

#[test]
fn sidecar_app_listens_on_loopback_only_and_the_gateway_is_the_way_in() {
    let bundle = Bundle::load("deploy/kubernetes/sidecar");
    let pod = Pod::new(&bundle);
    let cfg = check_gateway_pod(&pod);
    let what = pod.what();

    assert_eq!(pod.containers().len(), 2, "{what}: the app and the gateway");
    let app = pod.container("app");
    assert!(
        opt_vec(app, "ports").is_empty(),
        "{what}: the app declares ports; only the gateway's should be reachable"
    );

    // The gateway forwards to the pod's loopback, where the app listens.
    let upstream = &cfg.upstream.url;
    let host: IpAddr = upstream
        .host_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{what}: upstream.url {upstream} is not a loopback IP"));
    assert!(host.is_loopback(), "{what}: upstream.url = {upstream}");
    let port = upstream.port_or_known_default().unwrap().to_string();

    let argv = strings(
        opt_vec(app, "command")
            .iter()
            .chain(opt_vec(app, "args"))
            .cloned()
            .collect::<Vec<_>>()
            .as_slice(),
        &what,
    );
    let bind = argv
        .iter()
        .position(|a| a == "--bind")
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("{what}: the app's command has no --bind ADDRESS: {argv:?}"));
    let (bind_host, bind_port) = match bind.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (bind.as_str(), None),
    };
    let bind_ip: IpAddr = bind_host.trim_matches(['[', ']']).parse().unwrap();
    assert!(bind_ip.is_loopback(), "{what}: the app binds {bind}");
    assert!(
        bind_port == Some(port.as_str()) || argv.contains(&port),
        "{what}: the app does not listen on upstream.url's port {port}: {argv:?}"
    );
    assert!(
        !argv
            .iter()
            .any(|a| a.contains("0.0.0.0") || a.contains("[::]")),
        "{what}: {argv:?}"
    );

    // The app outlives the gateway's drain, so requests in flight reach it.
    let app_stop = pre_stop_sleep(app, &what);
    let gateway_done = pre_stop_sleep(pod.gateway, &what) + cfg.server.shutdown_grace;
    assert!(
        app_stop >= gateway_done,
        "{what}: the app stops after {app_stop:?}, the gateway drains until {gateway_done:?}"
    );
    let grace = get_i64(pod.spec, "terminationGracePeriodSeconds", &what);
    assert!(Duration::from_secs(grace.try_into().unwrap()) > app_stop);
}

// === systemd ===

/// A unit file: `(section, key, value)` in file order; keys may repeat.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            // A trailing backslash continues the line.
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a key=value line: {line:?}"));
            assert!(!section.is_empty(), "{k} outside a section");
            entries.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
        Unit(entries)
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The effective value (the last assignment), if any.
    fn get(&self, key: &str) -> Option<&str> {
        self.all("Service", key).last().copied()
    }

    fn service(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("portcullis.service: no {key}="))
    }
}

/// A systemd time span: `30`, `30s`, `1min 30s`, `2m`.
fn systemd_span(v: &str) -> Duration {
    if let Ok(secs) = v.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    humantime::parse_duration(v).unwrap_or_else(|e| panic!("time span {v:?}: {e}"))
}

fn unit() -> Unit {
    Unit::parse(&read(&repo_file("deploy/systemd/portcullis.service")))
}

const UNIT_CONFIG: &str = "/etc/portcullis/gateway.toml";

#[test]
fn systemd_unit_serves_the_config_and_reloads_with_sighup() {
    let unit = unit();
    assert_eq!(unit.all("Service", "ExecStart").len(), 1);
    let start: Vec<&str> = unit.service("ExecStart").split_whitespace().collect();
    let binary = start[0];
    assert!(binary.starts_with('/'), "ExecStart needs an absolute path");
    assert!(binary.ends_with("/portcullis"), "{start:?}");
    assert_eq!(start[1..], ["serve", "-c", UNIT_CONFIG]);
    assert!(
        matches!(unit.service("Type"), "simple" | "exec"),
        "the gateway does not speak sd_notify"
    );
    assert!(
        matches!(unit.service("Restart"), "on-failure" | "always"),
        "Restart={}",
        unit.service("Restart")
    );

    // ExecReload: optional offline checks of the same file, then SIGHUP to the main process.
    let reload = unit.all("Service", "ExecReload");
    let (last, before) = reload.split_last().expect("ExecReload=");
    let kill: Vec<&str> = last.split_whitespace().collect();
    assert!(
        kill[0].ends_with("/kill"),
        "ExecReload ends with kill: {kill:?}"
    );
    assert!(
        matches!(kill[1..], ["-HUP", "$MAINPID"] | ["-s", "HUP", "$MAINPID"]),
        "the last ExecReload must send SIGHUP to $MAINPID: {kill:?}"
    );
    for check in before {
        let argv: Vec<&str> = check.split_whitespace().collect();
        assert_eq!(
            argv,
            [binary, "check", "-c", UNIT_CONFIG],
            "ExecReload={check}"
        );
    }

    // SIGTERM drains; systemd must wait longer than the drain before SIGKILL.
    assert!(matches!(
        unit.get("KillSignal"),
        None | Some("SIGTERM" | "SIGINT")
    ));
    let stop = systemd_span(unit.service("TimeoutStopSec"));
    let cfg = systemd_example_config(&unit).expect("the example configuration is valid");
    assert!(
        stop > DEFAULT_SHUTDOWN_GRACE && stop > cfg.server.shutdown_grace,
        "TimeoutStopSec={stop:?} does not exceed server.shutdown_grace"
    );
}

#[test]
fn systemd_unit_is_hardened() {
    let unit = unit();
    assert!(
        unit.get("DynamicUser") == Some("yes") || unit.get("User").is_some_and(|u| u != "root"),
        "the gateway runs as a dedicated user"
    );
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(unit.get(key), Some(want), "{key}=");
    }
    let families: BTreeSet<&str> = unit
        .service("RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]),
        "RestrictAddressFamilies="
    );
    let filters = unit.all("Service", "SystemCallFilter");
    assert_eq!(
        filters.first(),
        Some(&"@system-service"),
        "SystemCallFilter="
    );
    assert!(
        filters[1..].iter().all(|f| f.starts_with('~')),
        "later SystemCallFilter= lines may only deny: {filters:?}"
    );

    // No capability, unless the gateway must bind a port below 1024.
    let cfg = systemd_example_config(&unit).unwrap();
    let ambient = unit.get("AmbientCapabilities").unwrap_or("");
    let bounding = unit.service("CapabilityBoundingSet");
    let low_port = [cfg.server.listen.port(), cfg.server.admin_listen.port()]
        .iter()
        .any(|p| *p < 1024);
    if low_port {
        assert_eq!(ambient, "CAP_NET_BIND_SERVICE");
        assert_eq!(bounding, "CAP_NET_BIND_SERVICE");
    } else {
        assert_eq!(ambient, "", "no port below 1024, no capability");
        assert_eq!(bounding, "", "CapabilityBoundingSet= must be empty");
    }
}

/// The unit's `Environment=` assignments, in order.
fn unit_environment(unit: &Unit) -> Vec<(String, String)> {
    unit.all("Service", "Environment")
        .iter()
        .flat_map(|line| {
            assert!(
                !line.contains(['"', '\'']),
                "quoted Environment= values are not understood here: {line}"
            );
            line.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
        })
        .collect()
}

/// Loads `deploy/systemd/gateway.toml` with the unit's environment, `%d` standing for a
/// credentials directory that holds what `LoadCredential=` would copy there.
fn systemd_example_config(unit: &Unit) -> Result<Config, ConfigErrors> {
    let creds = tempfile::tempdir().unwrap();
    // `%S`: the root of systemd's state directories (/var/lib), with the unit's
    // StateDirectory= in it, as systemd creates it before the start.
    let state = tempfile::tempdir().unwrap();
    for dir in unit.all("Service", "StateDirectory") {
        std::fs::create_dir_all(state.path().join(dir)).unwrap();
    }
    for cred in unit.all("Service", "LoadCredential") {
        let (name, source) = cred.split_once(':').unwrap();
        assert!(source.starts_with("/etc/portcullis/"), "{cred}");
        let value = if name.contains("session") {
            GENERATED_SESSION_SECRET
        } else {
            "client-secret-from-credentials"
        };
        std::fs::write(creds.path().join(name), value).unwrap();
    }
    let vars = unit_environment(unit).into_iter().map(|(k, v)| {
        let v = v
            .replace("%d", &creds.path().display().to_string())
            .replace("%S", &state.path().display().to_string());
        (k, v)
    });
    config::load(
        &repo_file("deploy/systemd/gateway.toml"),
        &EnvOverrides::from_vars(vars),
    )
}

#[test]
fn systemd_secrets_come_from_credentials_not_from_the_config_file() {
    let unit = unit();
    // Every credential the environment points at is loaded, and every loaded one is used.
    let names: BTreeSet<String> = unit
        .all("Service", "LoadCredential")
        .iter()
        .map(|c| {
            c.split_once(':')
                .expect("LoadCredential=NAME:PATH")
                .0
                .to_owned()
        })
        .collect();
    let env = unit_environment(&unit);
    let used: BTreeSet<String> = env
        .iter()
        .filter_map(|(_, v)| v.strip_prefix("%d/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(names, used, "LoadCredential= versus %d/ in Environment=");
    for (k, v) in &env {
        if v.starts_with("%d/") {
            assert!(
                k.starts_with("PORTCULLIS_") && k.contains("__") && k.ends_with("_FILE"),
                "{k}: credentials are read through *_file keys"
            );
        }
    }

    let cfg = match systemd_example_config(&unit) {
        Ok(cfg) => cfg,
        Err(e) => panic!("deploy/systemd/gateway.toml is invalid:\n{e}"),
    };
    // No warning at all: logouts are kept across restarts in the unit's state directory.
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let state_dir = cfg.session.as_ref().unwrap().state_dir.clone();
    assert!(
        state_dir.is_some_and(|d| d.ends_with(unit.service("StateDirectory"))),
        "session.state_dir is the unit's StateDirectory="
    );
    assert_eq!(
        cfg.session.as_ref().unwrap().secret.expose(),
        GENERATED_SESSION_SECRET
    );
    assert_eq!(
        cfg.oidc.client_secret.as_ref().unwrap().expose(),
        "client-secret-from-credentials"
    );
    // The admin endpoints stay on the host.
    assert!(cfg.server.admin_listen.ip().is_loopback());

    // The file itself (world-readable under /etc) holds no secret: without the
    // credentials the gateway refuses it.
    let errors = config::load(
        &repo_file("deploy/systemd/gateway.toml"),
        &EnvOverrides::default(),
    )
    .expect_err("secrets must come from the credentials");
    let keys: BTreeSet<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["oidc.client_secret", "session.secret"]),
        "{errors}"
    );
}
