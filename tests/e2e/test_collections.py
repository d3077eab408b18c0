"""Collections with the real client: create (and exists_ok), get, list with filters, update the
metadata, add items (repos, collections, notes, exists_ok), move and annotate items, delete items
and collections; private collections and private items seen only by those who may read them;
refusals with their status and nothing written; the web pages."""

from __future__ import annotations

from conftest import unique

LIFECYCLE = """
from huggingface_hub import HfApi
api = HfApi()
model, dataset, other_ns = ARGS["model"], ARGS["dataset"], ARGS["other"]
c = api.create_collection(ARGS["title"], description="Things I like")
again = api.create_collection(ARGS["title"], exists_ok=True)
dup = attempt(api.create_collection, ARGS["title"])
c = api.add_collection_item(c.slug, model, "model", note="The best one")
c = api.add_collection_item(c.slug, dataset, "dataset")
dup_item = attempt(api.add_collection_item, c.slug, model, "model")
same = api.add_collection_item(c.slug, model, "model", exists_ok=True)
inner = api.create_collection(ARGS["title"] + " inner")
c = api.add_collection_item(c.slug, inner.slug, "collection")
missing = attempt(api.add_collection_item, c.slug, "admin/does-not-exist-xyz", "model")
paper = attempt(api.add_collection_item, c.slug, "2311.12983", "paper")
items = {i.item_id: i for i in c.items}
api.update_collection_item(c.slug, items[dataset].item_object_id, note="Now annotated", position=0)
got = api.get_collection(c.slug)
updated = api.update_collection_metadata(c.slug, title=ARGS["title"] + " renamed", theme="green",
                                         private=True, position=0)
old_slug_still_works = api.get_collection(c.slug).title
api.delete_collection_item(updated.slug, items[model].item_object_id)
after_delete = api.get_collection(updated.slug)
gone_item = attempt(api.delete_collection_item, updated.slug, items[model].item_object_id)
api.delete_collection_item(updated.slug, items[model].item_object_id, missing_ok=True)
listed = [x.slug for x in api.list_collections(owner="admin", limit=50)]
with_item = [x.slug for x in api.list_collections(item="datasets/" + dataset)]
api.delete_collection(inner.slug)
after_inner_delete = [i.item_type for i in api.get_collection(updated.slug).items]
api.delete_collection(updated.slug)
gone = attempt(api.get_collection, updated.slug)
api.delete_collection(updated.slug, missing_ok=True)
emit({
    "slug": c.slug, "title": c.title, "owner": c.owner, "description": c.description,
    "private": c.private, "theme": c.theme, "upvotes": c.upvotes,
    "again_slug": again.slug, "dup": dup,
    "dup_item": dup_item, "same_items": len(same.items), "missing": missing, "paper": paper,
    "item_types": [i.item_type for i in c.items],
    "item_ids": [i.item_id for i in c.items], "notes": [i.note for i in c.items],
    "object_ids": [i.item_object_id for i in c.items],
    "got_order": [i.item_id for i in got.items], "got_notes": [i.note for i in got.items],
    "got_positions": [i.position for i in got.items],
    "updated": {"slug": updated.slug, "title": updated.title, "theme": updated.theme,
                "private": updated.private, "position": updated.position},
    "old_slug_title": old_slug_still_works,
    "after_delete": [i.item_id for i in after_delete.items],
    "gone_item": gone_item, "listed": listed, "with_item": with_item,
    "after_inner_delete": after_inner_delete, "gone": gone, "inner_slug": inner.slug,
})
"""


