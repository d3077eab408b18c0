//! cgroup v2 limits for apps, where the hub was given a cgroup subtree of its own (systemd
//! `Delegate=yes`, a container runtime's cgroup namespace): each app runs in its own child
//! cgroup with `memory.max` (and `memory.swap.max` 0), `pids.max` and `cpu.max` from
//! `[spaces]`, and an app stopped by the kernel for memory is told apart by the `oom_kill`
//! count of its `memory.events`. Without such a subtree (cgroup v1, a read-only hierarchy,
//! controllers not delegated) apps get rlimits only (`process`).
//!
//! Every function takes the cgroup root as a parameter (`/sys/fs/cgroup` in `serve`), so
//! the rules are tested against a directory laid out like a cgroup v2 mount.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where cgroup v2 is mounted on Linux.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The leaf the hub's own process moves to: a cgroup with processes cannot give
/// controllers to children ("no internal processes"), so the hub leaves its cgroup first.
const HUB_LEAF: &str = "trove-hub";
/// The period of `cpu.max`, µs (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// The limits of one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub max_pids: u64,
    /// Percent of one CPU (100 = one core); 0: unlimited.
    pub cpu_percent: u64,
}

impl Limits {
    /// The value of `cpu.max`: `<quota> <period>`, or `max <period>`.
    pub fn cpu_max(&self) -> String {
        if self.cpu_percent == 0 {
            format!("max {CPU_PERIOD_US}")
        } else {
            let quota = CPU_PERIOD_US.saturating_mul(self.cpu_percent) / 100;
            format!("{} {CPU_PERIOD_US}", quota.max(1000))
        }
    }
}

/// A cgroup v2 subtree the hub may manage: its own cgroup's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    pub dir: PathBuf,
    /// Whether the `cpu` controller is available too (`memory` and `pids` always are).
    pub cpu: bool,
}

/// Finds a usable delegated subtree: `root` is a cgroup v2 mount, `self_cgroup` (the text
/// of `/proc/self/cgroup`) places the hub in it, and the hub's cgroup offers `memory` and
/// `pids` and lets the hub write its `cgroup.subtree_control`. The error says why not.
pub fn detect(root: &Path, self_cgroup: &str) -> Result<Delegation, String> {
    if !root.join("cgroup.controllers").is_file() {
        return Err(format!("no cgroup v2 hierarchy at {}", root.display()));
    }
    let relative = self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the hub is not in a cgroup v2 hierarchy (cgroup v1 or hybrid)")?
        .trim()
        .trim_start_matches('/');
    if relative.split('/').any(|c| c == "..") {
        return Err("an unexpected cgroup path".into());
    }
    let dir = root.join(relative);
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| format!("reading the hub's cgroup.controllers: {e}"))?;
    let has = |name: &str| controllers.split_whitespace().any(|c| c == name);
    if !has("memory") || !has("pids") {
        return Err(format!(
            "the memory and pids controllers are not delegated to {} (it has: {})",
            dir.display(),
            controllers.trim()
        ));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("cgroup.subtree_control"))
        .map_err(|e| {
            format!(
                "{} is not writable: {e}",
                dir.join("cgroup.subtree_control").display()
            )
        })?;
    Ok(Delegation {
        dir,
        cpu: has("cpu"),
    })
}

/// Writes `value` to a cgroup interface file (one `write`, as the kernel wants it).
fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(value.as_bytes())
}

impl Delegation {
    /// Makes the subtree usable for apps: the hub's process `pid` moves to a leaf of its
    /// own, then the controllers are enabled for children.
    pub fn prepare(&self, pid: u32) -> std::io::Result<()> {
        let leaf = self.dir.join(HUB_LEAF);
        std::fs::create_dir_all(&leaf)?;
        write_file(&leaf.join("cgroup.procs"), &pid.to_string())?;
        let mut enable = String::from("+memory +pids");
        if self.cpu {
            enable.push_str(" +cpu");
        }
        write_file(&self.dir.join("cgroup.subtree_control"), &enable)
    }

    /// Creates the cgroup `name` with `limits` (a leftover of the same name is reused).
    pub fn create_app(&self, name: &str, limits: &Limits) -> std::io::Result<AppCgroup> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || name == HUB_LEAF {
            return Err(std::io::Error::other(format!("bad cgroup name {name:?}")));
        }
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        write_file(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
        }
        write_file(&dir.join("pids.max"), &limits.max_pids.to_string())?;
        if self.cpu {
            write_file(&dir.join("cpu.max"), &limits.cpu_max())?;
        }
        Ok(AppCgroup { dir })
    }
}

/// One app's cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCgroup {
    pub dir: PathBuf,
}

impl AppCgroup {
    /// The command line that runs `argv` inside this cgroup: a shell moves itself in
    /// (so every process the app starts is in it from its first instruction), then
    /// becomes `argv`.
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        let mut wrapped = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "echo $$ > \"$0\" && exec \"$@\"".to_owned(),
            self.dir.join("cgroup.procs").display().to_string(),
        ];
        wrapped.extend(argv);
        wrapped
    }

    /// Whether the kernel killed a process of the app for going past `memory.max`.
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .is_some_and(|events| oom_kills(&events) > 0)
    }

    /// Kills what is left in the cgroup and removes it.
    pub async fn remove(&self) {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            let _ = write_file(&kill, "1");
        }
        // The kernel refuses while the last processes are still exiting: a few tries.
        for _ in 0..20 {
            match tokio::fs::remove_dir(&self.dir).await {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        tracing::warn!(path = %self.dir.display(), "could not remove an app's cgroup");
    }
}

