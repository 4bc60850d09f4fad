//! The deployment files, parsed: the fields a scheduler acts on must agree
//! with what `nightscreen run --shard` and `merge` expect.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use crate::util;

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(util::root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path}: one document");
    docs.remove(0)
}

fn text<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str().unwrap_or_else(|| panic!("{what}: not a string: {y:?}"))
}

/// The env entry `name` of a container: its value, or "fieldRef:PATH".
fn env(container: &Yaml, name: &str) -> Option<String> {
    container["env"].as_vec()?.iter().find(|e| e["name"].as_str() == Some(name)).map(|e| match e["value"].as_str() {
        Some(v) => v.to_string(),
        None => format!("fieldRef:{}", e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap_or_default()),
    })
}

/// Checks an Indexed Job spec (a Job's or a CronJob's jobTemplate's) and
/// returns its container.
fn indexed_job<'a>(spec: &'a Yaml, what: &str) -> &'a Yaml {
    assert_eq!(
        spec["completionMode"].as_str(),
        Some("Indexed"),
        "{what}: JOB_COMPLETION_INDEX is only set in Indexed mode"
    );
    let completions = spec["completions"].as_i64().unwrap_or_else(|| panic!("{what}: completions"));
    assert_eq!(spec["parallelism"].as_i64(), Some(completions), "{what}: parallelism = completions");
    assert!(spec["backoffLimitPerIndex"].as_i64().is_some_and(|n| n >= 1), "{what}: a failed shard is retried alone");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"), "{what}: backoffLimitPerIndex needs restartPolicy Never");
    let containers = pod["containers"].as_vec().unwrap_or_else(|| panic!("{what}: containers"));
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    assert_eq!(
        env(c, "NIGHTSCREEN_SHARDS"),
        Some(completions.to_string()),
        "{what}: NIGHTSCREEN_SHARDS must equal completions"
    );
    assert_eq!(
        env(c, "NIGHT").as_deref(),
        Some("fieldRef:metadata.labels['batch.kubernetes.io/job-name']"),
        "{what}: one OUT per Job, the same for a retried shard"
    );
    assert!(env(c, "NIGHTSCREEN_KEY_FILE").is_some(), "{what}: the programme key");
    let command: Vec<&str> = c["command"].as_vec().expect("command").iter().map(|a| text(a, "command")).collect();
    assert_eq!(command[0], "/usr/local/bin/shard-and-merge", "{what}: runs its shard, then the merge");
    // Volumes: input read-only, output writable, the key from a Secret; each mounted.
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
    for (name, read_only) in [("input", true), ("output", false), ("key", true)] {
        assert!(volumes.iter().any(|v| v["name"].as_str() == Some(name)), "{what}: volume {name}");
        let mount =
            mounts.iter().find(|m| m["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("{what}: mount {name}"));
        assert_eq!(mount["readOnly"].as_bool().unwrap_or(false), read_only, "{what}: {name} readOnly");
        let path = text(&mount["mountPath"], "mountPath");
        let var = match name {
            "input" => "NIGHTSCREEN_INPUT",
            "output" => "NIGHTSCREEN_OUT",
            _ => "NIGHTSCREEN_KEY_FILE",
        };
        assert!(env(c, var).is_some_and(|v| v.starts_with(path)), "{what}: {var} lies under the {name} mount {path}");
    }
    assert!(volumes.iter().any(|v| v["secret"]["secretName"].as_str().is_some()), "{what}: the key is a Secret");
    for kind in ["requests", "limits"] {
        assert!(
            c["resources"][kind]["cpu"].as_str().is_some() && c["resources"][kind]["memory"].as_str().is_some(),
            "{what}: {kind}"
        );
    }
    c
}

#[test]
fn kubernetes_manifests_run_indexed_shards_that_merge() {
    let job = load("deploy/kubernetes/job.yaml");
    assert_eq!(job["kind"].as_str(), Some("Job"));
    indexed_job(&job["spec"], "job.yaml");

    let gpu = load("deploy/kubernetes/job-gpu.yaml");
    let c = indexed_job(&gpu["spec"], "job-gpu.yaml");
    for kind in ["requests", "limits"] {
        assert_eq!(c["resources"][kind]["nvidia.com/gpu"].as_i64(), Some(1), "job-gpu.yaml: {kind} nvidia.com/gpu");
    }
    let args: Vec<&str> = c["command"].as_vec().expect("command").iter().filter_map(Yaml::as_str).collect();
    assert!(args.windows(2).any(|w| w == ["--device", "cuda"]), "the GPU variant must not fall back to CPU silently");

    let cron = load("deploy/kubernetes/cronjob.yaml");
    assert_eq!(cron["kind"].as_str(), Some("CronJob"));
    assert_eq!(cron["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"), "never two nights into one OUT");
    assert_eq!(cron["spec"]["schedule"].as_str().map(|s| s.split_whitespace().count()), Some(5));
    indexed_job(&cron["spec"]["jobTemplate"]["spec"], "cronjob.yaml");

    let merge = load("deploy/kubernetes/merge-job.yaml");
    let c = &merge["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = c["command"].as_vec().expect("command").iter().filter_map(Yaml::as_str).collect();
    assert_eq!(&command[..2], ["nightscreen", "merge"]);

    // The pod entry point: the shard, then the merge, tolerating "not all
    // shards done yet" (3) and unreadable inputs (1), nothing else.
    let script = std::fs::read_to_string(util::root().join("deploy/kubernetes/shard-and-merge.sh")).expect("script");
    let run = script.find("nightscreen run").expect("runs its shard");
    let merge = script.find("nightscreen merge").expect("then merges");
    assert!(run < merge);
    assert!(script.contains("0|1|3) exit 0"), "merge's exit 3 (shards pending) ends the pod well");
}

#[test]
fn the_slurm_array_submits_the_merge_as_a_dependent_job() {
    let array = std::fs::read_to_string(util::root().join("deploy/slurm/nightscreen.sbatch")).expect("sbatch");
    let directive =
        |name: &str| array.lines().find_map(|l| l.strip_prefix(&format!("#SBATCH --{name}="))).map(str::to_string);
    let range = directive("array").expect("#SBATCH --array");
    let (first, last) = range.split_once('-').expect("array a-b");
    let tasks = last.parse::<usize>().expect("end") - first.parse::<usize>().expect("start") + 1;
    assert!(tasks >= 2, "{range}");
    assert!(
        array.contains("nightscreen run") && !array.contains("--shard "),
        "the shard comes from SLURM_ARRAY_TASK_ID/COUNT"
    );
    let submit = std::fs::read_to_string(util::root().join("deploy/slurm/submit.sh")).expect("submit.sh");
    let dependency =
        submit.lines().find(|l| l.starts_with("sbatch") && l.contains("merge.sbatch")).expect("submits merge.sbatch");
    assert!(dependency.contains("--dependency=\"afterok:${array}\""), "merge waits for the whole array: {dependency}");
    let merge = std::fs::read_to_string(util::root().join("deploy/slurm/merge.sbatch")).expect("merge.sbatch");
    assert!(merge.contains("nightscreen merge \"$NIGHTSCREEN_OUT/$NIGHT\""));
    assert!(array.contains("--out \"$NIGHTSCREEN_OUT/$NIGHT\""), "shards and merge agree on OUT");

    // The environment the array gives a task is the one `run` reads.
    let shard = nightscreen::run::shard::from_environment(
        |name| match name {
            "SLURM_ARRAY_TASK_ID" => Some(last.to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some(tasks.to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some(first.to_string()),
            _ => None,
        },
        None,
    );
    assert_eq!(shard, Ok(Some(nightscreen::run::shard::Shard { index: tasks - 1, count: tasks })));
}

#[test]
fn the_container_bundles_binary_runtime_and_models() {
    let recipe = std::fs::read_to_string(util::root().join("deploy/Containerfile")).expect("Containerfile");
    let copies: Vec<&str> = recipe.lines().filter(|l| l.starts_with("COPY --from=build")).collect();
    for wanted in ["target/release/nightscreen", "libonnxruntime.so", "/src/models", "/src/configs"] {
        assert!(copies.iter().any(|c| c.contains(wanted)), "the image lacks {wanted}");
    }
    assert!(recipe.contains("ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so"));
    assert!(recipe.contains("shard-and-merge"), "the Kubernetes entry point is in the image");
    assert!(recipe.contains("USER 10001"), "runs as the manifests' non-root user");
    assert!(Path::new(&util::root().join("deploy/kubernetes/shard-and-merge.sh")).exists());
}
