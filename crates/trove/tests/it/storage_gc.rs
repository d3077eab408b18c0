//! Garbage collection never frees what a live file needs: seeded random sequences of LFS
//! uploads, commits, branch and tag creation and deletion, repository deletion and GC runs
//! (mostly grace 0, so everything unreferenced goes at once; sometimes a long grace, so
//! xorbs compaction released stay for a later run), with compaction of every xorb holding a
//! dead chunk, and every file of every live ref read back and checked after each run. Files
//! share most of their chunks, so a chunk freed or moved by mistake breaks a neighbour.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use trove::storage::gc;

/// A small deterministic generator (no shared state with other tests).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Variant `v` of a shared base: one region rewritten, so variants share most chunks.
fn variant(base: &[u8], v: u64) -> Vec<u8> {
    let mut out = base.to_vec();
    let at = (v as usize * 97_531) % (base.len() - 70_000);
    out[at..at + 60_000].copy_from_slice(&random_bytes(1000 + v, 60_000));
    out
}

pub(crate) fn xorb_bytes(root: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(root.join("xorbs")) else {
        return 0;
    };
    dirs.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

pub(crate) async fn send_ok(app: &TestApp, method: Method, uri: &str, body: serde_json::Value) {
    let r = app
        .request(method, uri)
        .token(&app.admin_token)
        .json(&body)
        .send()
        .await;
    assert!(r.status.is_success(), "{uri}: {} {:?}", r.status, r.error());
}

pub(crate) async fn upload(app: &TestApp, repo: &str, data: &[u8]) -> String {
    let (oid, url) = crate::storage::plan_lfs_upload(app, repo, data).await;
    if let Some(url) = url {
        crate::storage::put_lfs_object(app, &url, data).await;
    }
    oid
}

pub(crate) async fn commit(
    app: &TestApp,
    repo: &str,
    branch: &str,
    path: &str,
    oid: &str,
    size: usize,
) {
    let body = [
        json!({"key": "header", "value": {"summary": "update", "description": ""}}),
        json!({"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let r = app
        .post(&format!("/api/models/admin/{repo}/commit/{branch}"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

/// What each live ref of each repository should serve: repo → ref → path → SHA-256.
type Model = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

async fn check_all(app: &TestApp, model: &Model, step: usize) {
    for (repo, refs) in model {
        for (rev, files) in refs {
            for (path, sha) in files {
                let r = app
                    .get(&format!("/admin/{repo}/resolve/{rev}/{path}"))
                    .token(&app.admin_token)
                    .send()
                    .await;
                assert_eq!(r.status, StatusCode::OK, "step {step}: {repo}@{rev}/{path}");
                assert_eq!(
                    hex::encode(Sha256::digest(&r.body)),
                    *sha,
                    "step {step}: {repo}@{rev}/{path} reads back wrong"
                );
            }
        }
    }
}

/// `app`'s state with GC compacting xorbs below `compact_below` live.
fn compacting(app: &TestApp, compact_below: f64) -> trove::state::AppState {
    app.state
        .reconfigured(|config| config.storage.compact_below = compact_below)
}

async fn run_sequence(seed: u64, steps: usize) {
    let app = TestApp::new().await;
    // Every xorb with a dead chunk is rewritten: compaction as often as it can happen.
    let gc_state = compacting(&app, 1.0);
    let mut compacted = 0u64;
    let mut rng = Rng(seed);
    let base = random_bytes(seed, 400_000);
    let repos = ["r0", "r1", "r2"];
    let mut model: Model = BTreeMap::new();
    for r in repos {
        send_ok(&app, Method::POST, "/api/repos/create", json!({"name": r})).await;
        model
            .entry(r.to_owned())
            .or_default()
            .insert("main".into(), BTreeMap::new());
    }
    let mut next_ref = 0u64;
    let mut uploads = 0u64;
    for step in 0..steps {
        let repo = repos[rng.below(repos.len() as u64) as usize];
        match rng.below(10) {
            // Upload a variant and commit it to main or to a branch (replacing what the path
            // held): branches diverge, so what only a branch holds dies with it.
            0..=3 => {
                let branches: Vec<String> = model[repo]
                    .keys()
                    .filter(|r| !r.starts_with('t'))
                    .cloned()
                    .collect();
                let branch = branches[rng.below(branches.len() as u64) as usize].clone();
                // Mostly fresh variants, sometimes one uploaded before (shared objects).
                uploads += 1;
                let data = variant(
                    &base,
                    if rng.below(4) == 0 {
                        rng.below(uploads)
                    } else {
                        uploads
                    },
                );
                let oid = upload(&app, repo, &data).await;
                let path = format!("w{}.bin", rng.below(2));
                commit(&app, repo, &branch, &path, &oid, data.len()).await;
                let sha = hex::encode(Sha256::digest(&data));
                model
                    .entry(repo.into())
                    .or_default()
                    .entry(branch)
                    .or_default()
                    .insert(path, sha);
            }
            // Upload without committing: pending, freed by a grace-0 GC.
            4 => {
                uploads += 1;
                upload(&app, repo, &variant(&base, uploads)).await;
            }
            // A branch from main, or a tag of any branch, keeping its files alive.
            5 | 6 => {
                next_ref += 1;
                let branches: Vec<String> = model[repo]
                    .keys()
                    .filter(|r| !r.starts_with('t'))
                    .cloned()
                    .collect();
                if rng.below(2) == 0 {
                    let name = format!("b{next_ref}");
                    let files = model[repo]["main"].clone();
                    send_ok(
                        &app,
                        Method::POST,
                        &format!("/api/models/admin/{repo}/branch/{name}"),
                        json!({}),
                    )
                    .await;
                    model.get_mut(repo).expect("repo").insert(name, files);
                } else {
                    let from = branches[rng.below(branches.len() as u64) as usize].clone();
                    let files = model[repo][&from].clone();
                    let name = format!("t{next_ref}");
                    send_ok(
                        &app,
                        Method::POST,
                        &format!("/api/models/admin/{repo}/tag/{from}"),
                        json!({"tag": name}),
                    )
                    .await;
                    model.get_mut(repo).expect("repo").insert(name, files);
                }
            }
            // Delete a branch or tag.
            7 => {
                let refs: Vec<String> = model[repo]
                    .keys()
                    .filter(|r| *r != "main")
                    .cloned()
                    .collect();
                if let Some(name) = refs.get(rng.below(refs.len().max(1) as u64) as usize) {
                    let kind = if name.starts_with('b') {
                        "branch"
                    } else {
                        "tag"
                    };
                    let r = app
                        .request(
                            Method::DELETE,
                            &format!("/api/models/admin/{repo}/{kind}/{name}"),
                        )
                        .token(&app.admin_token)
                        .send()
                        .await;
                    assert!(r.status.is_success(), "{:?}", r.error());
                    model.get_mut(repo).expect("repo").remove(name);
                }
            }
            // Delete the repository and create it again, empty.
            8 => {
                send_ok(
                    &app,
                    Method::DELETE,
                    "/api/repos/delete",
                    json!({"name": repo, "type": "model"}),
                )
                .await;
                send_ok(
                    &app,
                    Method::POST,
                    "/api/repos/create",
                    json!({"name": repo}),
                )
                .await;
                let refs = model.get_mut(repo).expect("repo");
                refs.clear();
                refs.insert("main".into(), BTreeMap::new());
            }
            _ => {
                let grace = if rng.below(3) == 0 { 3_600_000 } else { 0 };
                let report = gc::collect(&gc_state, grace, false).await.expect("gc");
                compacted += report.xorbs_compacted;
                check_all(&app, &model, step).await;
            }
        }
    }
    let report = gc::collect(&gc_state, 0, false).await.expect("gc");
    compacted += report.xorbs_compacted;
    check_all(&app, &model, steps).await;
    assert!(compacted > 0, "seed {seed}: the sequence never compacted");
    // Compacted files read as they did, through the indices fsck checks.
    let fsck = trove::storage::fsck::check(&app.state).await.expect("fsck");
    assert!(fsck.is_clean(), "seed {seed}: {fsck:?}");

    // Once nothing references anything, everything goes.
    for r in repos {
        send_ok(
            &app,
            Method::DELETE,
            "/api/repos/delete",
            json!({"name": r, "type": "model"}),
        )
        .await;
    }
    let before = xorb_bytes(app.state.store.root());
    let dry = gc::collect(&gc_state, 0, true).await.expect("dry run");
    assert_eq!(
        xorb_bytes(app.state.store.root()),
        before,
        "a dry run frees nothing"
    );
    let report = gc::collect(&gc_state, 0, false).await.expect("gc");
    assert_eq!(report.objects_forgotten, dry.objects_forgotten);
    assert_eq!(
        xorb_bytes(app.state.store.root()),
        0,
        "seed {seed}: {report:?}"
    );
    let totals = app.state.db.storage_totals().await.expect("totals");
    assert_eq!((totals.xorbs, totals.chunks, totals.objects), (0, 0, 0));
}

#[tokio::test]
async fn gc_never_frees_a_chunk_a_live_file_needs() {
    for seed in [1u64, 7, 42] {
        run_sequence(seed, 60).await;
    }
}

#[tokio::test]
async fn gc_keeps_everything_inside_the_grace_period() {
    let app = TestApp::new().await;
    send_ok(
        &app,
        Method::POST,
        "/api/repos/create",
        json!({"name": "g"}),
    )
    .await;
    let data = random_bytes(5, 300_000);
    upload(&app, "g", &data).await;
    let stored = xorb_bytes(app.state.store.root());
    assert!(stored > 0);
    let report = gc::collect(&app.state, gc::DEFAULT_GRACE_MS, false)
        .await
        .expect("gc");
    assert_eq!(report.objects_forgotten, 0);
    assert_eq!(xorb_bytes(app.state.store.root()), stored);
    // Outside the grace period, the uncommitted upload goes.
    gc::collect(&app.state, 0, false).await.expect("gc");
    assert_eq!(xorb_bytes(app.state.store.root()), 0);
}

#[tokio::test]
async fn what_only_a_tag_holds_survives_and_a_deleted_branch_frees_its_own() {
    let app = TestApp::new().await;
    send_ok(
        &app,
        Method::POST,
        "/api/repos/create",
        json!({"name": "t"}),
    )
    .await;
    let base = random_bytes(9, 300_000);
    let main_data = variant(&base, 1);
    let oid = upload(&app, "t", &main_data).await;
    commit(&app, "t", "main", "w.bin", &oid, main_data.len()).await;
    for (branch, v) in [("tagged", 2u64), ("dropped", 3)] {
        send_ok(
            &app,
            Method::POST,
            &format!("/api/models/admin/t/branch/{branch}"),
            json!({}),
        )
        .await;
        let data = random_bytes(100 + v, 200_000);
        let oid = upload(&app, "t", &data).await;
        commit(&app, "t", branch, "only.bin", &oid, data.len()).await;
    }
    send_ok(
        &app,
        Method::POST,
        "/api/models/admin/t/tag/tagged",
        json!({"tag": "v1"}),
    )
    .await;
    for branch in ["tagged", "dropped"] {
        let r = app
            .request(
                Method::DELETE,
                &format!("/api/models/admin/t/branch/{branch}"),
            )
            .token(&app.admin_token)
            .send()
            .await;
        assert!(r.status.is_success(), "{:?}", r.error());
    }
    let before = xorb_bytes(app.state.store.root());
    let report = gc::collect(&app.state, 0, false).await.expect("gc");
    assert_eq!(report.objects_forgotten, 1, "{report:?}");
    let freed = before - xorb_bytes(app.state.store.root());
    // The dropped branch's 200 000 random bytes, plus one 8-byte header per chunk.
    assert!(
        (200_000..=200_000 + 8 * 8).contains(&freed),
        "freed {freed}"
    );
    let mut model: Model = BTreeMap::new();
    let t = model.entry("t".into()).or_default();
    t.entry("v1".into()).or_default().insert(
        "only.bin".into(),
        hex::encode(Sha256::digest(random_bytes(102, 200_000))),
    );
    t.entry("main".into())
        .or_default()
        .insert("w.bin".into(), hex::encode(Sha256::digest(&main_data)));
    check_all(&app, &model, 0).await;
}

/// The xorb files of a store, by path under `xorbs/`.
fn xorb_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in std::fs::read_dir(root.join("xorbs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = format!(
                "{}/{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            out.insert(name, std::fs::read(f.path()).expect("read xorb"));
        }
    }
    out
}

/// A repository whose `main` holds a second version sharing its first 30% with a first
/// version only a deleted branch held: the first version's xorb is 70% dead.
async fn store_with_a_mostly_dead_xorb() -> (TestApp, Model) {
    let app = TestApp::new().await;
    send_ok(
        &app,
        Method::POST,
        "/api/repos/create",
        json!({"name": "c"}),
    )
    .await;
    let v1 = random_bytes(11, 400_000);
    let mut v2 = v1[..120_000].to_vec();
    v2.extend_from_slice(&random_bytes(12, 280_000));
    send_ok(
        &app,
        Method::POST,
        "/api/models/admin/c/branch/old",
        json!({}),
    )
    .await;
    let oid = upload(&app, "c", &v1).await;
    commit(&app, "c", "old", "w.bin", &oid, v1.len()).await;
    let oid = upload(&app, "c", &v2).await;
    commit(&app, "c", "main", "w.bin", &oid, v2.len()).await;
    let r = app
        .request(Method::DELETE, "/api/models/admin/c/branch/old")
        .token(&app.admin_token)
        .send()
        .await;
    assert!(r.status.is_success(), "{:?}", r.error());
    let mut model: Model = BTreeMap::new();
    model
        .entry("c".into())
        .or_default()
        .entry("main".into())
        .or_default()
        .insert("w.bin".into(), hex::encode(Sha256::digest(&v2)));
    (app, model)
}

#[tokio::test]
async fn a_compaction_killed_before_its_transaction_is_completed_by_the_next_run() {
    // A store compacted without interruption shows which xorb compaction writes.
    let (app, model) = store_with_a_mostly_dead_xorb().await;
    let before = xorb_files(app.state.store.root());
    let report = gc::collect(&compacting(&app, 0.5), 0, false)
        .await
        .expect("gc");
    assert_eq!(report.xorbs_compacted, 1, "{report:?}");
    let after = xorb_files(app.state.store.root());
    let written: Vec<_> = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .collect();
    assert_eq!(written.len(), 1, "one new xorb");
    let (new_path, new_bytes) = written[0];
    check_all(&app, &model, 0).await;

    // The same store, where a run was killed once the new xorb was durable and before the
    // transaction repointing the files: the xorb is on disk, unrecorded, and files still
    // read the old one.
    let (crashed, model) = store_with_a_mostly_dead_xorb().await;
    let root = crashed.state.store.root().join("xorbs");
    std::fs::create_dir_all(root.join(&new_path[..2])).expect("dir");
    std::fs::write(root.join(new_path), new_bytes).expect("write");
    check_all(&crashed, &model, 1).await;
    let report = gc::collect(&compacting(&crashed, 0.5), 0, false)
        .await
        .expect("gc");
    assert_eq!(report.xorbs_compacted, 1, "{report:?}");
    assert_eq!(xorb_files(crashed.state.store.root()), after);
    check_all(&crashed, &model, 2).await;
    let fsck = trove::storage::fsck::check(&crashed.state)
        .await
        .expect("fsck");
    assert!(fsck.is_clean(), "{fsck:?}");
    // And compaction with a grace period keeps the released xorb for clients' shard caches.
    let (graced, model) = store_with_a_mostly_dead_xorb().await;
    let report = gc::collect(&compacting(&graced, 0.5), 3_600_000, false)
        .await
        .expect("gc");
    assert_eq!(
        report.xorbs_compacted, 0,
        "a xorb inside the grace period is not rewritten"
    );
    check_all(&graced, &model, 3).await;
}
