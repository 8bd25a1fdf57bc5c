//! Rendering kustomizations and validating objects against the Kubernetes schemas, with the
//! tools `tests/tools/manifest-tools.sh` installs (kubectl's built-in kustomize and
//! `kubernetes-validate`, both pinned, from PyPI).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::Value;

/// Kinds served by CRDs of other projects, which `kubernetes-validate` has no schema for; the
/// test checks them structurally instead (`custom_kinds.rs`).
pub const CUSTOM_KINDS: [&str; 5] = [
    "PodMonitor",
    "ServiceMonitor",
    "PrometheusRule",
    "Certificate",
    "Issuer",
];

/// Oldest and newest Kubernetes versions the manifests are validated against. 1.27 is the
/// oldest release still in any major provider's support window when Snug 0.1 ships; the newest is
/// the newest kubernetes-validate carries.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.27.0", "1.37.0"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Paths of the installed tools.
#[derive(Debug)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub kubernetes_validate: PathBuf,
    /// A Python with the `dockerfile` package (BuildKit's Dockerfile parser).
    pub python: PathBuf,
}

/// Installs the tools on first use (once per test binary). A machine where they cannot be had
/// fails every test that needs them, with the installer's reason.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = repo_root().join("tests/tools/manifest-tools.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}): the manifest tests need kubectl and kubernetes-validate.\n{}{}",
            script.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let paths: BTreeMap<&str, &str> = stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let path = |key: &str| {
            PathBuf::from(
                paths
                    .get(key)
                    .unwrap_or_else(|| panic!("{} printed no {key}=: {stdout}", script.display())),
            )
        };
        Tools {
            kubectl: path("kubectl"),
            kubernetes_validate: path("kubernetes_validate"),
            python: path("python"),
        }
    })
}

/// Every directory under `manifests/` with a `kustomization.yaml` (Kustomizations and
/// Components), relative to the root.
pub fn kustomizations() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for file in files_under(&repo_root().join("manifests")) {
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            let dir = file.parent().expect("a file has a directory");
            found.push(relative(dir));
        }
    }
    found.sort();
    found
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `path` relative to the repository root.
pub fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(repo_root()).unwrap_or(path).to_path_buf()
}

/// The YAML documents of a string, as JSON values; empty documents are dropped.
pub fn parse_documents(yaml: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// One rendered kustomization: its directory, the YAML kustomize printed, and its objects.
#[derive(Debug)]
pub struct Rendered {
    pub dir: PathBuf,
    pub yaml: String,
    pub objects: Vec<Value>,
}

impl Rendered {
    /// Objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The one object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        let kind = kind.to_owned();
        let name = name.to_owned();
        let mut matching = self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind.as_str() && o["metadata"]["name"] == name.as_str());
        let found = matching
            .next()
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.dir.display()));
        assert!(
            matching.next().is_none(),
            "{}: two {kind} {name}",
            self.dir.display()
        );
        found
    }

    /// Whether an object of `kind` named `name` is there.
    pub fn has(&self, kind: &str, name: &str) -> bool {
        self.of_kind(kind).any(|o| o["metadata"]["name"] == name)
    }
}

/// `kubectl kustomize DIR` for one directory (relative to the root).
pub fn render(dir: &Path) -> Rendered {
    let out = Command::new(&tools().kubectl)
        .arg("kustomize")
        .arg(repo_root().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize: {e}"));
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = parse_documents(&yaml, &format!("kustomize output of {}", dir.display()));
    assert!(!objects.is_empty(), "{} renders nothing", dir.display());
    Rendered {
        dir: dir.to_path_buf(),
        yaml,
        objects,
    }
}

/// Whether the kustomization in `dir` is a Component: a part to add to an install, which is
/// rendered through the overlays that use it rather than on its own.
pub fn is_component(dir: &Path) -> bool {
    let path = repo_root().join(dir).join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text, &path.display().to_string())
        .first()
        .is_some_and(|k| k["kind"] == "Component")
}

/// Every installable kustomization, rendered (once per test binary).
pub fn all_rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        kustomizations()
            .iter()
            .filter(|d| !is_component(d))
            .map(|d| render(d))
            .collect()
    })
}

/// The rendering of one kustomization directory, e.g. `manifests/base`.
pub fn rendered(dir: &str) -> &'static Rendered {
    all_rendered()
        .iter()
        .find(|r| r.dir == Path::new(dir))
        .unwrap_or_else(|| panic!("no kustomization at {dir}"))
}

/// Validates the files with `kubernetes-validate --strict` against one Kubernetes version.
/// Returns, per file, how many objects passed and which kinds had no schema. Any object that
/// does not validate fails the test with the tool's message.
pub fn validate(files: &[PathBuf], version: &str) -> BTreeMap<PathBuf, (usize, Vec<String>)> {
    let out = Command::new(&tools().kubernetes_validate)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running kubernetes-validate: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.contains("ERROR"),
        "kubernetes-validate (Kubernetes {version}) rejected the manifests:\n{report}"
    );
    let mut per_file: BTreeMap<PathBuf, (usize, Vec<String>)> = BTreeMap::new();
    for line in report.lines() {
        let Some(file) = files.iter().find(|f| line.contains(&*f.to_string_lossy())) else {
            continue;
        };
        let entry = per_file.entry(file.clone()).or_default();
        if line.starts_with("INFO") && line.contains(" passed ") {
            entry.0 += 1;
        } else if let Some(rest) = line.split("Couldn't find schema for kind ").nth(1) {
            let kind = rest.split_whitespace().next().unwrap_or_default();
            entry.1.push(kind.to_owned());
        } else if line.starts_with("WARN") || line.starts_with("ERROR") {
            panic!("kubernetes-validate (Kubernetes {version}): {line}");
        }
    }
    per_file
}

/// The strings of a JSON array (nothing for anything else).
pub fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// An object's `metadata.name`.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("<unnamed>")
}
