//! Collections: ordered lists of repositories and other collections, with a note per item,
//! owned by a user or an organization. Who may see and change one follows the repository
//! rules: anyone sees a public collection, only those with standing in its namespace a
//! private one, and writers of the namespace change it. An item the caller could not see on
//! its own (a private repository, a private collection) is left out of what they are shown.

use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::find_readable;
use trove_db::{
    Collection, CollectionChanges, CollectionItem, CollectionQuery, Cursor, ItemChanges, ItemRow,
    ItemTarget, NewCollection, Page,
};
use trove_types::RepoType;

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// The longest description, in characters (the Hub's limit).
pub const MAX_DESCRIPTION_CHARS: usize = 150;
/// The longest note on an item, in characters (the Hub's limit).
pub const MAX_NOTE_CHARS: usize = 500;
/// The most items a collection holds.
pub const MAX_ITEMS: usize = 1000;
/// How many items each collection of a listing shows (the Hub shows 4; the rest through
/// `get_collection`).
pub const LISTED_ITEMS: usize = 4;
/// The themes a collection may have; the first is the default.
pub const THEMES: &[&str] = &[
    "default", "orange", "blue", "green", "purple", "pink", "indigo",
];

/// A collection with the items the caller may see, in order.
#[derive(Clone, Debug)]
pub struct CollectionView {
    pub collection: Collection,
    pub items: Vec<CollectionItem>,
    /// What the caller may do with it (at least `Read`).
    pub access: Access,
}

/// What a new collection is given.
#[derive(Clone, Debug)]
pub struct CreateCollection {
    pub namespace: String,
    pub title: String,
    pub description: Option<String>,
    pub private: bool,
}

/// The kind of thing an item names, as the client spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Repo(RepoType),
    Collection,
}

impl ItemKind {
    /// `model`, `dataset`, `space`, `collection`; papers and buckets are not held by this
    /// hub (400), anything else is not a kind (400).
    pub fn parse(kind: &str) -> ApiResult<ItemKind> {
        match kind {
            "collection" => Ok(ItemKind::Collection),
            "paper" | "bucket" => Err(ApiError::bad_request(format!(
                "Items of type {kind:?} are not supported by this hub: add models, datasets, \
                 spaces or collections"
            ))),
            other => RepoType::from_singular(other)
                .map(ItemKind::Repo)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid item type {other:?}: expected model, dataset, space or collection"
                    ))
                }),
        }
    }
}

/// The slug of a collection: `{namespace}/{title-slug}-{object_id}`.
pub fn slug(collection: &Collection) -> String {
    format!(
        "{}/{}-{}",
        collection.namespace,
        title_slug(&collection.title),
        collection.object_id
    )
}

