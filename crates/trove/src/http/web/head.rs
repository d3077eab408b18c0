//! The title block and tabs every page of a repository shows.

use super::{repo_path, rev_segment, section_of};
use crate::auth::Access;
use crate::repos::RepoRef;
use trove_types::RepoType;

/// The title block and tabs every page of a repository shows.
pub struct RepoHead {
    pub kind: &'static str,
    pub id: String,
    pub path: String,
    pub private: bool,
    pub gated: bool,
    pub tab: &'static str,
    pub card_label: &'static str,
    /// The revision the page shows, and as a URL segment.
    pub rev: String,
    pub rev_url: String,
    /// The caller administers the repository (the settings tab shows).
    pub admin: bool,
    /// The caller may commit to its branches (upload and edit buttons show).
    pub writer: bool,
}

impl RepoHead {
    pub fn of(repo: &RepoRef, tab: &'static str, rev: &str) -> RepoHead {
        let (_, kind) = section_of(repo.repo_type);
        RepoHead {
            kind,
            id: format!("{}/{}", repo.repo.namespace, repo.repo.name),
            path: repo_path(repo),
            private: repo.repo.private,
            gated: repo.repo.gated.is_gated(),
            tab,
            card_label: match repo.repo_type {
                RepoType::Model => "Model card",
                RepoType::Dataset => "Dataset card",
                RepoType::Space => "App",
            },
            rev: rev.to_owned(),
            rev_url: rev_segment(rev),
            admin: repo.access >= Access::Admin,
            writer: repo.access >= Access::Write,
        }
    }
}
