//! The application state, built once and reached by every handler through
//! `State<AppState>` (and held by the admin commands that do server work): the
//! [`Context`] every use case takes, and the services built on it that keep state of their
//! own — the pages' caches and the Spaces supervisor. This is where the hub is put
//! together: the webhooks subscribe to the hub's events here.

use crate::context::Context;
use crate::repos::browse::BrowseCache;
use crate::repos::facets::FacetCache;
use crate::repos::listing_cache::ListingCache;
use crate::repos::preview::PreviewCache;
use crate::repos::resolve_cache::ResolveCache;
use crate::spaces::{SpaceHost, Supervisor};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use trove_db::Db;

/// Everything a request may need, shared: one reference count to clone, which axum does
/// for each request and each `State` extractor. Derefs to its [`App`], which derefs to its
/// [`Context`], so a handler passes `&state` where a use case takes `&Context`.
#[derive(Clone)]
pub struct AppState(Arc<App>);

/// The application's parts (reached through [`AppState`]).
#[derive(Clone)]
pub struct App {
    /// Settings and shared services.
    pub context: Context,
    /// The browsing pages' facet values, recomputed at most once a minute per repo type.
    pub facet_cache: Arc<FacetCache>,
    /// The web pages' last commit per folder entry, by commit and folder (bounded).
    pub browse_cache: Arc<BrowseCache>,
    /// Rendered listing pages, reused until a write on this node or their TTL
    /// (`[database] listing_cache_ms`; bounded).
    pub listing_cache: Arc<ListingCache>,
    /// The file entries of commits and the small blobs downloads read lately, by the ids
    /// that fix them (`repos::resolve_cache`: nothing that can change is kept; bounded).
    pub resolve_cache: Arc<ResolveCache>,
    /// Dataset previews by repo, commit, config and split (bounded).
    pub preview_cache: Arc<PreviewCache>,
    /// Spaces: builds, running apps and their logs.
    pub spaces: Arc<Supervisor>,
    /// The hosted models run for inference: loaded models, their queues, the threads.
    pub inference: Arc<crate::inference::Runtime>,
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl Deref for App {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.context
    }
}

impl AsRef<Context> for AppState {
    fn as_ref(&self) -> &Context {
        &self.0.context
    }
}

impl AppState {
    /// The state of a server (or of an admin command doing server work) on `config`'s data
    /// dir, whose database, store and signing key are already open.
    pub fn new(
        config: crate::config::Config,
        db: Db,
        store: impl Into<trove_store::Store>,
        signer: crate::signing::UrlSigner,
    ) -> anyhow::Result<Self> {
        Ok(Self::on(Context::new(config, db, store, signer)?))
    }

    /// [`AppState::new`] whose pushes run the hook of `hook_exe`: for tests, which do not run
    /// as the `trove` binary.
    pub fn with_hook_exe(
        config: crate::config::Config,
        db: Db,
        store: impl Into<trove_store::Store>,
        signer: crate::signing::UrlSigner,
        hook_exe: PathBuf,
    ) -> anyhow::Result<Self> {
        Ok(Self::on(Context::with_hook_exe(
            config, db, store, signer, hook_exe,
        )?))
    }

    /// The application on `context`: its services built, webhooks subscribed to its events.
    pub fn on(context: Context) -> Self {
        context.events.subscribe(Arc::new(crate::webhooks::queue));
        let spaces = Supervisor::new(&context.config.spaces);
        let inference = crate::inference::Runtime::new(&context.config.inference);
        let listing_cache = ListingCache::new(context.config.database.listing_cache_ttl());
        AppState(Arc::new(App {
            inference: Arc::new(inference),
            context,
            facet_cache: Arc::new(FacetCache::default()),
            browse_cache: Arc::new(BrowseCache::default()),
            listing_cache: Arc::new(listing_cache),
            preview_cache: Arc::new(PreviewCache::default()),
            resolve_cache: Arc::new(ResolveCache::default()),
            spaces: Arc::new(spaces),
        }))
    }

    /// This application with `edit` applied to a copy of its settings, every service
    /// shared: for a test or an admin command that runs one job with other settings.
    pub fn reconfigured(&self, edit: impl FnOnce(&mut crate::config::Config)) -> AppState {
        let mut app = App::clone(&self.0);
        let mut config = (*app.context.config).clone();
        edit(&mut config);
        app.context.config = Arc::new(config);
        AppState(Arc::new(app))
    }

    /// What the Spaces use cases work with: this context and the supervisor.
    pub fn space_host(&self) -> SpaceHost {
        SpaceHost::new(self.context.clone(), self.spaces.clone())
    }
}