/// A title as the slug spells it: lower-case ASCII letters and digits, runs of anything else
/// as one `-`, at most 50 characters; `collection` when nothing is left.
fn title_slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if out.len() >= 50 {
                break;
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "collection".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A fresh 24-hex id, the shape of the Hub's object ids.
fn object_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// What `caller` may do with `collection`: `None` means it does not exist for them.
pub fn access(caller: &Caller, collection: &Collection) -> Access {
    let anyone = if collection.private {
        Access::None
    } else {
        Access::Read
    };
    anyone.max(Access::in_namespace(caller, &collection.namespace))
}

fn not_found() -> ApiError {
    ApiError::NotFound("Collection not found".into())
}

/// Finds the collection a slug names, if the caller may see it. The id at the end decides;
/// the namespace must match and the title part may be stale (it follows renames).
pub async fn find(state: &Context, caller: &Caller, slug: &str) -> ApiResult<(Collection, Access)> {
    let (namespace, rest) = slug.split_once('/').ok_or_else(not_found)?;
    let id = rest.rsplit('-').next().unwrap_or(rest);
    if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let collection = state
        .db
        .collection_by_object_id(&id.to_ascii_lowercase())
        .await?
        .filter(|c| c.namespace.eq_ignore_ascii_case(namespace))
        .ok_or_else(not_found)?;
    match access(caller, &collection) {
        Access::None => Err(not_found()),
        a => Ok((collection, a)),
    }
}

/// 403 (401 anonymous) unless the caller may change collections of the namespace.
fn require_write(caller: &Caller, access: Access, namespace: &str) -> ApiResult<()> {
    if access >= Access::Write {
        Ok(())
    } else if caller.is_anonymous() {
        Err(ApiError::Unauthenticated(
            "You must be authenticated to change a collection".into(),
        ))
    } else {
        Err(ApiError::Forbidden(format!(
            "You don't have write access to the collections of {namespace}"
        )))
    }
}

/// Whether the caller may see an item on its own.
fn item_visible(caller: &Caller, item: &CollectionItem) -> bool {
    match &item.target {
        ItemRow::Repo(repo) => Access::for_repo(caller, repo, false) != Access::None,
        ItemRow::Collection(c) => access(caller, c) != Access::None,
    }
}

/// A collection with the items the caller may see, at most `limit` of them.
async fn view(
    state: &Context,
    caller: &Caller,
    collection: Collection,
    access: Access,
    limit: usize,
) -> ApiResult<CollectionView> {
    let items = state
        .db
        .collection_items(collection.id)
        .await?
        .into_iter()
        .filter(|i| item_visible(caller, i))
        .take(limit)
        .enumerate()
        // Positions among the items the caller sees: the stored ones, dense over every
        // item, would count those hidden from them (private repositories and collections).
        .map(|(at, item)| CollectionItem {
            position: i64::try_from(at).unwrap_or(i64::MAX),
            ..item
        })
        .collect();
    Ok(CollectionView {
        collection,
        items,
        access,
    })
}

/// The collection a slug names, with its visible items.
pub async fn get(state: &Context, caller: &Caller, slug: &str) -> ApiResult<CollectionView> {
    let (collection, access) = find(state, caller, slug).await?;
    view(state, caller, collection, access, MAX_ITEMS).await
}

fn check_text(what: &str, text: &str, max: usize) -> ApiResult<()> {
    if text.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "The {what} is too long: at most {max} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_request(format!(
            "The {what} may not contain control characters"
        )));
    }
    Ok(())
}

fn check_title(title: &str) -> ApiResult<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ApiError::bad_request("A collection needs a title"));
    }
    check_text("title", title, MAX_TITLE_CHARS)?;
    if title.contains('\n') {
        return Err(ApiError::bad_request("A title is one line"));
    }
    Ok(title.to_owned())
}

/// Creates a collection in a namespace the caller may write to. A title the namespace
/// already uses is `CollectionExists` (409 with the existing slug).
pub async fn create(
    state: &Context,
    caller: &Caller,
    new: CreateCollection,
) -> ApiResult<CollectionView> {
    caller.require_user()?;
    let title = check_title(&new.title)?;
    if let Some(d) = &new.description {
        check_text("description", d, MAX_DESCRIPTION_CHARS)?;
    }
    let exists = state.db.user_by_name(&new.namespace).await?.is_some()
        || state.db.org_by_name(&new.namespace).await?.is_some();
    if !exists {
        return Err(ApiError::NotFound(format!(
            "Namespace {:?} not found",
            new.namespace
        )));
    }
    let standing = Access::in_namespace(caller, &new.namespace);
    require_write(caller, standing, &new.namespace)?;
    if let Some(existing) = state.db.collection_by_title(&new.namespace, &title).await? {
        return Err(ApiError::CollectionExists {
            slug: slug(&existing),
        });
    }
    let object_id = object_id();
    let created = state
        .db
        .create_collection(
            &NewCollection {
                object_id: &object_id,
                namespace: &new.namespace,
                title: &title,
                description: new.description.as_deref(),
                private: new.private,
                theme: THEMES[0],
            },
            now_ms(),
        )
        .await;
    let collection = match created {
        Ok(c) => c,
        // Created by a concurrent request between the check and the insert.
        Err(trove_db::DbError::Conflict { .. }) => {
            return match state.db.collection_by_title(&new.namespace, &title).await? {
                Some(existing) => Err(ApiError::CollectionExists {
                    slug: slug(&existing),
                }),
                None => Err(ApiError::Conflict {
                    message: "A collection with this title already exists".into(),
                    url: None,
                }),
            };
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        collection.slug = %slug(&collection),
        private = collection.private,
        "collection created"
    );
    Ok(CollectionView {
        collection,
        items: Vec::new(),
        access: standing,
    })
}

/// What `update_collection_metadata` may change, unvalidated.
#[derive(Clone, Debug, Default)]
pub struct MetadataUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub private: Option<bool>,
    pub theme: Option<String>,
    pub position: Option<i64>,
}

