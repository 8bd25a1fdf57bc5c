//! The Dockerfile, read with BuildKit's own parser (this machine has no Docker engine to build
//! it): one small non-root image per component, from static binaries, under the names the
//! manifests pull.

use std::process::Command;

use serde_json::Value;

use crate::render::{self, rendered, repo_root, tools};

/// One Dockerfile instruction: `FROM`, `RUN`, ... with its flags and arguments.
#[derive(Debug)]
struct Instruction {
    cmd: String,
    flags: Vec<String>,
    value: Vec<String>,
}

fn instructions() -> Vec<Instruction> {
    let out = Command::new(&tools().python)
        .arg(repo_root().join("tests/tools/dockerfile-json.py"))
        .arg(repo_root().join("Dockerfile"))
        .output()
        .expect("running dockerfile-json.py");
    assert!(
        out.status.success(),
        "the Dockerfile does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from the parser");
    let strings =
        |v: &Value| -> Vec<String> { render::strings(v).into_iter().map(str::to_owned).collect() };
    parsed
        .iter()
        .map(|i| Instruction {
            cmd: i["cmd"].as_str().expect("cmd").to_owned(),
            flags: strings(&i["flags"]),
            value: strings(&i["value"]),
        })
        .collect()
}

/// The instructions of each stage, by stage name.
fn stages(all: &[Instruction]) -> Vec<(String, String, Vec<&Instruction>)> {
    let mut stages: Vec<(String, String, Vec<&Instruction>)> = Vec::new();
    for i in all {
        if i.cmd == "FROM" {
            let base = i.value[0].clone();
            let name = match i.value.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.clone(),
                _ => String::new(),
            };
            stages.push((name, base, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(i);
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_one_small_nonroot_image_per_component_from_static_binaries() {
    let all = instructions();
    let stages = stages(&all);
    let build = stages
        .iter()
        .find(|(name, _, _)| name == "build")
        .expect("a build stage");
    let cargo: Vec<&&Instruction> = build
        .2
        .iter()
        .filter(|i| i.cmd == "RUN" && i.value.join(" ").contains("cargo build"))
        .collect();
    assert_eq!(cargo.len(), 1, "one cargo build");
    let cargo = cargo[0].value.join(" ");
    assert!(
        cargo.contains("--release") && cargo.contains("--locked"),
        "{cargo}"
    );
    assert!(
        cargo.contains("-unknown-linux-musl") || cargo.contains("crt-static"),
        "binaries must be static for a distroless/static or scratch base: {cargo}"
    );

    let base = rendered("manifests/base");
    for component in ["webhook", "sidecar", "profiler"] {
        let binary = format!("snug-{component}");
        let (_, from, body) = stages
            .iter()
            .find(|(name, _, _)| name == component)
            .unwrap_or_else(|| panic!("no `{component}` target"));
        assert!(
            from == "scratch" || from.starts_with("gcr.io/distroless/static"),
            "{component}: base {from} is not minimal"
        );
        assert!(
            cargo.contains(&format!("--bin {binary}")),
            "{binary} not built"
        );
        let users: Vec<&&Instruction> = body.iter().filter(|i| i.cmd == "USER").collect();
        assert_eq!(
            users.last().map(|u| u.value[0].as_str()),
            Some("65532:65532"),
            "{component}: runs as 65532"
        );
        let entrypoint = body
            .iter()
            .find(|i| i.cmd == "ENTRYPOINT")
            .expect("ENTRYPOINT");
        assert_eq!(
            entrypoint.value,
            [format!("/{binary}")],
            "{component}: entrypoint"
        );
        // Only its own binary: the sidecar image in particular carries nothing else.
        for copy in body.iter().filter(|i| i.cmd == "COPY") {
            assert_eq!(
                copy.flags,
                ["--from=build"],
                "{component}: {:?}",
                copy.value
            );
            assert_eq!(copy.value[0], format!("/out/{binary}"), "{component}");
        }
    }
    // The images the manifests pull are these targets.
    for component in ["webhook", "profiler"] {
        let deployment = base.get("Deployment", &format!("snug-{component}"));
        let image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
        assert_eq!(image, &format!("ghcr.io/snug-dev/snug-{component}:0.1.0"));
    }
}
