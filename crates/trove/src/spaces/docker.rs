//! Hygiene of the containers and images of docker Spaces: everything Trove builds or runs
//! carries the labels `trove.hub=<this hub's id>` and `trove.space=<repo id>`, so that a
//! hub finds what is its own on a shared engine — the containers a hub killed with SIGKILL
//! left running (removed when `trove serve` starts, before the Spaces are started again)
//! and the images of a deleted Space (removed when it is deleted, and at start for Spaces
//! deleted while the hub was down). Another hub's containers and images are never touched.
//!
//! The command lines are built by pure functions (unit-tested); the functions that run them
//! log failures and never fail the hub.

use crate::signing::UrlSigner;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// The label naming the hub that created a container or image.
pub const HUB_LABEL: &str = "trove.hub";
/// The label naming the Space (repository id) a container or image is for.
pub const SPACE_LABEL: &str = "trove.space";
/// Longest an engine command of the clean-up may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// This hub's identity on a container engine: derived from the installation key (so it is
/// stable across restarts, differs between installations and reveals nothing of the key).
pub fn hub_id(signer: &UrlSigner) -> String {
    signer.sign(&["docker-hub-id"], 0)[..16].to_owned()
}

/// `--label` arguments for a container or image of `repo_id`.
pub fn label_args(hub: &str, repo_id: i64) -> Vec<String> {
    vec![
        "--label".into(),
        format!("{HUB_LABEL}={hub}"),
        "--label".into(),
        format!("{SPACE_LABEL}={repo_id}"),
    ]
}

/// `build` of a Space's image from `context`, tagged `image` and labelled.
pub fn build_argv(
    engine: &str,
    hub: &str,
    repo_id: i64,
    image: &str,
    context: &str,
) -> Vec<String> {
    let mut argv = vec![
        engine.to_owned(),
        "build".into(),
        "--tag".into(),
        image.to_owned(),
    ];
    argv.extend(label_args(hub, repo_id));
    argv.push(context.to_owned());
    argv
}

/// The ids of every container of this hub, running or not.
pub fn list_containers_argv(engine: &str, hub: &str) -> Vec<String> {
    vec![
        engine.to_owned(),
        "ps".into(),
        "--all".into(),
        "--quiet".into(),
        "--filter".into(),
        format!("label={HUB_LABEL}={hub}"),
    ]
}

/// This hub's images with the Space each is for: lines `<id> <repo id>`.
pub fn list_images_argv(engine: &str, hub: &str) -> Vec<String> {
    vec![
        engine.to_owned(),
        "images".into(),
        "--no-trunc".into(),
        "--filter".into(),
        format!("label={HUB_LABEL}={hub}"),
        "--format".into(),
        format!("{{{{.ID}}}} {{{{.Label \"{SPACE_LABEL}\"}}}}"),
    ]
}

/// Removes containers (stopping running ones).
pub fn remove_containers_argv(engine: &str, ids: &[String]) -> Vec<String> {
    let mut argv = vec![engine.to_owned(), "rm".into(), "--force".into()];
    argv.extend(ids.iter().cloned());
    argv
}

/// Removes images (with every tag they have).
pub fn remove_images_argv(engine: &str, ids: &[String]) -> Vec<String> {
    let mut argv = vec![engine.to_owned(), "rmi".into(), "--force".into()];
    argv.extend(ids.iter().cloned());
    argv
}

/// Container ids from `ps --quiet` output (hex only: nothing else reaches a command line).
pub fn parse_ids(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

/// The images of `list_images_argv` output whose Space `keep` refuses (deleted Spaces).
pub fn images_to_remove(output: &str, keep: impl Fn(i64) -> bool) -> Vec<String> {
    let mut ids: Vec<String> = output
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?, fields.next().unwrap_or("")))
        })
        .filter(|(id, _)| {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .filter(|(_, space)| space.parse::<i64>().map_or(true, |s| !keep(s)))
        .map(|(id, _)| id.to_owned())
        .collect();
    ids.dedup();
    ids
}

/// Runs an engine command; its standard output, or `None` (logged) when it failed.
async fn run(argv: &[String]) -> Option<String> {
    let (program, args) = argv.split_first()?;
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .envs(engine_env())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, output).await {
        Ok(Ok(out)) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => {
            tracing::warn!(
                command = argv.join(" "),
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "spaces.docker_command_failed"
            );
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(command = argv.join(" "), error = %e, "spaces.docker_command_failed");
            None
        }
        Err(_) => {
            tracing::warn!(command = argv.join(" "), "spaces.docker_command_timed_out");
            None
        }
    }
}

