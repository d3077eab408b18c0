//! The smart HTTP URLs, parsed once into what they ask for and the access that needs.
//!
//! `/{prefix}{namespace}/{name}[.git]/info/refs?service=git-upload-pack|git-receive-pack`,
//! `/{prefix}{namespace}/{name}[.git]/git-upload-pack` and `.../git-receive-pack`, where the
//! prefix is empty for models, `datasets/` or `spaces/`: the URLs `git clone` derives from a
//! repository URL.

use crate::auth::Access;
use trove_git::smart_http::Service;
use trove_types::RepoType;

/// What a smart HTTP request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitAction {
    /// `GET info/refs?service=…`: the refs advertisement that starts every exchange.
    Advertise(Service),
    /// `POST git-upload-pack` / `POST git-receive-pack`: one round of the exchange.
    Rpc(Service),
}

/// A parsed smart HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitEndpoint {
    pub repo_type: RepoType,
    pub namespace: String,
    /// Without the optional `.git`.
    pub name: String,
    pub action: GitAction,
}

/// Why a URL under a repository is not a smart HTTP request we serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointError {
    /// `info/refs` without a `service` (the "dumb" protocol) or with an unknown one.
    DumbProtocol,
    /// Not a smart HTTP path at all.
    NotGit,
}

impl GitEndpoint {
    /// Parses a request path (as sent, before any decoding) and its query string.
    pub fn parse(path: &str, query: Option<&str>) -> Result<GitEndpoint, EndpointError> {
        let segments: Vec<&str> = path
            .strip_prefix('/')
            .ok_or(EndpointError::NotGit)?
            .split('/')
            .collect();
        let prefixed = match segments.as_slice() {
            ["datasets", rest @ ..] => Some((RepoType::Dataset, rest)),
            ["spaces", rest @ ..] => Some((RepoType::Space, rest)),
            _ => None,
        };
        // `/datasets/x/info/refs` is the model `datasets/x`: as in the router, the number
        // of segments decides, so the prefixed reading is tried first.
        if let Some((repo_type, rest)) = prefixed {
            match parse_repo_part(rest, query) {
                Ok((namespace, name, action)) => {
                    return Ok(GitEndpoint {
                        repo_type,
                        namespace,
                        name,
                        action,
                    });
                }
                Err(EndpointError::NotGit) => {}
                Err(e) => return Err(e),
            }
        }
        let (namespace, name, action) = parse_repo_part(&segments, query)?;
        Ok(GitEndpoint {
            repo_type: RepoType::Model,
            namespace,
            name,
            action,
        })
    }

    pub fn service(&self) -> Service {
        match self.action {
            GitAction::Advertise(service) | GitAction::Rpc(service) => service,
        }
    }

    /// The access the request needs: reading for clone and fetch, writing for push (its refs
    /// advertisement included, so that git asks for credentials before sending anything).
    pub fn needs(&self) -> Access {
        match self.service() {
            Service::UploadPack => Access::Read,
            Service::ReceivePack => Access::Write,
        }
    }
}

