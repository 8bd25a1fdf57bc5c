//! Golden tests: every pod in `tests/data/pods` goes through the router; the patch must match
//! `tests/data/golden/<name>.json`, apply to the pod as sent, give a valid Pod, and a second
//! admission of the result must add nothing. `UPDATE_GOLDEN=1` rewrites the golden files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

#[tokio::test]
async fn every_pod_in_the_corpus_matches_its_golden_patch() {
    let mut names: Vec<String> = std::fs::read_dir(data("pods"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "corpus shrank: {names:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for name in names {
        let pod = yaml_file(&format!("pods/{name}"));
        let (status, response) = post(test_router(), review(&pod, "CREATE").to_string()).await;
        assert_eq!(status, 200, "{name}: {response}");
        assert_eq!(response["response"]["allowed"], true, "{name}");
        assert_eq!(
            response["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        let patch = patch_of(&response);
        let got: Value = match &patch {
            Some(p) => serde_json::to_value(p).unwrap(),
            None => Value::Null,
        };
        let golden_path = data(&format!("golden/{}.json", name.trim_end_matches(".yaml")));
        if update {
            std::fs::write(
                &golden_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
        } else {
            let want: Value =
                serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
            if want != got {
                mismatches.push(format!(
                    "{name}:\n{}",
                    serde_json::to_string_pretty(&got).unwrap()
                ));
            }
        }
        if let Some(patch) = patch {
            let result = patched(&pod, &patch);
            let _: Pod =
                serde_json::from_value(result.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (_, again) = post(test_router(), review(&result, "CREATE").to_string()).await;
            assert!(
                patch_of(&again).is_none(),
                "{name}: second pass patched again: {again}"
            );
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.join("\n")
    );
}

/// The corpus's Deployment pod as kube-apiserver 1.20.2 actually sent it (managedFields,
/// defaults, token volume...), byte for byte: the same patch as the corpus pod, applicable
/// to the object as sent.
#[tokio::test]
async fn a_review_captured_from_a_real_api_server_gets_the_corpus_pods_patch() {
    let body = std::fs::read(data("reviews/kube-1.20-deployment.json")).unwrap();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let (status, response) = post(test_router(), body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["response"]["uid"], sent["request"]["uid"]);
    assert!(response["response"]["warnings"].is_null(), "{response}");
    let patch = patch_of(&response).expect("a patch");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(data("golden/deployment.json")).unwrap())
            .unwrap();
    assert_eq!(serde_json::to_value(&patch).unwrap(), golden);
    let result = patched(&sent["request"]["object"], &patch);
    let pod: Pod = serde_json::from_value(result).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.init_containers.unwrap()[0].name, "snug-sidecar");
    assert_eq!(spec.volumes.unwrap().len(), 1, "the token volume is kept");
}