/// The `oom_kill` count of a `memory.events` file.
pub fn oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like a cgroup v2 mount with the hub in `system.slice/trove.service`.
    fn mount(controllers: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("write");
        let hub = root.path().join("system.slice/trove.service");
        std::fs::create_dir_all(&hub).expect("mkdir");
        std::fs::write(hub.join("cgroup.controllers"), controllers).expect("write");
        std::fs::write(hub.join("cgroup.subtree_control"), "").expect("write");
        std::fs::write(hub.join("cgroup.procs"), "").expect("write");
        (root, hub)
    }

    const SELF: &str = "0::/system.slice/trove.service\n";

    #[test]
    fn a_delegated_subtree_is_found() {
        let (root, hub) = mount("cpu memory pids\n");
        let found = detect(root.path(), SELF).expect("usable");
        assert_eq!(
            found,
            Delegation {
                dir: hub,
                cpu: true
            }
        );
        let (root, _) = mount("memory pids\n");
        assert!(!detect(root.path(), SELF).expect("usable").cpu);
    }

    #[test]
    fn what_is_missing_is_said() {
        let (root, hub) = mount("cpu pids\n");
        assert!(
            detect(root.path(), SELF)
                .expect_err("refused")
                .contains("memory and pids")
        );
        // cgroup v1 (this host): no cgroup.controllers at the root.
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(
            detect(empty.path(), SELF)
                .expect_err("refused")
                .contains("no cgroup v2")
        );
        // Hybrid: the hub's own line is a v1 one.
        let v1 = "12:memory:/user.slice\n1:name=systemd:/user.slice\n";
        assert!(
            detect(root.path(), v1)
                .expect_err("refused")
                .contains("not in a cgroup v2")
        );
        assert!(detect(root.path(), "0::/../../etc\n").is_err());
        std::fs::write(hub.join("cgroup.controllers"), "memory pids").expect("write");
        std::fs::remove_file(hub.join("cgroup.subtree_control")).expect("rm");
        assert!(
            detect(root.path(), SELF)
                .expect_err("refused")
                .contains("not writable")
        );
    }

    #[test]
    fn preparing_moves_the_hub_to_a_leaf_and_enables_controllers() {
        let (root, hub) = mount("cpu memory pids\n");
        let delegation = detect(root.path(), SELF).expect("usable");
        std::fs::create_dir_all(hub.join(HUB_LEAF)).expect("mkdir");
        std::fs::write(hub.join(HUB_LEAF).join("cgroup.procs"), "").expect("write");
        delegation.prepare(4242).expect("prepare");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(hub.join("trove-hub/cgroup.procs")), "4242");
        assert_eq!(
            read(hub.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
    }

    #[test]
    fn an_apps_cgroup_gets_its_limits() {
        let (root, hub) = mount("cpu memory pids\n");
        let delegation = detect(root.path(), SELF).expect("usable");
        // The kernel creates the interface files with the directory; here the test does.
        let dir = hub.join("space-7-3");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in ["memory.max", "memory.swap.max", "pids.max", "cpu.max"] {
            std::fs::write(dir.join(f), "max").expect("write");
        }
        let limits = Limits {
            memory_bytes: 512 << 20,
            max_pids: 64,
            cpu_percent: 150,
        };
        let app = delegation.create_app("space-7-3", &limits).expect("create");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
        assert_eq!(read("memory.max"), "536870912");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(
            app.wrap(vec!["prlimit".into(), "--".into(), "python".into()]),
            vec![
                "sh".to_owned(),
                "-c".into(),
                "echo $$ > \"$0\" && exec \"$@\"".into(),
                dir.join("cgroup.procs").display().to_string(),
                "prlimit".into(),
                "--".into(),
                "python".into(),
            ]
        );
        assert!(delegation.create_app("../x", &limits).is_err());
        assert!(delegation.create_app(HUB_LEAF, &limits).is_err());
        assert_eq!(
            Limits {
                cpu_percent: 0,
                ..limits
            }
            .cpu_max(),
            "max 100000"
        );
    }

    #[tokio::test]
    async fn oom_kills_are_read_from_memory_events() {
        let (root, hub) = mount("memory pids\n");
        let delegation = detect(root.path(), SELF).expect("usable");
        let limits = Limits {
            memory_bytes: 1 << 20,
            max_pids: 8,
            cpu_percent: 0,
        };
        // The kernel creates the interface files with the directory; here the test does.
        std::fs::create_dir_all(hub.join("space-1-1")).expect("mkdir");
        for f in ["memory.max", "pids.max"] {
            std::fs::write(hub.join("space-1-1").join(f), "max").expect("write");
        }
        let app = delegation.create_app("space-1-1", &limits).expect("create");
        assert!(!hub.join("space-1-1/cpu.max").exists());
        assert!(!app.oom_killed());
        std::fs::write(
            hub.join("space-1-1/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .expect("write");
        assert!(app.oom_killed());
        assert_eq!(oom_kills("oom 2\noom_kill 0\n"), 0);
        // Removing an app's cgroup: the kernel's directory empties itself; here the test's
        // interface files are removed first.
        for f in ["memory.max", "pids.max", "memory.events"] {
            std::fs::remove_file(app.dir.join(f)).expect("rm");
        }
        app.remove().await;
        assert!(!app.dir.exists());
    }
}