/// `{namespace}/{name}[.git]/…` once the type prefix is removed.
fn parse_repo_part(
    segments: &[&str],
    query: Option<&str>,
) -> Result<(String, String, GitAction), EndpointError> {
    let (namespace, name, action) = match segments {
        [ns, name, "info", "refs"] => {
            let service = query
                .into_iter()
                .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                .find(|(k, _)| k == "service")
                .and_then(|(_, v)| Service::parse(&v))
                .ok_or(EndpointError::DumbProtocol)?;
            (ns, name, GitAction::Advertise(service))
        }
        [ns, name, rpc] => {
            let service = Service::parse(rpc).ok_or(EndpointError::NotGit)?;
            (ns, name, GitAction::Rpc(service))
        }
        _ => return Err(EndpointError::NotGit),
    };
    let name = name.strip_suffix(".git").unwrap_or(name);
    if namespace.is_empty() || name.is_empty() {
        return Err(EndpointError::NotGit);
    }
    Ok(((*namespace).to_owned(), name.to_owned(), action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, query: Option<&str>) -> GitEndpoint {
        GitEndpoint::parse(path, query).unwrap_or_else(|e| panic!("{path}: {e:?}"))
    }

    #[test]
    fn urls_git_derives_from_clone_urls() {
        use GitAction::{Advertise, Rpc};
        use Service::{ReceivePack, UploadPack};
        let fetch = Some("service=git-upload-pack");
        let push = Some("service=git-receive-pack");
        // URL, query, then the expected type, namespace, name and action.
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            RepoType,
            &'a str,
            &'a str,
            GitAction,
        );
        let table: &[Case<'_>] = &[
            (
                "/alice/m/info/refs",
                fetch,
                RepoType::Model,
                "alice",
                "m",
                Advertise(UploadPack),
            ),
            (
                "/alice/m.git/info/refs",
                push,
                RepoType::Model,
                "alice",
                "m",
                Advertise(ReceivePack),
            ),
            (
                "/alice/m/git-upload-pack",
                None,
                RepoType::Model,
                "alice",
                "m",
                Rpc(UploadPack),
            ),
            (
                "/alice/m.git/git-receive-pack",
                None,
                RepoType::Model,
                "alice",
                "m",
                Rpc(ReceivePack),
            ),
            (
                "/datasets/org/d/info/refs",
                fetch,
                RepoType::Dataset,
                "org",
                "d",
                Advertise(UploadPack),
            ),
            (
                "/datasets/org/d.git/git-upload-pack",
                None,
                RepoType::Dataset,
                "org",
                "d",
                Rpc(UploadPack),
            ),
            (
                "/spaces/org/s.git/info/refs",
                push,
                RepoType::Space,
                "org",
                "s",
                Advertise(ReceivePack),
            ),
            (
                "/spaces/org/s/git-receive-pack",
                None,
                RepoType::Space,
                "org",
                "s",
                Rpc(ReceivePack),
            ),
            // A model whose namespace is spelled like a prefix: the segment count decides.
            (
                "/datasets/m/info/refs",
                fetch,
                RepoType::Model,
                "datasets",
                "m",
                Advertise(UploadPack),
            ),
            // Extra query parameters are ignored; only `service` matters.
            (
                "/a/b/info/refs",
                Some("x=1&service=git-upload-pack"),
                RepoType::Model,
                "a",
                "b",
                Advertise(UploadPack),
            ),
            // A name that merely contains ".git" keeps it.
            (
                "/a/b.github.io/git-upload-pack",
                None,
                RepoType::Model,
                "a",
                "b.github.io",
                Rpc(UploadPack),
            ),
        ];
        for (path, query, repo_type, ns, name, action) in table {
            let got = ok(path, *query);
            assert_eq!(
                (
                    got.repo_type,
                    got.namespace.as_str(),
                    got.name.as_str(),
                    got.action
                ),
                (*repo_type, *ns, *name, *action),
                "{path}"
            );
        }
    }

    #[test]
    fn pushes_need_write_and_fetches_read() {
        let push = ok("/a/b/info/refs", Some("service=git-receive-pack"));
        assert_eq!(push.needs(), Access::Write);
        assert_eq!(ok("/a/b/git-upload-pack", None).needs(), Access::Read);
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(
            GitEndpoint::parse("/a/b/info/refs", None),
            Err(EndpointError::DumbProtocol)
        );
        assert_eq!(
            GitEndpoint::parse("/a/b/info/refs", Some("service=git-upload-archive")),
            Err(EndpointError::DumbProtocol)
        );
        for bad in [
            "/a/b/git-upload-archive",
            "/a/b/HEAD",
            "/a/b/objects/info/packs",
            "/a/info/refs",
            "/a/b/c/git-upload-pack",
            "/datasets/a/b/c/git-upload-pack",
            "/a/.git/git-upload-pack",
            "//b/git-upload-pack",
            "a/b/git-upload-pack",
        ] {
            assert_eq!(
                GitEndpoint::parse(bad, None),
                Err(EndpointError::NotGit),
                "{bad}"
            );
        }
    }
}