/// Changes a collection's title, description, visibility, theme or place.
pub async fn update(
    state: &Context,
    caller: &Caller,
    slug_: &str,
    update: MetadataUpdate,
) -> ApiResult<CollectionView> {
    let (collection, access) = find(state, caller, slug_).await?;
    require_write(caller, access, &collection.namespace)?;
    let title = update.title.as_deref().map(check_title).transpose()?;
    if let Some(d) = &update.description {
        check_text("description", d, MAX_DESCRIPTION_CHARS)?;
    }
    if let Some(theme) = &update.theme
        && !THEMES.contains(&theme.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "Invalid theme {theme:?}: expected one of {}",
            THEMES.join(", ")
        )));
    }
    if update.position.is_some_and(|p| p < 0) {
        return Err(ApiError::bad_request("A position is 0 or more"));
    }
    if let Some(title) = &title
        && let Some(other) = state
            .db
            .collection_by_title(&collection.namespace, title)
            .await?
        && other.id != collection.id
    {
        return Err(ApiError::CollectionExists { slug: slug(&other) });
    }
    let changes = CollectionChanges {
        title,
        description: update.description,
        private: update.private,
        theme: update.theme,
        position: update.position,
    };
    let updated = state
        .db
        .update_collection(collection.id, &changes, now_ms())
        .await?;
    view(state, caller, updated, access, MAX_ITEMS).await
}

/// Deletes a collection (its items go with it; collections that listed it lose that item).
pub async fn delete(state: &Context, caller: &Caller, slug_: &str) -> ApiResult<()> {
    let (collection, access) = find(state, caller, slug_).await?;
    require_write(caller, access, &collection.namespace)?;
    state.db.delete_collection(collection.id).await?;
    tracing::info!(collection.slug = %slug(&collection), "collection deleted");
    Ok(())
}

/// Adds a repository or a collection the caller can see. Already there: 409.
pub async fn add_item(
    state: &Context,
    caller: &Caller,
    slug_: &str,
    kind: ItemKind,
    item_id: &str,
    note: Option<String>,
) -> ApiResult<CollectionView> {
    let (collection, access) = find(state, caller, slug_).await?;
    require_write(caller, access, &collection.namespace)?;
    if let Some(note) = &note {
        check_text("note", note, MAX_NOTE_CHARS)?;
    }
    let target = match kind {
        ItemKind::Repo(repo_type) => {
            let (ns, name) = item_id.split_once('/').ok_or(ApiError::RepoNotFound {
                anonymous: caller.is_anonymous(),
            })?;
            let repo = find_readable(state, caller, repo_type, ns, name).await?;
            ItemTarget::Repo(repo.repo.id)
        }
        ItemKind::Collection => {
            let (target, _) = find(state, caller, item_id).await?;
            if target.id == collection.id {
                return Err(ApiError::bad_request("A collection cannot contain itself"));
            }
            ItemTarget::Collection(target.id)
        }
    };
    let items = state.db.collection_items(collection.id).await?;
    if items.len() >= MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "A collection holds at most {MAX_ITEMS} items"
        )));
    }
    let added = state
        .db
        .add_collection_item(
            collection.id,
            &object_id(),
            target,
            note.as_deref().filter(|n| !n.is_empty()),
            now_ms(),
        )
        .await;
    match added {
        Ok(()) => {}
        Err(trove_db::DbError::Conflict { .. }) => {
            return Err(ApiError::Conflict {
                message: format!("Item {item_id} is already in the collection"),
                url: None,
            });
        }
        Err(e) => return Err(e.into()),
    }
    let collection = state
        .db
        .collection_by_object_id(&collection.object_id)
        .await?
        .ok_or_else(not_found)?;
    view(state, caller, collection, access, MAX_ITEMS).await
}

