"""The web UI's browsing pages in a real browser (headless Chromium): facets, sorts, search,
pages, and private repositories that never show to outsiders — on a server of its own, so
the catalogue (and so every count) is exactly what these tests created."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import _start, httpx

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by scripts/test.sh")

MODELS = {
    # name: (pipeline_tag, library, languages, license, downloads)
    "bert-sentiment": ("text-classification", "transformers", ["en"], "mit", 5),
    "bert-topics": ("text-classification", "transformers", ["en", "fr"], "apache-2.0", 9),
    "roberta-spam": ("text-classification", "transformers", ["de"], "mit", 2),
    "whisper-tiny": ("automatic-speech-recognition", "transformers", ["en"], "mit", 7),
    "yolo-boxes": ("object-detection", "ultralytics", [], "agpl-3.0", 1),
}


def model_card(pipeline: str, library: str, languages: list[str], license: str) -> bytes:
    lines = ["---", f"license: {license}", f"pipeline_tag: {pipeline}", f"library_name: {library}"]
    if languages:
        lines.append("language:")
        lines += [f"- {lang}" for lang in languages]
    lines += ["---", "", "# A model", ""]
    return "\n".join(lines).encode()


class Page(HTMLParser):
    """What a test reads from a rendered page: repo ids in order, facets, sorts, links."""

    def __init__(self, html: str):
        super().__init__()
        self.repos: list[str] = []
        self.facets: dict[str, list[dict]] = {}
        self.sorts: dict[str, dict] = {}
        self.next: str | None = None
        self.remove_filters: list[str] = []
        self._facet: str | None = None
        self._link: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "li" and "repo" in (a.get("class") or "").split():
            self.repos.append(a["data-id"])
        elif tag == "section" and "data-facet" in a:
            self._facet = a["data-facet"]
            self.facets[self._facet] = []
        elif tag == "a" and "data-value" in a and self._facet:
            self._link = {"value": a["data-value"], "href": a["href"], "active": a.get("class") == "active",
                          "count": ""}
            self.facets[self._facet].append(self._link)
        elif tag == "a" and "data-sort" in a:
            self.sorts[a["data-sort"]] = {"href": a["href"], "active": a.get("class") == "active"}
        elif tag == "a" and a.get("rel") == "next":
            self.next = a["href"]
        elif tag == "a" and a.get("class") == "remove-filter":
            self.remove_filters.append(a["href"])
        elif tag == "span" and a.get("class") == "count" and self._link is not None:
            self._in_count = True

    def handle_data(self, data):
        if getattr(self, "_in_count", False) and self._link is not None:
            self._link["count"] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._in_count = False
        elif tag == "a":
            self._link = None
        elif tag == "section":
            self._facet = None

    def facet(self, title: str) -> dict[str, dict]:
        return {v["value"]: v for v in self.facets[title]}


def browse(server, path: str) -> Page:
    """Loads `path` in headless Chromium and parses the DOM it built."""
    p = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--virtual-time-budget=5000", "--dump-dom",
         server.url + path],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "<html" in p.stdout, p.stdout[:500]
    return Page(p.stdout)


@pytest.fixture(scope="module")
def web(tmp_path_factory, make_hub_module):
    server = _start(tmp_path_factory, "trove-web")
    hub = make_hub_module(server)
    for name, (pipeline, library, langs, lic, downloads) in MODELS.items():
        repo = hub.create_repo(name)
        hub.commit_files(repo, {"README.md": model_card(pipeline, library, langs, lic), "config.json": b"{}"})
        for _ in range(downloads):
            assert hub.http.get(f"/{repo}/resolve/main/config.json").status_code == 200
    secret = hub.create_repo("secret-bert", private=True)
    hub.commit_files(secret, {"README.md": model_card("text-classification", "secretlib", ["tlh"], "secret-license")})
    for i in range(33):
        repo = hub.create_repo(f"data-{i:02d}", repo_type="dataset")
        if i < 3:
            card = b"---\nlicense: cc-by-4.0\ntask_categories:\n- translation\nsize_categories:\n- n<1K\n---\n"
            hub.commit_files(repo, {"README.md": card}, repo_type="dataset")
    space = hub.create_repo("demo", repo_type="space", sdk="gradio")
    hub.commit_files(space, {"README.md": b"---\ntitle: Demo\nsdk: gradio\nlicense: mit\n---\n"}, repo_type="space")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def make_hub_module():
    from conftest import Hub
    created = []

    def factory(server):
        h = Hub(server)
        created.append(h)
        return h

    yield factory
    for h in created:
        h.close()


def model_ids(names):
    return [f"admin/{n}" for n in names]


def ids_without_suffix(page: Page) -> list[str]:
    """Repo names as created (hub.create_repo adds a unique suffix)."""
    return [r.rsplit("-", 1)[0] for r in page.repos]


def test_facets_filter_and_sort_the_listing(web):
    page = browse(web, "/models?pipeline_tag=text-classification&sort=downloads")
    assert ids_without_suffix(page) == model_ids(["bert-topics", "bert-sentiment", "roberta-spam"])
    tasks = page.facet("Tasks")
    assert tasks["text-classification"]["active"] and tasks["text-classification"]["count"] == "3"
    assert tasks["automatic-speech-recognition"]["count"] == "1"
    assert page.facet("Libraries")["transformers"]["count"] == "4"
    assert page.facet("Languages")["en"]["count"] == "3"
    assert page.facet("Licenses")["license:mit"]["count"] == "3"
    assert page.sorts["downloads"]["active"]

    # Clicking a facet adds it to the filters; the browser follows the link as given.
    mit = browse(web, page.facet("Licenses")["license:mit"]["href"])
    assert ids_without_suffix(mit) == model_ids(["bert-sentiment", "roberta-spam"])
    assert mit.facet("Licenses")["license:mit"]["active"]
    # Removing the task filter keeps the license one.
    query = dict(parse_qsl(urlsplit(mit.facet("Tasks")["text-classification"]["href"]).query))
    assert query == {"sort": "downloads", "filter": "license:mit"}
    both = browse(web, mit.facet("Tasks")["text-classification"]["href"])
    assert ids_without_suffix(both) == model_ids(["whisper-tiny", "bert-sentiment", "roberta-spam"])


def test_search_and_sorts(web):
    page = browse(web, "/models?search=bert&sort=downloads")  # a substring of the id, as on the Hub
    assert ids_without_suffix(page) == model_ids(["bert-topics", "bert-sentiment", "roberta-spam"])
    page = browse(web, "/models?search=bert-&sort=downloads")
    newest = browse(web, page.sorts["createdAt"]["href"])
    assert ids_without_suffix(newest) == model_ids(["bert-topics", "bert-sentiment"])
    assert newest.sorts["createdAt"]["active"]
    languages = browse(web, "/models?filter=fr")
    assert ids_without_suffix(languages) == model_ids(["bert-topics"])


def test_private_repos_and_their_facets_stay_hidden(web):
    page = browse(web, "/models?sort=downloads")
    assert not any("secret" in r for r in page.repos)
    assert len(page.repos) == len(MODELS)
    assert "secretlib" not in page.facet("Libraries")
    assert "tlh" not in page.facet("Languages")
    assert "license:secret-license" not in page.facet("Licenses")
    assert page.facet("Tasks")["text-classification"]["count"] == "3", "the private repo is not counted"
    assert browse(web, "/models?filter=secretlib").repos == []


def test_pages_datasets_and_spaces(web):
    first = browse(web, "/datasets?sort=createdAt")
    assert len(first.repos) == 30 and first.next
    second = browse(web, first.next)
    assert len(second.repos) == 3 and second.next is None
    assert not set(first.repos) & set(second.repos)
    translation = browse(web, "/datasets?filter=task_categories:translation")
    assert len(translation.repos) == 3
    assert translation.facet("Sizes")["size_categories:n<1K"]["count"] == "3"
    spaces = browse(web, "/spaces")
    assert ids_without_suffix(spaces) == ["admin/demo"]
    assert spaces.facet("SDKs")["gradio"]["count"] == "1"


def test_bad_input_answers_a_clear_400(web):
    r = httpx.get(web.url + "/models?sort=sideways")
    assert r.status_code == 400 and "sort" in r.headers["x-error-message"]
    assert r.headers["content-type"].startswith("text/html") and "Invalid sort" in r.text
    r = httpx.get(web.url + "/models?cursor=nope")
    assert r.status_code == 400


def test_repo_page_shows_the_card_tags_and_files(web):
    listing = browse(web, "/models?search=whisper")
    assert len(listing.repos) == 1
    repo = listing.repos[0]
    html = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--dump-dom", f"{web.url}/{repo}"], capture_output=True, text=True, timeout=90).stdout
    assert f'<h1><a href="/{repo}">{repo}</a>' in html
    assert "<h1>A model</h1>" in html, "the card is rendered without its front matter"
    assert "pipeline_tag" not in html
    assert 'href="/models?filter=license%3Amit"' in html, "tags link to the browsing page"
    # Files open their page (a click never downloads, nor counts a download).
    assert f'data-path="config.json"' in html and f'href="/{repo}/blob/main/config.json"' in html
    # Every link on the listing leads to a page that exists.
    assert httpx.get(f"{web.url}/{repo}").status_code == 200
    assert httpx.get(web.url + "/", follow_redirects=False).headers["location"] == "/models"


def test_private_repo_pages_do_not_exist_for_outsiders(web):
    hub_repo = next(r for r in httpx.get(f"{web.url}/api/models?search=secret",
                                         headers={"authorization": f"Bearer {web.admin_token}"}).json())
    private = hub_repo["id"]
    anonymous = httpx.get(f"{web.url}/{private}")
    missing = httpx.get(f"{web.url}/admin/no-such-repo")
    assert anonymous.status_code == missing.status_code == 401
    assert anonymous.headers["x-error-code"] == missing.headers["x-error-code"] == "RepoNotFound"
    assert anonymous.text == missing.text
    assert anonymous.headers["content-type"].startswith("text/html"), "browsers get a page"
    assert "Repository not found" in anonymous.text and 'href="/login"' in anonymous.text
    signed_in_missing = httpx.get(f"{web.url}/admin/no-such-repo",
                                  headers={"authorization": f"Bearer {web.admin_token}"})
    assert signed_in_missing.status_code == 404 and 'href="/login">log in' not in signed_in_missing.text
    owner = httpx.get(f"{web.url}/{private}", headers={"authorization": f"Bearer {web.admin_token}"})
    assert owner.status_code == 200 and "private" in owner.text


def test_log_in_on_the_web_then_see_private_repos_and_log_out(web):
    """The login form signs a browser in; pages then show what that user may read. Posts
    from other sites are refused, wrong passwords re-show the form, `next` stays on the hub."""
    import subprocess as sp

    from conftest import clean_env, trove_binary

    def cli(*args, stdin=None):
        p = sp.run([str(trove_binary()), *args, "--data-dir", str(web.data_dir)], input=stdin,
                   capture_output=True, text=True, timeout=60, env=clean_env())
        assert p.returncode == 0, p.stderr
        return p.stdout

    cli("user", "create", "wendy")
    cli("user", "set-password", "wendy", stdin="wendy's long password\n")
    token = cli("token", "create", "wendy", "--role", "write", "--name", "setup").strip()
    created = httpx.post(f"{web.url}/api/repos/create", headers={"authorization": f"Bearer {token}"},
                         json={"name": "wendy-private", "organization": "wendy", "private": True})
    assert created.status_code == 200, created.text

    form = browse(web, "/login?next=/models%3Fsearch%3Dwendy")
    assert form.repos == []
    page = sp.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                   web.url + "/login"], capture_output=True, text=True, timeout=90).stdout
    assert 'name="password"' in page and 'action="/login"' in page

    origin = {"origin": web.url}
    fields = {"username": "wendy", "password": "wendy's long password", "next": "/models?search=wendy"}
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=60) as browser:
        assert browser.post("/login", data=fields, headers=origin).status_code == 403, "no form token"
        # The form's CSRF token, bound to the form cookie this browser now holds.
        fields["csrf"] = browser.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        wrong = browser.post("/login", data={**fields, "password": "nope"}, headers=origin)
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        assert "set-cookie" not in wrong.headers
        assert browser.post("/login", data=fields).status_code == 403, "no Origin: refused"
        assert browser.post("/login", data=fields, headers={"origin": "http://evil.example"}).status_code == 403
        ok = browser.post("/login", data=fields, headers=origin)
        assert ok.status_code == 303 and ok.headers["location"] == "/models?search=wendy", ok.text
        listing = browser.get("/models?search=wendy")
        assert "admin/" not in listing.text and "wendy/wendy-private" in listing.text
        assert "wendy" in listing.text and 'action="/logout"' in listing.text
        assert browser.get("/wendy/wendy-private").status_code == 200
        evil_next = browser.post("/login", data={**fields, "next": "//evil.example/x"}, headers=origin)
        assert evil_next.headers["location"] == "/models"
        assert browser.post("/logout", headers=origin).status_code == 403, "no CSRF token: refused"
        # The token of the current session (signing in again above opened a new one).
        csrf = browser.get("/models").text.split('name="csrf" value="')[1].split('"')[0]
        out = browser.post("/logout", data={"csrf": csrf}, headers=origin)
        assert out.status_code == 303
        assert "wendy/wendy-private" not in browser.get("/models?search=wendy").text
    assert "wendy/wendy-private" not in httpx.get(f"{web.url}/models?search=wendy").text
