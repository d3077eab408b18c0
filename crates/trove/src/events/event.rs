//! What happened to a repository or one of its discussions, as the use cases report it.

use trove_db::{Discussion, DiscussionChanges, EventKind, Repo};
use trove_types::GitOid;

/// The Hub's event actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Delete,
    Move,
    Update,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Move => "move",
            Action::Update => "update",
        }
    }
}

/// One ref a change moved: `None` on the old side for a new ref, on the new side for a
/// deleted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdatedRef {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Something that happened to a repository or one of its discussions.
#[derive(Clone, Debug)]
pub enum Event {
    /// `repo` (create, delete, move), `repo.config` (settings), `repo.content` (refs).
    Repo {
        action: Action,
        scope: &'static str,
        /// The row as it was when the event happened (a deleted repository's last state).
        repo: Repo,
        updated_refs: Vec<UpdatedRef>,
        /// For a move: the new `namespace/name`.
        moved_to: Option<String>,
        /// Fill each updated ref's `new` from the repository when queueing (refs created
        /// through the API, whose handlers do not see the target).
        read_targets: bool,
    },
    /// `discussion` (opened, status or title changed) or `discussion.comment` (posted).
    Discussion {
        action: Action,
        scope: &'static str,
        discussion: Discussion,
        comment: Option<Comment>,
    },
}

/// A comment as a payload names it.
#[derive(Clone, Debug)]
pub struct Comment {
    pub id: i64,
    pub author: Option<String>,
    pub content: String,
    pub hidden: bool,
}

impl Event {
    pub fn repo_created(repo: &Repo) -> Event {
        Event::repo(Action::Create, "repo", repo)
    }

    pub fn repo_deleted(repo: &Repo) -> Event {
        Event::repo(Action::Delete, "repo", repo)
    }

    /// Settings changed (visibility, gating, discussions).
    pub fn repo_config(repo: &Repo) -> Event {
        Event::repo(Action::Update, "repo.config", repo)
    }

    /// `repo` (before the move) now lives at `to` (`namespace/name`).
    pub fn repo_moved(repo: &Repo, to: &str) -> Event {
        Event::Repo {
            action: Action::Move,
            scope: "repo",
            repo: repo.clone(),
            updated_refs: Vec::new(),
            moved_to: Some(to.to_owned()),
            read_targets: false,
        }
    }

    /// A commit moved `revision` (a branch name or a full ref) from `old` (`None` when the
    /// commit created the ref) to `new`.
    pub fn committed(repo: &Repo, revision: &str, old: Option<&GitOid>, new: &GitOid) -> Event {
        Event::content(
            repo,
            vec![UpdatedRef {
                name: full_ref(revision),
                old: old.map(ToString::to_string),
                new: Some(new.to_string()),
            }],
        )
    }

    /// A branch or tag (`full_ref`) was created through the API; its target is read when
    /// the event is queued.
    pub fn ref_created(repo: &Repo, full_ref: &str) -> Event {
        Event::Repo {
            action: Action::Update,
            scope: "repo.content",
            repo: repo.clone(),
            updated_refs: vec![UpdatedRef {
                name: full_ref.to_owned(),
                old: None,
                new: None,
            }],
            moved_to: None,
            read_targets: true,
        }
    }

    /// A branch or tag (`full_ref`), which pointed at `old`, was deleted through the API.
    pub fn ref_deleted(repo: &Repo, full_ref: &str, old: Option<&GitOid>) -> Event {
        Event::content(
            repo,
            vec![UpdatedRef {
                name: full_ref.to_owned(),
                old: old.map(ToString::to_string),
                new: None,
            }],
        )
    }

    /// A push moved refs from `before` to `after` (every ref with its target).
    pub fn pushed(repo: &Repo, before: &[(String, GitOid)], after: &[(String, GitOid)]) -> Event {
        let target = |refs: &[(String, GitOid)], name: &str| {
            refs.iter()
                .find(|(n, _)| n == name)
                .map(|(_, oid)| oid.to_string())
        };
        let mut names: Vec<&str> = after
            .iter()
            .chain(before)
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let updated_refs = names
            .into_iter()
            .filter_map(|name| {
                let (old, new) = (target(before, name), target(after, name));
                (old != new).then(|| UpdatedRef {
                    name: name.to_owned(),
                    old,
                    new,
                })
            })
            .collect();
        Event::content(repo, updated_refs)
    }

