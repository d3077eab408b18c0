//! The search index, listings, likes and download counters.

use crate::{TestResult, repo_id, user};
use trove_db::{CardParse, Cursor, Db, IndexUpdate, ListQuery, Repo, SortKey, Visibility};
use trove_types::RepoType;

fn query(visibility: Visibility) -> ListQuery {
    ListQuery {
        gated: None,
        repo_type: RepoType::Model,
        visibility,
        author: None,
        search: Vec::new(),
        tags: Vec::new(),
        params_min: None,
        params_max: None,
        only_ids: None,
        sort: SortKey::CreatedAt,
        ascending: false,
        after: None,
        limit: 100,
        documents: true,
    }
}

async fn model(db: &Db, owner: i64, id: &str, private: bool, created: i64) -> Repo {
    db.create_repo(RepoType::Model, &repo_id(id), private, owner, created)
        .await
        .expect("create repo")
}

fn update(tags: &[&str], pipeline: Option<&str>, params: Option<i64>) -> IndexUpdate {
    IndexUpdate {
        sha: "a".repeat(40),
        last_modified_ms: 1000,
        pipeline_tag: pipeline.map(str::to_owned),
        tags_json: serde_tags(tags),
        facets: tags
            .iter()
            .map(|t| (*t).to_owned())
            .chain(pipeline.map(|p| format!("pipeline:{p}")))
            .collect(),
        card_warnings_json: "[]".into(),
        siblings_json: "[]".into(),
        params_total: params,
        ..IndexUpdate::default()
    }
}

fn serde_tags(tags: &[&str]) -> String {
    format!(
        "[{}]",
        tags.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn names(db: &Db, q: &ListQuery) -> Vec<String> {
    db.list_repos(q)
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|l| format!("{}/{}", l.repo.namespace, l.repo.name))
        .collect()
}

trove_db::backend_tests! {
async fn every_repo_is_listed_from_creation_and_filtered_by_its_facets(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/bert-base", false, 1).await;
    let b = model(&db, alice.id, "alice/roberta", false, 2).await;
    let c = model(&db, alice.id, "bob/gpt", false, 3).await;
    let secret = model(&db, alice.id, "alice/secret-bert", true, 4).await;
    assert_eq!(db.repo_index(a.id).await?.expect("row").sha, None);
    assert_eq!(
        db.repos_never_indexed(0, 10).await?.len(),
        4,
        "nothing indexed yet"
    );
    assert!(
        db.write_repo_index(
            a.id,
            &update(&["transformers", "en"], Some("fill-mask"), Some(110))
        )
        .await?
    );
    assert!(
        db.write_repo_index(
            b.id,
            &update(&["transformers", "fr"], Some("fill-mask"), None)
        )
        .await?
    );
    assert!(
        db.write_repo_index(c.id, &update(&["gguf", "en"], None, Some(7)))
            .await?
    );
    assert!(
        db.write_repo_index(secret.id, &update(&["transformers", "en"], None, None))
            .await?
    );
    assert_eq!(db.repos_never_indexed(0, 10).await?.len(), 0);

    let public = query(Visibility::Public);
    assert_eq!(
        names(&db, &public).await,
        ["bob/gpt", "alice/roberta", "alice/bert-base"]
    );
    let mine = query(Visibility::public_and_namespace("ALICE"));
    assert_eq!(
        names(&db, &mine).await.len(),
        4,
        "namespaces compare without case"
    );
    assert_eq!(names(&db, &query(Visibility::All)).await.len(), 4);

    let mut q = public.clone();
    q.tags = vec!["transformers".into(), "en".into()];
    assert_eq!(names(&db, &q).await, ["alice/bert-base"]);
    q.tags = vec!["transformers".into(), "pipeline:fill-mask".into()];
    q.ascending = true;
    assert_eq!(names(&db, &q).await, ["alice/bert-base", "alice/roberta"]);

    let mut q = public.clone();
    q.search = vec!["BERT".into()];
    assert_eq!(
        names(&db, &q).await,
        ["alice/roberta", "alice/bert-base"],
        "substring, any case"
    );
    q.search = vec!["pt".into()];
    assert_eq!(names(&db, &q).await, ["bob/gpt"], "short queries scan");
    q.search = vec!["\"".into(), "x".into()];
    assert!(names(&db, &q).await.is_empty(), "quotes are not syntax");

    let mut q = public.clone();
    q.author = Some("Alice".into());
    q.params_min = Some(100);
    assert_eq!(names(&db, &q).await, ["alice/bert-base"]);

    q.tags = vec!["no-such-tag".into()];
    assert!(names(&db, &q).await.is_empty());
    // Broad filters (walked) and selective ones (driven by the inverted index) agree.
    for _ in 0..40 {
        let extra = db
            .create_repo(
                RepoType::Model,
                &repo_id(&format!("carol/m{}", names(&db, &public).await.len())),
                false,
                alice.id,
                9,
            )
            .await?;
        db.write_repo_index(extra.id, &update(&["en"], None, None))
            .await?;
    }
    let mut q = public.clone();
    q.tags = vec!["en".into()];
    q.limit = 5;
    assert_eq!(names(&db, &q).await.len(), 5);
    q.tags = vec!["en".into(), "gguf".into()];
    assert_eq!(names(&db, &q).await, ["bob/gpt"]);

    // Rewriting the index replaces the facets.
    db.write_repo_index(a.id, &update(&["jax"], None, None))
        .await?;
    let mut q = public.clone();
    q.tags = vec!["transformers".into()];
    assert_eq!(names(&db, &q).await, ["alice/roberta"]);

    // Deleting a repo removes it from the index and from search.
    db.delete_repo(b.id).await?;
    let mut q = public.clone();
    q.search = vec!["rob".into()];
    assert!(names(&db, &q).await.is_empty());
    assert_eq!(db.repo_index(b.id).await?, None);
    Ok(())
}
}

trove_db::backend_tests! {
async fn keyset_pages_cover_every_row_once_in_order(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // Three share created_at = 5: ties are broken by id.
        let created = if i < 3 { 5 } else { i };
        ids.push(
            model(&db, alice.id, &format!("alice/m{i}"), false, created)
                .await
                .id,
        );
    }
    for ascending in [false, true] {
        let mut q = query(Visibility::Public);
        q.limit = 2;
        q.ascending = ascending;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = db.list_repos(&q).await?;
            pages += 1;
            seen.extend(page.items.iter().map(|l| (l.repo.created_at_ms, l.repo.id)));
            match page.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        let mut expected = seen.clone();
        expected.sort();
        if !ascending {
            expected.reverse();
        }
        assert_eq!(seen, expected);
        assert_eq!(seen.len(), 7);
    }
    Ok(())
}
}