/// Changes an item's note (an empty note removes it) or its place.
pub async fn update_item(
    state: &Context,
    caller: &Caller,
    slug_: &str,
    item_object_id: &str,
    note: Option<String>,
    position: Option<i64>,
) -> ApiResult<()> {
    let (collection, access) = find(state, caller, slug_).await?;
    require_write(caller, access, &collection.namespace)?;
    if let Some(note) = &note {
        check_text("note", note, MAX_NOTE_CHARS)?;
    }
    if position.is_some_and(|p| p < 0) {
        return Err(ApiError::bad_request("A position is 0 or more"));
    }
    let changes = ItemChanges {
        note: note.map(|n| Some(n).filter(|n| !n.is_empty())),
        position,
    };
    if !state
        .db
        .update_collection_item(collection.id, item_object_id, &changes, now_ms())
        .await?
    {
        return Err(ApiError::NotFound("Collection item not found".into()));
    }
    Ok(())
}

/// Removes an item; 404 if the collection has no such item.
pub async fn delete_item(
    state: &Context,
    caller: &Caller,
    slug_: &str,
    item_object_id: &str,
) -> ApiResult<()> {
    let (collection, access) = find(state, caller, slug_).await?;
    require_write(caller, access, &collection.namespace)?;
    if !state
        .db
        .delete_collection_item(collection.id, item_object_id, now_ms())
        .await?
    {
        return Err(ApiError::NotFound("Collection item not found".into()));
    }
    Ok(())
}

/// What `list_collections` filters by, parsed from the query.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub owners: Vec<String>,
    /// `models/ns/name`, `datasets/…`, `spaces/…`, `collections/{slug}`, `papers/…`.
    pub items: Vec<String>,
}

/// The collections the caller may see, filtered, most recently updated first, each with
/// its first visible items.
pub async fn list(
    state: &Context,
    caller: &Caller,
    filter: ListFilter,
    after: Option<Cursor>,
    limit: u32,
) -> ApiResult<Page<CollectionView>> {
    let mut items = Vec::new();
    for item in &filter.items {
        match resolve_item_filter(state, caller, item).await? {
            Some(target) => items.push(target),
            // An item that does not exist (for the caller) is in no collection.
            None => {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
        }
    }
    let page = state
        .db
        .list_collections(&CollectionQuery {
            owners: filter.owners,
            items,
            visibility: Access::listing_visibility(caller),
            after,
            limit,
        })
        .await?;
    let mut views = Vec::with_capacity(page.items.len());
    for collection in page.items {
        // The SQL visibility is the repository one; the collection rule decides.
        let a = access(caller, &collection);
        if a == Access::None {
            continue;
        }
        views.push(view(state, caller, collection, a, LISTED_ITEMS).await?);
    }
    Ok(Page {
        items: views,
        next: page.next,
    })
}

/// The collections of a namespace the caller may see, in their owner's order (web page).
pub async fn of_namespace(
    state: &Context,
    caller: &Caller,
    namespace: &str,
) -> ApiResult<Vec<CollectionView>> {
    let mut views = Vec::new();
    for collection in state.db.namespace_collections(namespace).await? {
        let a = access(caller, &collection);
        if a != Access::None {
            views.push(view(state, caller, collection, a, LISTED_ITEMS).await?);
        }
    }
    Ok(views)
}

async fn resolve_item_filter(
    state: &Context,
    caller: &Caller,
    item: &str,
) -> ApiResult<Option<ItemTarget>> {
    let Some((kind, id)) = item.split_once('/') else {
        return Err(ApiError::bad_request(format!(
            "Invalid item {item:?}: expected models/…, datasets/…, spaces/… or collections/…"
        )));
    };
    if kind == "collections" {
        return Ok(find(state, caller, id)
            .await
            .ok()
            .map(|(c, _)| ItemTarget::Collection(c.id)));
    }
    if kind == "papers" {
        return Ok(None);
    }
    let repo_type = RepoType::from_plural(kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid item {item:?}: expected models/…, datasets/…, spaces/… or collections/…"
        ))
    })?;
    let Some((ns, name)) = id.split_once('/') else {
        return Ok(None);
    };
    Ok(find_readable(state, caller, repo_type, ns, name)
        .await
        .ok()
        .map(|r| ItemTarget::Repo(r.repo.id)))
}

#[cfg(test)]
mod tests {
    use super::title_slug;

    #[test]
    fn slugs_keep_letters_and_digits_and_join_the_rest() {
        assert_eq!(title_slug("Recent models"), "recent-models");
        assert_eq!(title_slug("  ICCV 2023!! "), "iccv-2023");
        assert_eq!(title_slug("ü"), "collection");
        assert_eq!(title_slug(&"a".repeat(80)).len(), 50);
    }
}
