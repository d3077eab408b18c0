//! Every route Trove serves, in one place, grouped by the client that calls it.
//! Routing happens on the raw path; axum decodes each captured segment once, so revisions
//! like `refs%2Fpr%2F1` and tree paths like `f%2Fsub` arrive decoded and intact.

use crate::error::ApiError;
use crate::http::api::avatars;
use crate::http::api::collections;
use crate::http::api::usage;
use crate::http::api::webhooks;
use crate::http::api::{
    accounts, commit, commits, discussions, gating, inference, info, likes, misc, preupload, refs,
    repos, safetensors, search, settings, tree, whoami,
};
use crate::http::body_limit::{BodyLimit, body_limit};
use crate::http::{every_request, git as git_http, lfs, resolve, spaces, web, xet};
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, head, post, put};
use tower_http::decompression::RequestDecompressionLayer;

/// The whole application: every route behind every request's rules.
pub type App = every_request::EveryRequest<Router>;

pub fn build(state: AppState) -> App {
    let json_limit = state.config.limits.max_json_body_bytes;

    // huggingface_hub: identity and housekeeping.
    let api = Router::new()
        .route("/api/whoami-v2", get(whoami::whoami))
        .route("/api/agent-harnesses", get(misc::agent_harnesses))
        .route(
            "/api/telemetry/{*topic}",
            head(misc::telemetry).get(misc::telemetry),
        )
        .route("/api/validate-yaml", post(misc::validate_yaml))
        // Site administrators: the chunk store's upkeep, and monitoring.
        .route(
            "/api/admin/storage/stats",
            get(crate::http::api::admin_storage::stats),
        )
        .route(
            "/api/admin/storage/gc",
            post(crate::http::api::admin_storage::gc),
        )
        .route(
            "/api/admin/storage/fsck",
            post(crate::http::api::admin_storage::fsck),
        )
        .route(
            "/api/admin/cluster",
            get(crate::http::api::admin_storage::cluster),
        )
        .route("/metrics", get(crate::http::metrics::metrics))
        // huggingface_hub: repository lifecycle.
        .route("/api/repos/create", post(repos::create))
        .route("/api/repos/delete", axum::routing::delete(repos::delete))
        .route("/api/repos/move", post(settings::move_repo))
        // huggingface_hub: users and organizations; the web login.
        .route("/api/users/{user}/overview", get(accounts::user_overview))
        .route(
            "/api/organizations/{org}/overview",
            get(accounts::org_overview),
        )
        .route(
            "/api/organizations/{org}/members",
            get(accounts::org_members),
        )
        .route(
            "/api/organizations/{org}/audit-log",
            get(accounts::org_audit_log),
        )
        .route("/api/settings/repositories", get(usage::mine))
        .route("/api/avatars/{name}", get(avatars::avatar))
        .route(
            "/api/organizations/{org}/settings/repositories",
            get(usage::of_org),
        )
        .route("/api/login", post(accounts::login))
        .route("/api/logout", post(accounts::logout))
        // huggingface_hub: listing and search, likes of a user.
        .route("/api/{t}", get(search::list))
        .route("/api/users/{user}/likes", get(likes::user_likes))
        // huggingface_hub: collections.
        .route(
            "/api/collections",
            get(collections::list).post(collections::create),
        )
        .route(
            "/api/collections/{ns}/{slug}",
            get(collections::get)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(
            "/api/collections/{ns}/{slug}/items",
            post(collections::add_item),
        )
        .route(
            "/api/collections/{ns}/{slug}/items/{item}",
            axum::routing::patch(collections::update_item).delete(collections::delete_item),
        )
        // huggingface_hub: webhooks (and their delivery log, Trove's own).
        .route(
            "/api/settings/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/api/settings/webhooks/{id}",
            get(webhooks::get)
                .post(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/api/settings/webhooks/{id}/enable", post(webhooks::enable))
        .route(
            "/api/settings/webhooks/{id}/disable",
            post(webhooks::disable),
        )
        .route(
            "/api/settings/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        // huggingface_hub: per-repository API (`{t}` = models | datasets | spaces).
        .route("/api/{t}/{ns}/{name}", get(info::info))
        .route(
            "/api/{t}/{ns}/{name}/like",
            post(likes::like).delete(likes::unlike),
        )
        .route("/api/{t}/{ns}/{name}/likers", get(likes::likers))
        // huggingface_hub: settings and gated access.
        .route("/api/{t}/{ns}/{name}/settings", put(settings::update))
        .route("/api/{t}/{ns}/{name}/ask-access", post(gating::ask))
        .route(
            "/api/{t}/{ns}/{name}/user-access-request/{status}",
            get(gating::list),
        )
        .route(
            "/api/{t}/{ns}/{name}/user-access-request/handle",
            post(gating::handle),
        )
        .route(
            "/api/{t}/{ns}/{name}/user-access-request/grant",
            post(gating::grant),
        )
        .route("/api/{t}/{ns}/{name}/auth-check", get(gating::auth_check))
        .route(
            "/api/{t}/{ns}/{name}/auth-check/write",
            get(gating::auth_check_write),
        )
        .route(
            "/api/{t}/{ns}/{name}/safetensors-metadata/{*path}",
            get(safetensors::sharded_metadata),
        )
        .route(
            "/api/{t}/{ns}/{name}/revision/{rev}",
            get(info::info_at_revision),
        )
        .route("/api/{t}/{ns}/{name}/tree/{rev}", get(tree::tree_root))
        .route(
            "/api/{t}/{ns}/{name}/tree/{rev}/{*path}",
            get(tree::tree_path),
        )
        .route(
            "/api/{t}/{ns}/{name}/paths-info/{rev}",
            post(tree::paths_info),
        )
        .route("/api/{t}/{ns}/{name}/refs", get(refs::list))
        .route("/api/{t}/{ns}/{name}/commits/{rev}", get(commits::list))
        .route(
            "/api/{t}/{ns}/{name}/branch/{branch}",
            post(refs::create_branch).delete(refs::delete_branch),
        )
        .route(
            "/api/{t}/{ns}/{name}/tag/{rev}",
            post(refs::create_tag).delete(refs::delete_tag),
        )
        .route(
            "/api/{t}/{ns}/{name}/super-squash/{rev}",
            post(refs::super_squash),
        )
        .route(
            "/api/{t}/{ns}/{name}/preupload/{rev}",
            post(preupload::preupload),
        )
        // huggingface_hub: discussions and pull requests.
        .route(
            "/api/{t}/{ns}/{name}/discussions",
            get(discussions::list).post(discussions::create),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}",
            get(discussions::details),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/comment",
            post(discussions::comment),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/status",
            post(discussions::status),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/merge",
            post(discussions::merge),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/title",
            post(discussions::title),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/comment/{id}/edit",
            post(discussions::edit_comment),
        )
        .route(
            "/api/{t}/{ns}/{name}/discussions/{num}/comment/{id}/hide",
            post(discussions::hide_comment),
        )
        .route(
            "/api/{t}/{ns}/{name}/xet-write-token/{rev}",
            get(xet::token::write_token),
        )
        .route(
            "/api/{t}/{ns}/{name}/xet-read-token/{rev}",
            get(xet::token::read_token),
        )
        // huggingface_hub: a repository's large files (list_lfs_files, permanently_delete_lfs_files).
        .route(
            "/api/{t}/{ns}/{name}/lfs-files",
            get(crate::http::api::lfs_files::list),
        )
        .route(
            "/api/{t}/{ns}/{name}/lfs-files/batch",
            post(crate::http::api::lfs_files::batch),
        )
        // huggingface_hub: copy_files / cross-repository CommitOperationCopy.
        .route(
            "/api/{t}/{ns}/{name}/lfs-files/duplicate",
            post(crate::http::api::lfs_files::duplicate),
        );

    // huggingface_hub: commits, NDJSON bodies with their own (larger) limit.
    let commit_route = Router::new().route(
        "/api/{t}/{ns}/{name}/commit/{rev}",
        post(commit::create_commit),
    );

    // huggingface_hub and browsers: file downloads (`get` also answers HEAD).
    let mut downloads = Router::new();
    for prefix in ["", "/datasets", "/spaces"] {
        downloads = downloads.route(
            &format!("{prefix}/{{ns}}/{{name}}/resolve/{{rev}}/{{*path}}"),
            get(resolve::serve),
        );
    }

    // huggingface_hub and git-lfs: the LFS batch API and its transfer URLs.
    // Batch and verify take JSON bodies; the transfer routes take whole objects.
    let lfs_transfers = Router::new()
        .route("/_lfs/upload/{oid}", put(lfs::upload))
        .route("/_lfs/multipart/{upload}/{part}", put(lfs::upload_part))
        .route("/_lfs/multipart/{upload}", post(lfs::complete_multipart))
        .route("/_lfs/objects/{oid}", get(lfs::download));
    let mut lfs_batch = Router::new();
    for prefix in ["", "/datasets", "/spaces"] {
        let base = format!("{prefix}/{{ns}}/{{name}}/info/lfs");
        lfs_batch = lfs_batch
            .route(&format!("{base}/objects/batch"), post(lfs::batch))
            .route(&format!("{base}/verify"), post(lfs::verify));
    }

    // git-lfs: file locks (`git lfs lock`, `locks`, `unlock`, and the check before a push).
    let mut lfs_locks = Router::new();
    for prefix in ["", "/datasets", "/spaces"] {
        let base = format!("{prefix}/{{ns}}/{{name}}/info/lfs/locks");
        lfs_locks = lfs_locks
            .route(&base, get(lfs::locks::list).post(lfs::locks::create))
            .route(&format!("{base}/verify"), post(lfs::locks::verify))
            .route(&format!("{base}/{{id}}/unlock"), post(lfs::locks::unlock));
    }

    // git: smart HTTP clone, fetch and push, with or without `.git`. Every handler parses
    // the raw path into a `GitEndpoint` itself; the routes only select the handler. Git
    // gzips large fetch requests, so bodies are decompressed here, as they stream.
    let mut git = Router::new();
    for prefix in ["", "/datasets", "/spaces"] {
        let base = format!("{prefix}/{{ns}}/{{name}}");
        git = git
            .route(&format!("{base}/info/refs"), get(git_http::info_refs))
            .route(&format!("{base}/git-upload-pack"), post(git_http::rpc))
            .route(&format!("{base}/git-receive-pack"), post(git_http::rpc));
    }
    let git = git.layer(RequestDecompressionLayer::new());

    // Browsers: the web UI (every page is listed in `web::routes`).
    let web = web::routes();

    // huggingface_hub: the Spaces runtime API.
    let space_api = Router::new()
        .route("/api/{t}/{ns}/{name}/runtime", get(spaces::runtime))
        .route("/api/{t}/{ns}/{name}/restart", post(spaces::restart))
        .route("/api/{t}/{ns}/{name}/pause", post(spaces::pause))
        .route("/api/{t}/{ns}/{name}/sleeptime", post(spaces::sleeptime))
        .route(
            "/api/{t}/{ns}/{name}/secrets",
            get(spaces::get_secrets)
                .post(spaces::add_secret)
                .delete(spaces::delete_secret),
        )
        .route(
            "/api/{t}/{ns}/{name}/variables",
            get(spaces::get_variables)
                .post(spaces::add_variable)
                .delete(spaces::delete_variable),
        )
        .route("/api/{t}/{ns}/{name}/logs/{kind}", get(spaces::logs))
        .route("/api/{t}/{ns}/{name}/duplicate", post(spaces::duplicate));
    // Browsers and app clients: a Space's app (static files or its process, proxied),
    // bodies up to the commit limit (apps take uploads).
    let space_apps = Router::new()
        .route("/spaces/{ns}/{name}/app", get(spaces::app_root))
        .route(
            "/spaces/{ns}/{name}/subdomain",
            get(spaces::subdomain::open),
        )
        .route("/spaces/{ns}/{name}/app/", axum::routing::any(spaces::app))
        .route(
            "/spaces/{ns}/{name}/app/{*rest}",
            axum::routing::any(spaces::app),
        );

    // Bodies: the JSON limit unless a group takes larger ones (see `body_limit`).
    let limits = &state.config.limits;
    let json_routes = Router::new()
        .route("/healthz", get(misc::healthz))
        .route("/readyz", get(misc::readyz))
        // hf_xet also reports transfer metrics to the hub's own origin: accepted, dropped.
        .route("/v1/telemetry", post(xet::cas::telemetry))
        // InferenceClient: the hosted models run (hf-inference's and OpenAI's wire formats).
        .route("/models/{ns}/{name}", post(inference::run_default))
        .route(
            "/models/{ns}/{name}/pipeline/{task}",
            post(inference::run_pipeline),
        )
        .route(
            "/models/{ns}/{name}/v1/chat/completions",
            post(inference::chat_completions),
        )
        .merge(api)
        .merge(space_api)
        .merge(downloads)
        .merge(web)
        .layer(body_limit(json_limit as u64));

    let routed: Router = Router::new()
        .merge(json_routes)
        .merge(commit_route.layer(body_limit(limits.max_commit_bytes)))
        .merge(space_apps.layer(body_limit(limits.max_commit_bytes)))
        .merge(lfs_transfers.layer(body_limit(limits.max_lfs_object_bytes)))
        // Browsers: files uploaded through a page, up to an LFS object's size.
        .merge(
            web::upload_routes()
                .layer(DefaultBodyLimit::max(
                    usize::try_from(limits.max_lfs_object_bytes).unwrap_or(usize::MAX),
                ))
                .layer(body_limit(limits.max_lfs_object_bytes)),
        )
        .merge(lfs_batch.merge(lfs_locks).layer(BodyLimit {
            limit: json_limit as u64,
            render: ApiError::into_lfs_response,
        }))
        .merge(git.layer(BodyLimit {
            limit: git_body_limit(&state),
            render: git_http::git_error,
        }))
        // hf_xet: the CAS service, authorized by its own short-lived tokens; xorbs are the
        // largest bodies it takes (shards are smaller).
        .nest(
            "/xet",
            xet::cas_router().layer(body_limit(trove_xet::xorb::MAX_XORB_UPLOAD_BYTES)),
        )
        // A bare repo name (`gpt2`) on a route that exists for other methods: RepoNotFound.
        .method_not_allowed_fallback(misc::method_not_allowed)
        .fallback(misc::fallback)
        .with_state(state.clone());

    // What every request goes through, wrapped around the routed router once (with the
    // extractors' default body limit): `Router::layer` would wrap each route's boxed service
    // in its own box, and each request would clone that chain once per layer (axum clones a
    // route's service for each call). None of these rules reads the matched route.
    tower::Layer::layer(&every_request::layer(state), routed)
}

/// The largest body a git request may declare: a push's pack and its commands (fetch
/// requests are smaller and capped by the handler as they stream).
fn git_body_limit(state: &AppState) -> u64 {
    state
        .git
        .max_push_bytes
        .saturating_add(16 << 20)
        .max(state.git.max_fetch_request_bytes)
}