trove_db::backend_tests! {
async fn facet_pages_hold_every_match_once_in_order_walked_or_probed(db) -> TestResult {
    // On SQLite, a facet matching many of the repositories is put in order by walking the
    // sort index and testing each entry against its matches, and one matching few by probing
    // each match and sorting (`walk_candidates`): with 24 models, "wide" (18 matches) pages
    // of 2 are walked, "wide" + "narrow" (estimated 3) pages of 10 probed. Either way the
    // pages hold exactly the public matches, in order, ties broken by id.
    let alice = user(&db, "alice").await;
    let mut repos = Vec::new();
    for i in 0..24_i64 {
        // Triples share a creation time; every fifth repository is private.
        let repo = model(&db, alice.id, &format!("alice/p{i}"), i % 5 == 0, i / 3).await;
        let tags: &[&str] = if i % 6 == 0 {
            &["wide", "narrow"]
        } else if i % 4 != 3 {
            &["wide"]
        } else {
            &["other"]
        };
        db.write_repo_index(repo.id, &update(tags, None, None))
            .await?;
        for _ in 0..i % 4 {
            db.count_download(repo.id, 20_000).await?;
        }
        repos.push((repo, tags));
    }
    for (tags, limit) in [(vec!["wide"], 2), (vec!["wide", "narrow"], 10)] {
        for sort in [SortKey::CreatedAt, SortKey::Downloads] {
            for ascending in [false, true] {
                let mut expected: Vec<(i64, i64)> = repos
                    .iter()
                    .filter(|(r, t)| !r.private && tags.iter().all(|tag| t.contains(tag)))
                    .map(|(r, _)| {
                        let i: i64 = r.name.trim_start_matches('p').parse().expect("index");
                        let value = match sort {
                            SortKey::Downloads => i % 4,
                            _ => r.created_at_ms,
                        };
                        (value, r.id)
                    })
                    .collect();
                expected.sort();
                if !ascending {
                    expected.reverse();
                }
                let mut q = query(Visibility::Public);
                q.tags = tags.iter().map(|t| (*t).to_owned()).collect();
                q.limit = limit;
                q.sort = sort;
                q.ascending = ascending;
                let mut seen = Vec::new();
                for _ in 0..expected.len() + 1 {
                    let page = db.list_repos(&q).await?;
                    assert!(page.items.len() <= limit as usize);
                    seen.extend(page.items.iter().map(|l| {
                        let value = match sort {
                            SortKey::Downloads => l.index.downloads,
                            _ => l.repo.created_at_ms,
                        };
                        (value, l.repo.id)
                    }));
                    match page.next {
                        Some(c) => q.after = Some(c),
                        None => break,
                    }
                }
                assert_eq!(seen, expected, "{tags:?} by {sort:?}, ascending {ascending}");
            }
        }
    }
    Ok(())
}
}