/// Removes every container of this hub: run when `serve` starts, before any Space is, so
/// they are those a previous process left (killed before it could stop them).
pub async fn remove_leftover_containers(engine: &str, hub: &str) {
    let Some(listed) = run(&list_containers_argv(engine, hub)).await else {
        return;
    };
    let ids = parse_ids(&listed);
    if ids.is_empty() {
        return;
    }
    if run(&remove_containers_argv(engine, &ids)).await.is_some() {
        tracing::info!(containers = ids.len(), "spaces.leftover_containers_removed");
    }
}

/// Removes this hub's images of the Spaces `exists` does not know (any more).
pub async fn remove_images_of_deleted(engine: &str, hub: &str, exists: impl Fn(i64) -> bool) {
    let Some(listed) = run(&list_images_argv(engine, hub)).await else {
        return;
    };
    let ids = images_to_remove(&listed, exists);
    if ids.is_empty() {
        return;
    }
    if run(&remove_images_argv(engine, &ids)).await.is_some() {
        tracing::info!(images = ids.len(), "spaces.deleted_space_images_removed");
    }
}

/// Variables of the hub that an engine's client needs to find its daemon or socket.
const ENGINE_ENV: &[&str] = &[
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "CONTAINER_HOST",
    "XDG_RUNTIME_DIR",
];

/// The environment an engine's client runs with: `PATH` and how to reach its daemon.
pub fn engine_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ENGINE_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.push((
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    ));
    if let Ok(home) = std::env::var("HOME") {
        // Where the client keeps its configuration (registries, contexts).
        env.push(("HOME".into(), home));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_hub_id_is_stable_per_installation() {
        let a = hub_id(&UrlSigner::new(vec![1; 32]));
        assert_eq!(a, hub_id(&UrlSigner::new(vec![1; 32])));
        assert_ne!(a, hub_id(&UrlSigner::new(vec![2; 32])));
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn builds_and_runs_are_labelled() {
        assert_eq!(
            build_argv("docker", "abc", 7, "trove-space-7:f00", "/run/7/app"),
            strings(&[
                "docker",
                "build",
                "--tag",
                "trove-space-7:f00",
                "--label",
                "trove.hub=abc",
                "--label",
                "trove.space=7",
                "/run/7/app",
            ])
        );
        assert_eq!(
            label_args("abc", 7),
            strings(&["--label", "trove.hub=abc", "--label", "trove.space=7"])
        );
    }

    #[test]
    fn clean_up_commands_name_this_hub_only() {
        assert_eq!(
            list_containers_argv("podman", "abc"),
            strings(&[
                "podman",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                "label=trove.hub=abc"
            ])
        );
        assert_eq!(
            list_images_argv("docker", "abc"),
            strings(&[
                "docker",
                "images",
                "--no-trunc",
                "--filter",
                "label=trove.hub=abc",
                "--format",
                "{{.ID}} {{.Label \"trove.space\"}}",
            ])
        );
        assert_eq!(
            remove_containers_argv("docker", &strings(&["a1", "b2"])),
            strings(&["docker", "rm", "--force", "a1", "b2"])
        );
        assert_eq!(
            remove_images_argv("docker", &strings(&["sha256:ab"])),
            strings(&["docker", "rmi", "--force", "sha256:ab"])
        );
    }

    #[test]
    fn engine_output_is_parsed_strictly() {
        assert_eq!(
            parse_ids("a1b2\n\n  c3\n--rm\nx y\n"),
            strings(&["a1b2", "c3"])
        );
        let listed = "sha256:aa 7\nsha256:bb 8\nsha256:cc \nsha256:dd x\n-rf 9\n";
        // Space 7 exists; 8 was deleted; an image without a readable label is ours and of
        // no Space: removed too.
        assert_eq!(
            images_to_remove(listed, |id| id == 7),
            strings(&["sha256:bb", "sha256:cc", "sha256:dd"])
        );
    }
}