    fn content(repo: &Repo, updated_refs: Vec<UpdatedRef>) -> Event {
        Event::Repo {
            action: Action::Update,
            scope: "repo.content",
            repo: repo.clone(),
            updated_refs,
            moved_to: None,
            read_targets: false,
        }
    }

    fn repo(action: Action, scope: &'static str, repo: &Repo) -> Event {
        Event::Repo {
            action,
            scope,
            repo: repo.clone(),
            updated_refs: Vec::new(),
            moved_to: None,
            read_targets: false,
        }
    }

    /// A discussion or pull request was opened.
    pub fn discussion_opened(discussion: &Discussion) -> Event {
        Event::Discussion {
            action: Action::Create,
            scope: "discussion",
            discussion: discussion.clone(),
            comment: None,
        }
    }

    /// What recording `events` with `changes` on `discussion` means to webhooks: a new
    /// comment, or a change of the discussion (shown as it is after `changes`). Commits on
    /// a pull request are reported as content changes by the commit itself.
    pub fn discussion_events(
        discussion: &Discussion,
        changes: &DiscussionChanges<'_>,
        events: &[trove_db::Event],
    ) -> Vec<Event> {
        let mut after = discussion.clone();
        if let Some(status) = changes.status {
            after.status = status;
        }
        if let Some(title) = changes.title {
            after.title = title.to_owned();
        }
        if let Some(merged) = changes.merge_commit {
            after.merge_commit = Some(merged.to_owned());
        }
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Comment { raw, hidden, .. } => Some(Event::Discussion {
                    action: Action::Create,
                    scope: "discussion.comment",
                    discussion: after.clone(),
                    comment: Some(Comment {
                        id: e.id,
                        author: e.author.clone(),
                        content: raw.clone(),
                        hidden: *hidden,
                    }),
                }),
                EventKind::StatusChange { .. } | EventKind::TitleChange { .. } => {
                    Some(Event::Discussion {
                        action: Action::Update,
                        scope: "discussion",
                        discussion: after.clone(),
                        comment: None,
                    })
                }
                EventKind::Commit { .. } => None,
            })
            .collect()
    }

    /// The webhook domain the event belongs to.
    pub fn domain(&self) -> &'static str {
        match self {
            Event::Repo { .. } => "repo",
            Event::Discussion { .. } => "discussion",
        }
    }
}

fn full_ref(revision: &str) -> String {
    if revision.starts_with("refs/") {
        revision.to_owned()
    } else {
        format!("refs/heads/{revision}")
    }
}

/// A repository row for tests: `acme/{name}`, a public model.
#[cfg(test)]
pub(crate) fn repo_named(name: &str) -> Repo {
    Repo {
        id: 1,
        repo_type: trove_types::RepoType::Model,
        namespace: "acme".into(),
        name: name.into(),
        private: false,
        owner_user_id: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        gated: trove_db::Gating::Off,
        discussions_disabled: false,
        inference_disabled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> GitOid {
        GitOid::parse(&c.to_string().repeat(40)).expect("oid")
    }

    #[test]
    fn a_push_reports_exactly_the_refs_it_moved() {
        let before = vec![
            ("refs/heads/main".to_owned(), oid('a')),
            ("refs/heads/old".to_owned(), oid('b')),
            ("refs/tags/v1".to_owned(), oid('c')),
        ];
        let after = vec![
            ("refs/heads/main".to_owned(), oid('d')),
            ("refs/heads/new".to_owned(), oid('e')),
            ("refs/tags/v1".to_owned(), oid('c')),
        ];
        let repo = repo_named("b");
        let Event::Repo { updated_refs, .. } = Event::pushed(&repo, &before, &after) else {
            panic!("a repo event");
        };
        let names: Vec<_> = updated_refs
            .iter()
            .map(|r| (r.name.as_str(), r.old.is_some(), r.new.is_some()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("refs/heads/main", true, true),
                ("refs/heads/new", false, true),
                ("refs/heads/old", true, false),
            ]
        );
    }
}
