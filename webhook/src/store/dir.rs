//! The directory store: one WorkloadProfile per YAML file, as `kubectl get -o yaml` prints it,
//! anywhere under a directory; dotfiles (the profiler's temporary files) are ignored. Files are
//! re-read when their modification time or size changes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use snug_api::WorkloadProfile;

use super::{ProfileStore, profile_key};

type Key = (String, String);
type Hasher = foldhash::fast::RandomState;
/// A profile and the file it came from.
type Entry = (PathBuf, Arc<WorkloadProfile>);

/// Profiles read from a directory of YAML files.
#[derive(Debug)]
pub struct DirProfiles {
    root: PathBuf,
    profiles: RwLock<Profiles>,
    files: Mutex<HashMap<PathBuf, FileStamp>>,
}

/// The profiles, with the file each came from, and the reverse index that keeps a rescan of
/// many files linear.
#[derive(Debug, Default)]
struct Profiles {
    /// By namespace, then name: two lookups by `&str`, so an admission allocates no key;
    /// hashed with foldhash (seeded per process), which is several times quicker than
    /// SipHash on short keys.
    by_key: HashMap<String, HashMap<String, Entry, Hasher>, Hasher>,
    by_path: HashMap<PathBuf, Key>,
    /// How many profiles `by_key` holds.
    len: usize,
}

impl Profiles {
    fn get(&self, namespace: &str, name: &str) -> Option<&Entry> {
        self.by_key.get(namespace)?.get(name)
    }

    fn insert(&mut self, (namespace, name): Key, entry: Entry) {
        let held = self
            .by_key
            .entry(namespace)
            .or_default()
            .insert(name, entry);
        self.len += usize::from(held.is_none());
    }

    fn remove(&mut self, (namespace, name): &Key) {
        let Some(names) = self.by_key.get_mut(namespace) else {
            return;
        };
        self.len -= usize::from(names.remove(name).is_some());
        if names.is_empty() {
            self.by_key.remove(namespace);
        }
    }

    /// Drops the profile `path` holds, if it still holds one; returns whether it did.
    fn remove_file(&mut self, path: &Path) -> bool {
        let Some(key) = self.by_path.remove(path) else {
            return false;
        };
        let held = self.get(&key.0, &key.1).is_some_and(|(p, _)| p == path);
        if held {
            self.remove(&key);
        }
        held
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// What one scan changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Profiles added or replaced.
    pub loaded: usize,
    /// Profiles dropped because their file went away.
    pub removed: usize,
    /// Files that did not parse (the previous version, if any, is kept).
    pub failed: usize,
}

impl DirProfiles {
    /// Reads every profile under `root` once.
    pub fn open(root: impl Into<PathBuf>) -> Arc<Self> {
        let store = Arc::new(DirProfiles {
            root: root.into(),
            profiles: RwLock::default(),
            files: Mutex::default(),
        });
        let report = store.scan();
        tracing::info!(dir = %store.root.display(), profiles = store.len(), failed = report.failed, "profiles loaded");
        store
    }

    /// Re-reads `root` every `interval`, for as long as the task runs.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.scan()).await {
                Ok(report) if report != ScanReport::default() => {
                    tracing::info!(?report, profiles = self.len(), "profiles directory changed");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "profile scan failed"),
            }
            gauge.set(self.len() as i64);
        }
    }

    /// Brings the store in line with the files now on disk.
    pub fn scan(&self) -> ScanReport {
        let mut report = ScanReport::default();
        let mut seen = HashMap::new();
        collect_yaml_files(&self.root, &mut seen);
        let Ok(mut files) = self.files.lock() else {
            return report;
        };
        let mut loaded = Vec::new();
        for (path, stamp) in &seen {
            if files.get(path) == Some(stamp) {
                continue;
            }
            match read_profile(path) {
                Ok(profile) => loaded.push((path.clone(), profile)),
                Err(why) => {
                    report.failed += 1;
                    tracing::warn!(file = %path.display(), error = %why, "profile file skipped");
                }
            }
        }
        let gone: Vec<PathBuf> = files
            .keys()
            .filter(|p| !seen.contains_key(*p))
            .cloned()
            .collect();
        *files = seen;
        drop(files);
        let Ok(mut profiles) = self.profiles.write() else {
            return report;
        };
        for path in gone {
            report.removed += usize::from(profiles.remove_file(&path));
        }
        for (path, (key, profile)) in loaded {
            // A file now naming another profile gives up the one it named before.
            if profiles.by_path.get(&path).is_some_and(|k| *k != key) {
                profiles.remove_file(&path);
            }
            profiles.by_path.insert(path.clone(), key.clone());
            profiles.insert(key, (path, Arc::new(profile)));
            report.loaded += 1;
        }
        report
    }
}