trove_db::backend_tests! {
async fn likes_count_once_and_respect_visibility(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    let public = model(&db, alice.id, "alice/open", false, 1).await;
    let private = model(&db, alice.id, "alice/closed", true, 2).await;
    assert!(db.like(bob.id, public.id, 10).await?);
    assert!(
        !db.like(bob.id, public.id, 11).await?,
        "a second like is a no-op"
    );
    assert!(db.like(alice.id, public.id, 12).await?);
    assert!(db.like(alice.id, private.id, 13).await?);
    assert_eq!(db.repo_index(public.id).await?.expect("row").likes, 2);

    let likers = db.likers(public.id, None, 1).await?;
    assert_eq!(likers.items[0].0.name, "alice", "newest first");
    let rest = db.likers(public.id, likers.next, 1).await?;
    assert_eq!(rest.items[0].0.name, "bob");
    assert!(rest.next.is_none());

    let seen_by_bob = db
        .liked_repos(alice.id, &Visibility::public_and_namespace("bob"), None, 10)
        .await?;
    assert_eq!(seen_by_bob.items.len(), 1);
    let seen_by_alice = db
        .liked_repos(
            alice.id,
            &Visibility::public_and_namespace("alice"),
            None,
            10,
        )
        .await?;
    assert_eq!(seen_by_alice.items[0].0.id, private.id);

    assert!(db.unlike(bob.id, public.id).await?);
    assert!(!db.unlike(bob.id, public.id).await?);
    assert_eq!(db.repo_index(public.id).await?.expect("row").likes, 1);
    Ok(())
}
}

trove_db::backend_tests! {
async fn downloads_roll_over_30_days(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = model(&db, alice.id, "alice/m", false, 1).await;
    let today = 20_000;
    db.count_download(repo.id, today - 40).await?;
    db.count_download(repo.id, today - 10).await?;
    db.count_download(repo.id, today).await?;
    let row = db.repo_index(repo.id).await?.expect("row");
    assert_eq!((row.downloads, row.downloads_all_time), (3, 3));
    db.refresh_rolling_counters(today).await?;
    let row = db.repo_index(repo.id).await?.expect("row");
    assert_eq!(
        (row.downloads, row.downloads_all_time, row.trending_score),
        (2, 3, 1)
    );
    assert_eq!(db.refresh_rolling_counters(today).await?, 0, "idempotent");

    let mut q = query(Visibility::Public);
    q.sort = SortKey::Downloads;
    q.after = Some(Cursor {
        value: 2,
        id: repo.id,
    });
    assert!(db.list_repos(&q).await?.items.is_empty());
    Ok(())
}
}