def test_collection_lifecycle(client, hub):
    model = hub.create_repo("coll-model")
    dataset = hub.create_repo("coll-data", repo_type="dataset")
    title = unique("Favourites")
    r = client.py(LIFECYCLE, args={"model": model, "dataset": dataset, "other": "x",
                                   "title": title}).result
    slug_title = title.lower()
    assert r["slug"].startswith(f"admin/{slug_title}-"), r["slug"]
    assert len(r["slug"].rsplit("-", 1)[1]) == 24
    assert r["title"] == title and r["owner"] == "admin"
    assert r["description"] == "Things I like"
    assert r["private"] is False and r["upvotes"] == 0 and r["theme"]
    assert r["again_slug"] == r["slug"]
    assert r["dup"]["status"] == 409
    assert r["dup_item"]["status"] == 409
    assert r["same_items"] == 2
    assert r["missing"]["status"] == 404 and r["missing"]["error_code"] == "RepoNotFound"
    assert r["paper"]["status"] == 400
    assert r["item_types"] == ["model", "dataset", "collection"]
    assert r["item_ids"] == [model, dataset, r["inner_slug"]]
    assert r["notes"] == ["The best one", None, None]
    assert all(len(o) == 24 for o in r["object_ids"])
    assert r["got_order"] == [dataset, model, r["inner_slug"]]
    assert r["got_notes"] == ["Now annotated", "The best one", None]
    assert r["got_positions"] == [0, 1, 2]
    u = r["updated"]
    assert u["title"] == title + " renamed" and u["theme"] == "green" and u["private"] is True
    assert u["position"] == 0
    # The title part of the slug follows the title; the id at its end stays.
    assert u["slug"].endswith(r["slug"].rsplit("-", 1)[1]) and "renamed" in u["slug"]
    assert r["old_slug_title"] == title + " renamed"
    assert r["after_delete"] == [dataset, r["inner_slug"]]
    assert r["gone_item"]["status"] == 404
    assert u["slug"] in r["listed"]
    assert r["with_item"] == [u["slug"]]
    assert r["after_inner_delete"] == ["dataset"]
    assert r["gone"]["status"] == 404


VISIBILITY = """
from huggingface_hub import HfApi
api = HfApi()
out = {}
out["get_public"] = attempt(lambda: [i.item_id for i in api.get_collection(ARGS["public"]).items])
out["get_private"] = attempt(api.get_collection, ARGS["private"])
out["listed"] = [c.slug for c in api.list_collections(owner="admin")]
out["add"] = attempt(api.add_collection_item, ARGS["public"], ARGS["public_repo"], "model")
out["update"] = attempt(api.update_collection_metadata, ARGS["public"], title="hijacked")
out["delete"] = attempt(api.delete_collection, ARGS["public"])
out["create_elsewhere"] = attempt(api.create_collection, "mine", namespace="admin")
out["add_private_repo_to_own"] = attempt(api.add_collection_item, ARGS["own"], ARGS["private_repo"], "model")
emit(out)
"""


def test_private_collections_and_items_are_seen_only_by_readers(client, hub, bob):
    public_repo = hub.create_repo("coll-pub")
    private_repo = hub.create_repo("coll-priv", private=True)
    admin = hub.auth(hub.server.admin_token)
    r = hub.http.post("/api/collections", headers=admin,
                      json={"title": unique("Mixed"), "namespace": "admin", "private": False})
    assert r.status_code == 200, r.text
    public = r.json()["slug"]
    for repo in (private_repo, public_repo):
        r = hub.http.post(f"/api/collections/{public}/items", headers=admin,
                          json={"item": {"id": repo, "type": "model"}, "note": "n"})
        assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [private_repo, public_repo]
    r = hub.http.post("/api/collections", headers=admin,
                      json={"title": unique("Secret"), "namespace": "admin", "private": True})
    private = r.json()["slug"]
    assert r.json()["private"] is True
    r = hub.http.post("/api/collections", headers=hub.auth(bob.token),
                      json={"title": unique("Bobs"), "namespace": bob.name})
    assert r.status_code == 200, r.text
    own = r.json()["slug"]

    r = client.py(VISIBILITY, token=bob.token, args={
        "public": public, "private": private, "public_repo": public_repo,
        "private_repo": private_repo, "own": own}).result
    assert r["get_public"] == {"ok": True, "value": [public_repo]}
    assert r["get_private"]["status"] == 404
    assert public in r["listed"] and private not in r["listed"]
    for refused in ("add", "update", "delete", "create_elsewhere"):
        assert r[refused]["status"] == 403, (refused, r[refused])
    assert r["add_private_repo_to_own"]["status"] == 404
    assert r["add_private_repo_to_own"]["error_code"] == "RepoNotFound"

    # Nothing changed for the owner, who still sees both items and the private collection.
    got = hub.http.get(f"/api/collections/{public}", headers=admin).json()
    assert [i["id"] for i in got["items"]] == [private_repo, public_repo]
    assert got["title"] != "hijacked"
    assert hub.http.get(f"/api/collections/{private}", headers=admin).status_code == 200
    # Anonymous callers see what bob sees.
    anon = hub.http.get(f"/api/collections/{public}").json()
    assert [i["id"] for i in anon["items"]] == [public_repo]
    # Positions count only what the caller sees: the hidden item leaves no gap to count.
    assert [i["position"] for i in anon["items"]] == [0]
    assert [i["position"] for i in got["items"]] == [0, 1]
    assert hub.http.get(f"/api/collections/{private}").status_code == 404


