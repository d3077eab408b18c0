//! Xet uploads with the CAS tokens the Hub hands out, as a client with a warm cache makes
//! them: it sends a shard naming xorbs it uploaded before, to any repository, and never
//! those xorbs again. A token may name the xorbs its repository references (its namespace
//! references, when its user may read every repository there) and
//! the ones its user uploaded — in any namespace, after the repository they went to is
//! deleted — and nobody else's, until garbage collection takes them.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use trove::storage::gc;
use trove_db::{OrgRole, TokenRole};
use trove_types::RepoName;
use trove_xet::shard::{ShardFile, Term, testing::build_shard};
use trove_xet::xorb::testing::build_xorb;
use trove_xet::{XetHash, hash};

/// A xorb of three 20 KB chunks, and the shard entry of the file made of all of them.
struct Upload {
    xorb_bytes: Vec<u8>,
    xorb: XetHash,
    file: ShardFile,
    chunks: Vec<Vec<u8>>,
}

/// Bytes that differ with `seed`: no two uploads share a chunk.
fn upload(seed: u32) -> Upload {
    let chunks: Vec<Vec<u8>> = (0..3u32)
        .map(|i| {
            (0..20_000u32)
                .map(|j| ((seed * 104_729 + i * 7919 + j * 31) % 251) as u8)
                .collect()
        })
        .collect();
    let (xorb_bytes, xorb) = build_xorb(&chunks);
    let hashes: Vec<XetHash> = chunks.iter().map(|c| hash::chunk_hash(c)).collect();
    let sized: Vec<(XetHash, u64)> = hashes.iter().map(|h| (*h, 20_000)).collect();
    let data = chunks.concat();
    let file = ShardFile {
        file_hash: hash::file_hash(&sized),
        terms: vec![Term {
            xorb,
            chunk_start: 0,
            chunk_end: 3,
            unpacked_len: 60_000,
        }],
        verification: Some(vec![hash::range_hash(&hashes)]),
        sha256: Some(Sha256::digest(&data).into()),
    };
    Upload {
        xorb_bytes,
        xorb,
        file,
        chunks,
    }
}

/// The shard entry of a file made of `parts` in order — a xorb's chunks `[start, end)` each
/// — claiming the SHA-256 of those bytes, or `claim` when given.
fn file_of(parts: &[(&Upload, u32, u32)], claim: Option<[u8; 32]>) -> ShardFile {
    let mut sized = Vec::new();
    let mut data = Vec::new();
    let mut terms = Vec::new();
    let mut verification = Vec::new();
    for (u, start, end) in parts {
        let chunks = &u.chunks[*start as usize..*end as usize];
        let hashes: Vec<XetHash> = chunks.iter().map(|c| hash::chunk_hash(c)).collect();
        sized.extend(hashes.iter().zip(chunks).map(|(h, c)| (*h, c.len() as u64)));
        verification.push(hash::range_hash(&hashes));
        terms.push(Term {
            xorb: u.xorb,
            chunk_start: *start,
            chunk_end: *end,
            unpacked_len: chunks.iter().map(Vec::len).sum::<usize>() as u32,
        });
        data.extend(chunks.concat());
    }
    ShardFile {
        file_hash: hash::file_hash(&sized),
        terms,
        verification: Some(verification),
        sha256: Some(claim.unwrap_or_else(|| Sha256::digest(&data).into())),
    }
}