trove_db::backend_tests! {
async fn card_parses_are_stored_once_per_blob_and_go_with_the_repo(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/a", false, 1).await;
    let b = model(&db, alice.id, "alice/b", false, 2).await;
    let blob = "b".repeat(40);
    assert_eq!(db.card_parse(a.id, &blob).await?, None);

    let read = CardParse {
        data_json: Some(r#"{"license":"mit"}"#.into()),
        warning: None,
    };
    db.save_card_parse(a.id, &blob, &read).await?;
    assert_eq!(db.card_parse(a.id, &blob).await?, Some(read.clone()));
    // A blob's parse never changes: a second save keeps the first.
    let refused = CardParse {
        data_json: None,
        warning: Some("README.md metadata ignored: too deep".into()),
    };
    db.save_card_parse(a.id, &blob, &refused).await?;
    assert_eq!(db.card_parse(a.id, &blob).await?, Some(read));
    // Per repository: the same blob elsewhere is parsed for that repository.
    assert_eq!(db.card_parse(b.id, &blob).await?, None);
    db.save_card_parse(b.id, &blob, &refused).await?;
    assert_eq!(db.card_parse(b.id, &blob).await?, Some(refused.clone()));

    db.delete_repo(b.id).await?;
    assert_eq!(db.card_parse(b.id, &blob).await?, None);
    // Saving for a repository deleted meanwhile stores nothing and is no error.
    db.save_card_parse(b.id, &blob, &refused).await?;
    assert_eq!(db.card_parse(b.id, &blob).await?, None);
    Ok(())
}
}

trove_db::backend_tests! {
async fn every_plan_follows_a_change_of_visibility(db) -> TestResult {
    // repo_index keeps its own copy of `private` (0028): each listing plan reads it there, so
    // a repository made private must leave the public answer of every plan at once, and
    // come back when made public again.
    let alice = user(&db, "alice").await;
    let target = model(&db, alice.id, "alice/flip-bert", false, 50).await;
    db.write_repo_index(target.id, &update(&["rare-tag", "en"], None, None))
        .await?;
    for i in 0..30 {
        let other = model(&db, alice.id, &format!("bob/filler-{i}"), false, i).await;
        db.write_repo_index(other.id, &update(&["en"], None, None))
            .await?;
    }
    let public = query(Visibility::Public);
    let plans = {
        let mut walk = public.clone();
        walk.limit = 50;
        let mut facets = public.clone();
        facets.tags = vec!["rare-tag".into(), "en".into()];
        let mut search = public.clone();
        search.search = vec!["flip-bert".into()];
        let mut short_search = public.clone();
        short_search.search = vec!["fl".into()];
        let mut author = public.clone();
        author.author = Some("alice".into());
        let mut gated = public.clone();
        gated.gated = Some(false);
        gated.limit = 50;
        [walk, facets, search, short_search, author, gated]
    };
    let shows = |names: Vec<String>| names.iter().any(|n| n == "alice/flip-bert");
    for q in &plans {
        assert!(shows(names(&db, q).await), "public: {q:?}");
    }

    db.update_repo_settings(target.id, Some(true), None, None, None)
        .await?;
    for q in &plans {
        assert!(!shows(names(&db, q).await), "made private: {q:?}");
        let mut own = q.clone();
        own.visibility = Visibility::public_and_namespace("alice");
        assert!(shows(names(&db, &own).await), "its namespace: {q:?}");
        own.visibility = Visibility::PublicAnd {
            namespaces: vec!["bob".into()],
            repo_ids: vec![target.id],
        };
        assert!(shows(names(&db, &own).await), "by id: {q:?}");
        own.visibility = Visibility::public_and_namespace("bob");
        assert!(!shows(names(&db, &own).await), "another namespace: {q:?}");
        own.visibility = Visibility::All;
        assert!(shows(names(&db, &own).await), "all: {q:?}");
    }

    db.update_repo_settings(target.id, Some(false), None, None, None)
        .await?;
    for q in &plans {
        assert!(shows(names(&db, q).await), "public again: {q:?}");
    }
    // A repository created private is private in the index from its first row.
    let born_private = model(&db, alice.id, "alice/born-private", true, 99).await;
    db.write_repo_index(born_private.id, &update(&["rare-tag"], None, None))
        .await?;
    let mut facets = public.clone();
    facets.tags = vec!["rare-tag".into()];
    assert_eq!(names(&db, &facets).await, ["alice/flip-bert"]);
    Ok(())
}

async fn a_push_to_main_leaves_the_entry_to_reindex_until_it_is_rewritten(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/pushed", false, 1).await;
    assert!(db.write_repo_index(a.id, &update(&["en"], None, None)).await?);
    // A push that left main alone keeps the entry.
    db.record_push(a.id, 50, false).await?;
    assert_eq!(db.repos_never_indexed(0, 10).await?.len(), 0);
    assert_eq!(db.repo_by_name(RepoType::Model, &repo_id("alice/pushed")).await?.expect("repo").updated_at_ms, 50);
    // One that moved it marks it, with the modification time, until the reindex.
    db.record_push(a.id, 60, true).await?;
    assert_eq!(db.repo_index(a.id).await?.expect("row").sha, None);
    let marked: Vec<i64> = db.repos_never_indexed(0, 10).await?.iter().map(|r| r.id).collect();
    assert_eq!(marked, [a.id]);
    assert_eq!(db.repo_by_name(RepoType::Model, &repo_id("alice/pushed")).await?.expect("repo").updated_at_ms, 60);
    assert!(db.write_repo_index(a.id, &update(&["en"], None, None)).await?);
    assert_eq!(db.repos_never_indexed(0, 10).await?.len(), 0);
    Ok(())
}
}

trove_db::backend_tests! {
async fn a_page_reads_the_json_documents_only_when_asked(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/documented", false, 1).await;
    let mut documented = update(&["en"], Some("fill-mask"), Some(110));
    documented.card_data_json = Some(r#"{"license":"mit"}"#.into());
    documented.card_warnings_json = r#"["odd card"]"#.into();
    documented.siblings_json = r#"["README.md","config.json"]"#.into();
    documented.safetensors_json = Some(r#"{"parameters":{"F32":110},"total":110}"#.into());
    documented.config_json = Some(r#"{"model_type":"bert"}"#.into());
    documented.used_storage = 42;
    db.write_repo_index(a.id, &documented).await?;
    let stored = db.repo_index(a.id).await?.expect("row");

    let mut q = query(Visibility::Public);
    let full = db.list_repos(&q).await?;
    assert_eq!(full.items.len(), 1);
    assert_eq!(full.items[0].index, stored, "documents read when asked");

    q.documents = false;
    for tags in [vec![], vec!["en".to_owned()]] {
        q.tags = tags;
        let page = db.list_repos(&q).await?;
        assert_eq!(page.items.len(), 1);
        let index = &page.items[0].index;
        assert_eq!(index.card_data_json, None);
        assert_eq!(index.card_warnings_json, "[]");
        assert_eq!(index.siblings_json, "[]");
        assert_eq!(index.safetensors_json, None);
        assert_eq!(index.config_json, None);
        // Everything else is read as stored.
        let expected = trove_db::RepoIndex {
            card_data_json: None,
            card_warnings_json: "[]".into(),
            siblings_json: "[]".into(),
            safetensors_json: None,
            config_json: None,
            ..stored.clone()
        };
        assert_eq!(*index, expected, "tags {:?}", q.tags);
    }
    Ok(())
}

async fn a_facet_counts_from_the_next_listing_on(db) -> TestResult {
    // The facet and type counts choose the plan and answer "nothing" for a facet no
    // repository has: a facet that appears, or a repository that goes, shows in the very
    // next listing.
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/first", false, 1).await;
    db.write_repo_index(a.id, &update(&["en"], None, None)).await?;
    let mut q = query(Visibility::Public);
    q.tags = vec!["brand-new".into(), "en".into()];
    assert!(names(&db, &q).await.is_empty(), "no repository has it yet");
    db.write_repo_index(a.id, &update(&["en", "brand-new"], None, None))
        .await?;
    assert_eq!(names(&db, &q).await, ["alice/first"]);
    let b = model(&db, alice.id, "alice/second", false, 2).await;
    db.write_repo_index(b.id, &update(&["brand-new", "en"], None, None))
        .await?;
    assert_eq!(names(&db, &q).await, ["alice/second", "alice/first"]);
    db.delete_repo(a.id).await?;
    db.delete_repo(b.id).await?;
    assert!(names(&db, &q).await.is_empty(), "both gone");
    q.tags = vec!["en".into()];
    assert!(names(&db, &q).await.is_empty(), "no models left");
    Ok(())
}
}

trove_db::backend_tests! {
async fn a_list_of_ids_narrows_the_listing_and_keeps_every_other_rule(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let a = model(&db, alice.id, "alice/one", false, 1).await;
    let b = model(&db, alice.id, "alice/two", false, 2).await;
    let _c = model(&db, alice.id, "alice/three", false, 3).await;
    let secret = model(&db, alice.id, "alice/secret", true, 4).await;
    for repo in [&a, &b, &secret] {
        db.write_repo_index(repo.id, &update(&["en"], Some("fill-mask"), None))
            .await?;
    }
    let mut q = query(Visibility::Public);
    q.only_ids = Some(vec![a.id, b.id, secret.id]);
    // Newest first, as without the list; the private one stays out for the public.
    assert_eq!(names(&db, &q).await, ["alice/two", "alice/one"]);
    q.visibility = Visibility::All;
    assert_eq!(
        names(&db, &q).await,
        ["alice/secret", "alice/two", "alice/one"]
    );
    // The other filters and the pages still apply.
    q.search = vec!["one".into()];
    assert_eq!(names(&db, &q).await, ["alice/one"]);
    q.search.clear();
    q.limit = 1;
    let first = db.list_repos(&q).await?;
    assert_eq!(first.items.len(), 1);
    q.after = first.next;
    assert_eq!(names(&db, &q).await, ["alice/two"]);
    // An empty list lists nothing.
    let mut none = query(Visibility::All);
    none.only_ids = Some(Vec::new());
    assert!(names(&db, &none).await.is_empty());
    Ok(())
}
}