def test_bad_collection_requests_are_refused_and_write_nothing(hub):
    admin = hub.auth(hub.server.admin_token)
    cases = [
        ({"title": "", "namespace": "admin"}, 400),
        ({"title": "x" * 101, "namespace": "admin"}, 400),
        ({"title": "ok", "namespace": "admin", "description": "d" * 151}, 400),
        ({"title": "ok", "namespace": "no-such-namespace-xyz"}, 404),
        ({"namespace": "admin"}, 400),
    ]
    before = len(hub.http.get("/api/collections?owner=admin&limit=100", headers=admin).json())
    for body, status in cases:
        r = hub.http.post("/api/collections", headers=admin, json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert r.headers.get("x-error-message"), body
    r = hub.http.post("/api/collections", json={"title": "anon", "namespace": "admin"})
    assert r.status_code == 401
    after = len(hub.http.get("/api/collections?owner=admin&limit=100", headers=admin).json())
    assert after == before

    r = hub.http.post("/api/collections", headers=admin,
                      json={"title": unique("Budget"), "namespace": "admin"})
    slug = r.json()["slug"]
    repo = hub.create_repo("coll-budget")
    bad_items = [
        ({"item": {"id": repo, "type": "model"}, "note": "n" * 501}, 400),
        ({"item": {"id": repo, "type": "widget"}}, 400),
        ({"item": {"id": "no-slash", "type": "model"}}, 404),
        ({"item": {"id": slug, "type": "collection"}}, 400),
    ]
    for body, status in bad_items:
        r = hub.http.post(f"/api/collections/{slug}/items", headers=admin, json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
    r = hub.http.patch(f"/api/collections/{slug}", headers=admin, json={"theme": "neon"})
    assert r.status_code == 400
    assert hub.http.get(f"/api/collections/{slug}", headers=admin).json()["items"] == []
    assert hub.http.get("/api/collections/admin/not-a-slug").status_code == 404
    assert hub.http.get("/api/collections?sort=random").status_code == 400


def test_collection_web_pages(hub):
    admin = hub.auth(hub.server.admin_token)
    repo = hub.create_repo("coll-web")
    hidden = hub.create_repo("coll-web-hidden", private=True)
    title = unique("Web <b>page</b>")
    slug = hub.http.post("/api/collections", headers=admin,
                         json={"title": title, "namespace": "admin"}).json()["slug"]
    for r in (repo, hidden):
        hub.http.post(f"/api/collections/{slug}/items", headers=admin,
                      json={"item": {"id": r, "type": "model"}, "note": "see <i>this</i>"})
    page = hub.http.get(f"/collections/{slug}")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert repo in page.text and hidden not in page.text
    assert "see &lt;i&gt;this&lt;/i&gt;" in page.text or "see &#60;i&#62;this" in page.text
    assert "<b>page</b>" not in page.text
    owner = hub.http.get("/collections/admin")
    assert owner.status_code == 200 and slug in owner.text
    missing = hub.http.get("/collections/admin/nothing-0123456789abcdef01234567")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