async fn create_repo(app: &TestApp, token: &str, repo: &str) {
    let (namespace, name) = repo.split_once('/').expect("ns/name");
    let r = app
        .post("/api/repos/create")
        .token(token)
        .json(&json!({"name": name, "organization": namespace, "type": "model"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "create {repo}: {:?}", r.error());
}

/// Creates the private model `repo` (`namespace/name`) as the holder of `token`.
async fn create_private_repo(app: &TestApp, token: &str, repo: &str) {
    let (namespace, name) = repo.split_once('/').expect("ns/name");
    let r = app
        .post("/api/repos/create")
        .token(token)
        .json(&json!({"name": name, "organization": namespace, "type": "model", "private": true}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "create {repo}: {:?}", r.error());
}

/// Creates organization `name` with `members` (user name, role); returns its id.
async fn org_with(app: &TestApp, name: &str, members: &[(&str, OrgRole)]) -> i64 {
    let db = &app.state.db;
    let org = db
        .create_org(&RepoName::parse_namespace(name).expect("name"), None)
        .await
        .expect("org");
    for (user, role) in members {
        let user = db.user_by_name(user).await.expect("db").expect("user");
        db.set_org_member(org.id, user.id, *role)
            .await
            .expect("member");
    }
    org.id
}

/// A user's id by name.
async fn user_id(app: &TestApp, name: &str) -> i64 {
    app.state
        .db
        .user_by_name(name)
        .await
        .expect("db")
        .expect("user")
        .id
}

async fn delete_repo(app: &TestApp, token: &str, repo: &str) {
    let (namespace, name) = repo.split_once('/').expect("ns/name");
    let r = app
        .request(Method::DELETE, "/api/repos/delete")
        .token(token)
        .json(&json!({"name": name, "organization": namespace, "type": "model"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "delete {repo}: {:?}", r.error());
}

/// The CAS token `xet-{scope}-token` answers `token` for `repo`.
async fn cas_token(app: &TestApp, token: &str, repo: &str, scope: &str) -> String {
    let r = app
        .get(&format!("/api/models/{repo}/xet-{scope}-token/main"))
        .token(token)
        .send()
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{scope} token for {repo}: {:?}",
        r.error()
    );
    r.json()["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned()
}

fn xorb_uri(u: &Upload) -> String {
    format!("/xet/v1/xorbs/default/{}", u.xorb.hex())
}

async fn post_xorb(app: &TestApp, cas: &str, u: &Upload, body: &[u8]) -> StatusCode {
    app.post(&xorb_uri(u))
        .token(cas)
        .body(body.to_vec())
        .send()
        .await
        .status
}

async fn head_xorb(app: &TestApp, cas: &str, u: &Upload) -> StatusCode {
    app.request(Method::HEAD, &xorb_uri(u))
        .token(cas)
        .send()
        .await
        .status
}

/// Posts the shard of `u`'s file alone: its status, and its error message with the file
/// and xorb hashes blanked (to compare refusals of different uploads).
async fn post_shard(app: &TestApp, cas: &str, u: &Upload) -> (StatusCode, String) {
    let r = app
        .post("/xet/v1/shards")
        .token(cas)
        .body(build_shard(std::slice::from_ref(&u.file)))
        .send()
        .await;
    let message = r
        .error()
        .1
        .unwrap_or_default()
        .replace(&u.file.file_hash.hex(), "<file>")
        .replace(&u.xorb.hex(), "<xorb>");
    (r.status, message)
}

/// Whether `u`'s file reads back through a read token of `repo`.
async fn readable(app: &TestApp, token: &str, repo: &str, u: &Upload) -> bool {
    let cas = cas_token(app, token, repo, "read").await;
    let r = app
        .get(&format!(
            "/xet/v2/reconstructions/{}",
            u.file.file_hash.hex()
        ))
        .token(&cas)
        .send()
        .await;
    r.status == StatusCode::OK
}

/// What the server answers a shard naming a xorb it never held.
async fn unknown_xorb_refusal(app: &TestApp, cas: &str) -> (StatusCode, String) {
    let never_sent = upload(99);
    post_shard(app, cas, &never_sent).await
}

#[tokio::test]
async fn a_users_xorbs_serve_them_in_every_namespace_they_write_to_and_nobody_else() {
    let app = TestApp::new().await;
    let alice = app.user("alice", TokenRole::Write).await;
    let carol = app.user("carol", TokenRole::Write).await;
    let bob = app.user("bob", TokenRole::Write).await;
    org_with(
        &app,
        "acme",
        &[("alice", OrgRole::Admin), ("carol", OrgRole::Write)],
    )
    .await;
    let u = upload(1);

    // Alice uploads a file to a repository of hers, then deletes the repository.
    create_repo(&app, &alice, "alice/first").await;
    let cas = cas_token(&app, &alice, "alice/first", "write").await;
    assert_eq!(
        post_xorb(&app, &cas, &u, &u.xorb_bytes).await,
        StatusCode::OK
    );
    assert_eq!(post_shard(&app, &cas, &u).await.0, StatusCode::OK);
    delete_repo(&app, &alice, "alice/first").await;

    // Her client, trusting its cache, sends only the shard to her organization's repository:
    // accepted, and the file reads back there.
    create_repo(&app, &alice, "acme/models").await;
    let cas = cas_token(&app, &alice, "acme/models", "write").await;
    assert_eq!(head_xorb(&app, &cas, &u).await, StatusCode::OK);
    let (status, message) = post_shard(&app, &cas, &u).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert!(readable(&app, &alice, "acme/models", &u).await);

    // The same again after re-creating the deleted repository under its old name, whose
    // namespace references nothing now.
    create_repo(&app, &alice, "alice/first").await;
    let cas = cas_token(&app, &alice, "alice/first", "write").await;
    let (status, message) = post_shard(&app, &cas, &u).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert!(readable(&app, &alice, "alice/first", &u).await);

    // Bob, who never sent those bytes, learns nothing from their hash in a repository of
    // his: HEAD and the shard answer exactly as for a xorb nobody ever sent.
    create_repo(&app, &bob, "bob/mine").await;
    let cas = cas_token(&app, &bob, "bob/mine", "write").await;
    assert_eq!(head_xorb(&app, &cas, &u).await, StatusCode::NOT_FOUND);
    let refused = post_shard(&app, &cas, &u).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    assert_eq!(refused, unknown_xorb_refusal(&app, &cas).await);
    assert!(!readable(&app, &bob, "bob/mine", &u).await);

    // Carol sees the xorb through her organization, where alice's file is linked; it is not
    // hers for that: an upload of it must carry its bytes (a damaged body is refused), and
    // only then does she name it from a repository of her own.
    let cas = cas_token(&app, &carol, "acme/models", "write").await;
    assert_eq!(head_xorb(&app, &cas, &u).await, StatusCode::OK);
    create_repo(&app, &carol, "carol/own").await;
    let own = cas_token(&app, &carol, "carol/own", "write").await;
    assert_eq!(head_xorb(&app, &own, &u).await, StatusCode::NOT_FOUND);
    let damaged = &u.xorb_bytes[..u.xorb_bytes.len() - 1];
    assert_eq!(
        post_xorb(&app, &cas, &u, damaged).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(head_xorb(&app, &own, &u).await, StatusCode::NOT_FOUND);
    assert_eq!(
        post_xorb(&app, &cas, &u, &u.xorb_bytes).await,
        StatusCode::OK
    );
    assert_eq!(head_xorb(&app, &own, &u).await, StatusCode::OK);
    assert_eq!(post_shard(&app, &own, &u).await.0, StatusCode::OK);
    assert!(readable(&app, &carol, "carol/own", &u).await);
}

#[tokio::test]
async fn a_collected_xorb_is_refused_even_to_the_user_who_uploaded_it() {
    let app = TestApp::new().await;
    let alice = app.user("alice", TokenRole::Write).await;
    let u = upload(2);
    create_repo(&app, &alice, "alice/first").await;
    let cas = cas_token(&app, &alice, "alice/first", "write").await;
    // An upload cut short before its shard: no file names the xorb.
    assert_eq!(
        post_xorb(&app, &cas, &u, &u.xorb_bytes).await,
        StatusCode::OK
    );
    create_repo(&app, &alice, "alice/second").await;
    let second = cas_token(&app, &alice, "alice/second", "write").await;
    assert_eq!(head_xorb(&app, &second, &u).await, StatusCode::OK);

    // The sweep takes xorbs older than the cutoff (now, with no grace): one millisecond on.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let report = gc::collect(&app.state, 0, false).await.expect("gc");
    assert_eq!(report.xorbs_deleted, 1);

    // Her upload does not keep the xorb, nor let her name it once it is gone.
    assert_eq!(head_xorb(&app, &second, &u).await, StatusCode::NOT_FOUND);
    let refused = post_shard(&app, &second, &u).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    assert_eq!(refused, unknown_xorb_refusal(&app, &second).await);
    // Sending the bytes again stores it anew, and the shard goes through.
    assert_eq!(
        post_xorb(&app, &second, &u, &u.xorb_bytes).await,
        StatusCode::OK
    );
    assert_eq!(post_shard(&app, &second, &u).await.0, StatusCode::OK);
    assert!(readable(&app, &alice, "alice/second", &u).await);
}

/// The CAS read token `xet-read-token` answers an anonymous caller for `repo`.
async fn anonymous_cas_token(app: &TestApp, repo: &str) -> String {
    let r = app
        .get(&format!("/api/models/{repo}/xet-read-token/main"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    r.json()["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned()
}

/// Uploads `u` (xorb and shard) through a write token of `repo`.
async fn upload_to(app: &TestApp, token: &str, repo: &str, u: &Upload) {
    let cas = cas_token(app, token, repo, "write").await;
    assert_eq!(post_xorb(app, &cas, u, &u.xorb_bytes).await, StatusCode::OK);
    assert_eq!(post_shard(app, &cas, u).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_public_repositorys_reader_or_contributor_sees_none_of_the_namespaces_private_xorbs() {
    let app = TestApp::new().await;
    let db = &app.state.db;
    let alice = app.user("alice", TokenRole::Write).await;
    let bob = app.user("bob", TokenRole::Write).await;
    let dave = app.user("dave", TokenRole::Read).await;
    org_with(
        &app,
        "acme",
        &[("alice", OrgRole::Admin), ("dave", OrgRole::Read)],
    )
    .await;
    let (secret, open) = (upload(5), upload(6));
    for ns in ["alice", "acme"] {
        create_private_repo(&app, &alice, &format!("{ns}/secret")).await;
        create_repo(&app, &alice, &format!("{ns}/open")).await;
        upload_to(&app, &alice, &format!("{ns}/secret"), &secret).await;
        upload_to(&app, &alice, &format!("{ns}/open"), &open).await;
    }

    // Anyone may read alice/open: its token sees that repository's xorbs, and a xorb only
    // her private repository holds answers exactly as one nobody ever sent.
    let anonymous = anonymous_cas_token(&app, "alice/open").await;
    assert_eq!(head_xorb(&app, &anonymous, &open).await, StatusCode::OK);
    assert_eq!(
        head_xorb(&app, &anonymous, &secret).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        head_xorb(&app, &anonymous, &upload(98)).await,
        StatusCode::NOT_FOUND
    );

    // Bob may contribute to it (a pull request's files): his shard may name what the
    // repository holds, not what her private one does — refused as an unknown xorb, and
    // nothing of it readable through alice/open.
    let contributor = cas_token(&app, &bob, "alice/open", "write").await;
    assert_eq!(
        head_xorb(&app, &contributor, &secret).await,
        StatusCode::NOT_FOUND
    );
    let refused = post_shard(&app, &contributor, &secret).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    assert_eq!(refused, unknown_xorb_refusal(&app, &contributor).await);
    assert!(!readable(&app, &bob, "alice/open", &secret).await);
    assert_eq!(
        post_shard(&app, &contributor, &open).await.0,
        StatusCode::OK
    );

    // Those who may read every repository of the namespace see its xorbs from any of them:
    // alice in her own, dave (a reader of acme) in acme.
    let owner = cas_token(&app, &alice, "alice/open", "read").await;
    assert_eq!(head_xorb(&app, &owner, &secret).await, StatusCode::OK);
    let member = cas_token(&app, &dave, "acme/open", "read").await;
    assert_eq!(head_xorb(&app, &member, &secret).await, StatusCode::OK);
    // Not dave from alice's namespace, nor dave through a token scoped to one repository
    // of acme (alice would: she sent those bytes).
    let outsider = cas_token(&app, &dave, "alice/open", "read").await;
    assert_eq!(
        head_xorb(&app, &outsider, &secret).await,
        StatusCode::NOT_FOUND
    );
    let dave_id = user_id(&app, "dave").await;
    let open_id = db
        .repo_by_name(
            trove_types::RepoType::Model,
            &trove_types::RepoId::new(
                RepoName::parse("acme").expect("ns"),
                RepoName::parse("open").expect("name"),
            ),
        )
        .await
        .expect("db")
        .expect("repo")
        .id;
    let scoped = trove::auth::generate_token();
    db.create_token(
        dave_id,
        "one repo",
        TokenRole::FineGrained,
        &trove::auth::hash_token(&scoped),
        None,
        &[trove_db::NewScope::Repo {
            repo_id: open_id,
            permissions: vec!["repo.content.read".into()],
        }],
    )
    .await
    .expect("token");
    let one_repo = cas_token(&app, &scoped, "acme/open", "read").await;
    assert_eq!(head_xorb(&app, &one_repo, &open).await, StatusCode::OK);
    assert_eq!(
        head_xorb(&app, &one_repo, &secret).await,
        StatusCode::NOT_FOUND
    );
}

/// The `result` of a shard upload of `u`'s file alone.
async fn shard_result(app: &TestApp, cas: &str, u: &Upload) -> serde_json::Value {
    let r = app
        .post("/xet/v1/shards")
        .token(cas)
        .body(build_shard(std::slice::from_ref(&u.file)))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    r.json()["result"].clone()
}

#[tokio::test]
async fn a_shard_upload_does_not_tell_whether_someone_else_holds_the_file() {
    let app = TestApp::new().await;
    let alice = app.user("alice", TokenRole::Write).await;
    let carol = app.user("carol", TokenRole::Write).await;
    let (held, fresh) = (upload(7), upload(8));
    create_private_repo(&app, &alice, "alice/secret").await;
    upload_to(&app, &alice, "alice/secret", &held).await;

    // Carol sends the same bytes, and other bytes, to her own repository: each shard
    // answers the same — new to her repository — whatever alice holds.
    create_repo(&app, &carol, "carol/mine").await;
    let cas = cas_token(&app, &carol, "carol/mine", "write").await;
    for u in [&held, &fresh] {
        assert_eq!(
            post_xorb(&app, &cas, u, &u.xorb_bytes).await,
            StatusCode::OK
        );
        assert_eq!(shard_result(&app, &cas, u).await, 1);
        assert!(readable(&app, &carol, "carol/mine", u).await);
    }
    // Sent again, neither is new to her repository.
    for u in [&held, &fresh] {
        assert_eq!(shard_result(&app, &cas, u).await, 0);
    }
}

#[tokio::test]
async fn a_cas_token_stops_when_its_holder_may_no_longer_read() {
    let app = TestApp::new().await;
    let db = &app.state.db;
    let alice = app.user("alice", TokenRole::Write).await;
    let carol = app.user("carol", TokenRole::Write).await;
    let dave = app.user("dave", TokenRole::Write).await;
    let acme = org_with(
        &app,
        "acme",
        &[
            ("alice", OrgRole::Admin),
            ("carol", OrgRole::Read),
            ("dave", OrgRole::Read),
        ],
    )
    .await;
    create_private_repo(&app, &alice, "acme/priv").await;
    create_repo(&app, &alice, "acme/open").await;
    let u = upload(9);
    upload_to(&app, &alice, "acme/priv", &u).await;
    upload_to(&app, &alice, "acme/open", &u).await;

    // Tokens taken while they may read: carol's and dave's for the private repository, an
    // anonymous one for the public repository.
    let carols = cas_token(&app, &carol, "acme/priv", "read").await;
    let daves = cas_token(&app, &dave, "acme/priv", "write").await;
    let anonymous = anonymous_cas_token(&app, "acme/open").await;
    for cas in [&carols, &daves, &anonymous] {
        assert_eq!(head_xorb(&app, cas, &u).await, StatusCode::OK);
    }
    // Carol leaves the organization, dave's account is disabled, the public repository goes
    // private: each token stops at once, though its signature is good for an hour.
    db.remove_org_member(acme, user_id(&app, "carol").await)
        .await
        .expect("remove");
    db.set_user_disabled(user_id(&app, "dave").await, true)
        .await
        .expect("disable");
    let r = app
        .request(Method::PUT, "/api/models/acme/open/settings")
        .token(&alice)
        .json(&json!({"private": true}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    for cas in [&carols, &daves, &anonymous] {
        assert_eq!(head_xorb(&app, cas, &u).await, StatusCode::UNAUTHORIZED);
        let r = app
            .get(&format!(
                "/xet/v2/reconstructions/{}",
                u.file.file_hash.hex()
            ))
            .token(cas)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        post_xorb(&app, &daves, &upload(10), &upload(10).xorb_bytes).await,
        StatusCode::UNAUTHORIZED
    );
    // Alice's, taken now, works.
    let alices = cas_token(&app, &alice, "acme/open", "read").await;
    assert_eq!(head_xorb(&app, &alices, &u).await, StatusCode::OK);
}

/// Posts a shard naming `files`: its status and the answer's text.
async fn post_files(app: &TestApp, cas: &str, files: &[ShardFile]) -> (StatusCode, String) {
    let r = app
        .post("/xet/v1/shards")
        .token(cas)
        .body(build_shard(files))
        .send()
        .await;
    let message = r.error().1.unwrap_or_default();
    (r.status, message.to_owned())
}

#[tokio::test]
async fn a_files_first_xorbs_hashed_as_they_arrive_give_the_same_answers_as_a_rebuild() {
    let app = TestApp::new().await;
    let alice = app.user("alice", TokenRole::Write).await;
    create_repo(&app, &alice, "alice/ahead").await;
    let cas = cas_token(&app, &alice, "alice/ahead", "write").await;
    let hashed_ahead = || app.state.hash_ahead.used_bytes();
    let send = |u: &Upload| {
        let (app, cas, body) = (&app, cas.clone(), u.xorb_bytes.clone());
        let uri = xorb_uri(u);
        async move { app.post(&uri).token(&cas).body(body).send().await.status }
    };

    // Two xorbs sent in order, one file made of both, whole: all of it was hashed ahead.
    let (a, b) = (upload(201), upload(202));
    for u in [&a, &b] {
        assert_eq!(send(u).await, StatusCode::OK);
    }
    let whole = file_of(&[(&a, 0, 3), (&b, 0, 3)], None);
    assert_eq!(
        post_files(&app, &cas, std::slice::from_ref(&whole)).await.0,
        StatusCode::OK
    );
    assert_eq!(hashed_ahead(), 120_000);

    // The same order, a wrong SHA-256 claimed for the file: refused just the same, and the
    // file not recorded.
    let (c, d) = (upload(203), upload(204));
    for u in [&c, &d] {
        assert_eq!(send(u).await, StatusCode::OK);
    }
    let lying = file_of(&[(&c, 0, 3), (&d, 0, 3)], Some([7; 32]));
    let (status, message) = post_files(&app, &cas, std::slice::from_ref(&lying)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("the shard claims SHA-256"), "{message}");
    assert_eq!(hashed_ahead(), 120_000, "a refused file counts nothing");
    let r = app
        .get(&format!(
            "/xet/v2/reconstructions/{}",
            lying.file_hash.hex()
        ))
        .token(&cas)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Sent in the other order than the file's: nothing usable ahead, rebuilt, accepted.
    let (e, f) = (upload(205), upload(206));
    for u in [&f, &e] {
        assert_eq!(send(u).await, StatusCode::OK);
    }
    let swapped = file_of(&[(&e, 0, 3), (&f, 0, 3)], None);
    assert_eq!(
        post_files(&app, &cas, std::slice::from_ref(&swapped))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(hashed_ahead(), 120_000);

    // A file whose first xorb is whole and whose second is cut: the first hashed ahead, the
    // rest rebuilt; one starting inside the first xorb: nothing ahead. Both right, in one
    // shard; and a wrong claim for the first shape refused too.
    let (g, h) = (upload(207), upload(208));
    for u in [&g, &h] {
        assert_eq!(send(u).await, StatusCode::OK);
    }
    let cut = file_of(&[(&g, 0, 3), (&h, 0, 2)], None);
    let inside = file_of(&[(&g, 1, 3), (&h, 0, 3)], None);
    let (status, message) = post_files(&app, &cas, &[cut.clone(), inside.clone()]).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(hashed_ahead(), 180_000);
    let (i, j) = (upload(209), upload(210));
    for u in [&i, &j] {
        assert_eq!(send(u).await, StatusCode::OK);
    }
    let cut_lying = file_of(&[(&i, 0, 3), (&j, 0, 2)], Some([9; 32]));
    assert_eq!(
        post_files(&app, &cas, std::slice::from_ref(&cut_lying))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // What was accepted reads back as the bytes it was made of, with our own SHA-256.
    for (file, parts) in [
        (&whole, vec![&a.chunks[..], &b.chunks[..]]),
        (&swapped, vec![&e.chunks[..], &f.chunks[..]]),
        (&cut, vec![&g.chunks[..], &h.chunks[..2]]),
        (&inside, vec![&g.chunks[1..], &h.chunks[..]]),
    ] {
        let data: Vec<u8> = parts.concat().concat();
        let row = app
            .state
            .db
            .xet_file(&file.file_hash.to_bytes())
            .await
            .expect("db")
            .expect("recorded");
        assert_eq!(row.sha256.as_str(), hex::encode(Sha256::digest(&data)));
        assert_eq!(row.size, data.len() as u64);
    }
}

#[tokio::test]
async fn a_refused_xorb_ends_the_chain_and_the_next_upload_starts_a_new_one() {
    let app = TestApp::new().await;
    let alice = app.user("alice", TokenRole::Write).await;
    create_repo(&app, &alice, "alice/chain").await;
    let cas = cas_token(&app, &alice, "alice/chain", "write").await;
    let (a, bad, b) = (upload(211), upload(212), upload(213));
    assert_eq!(
        post_xorb(&app, &cas, &a, &a.xorb_bytes).await,
        StatusCode::OK
    );
    let mut broken = bad.xorb_bytes.clone();
    broken[100] ^= 1;
    assert_eq!(
        post_xorb(&app, &cas, &bad, &broken).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_xorb(&app, &cas, &b, &b.xorb_bytes).await,
        StatusCode::OK
    );
    // The file of a then b: a was hashed ahead, b (after the refusal) rebuilt.
    let ab = file_of(&[(&a, 0, 3), (&b, 0, 3)], None);
    assert_eq!(
        post_files(&app, &cas, std::slice::from_ref(&ab)).await.0,
        StatusCode::OK
    );
    assert_eq!(app.state.hash_ahead.used_bytes(), 60_000);
    // After that shard, the next xorb starts a chain of its own.
    let c = upload(214);
    assert_eq!(
        post_xorb(&app, &cas, &c, &c.xorb_bytes).await,
        StatusCode::OK
    );
    let only_c = file_of(&[(&c, 0, 3)], None);
    assert_eq!(
        post_files(&app, &cas, std::slice::from_ref(&only_c))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(app.state.hash_ahead.used_bytes(), 120_000);
}