fn collect_yaml_files(dir: &Path, out: &mut HashMap<PathBuf, FileStamp>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // metadata() follows symlinks, as mounted ConfigMaps use them.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_yaml_files(&path, out);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            let stamp = FileStamp {
                modified: meta.modified().ok(),
                len: meta.len(),
            };
            out.insert(path, stamp);
        }
    }
}

fn read_profile(path: &Path) -> Result<((String, String), WorkloadProfile), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    #[derive(serde::Deserialize)]
    struct Header {
        kind: Option<String>,
    }
    let header: Header = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    if header
        .kind
        .as_deref()
        .is_some_and(|k| k != "WorkloadProfile")
    {
        return Err(format!(
            "kind {:?} is not WorkloadProfile",
            header.kind.unwrap_or_default()
        ));
    }
    let mut profile: WorkloadProfile = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    // Never read by the webhook; dropping them keeps many profiles small in memory.
    profile.metadata.managed_fields = None;
    if let Some(status) = profile.status.as_mut() {
        status.checkpoint = None;
    }
    let key = profile_key(&profile).ok_or("metadata.namespace and metadata.name are required")?;
    Ok((key, profile))
}

impl ProfileStore for DirProfiles {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<WorkloadProfile>> {
        let profiles = self.profiles.read().ok()?;
        profiles.get(namespace, name).map(|(_, p)| p.clone())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.profiles.read().map(|p| p.len).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_yaml(namespace: &str, name: &str, version: &str) -> String {
        format!(
            "apiVersion: snug.dev/v1alpha1\nkind: WorkloadProfile\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  resourceVersion: \"{version}\"\nspec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\nstatus:\n  confidence: 0.9\n  containers:\n  - name: app\n    recommendation:\n      requests:\n        cpu: 250m\n"
        )
    }

    #[test]
    fn reads_nested_yaml_ignores_dotfiles_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        let web = dir.path().join("shop/deployment-web.yaml");
        std::fs::write(&web, profile_yaml("shop", "deployment-web", "1")).unwrap();
        std::fs::write(
            dir.path().join("shop/.deployment-db.yaml.tmp"),
            "garbage: [",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.yml"),
            profile_yaml("blog", "deployment-web", "7"),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a profile").unwrap();

        let store = DirProfiles::open(dir.path());
        assert_eq!(store.len(), 2);
        let got = store.get("shop", "deployment-web").unwrap();
        assert_eq!(got.metadata.resource_version.as_deref(), Some("1"));
        assert!(store.get("blog", "deployment-web").is_some());

        // A new version (different size) is picked up; a broken rewrite keeps the old one.
        std::fs::write(&web, profile_yaml("shop", "deployment-web", "12")).unwrap();
        assert_eq!(store.scan().loaded, 1);
        let got = store.get("shop", "deployment-web").unwrap();
        assert_eq!(got.metadata.resource_version.as_deref(), Some("12"));
        std::fs::write(&web, "apiVersion: [broken").unwrap();
        assert_eq!(store.scan().failed, 1);
        assert!(store.get("shop", "deployment-web").is_some());

        // A deleted file takes its profile with it.
        std::fs::remove_file(&web).unwrap();
        assert_eq!(store.scan().removed, 1);
        assert!(store.get("shop", "deployment-web").is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_profile_without_namespace_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = profile_yaml("x", "y", "1").replace("  namespace: x\n", "");
        std::fs::write(dir.path().join("p.yaml"), text).unwrap();
        let store = DirProfiles::open(dir.path());
        assert!(store.is_empty());
        assert!(store.is_ready());
    }
}
