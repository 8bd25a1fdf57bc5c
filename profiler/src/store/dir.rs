//! The directory store: `<dir>/<namespace>/<name>.yaml`, one WorkloadProfile per file, exactly
//! as `kubectl get workloadprofile -o yaml` prints it. Files are replaced atomically (a dotfile
//! in the same directory, then a rename), so a reader never sees half a profile.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use snug_api::{WorkloadProfile, WorkloadProfileSpec, WorkloadProfileStatus};

use super::ProfileStore;
use crate::{Error, Result, pods::WorkloadKey};

/// Profiles as YAML files under a directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    /// What the metadata of each file read or written by this store says, so a write need not
    /// read and parse the file it replaces.
    known: Arc<Mutex<HashMap<PathBuf, Stored>>>,
}

/// The metadata a file keeps across writes.
#[derive(Debug, Clone)]
struct Stored {
    resource_version: u64,
    created: Option<Time>,
}

impl Stored {
    fn of(profile: &WorkloadProfile) -> Self {
        Stored {
            resource_version: profile
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            created: profile.metadata.creation_timestamp.clone(),
        }
    }
}

impl DirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStore {
            root: root.into(),
            known: Arc::default(),
        }
    }

    /// The file of a workload's profile.
    pub fn path(&self, key: &WorkloadKey) -> PathBuf {
        self.root
            .join(&key.namespace)
            .join(format!("{}.yaml", key.workload.profile_name()))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads one profile file; `None` when it does not exist.
pub fn read_profile(path: &Path) -> Result<Option<WorkloadProfile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_norway::from_str(&text)
        .map(Some)
        .map_err(|source| Error::Yaml {
            path: path.to_owned(),
            source,
        })
}

fn write_profile(
    path: &Path,
    key: &WorkloadKey,
    status: &WorkloadProfileStatus,
    previous: Option<Stored>,
) -> Result<Stored> {
    // A file that does not parse is replaced, not fatal: the store owns these files.
    let previous = previous.or_else(|| {
        let read = read_profile(path).unwrap_or_else(|error| {
            tracing::warn!(%error, "replacing an unreadable profile file");
            None
        });
        read.as_ref().map(Stored::of)
    });
    let mut profile = WorkloadProfile::new(
        &key.workload.profile_name(),
        WorkloadProfileSpec {
            target_ref: key.workload.clone(),
        },
    );
    let stored = Stored {
        resource_version: previous.as_ref().map_or(0, |p| p.resource_version) + 1,
        created: previous
            .and_then(|p| p.created)
            .or_else(|| Some(Time(Timestamp::now()))),
    };
    profile.metadata.namespace = Some(key.namespace.clone());
    profile.metadata.resource_version = Some(stored.resource_version.to_string());
    profile.metadata.creation_timestamp = stored.created.clone();
    profile.status = Some(status.clone());
    let yaml = serde_norway::to_string(&profile).map_err(|source| Error::Yaml {
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("profile.yaml");
    let temp = dir.join(format!(".{file_name}.tmp"));
    let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
    file.write_all(yaml.as_bytes()).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    std::fs::rename(&temp, path).map_err(io(path))?;
    Ok(stored)
}

impl DirStore {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Stored>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProfileStore for DirStore {
    async fn load(&self, key: &WorkloadKey) -> Result<Option<WorkloadProfile>> {
        let path = self.path(key);
        let profile = read_profile(&path)?;
        if let Some(profile) = &profile {
            self.known().insert(path, Stored::of(profile));
        }
        Ok(profile)
    }

    async fn save(&self, key: &WorkloadKey, status: &WorkloadProfileStatus) -> Result<()> {
        let path = self.path(key);
        let previous = self.known().get(&path).cloned();
        let (key, status) = (key.clone(), status.clone());
        let written = tokio::task::spawn_blocking(move || {
            write_profile(&path, &key, &status, previous).map(|stored| (path, stored))
        })
        .await
        .map_err(|e| Error::Checkpoint(format!("profile writer task: {e}")))??;
        self.known().insert(written.0, written.1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snug_api::WorkloadRef;

    #[tokio::test]
    async fn writes_kubectl_shaped_yaml_and_bumps_the_resource_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let key = WorkloadKey {
            namespace: "shop".into(),
            workload: WorkloadRef::new("apps/v1", "Deployment", "web"),
        };
        assert!(store.load(&key).await.unwrap().is_none());
        let status = WorkloadProfileStatus {
            samples: 7,
            confidence: 0.5,
            ..Default::default()
        };
        store.save(&key, &status).await.unwrap();
        store.save(&key, &status).await.unwrap();
        let path = dir.path().join("shop/deployment-web.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("apiVersion: snug.dev/v1alpha1\nkind: WorkloadProfile\n"),
            "{text}"
        );
        let profile = store.load(&key).await.unwrap().unwrap();
        assert_eq!(profile.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(profile.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(profile.spec.target_ref, key.workload);
        assert_eq!(profile.status.unwrap().samples, 7);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("shop"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["deployment-web.yaml"],
            "no temp file left behind"
        );
        // Another store over the same directory (a restarted profiler) goes on from the file.
        let created = profile.metadata.creation_timestamp;
        let restarted = DirStore::new(dir.path());
        restarted.save(&key, &status).await.unwrap();
        let profile = restarted.load(&key).await.unwrap().unwrap();
        assert_eq!(profile.metadata.resource_version.as_deref(), Some("3"));
        assert_eq!(profile.metadata.creation_timestamp, created);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_on_load_and_replaced_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let key = WorkloadKey {
            namespace: "shop".into(),
            workload: WorkloadRef::new("apps/v1", "StatefulSet", "db"),
        };
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        std::fs::write(store.path(&key), "{{{ not yaml").unwrap();
        assert!(matches!(store.load(&key).await, Err(Error::Yaml { .. })));
        store
            .save(&key, &WorkloadProfileStatus::default())
            .await
            .unwrap();
        assert!(store.load(&key).await.unwrap().is_some());
    }
}
