"""The web UI in a real browser (headless Chromium driven by Playwright): what a person
does — sign in, search, read a card, browse folders and files, open the commit and pull
request links the client prints, comment and merge, manage tokens, watch a repository
vanish when it turns private, request access to a gated one. Each test asserts on what the
page shows and saves screenshots of the main pages (tests/e2e/artifacts/screenshots/)."""

from __future__ import annotations

import re
import subprocess

import pytest

from browser import chromium, new_page, shot, sign_in  # noqa: F401  (chromium is a fixture)
from conftest import Hub, _start, clean_env, httpx, make_client, unique

PASSWORD = "a long enough password"

CARD = b"""---
license: apache-2.0
pipeline_tag: text-classification
library_name: transformers
language: [en, fr]
---
# Sentiment model

<p align="center"><img src="assets/logo.png" width="64" alt="logo"></p>

<details><summary>Training details</summary>

Trained *carefully*.

</details>

<script>document.title = "pwned"</script>

| metric | value |
|---|---|
| f1 | 0.91 |

```python
from transformers import pipeline
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = _start(tmp_path_factory, "trove-web-browser")
    hub = Hub(server)
    name = unique("wren")
    server.create_user(name)
    p = subprocess.run([str(server.binary), "user", "set-password", name, "--data-dir", str(server.data_dir)],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, env=clean_env())
    assert p.returncode == 0, p.stderr
    token = server.create_token(name, role="write", name="setup")
    repo = hub.create_repo("sentiment", namespace=name, token=token)
    hub.commit_files(repo, {"README.md": CARD, "config.json": b'{"hidden_size": 8}\n',
                            "src/train.py": b"def train():\n    return 42  # done\n",
                            "assets/logo.png": bytes.fromhex(
                                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                                "1f15c4890000000d49444154789c6360f8cf000000030101001825dd"
                                "560000000049454e44ae426082")},
                     summary="Add the model", token=token)
    yield {"server": server, "hub": hub, "user": name, "token": token, "repo": repo}
    hub.close()
    server.stop()


def test_sign_in_search_with_a_facet_and_read_a_card(site, chromium):
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.goto("/models")
    page.fill("input[name=search]", "sentiment")
    page.click("form.search button")
    page.wait_for_selector(f"li.repo[data-id='{site['repo']}']")
    page.click("section.facet a[data-value='text-classification']")
    page.wait_for_url(re.compile(r"pipeline_tag=text-classification"))
    assert page.locator(f"li.repo[data-id='{site['repo']}']").count() == 1
    shot(page, "models-listing")
    page.click(f"li.repo[data-id='{site['repo']}'] a.name")
    page.wait_for_selector("article.card h1")
    card = page.locator("article.card")
    assert "Sentiment model" in card.inner_text()
    assert card.locator("p[align=center] img").get_attribute("src").endswith("/resolve/main/assets/logo.png")
    assert card.locator("details summary").inner_text() == "Training details"
    assert card.locator("table td").first.inner_text() == "f1"
    assert page.title() != "pwned", "card scripts never run"
    chips = page.locator(".chips").inner_text()
    assert "apache-2.0" in chips and "text-classification" in chips
    assert "snapshot_download" in page.locator("#use-snippet").inner_text()
    shot(page, "repo-card")
    # Narrow screens work too.
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "repo-card-phone")


def test_open_a_folder_and_a_file(site, chromium):
    page = new_page(chromium, site["server"].url)
    page.goto(f"/{site['repo']}/tree/main")
    assert page.locator("tr.entry[data-name='src']").count() == 1
    assert "Add the model" in page.locator("tr.entry[data-name='src'] td.last").inner_text()
    shot(page, "tree")
    page.click("tr.entry[data-name='src'] a")
    page.wait_for_url(re.compile(r"/tree/main/src$"))
    page.click("tr.entry[data-name='train.py'] a")
    page.wait_for_url(re.compile(r"/blob/main/src/train.py$"))
    code = page.locator("table.lines")
    assert "return 42" in code.inner_text()
    assert code.locator("span.hl-storage").first.inner_text() == "def"
    assert code.locator("span.hl-comment").first.inner_text().startswith("# done")
    # Coloured by the server: the same with JavaScript off.
    no_js = chromium.new_context(base_url=site["server"].url, java_script_enabled=False).new_page()
    no_js.goto(f"/{site['repo']}/blob/main/src/train.py")
    assert no_js.locator("table.lines.highlighted span.hl-storage").first.inner_text() == "def"
    no_js.context.close()
    shot(page, "blob")
    raw = page.request.get(f"/{site['repo']}/raw/main/src/train.py")
    assert raw.headers["content-security-policy"] == "sandbox"
    assert raw.text().startswith("def train()")


def test_the_commit_url_printed_by_upload_file_shows_the_diff(site, chromium, tmp_path):
    client = make_client(site["server"], tmp_path)
    run = client.py("""
        info = api.upload_file(path_or_fileobj=b"def train():\\n    return 43\\n", path_in_repo="src/train.py",
                               repo_id=ARGS["repo"], commit_message="Tune the answer")
        emit({"url": info.commit_url})
    """, token=site["token"], args={"repo": site["repo"]})
    url = run.result["url"]
    assert url.startswith(site["server"].url + f"/{site['repo']}/commit/"), url
    page = new_page(chromium, site["server"].url)
    response = page.goto(url)
    assert response.status == 200
    assert page.locator("h2.commit-title").inner_text() == "Tune the answer"
    diff = page.locator("details.file-diff[data-path='src/train.py']")
    assert "-    return 42" in diff.locator("tr.del").inner_text()
    assert "+    return 43" in diff.locator("tr.add").inner_text()
    shot(page, "commit")
    page.goto(f"/{site['repo']}/commits/main")
    assert page.locator("li.commit .title").first.inner_text() == "Tune the answer"
    shot(page, "commits")


def test_comment_on_and_merge_the_pull_request_create_pr_returned(site, chromium, tmp_path):
    client = make_client(site["server"], tmp_path)
    run = client.py("""
        info = api.upload_file(path_or_fileobj=b"more docs\\n", path_in_repo="docs/more.md",
                               repo_id=ARGS["repo"], commit_message="Add docs", create_pr=True)
        emit({"url": info.pr_url})
    """, token=site["token"], args={"repo": site["repo"]})
    url = run.result["url"]
    assert re.search(r"/discussions/\d+$", url), url
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.goto(url)
    assert "docs/more.md" in page.locator("details.file-diff").inner_text()
    page.fill("textarea[name=comment]", "Looks **good**")
    page.click("button[value=comment]")
    page.wait_for_selector(".event.comment strong:has-text('good')")
    shot(page, "pull-request")
    page.click("button[value=merge]")
    page.wait_for_selector("#status:has-text('merged')")
    page.goto(f"/{site['repo']}/tree/main/docs")
    assert page.locator("tr.entry[data-name='more.md']").count() == 1
    page.goto(f"/{site['repo']}/discussions?status=all&type=pull_request")
    assert "merged" in page.locator("ol.discussions").inner_text()
    shot(page, "discussions")


def test_create_use_and_revoke_a_token(site, chromium, tmp_path):
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.goto("/settings/tokens")
    page.fill("form.stack input[name=name]", "laptop")
    page.check("input[name=role][value=read]")
    page.fill("input[name=days]", "30")
    page.click("form.stack button[type=submit]")
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("hf_"), secret
    shot(page, "tokens-created")
    client = make_client(site["server"], tmp_path)
    who = client.py("emit(api.whoami()['name'])", token=secret)
    assert who.result == site["user"]
    page.goto("/settings/tokens")
    assert page.locator("#new-secret").count() == 0, "the secret is shown once"
    page.click("tr.token[data-name='laptop'] button")
    page.wait_for_url(re.compile(r"/settings/tokens$"))
    assert page.locator("tr.token[data-name='laptop']").count() == 0
    refused = client.py("api.whoami()", token=secret, check=False)
    assert refused.returncode != 0


def test_a_repo_turned_private_vanishes_for_anonymous_visitors(site, chromium):
    hub, repo = site["hub"], site["hub"].create_repo("soon-private", namespace=site["user"], token=site["token"])
    hub.commit_files(repo, {"README.md": b"# Soon private\n"}, token=site["token"])
    anonymous = new_page(chromium, site["server"].url)
    assert anonymous.goto(f"/{repo}").status == 200
    owner = new_page(chromium, site["server"].url)
    sign_in(owner, site["user"], PASSWORD)
    owner.goto(f"/{repo}")
    owner.click(".repo-tabs a:has-text('Settings')")
    owner.click("button[value=private]")
    owner.wait_for_selector("#visibility:has-text('private')")
    shot(owner, "settings")
    response = anonymous.goto(f"/{repo}")
    assert response.status == 401 and "Repository not found" in anonymous.content()
    shot(anonymous, "private-for-anonymous")
    assert owner.goto(f"/{repo}").status == 200
    assert owner.goto(f"/{repo}/tree/main").status == 200


def test_request_access_to_a_gated_repo_and_get_it(site, chromium):
    hub = site["hub"]
    repo = hub.create_repo("gated", namespace=site["user"], token=site["token"])
    hub.commit_files(repo, {"README.md": b"# Gated\n", "weights.txt": b"secret sauce\n"}, token=site["token"])
    owner = new_page(chromium, site["server"].url)
    sign_in(owner, site["user"], PASSWORD)
    owner.goto(f"/{repo}/settings")
    owner.click("button[value=manual]")
    owner.wait_for_selector("#gating:has-text('manual')")
    visitor = unique("vic")
    server = site["server"]
    server.create_user(visitor)
    p = subprocess.run([str(server.binary), "user", "set-password", visitor, "--data-dir", str(server.data_dir)],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, env=clean_env())
    assert p.returncode == 0, p.stderr
    page = new_page(chromium, server.url)
    sign_in(page, visitor, PASSWORD)
    assert page.goto(f"/{repo}/blob/main/weights.txt").status == 403
    page.goto(f"/{repo}")
    shot(page, "gated")
    page.click(".gate button")
    page.wait_for_selector(".notice:has-text('pending')")
    owner.goto(f"/{repo}/settings")
    owner.click(f"tr.request[data-user='{visitor}'] button[value=accepted]")
    owner.wait_for_selector(f"tr.request[data-user='{visitor}']:has-text('accepted')")
    shot(owner, "access-requests")
    assert page.goto(f"/{repo}/blob/main/weights.txt").status == 200
    assert "secret sauce" in page.locator("table.lines").inner_text()


def test_upload_a_file_through_the_page_and_see_the_new_commit(site, chromium, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("uploaded from the browser\n")
    weights = tmp_path / "tiny.bin"
    weights.write_bytes(bytes(range(256)) * 8)
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.goto(f"/{site['repo']}/tree/main")
    page.click("a:has-text('Upload files')")
    page.wait_for_url(re.compile(r"/upload/main"))
    page.set_input_files("input[type=file]", [str(notes), str(weights)])
    assert page.locator("ul.chosen li").count() == 2, "the page script lists the chosen files"
    page.fill("input[name=summary]", "Upload through the page")
    shot(page, "upload")
    page.click("form.upload button[type=submit]")
    page.wait_for_url(re.compile(r"/commit/[0-9a-f]{40}$"))
    assert page.locator("h2.commit-title").inner_text() == "Upload through the page"
    assert page.locator("details.file-diff[data-path='notes.txt']").count() == 1
    page.goto(f"/{site['repo']}/tree/main")
    assert page.locator("tr.entry[data-name='tiny.bin'] .badge:has-text('LFS')").count() == 1
    fetched = page.request.get(f"/{site['repo']}/resolve/main/tiny.bin")
    assert fetched.body() == weights.read_bytes()


def test_edit_a_file_in_the_browser(site, chromium):
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.goto(f"/{site['repo']}/blob/main/config.json")
    page.click(".blob-head a:has-text('Edit')")
    page.wait_for_url(re.compile(r"/edit/main/config.json$"))
    assert "hidden_size" in page.locator("textarea[name=content]").input_value()
    page.fill("textarea[name=content]", '{"hidden_size": 16}\n')
    page.fill("input[name=summary]", "Widen the model")
    shot(page, "edit")
    page.click("form.edit button[type=submit]")
    page.wait_for_url(re.compile(r"/commit/[0-9a-f]{40}$"))
    assert page.locator("h2.commit-title").inner_text() == "Widen the model"
    raw = page.request.get(f"/{site['repo']}/raw/main/config.json")
    assert raw.text() == '{"hidden_size": 16}\n'


def test_create_a_repo_on_the_new_page(site, chromium):
    page = new_page(chromium, site["server"].url)
    sign_in(page, site["user"], PASSWORD)
    page.click("header a:has-text('New')")
    page.wait_for_url(re.compile(r"/new$"))
    page.check("input[name=type][value=dataset]")
    page.fill("input[name=name]", "reviews")
    page.select_option("select[name=license]", "cc-by-4.0")
    shot(page, "new-repo")
    page.click("form.new-repo button[type=submit]")
    page.wait_for_url(re.compile(rf"/datasets/{site['user']}/reviews$"))
    # The same name again is refused in the form, with what was typed.
    page.goto("/new")
    page.check("input[name=type][value=dataset]")
    page.fill("input[name=name]", "reviews")
    page.click("form.new-repo button[type=submit]")
    page.wait_for_selector("form.new-repo .error")
    assert page.locator("input[name=name]").input_value() == "reviews"
    info = site["hub"].info(f"{site['user']}/reviews", repo_type="dataset", token=site["token"]).json()
    assert info["cardData"]["license"] == "cc-by-4.0"


def test_an_unknown_page_is_an_html_404(site, chromium):
    page = new_page(chromium, site["server"].url)
    response = page.goto("/this/page/does/not/exist/anywhere")
    assert response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "404 Not Found" in page.locator(".error-page h1").inner_text()
    shot(page, "not-found")


def test_a_space_page_shows_its_card_and_status(site, chromium):
    hub = site["hub"]
    repo = hub.create_repo("hello-space", repo_type="space", namespace=site["user"], token=site["token"])
    hub.commit_files(repo, {"README.md": b"---\nsdk: static\ntitle: Hello\n---\n# Hello Space\n\nA static page.\n",
                            "index.html": b"<h1>hello from the space</h1>"},
                     repo_type="space", token=site["token"])
    page = new_page(chromium, site["server"].url)
    assert page.goto(f"/spaces/{repo}").status == 200
    assert "Hello Space" in page.locator("article.card").inner_text()
    stage = page.locator("#space-stage")
    assert stage.count() == 1 and stage.inner_text().strip() != ""
    # A static Space runs as soon as its commit lands (bounded wait, then the page again).
    for _ in range(30):
        if page.locator("#space-stage").inner_text().strip() == "RUNNING":
            break
        page.wait_for_timeout(500)
        page.reload()
    assert page.locator("#space-stage").inner_text().strip() == "RUNNING"
    shot(page, "space")


# A Space whose page tries what a stored XSS on the hub's origin would: read the signed-in
# visitor's token page, take its CSRF field and create a write token for itself. It writes
# what happened into #out.
TOKEN_THIEF = b"""<!doctype html><p id="out">running</p><script>
(async () => {
  const out = document.getElementById("out");
  try {
    const page = await fetch("/settings/tokens", {credentials: "include"});
    const html = await page.text();
    const csrf = (html.match(/name="csrf" value="([^"]+)"/) || [])[1];
    if (!csrf) { out.textContent = "no csrf"; return; }
    const body = new URLSearchParams({csrf, name: "stolen", role: "write"});
    const made = await fetch("/settings/tokens", {method: "POST", body, credentials: "include"});
    out.textContent = "posted " + made.status;
  } catch (e) {
    out.textContent = "refused " + e.name;
  }
})();
</script>"""


def test_a_spaces_script_cannot_act_as_the_visitor(site, chromium):
    """A Space's app is served on the hub's origin, but sandboxed: its script, run while a
    signed-in user looks at the Space (embedded or opened on its own), can neither read the
    user's pages nor create a token for itself."""
    server, hub = site["server"], site["hub"]
    owner = unique("mallory")
    server.create_user(owner)
    token = server.create_token(owner, role="write", name="setup")
    repo = hub.create_repo("thief", repo_type="space", namespace=owner, token=token)
    hub.commit_files(repo, {"README.md": b"---\nsdk: static\n---\n# A nice demo\n",
                            "index.html": TOKEN_THIEF}, repo_type="space", token=token)
    page = new_page(chromium, server.url)
    try:
        sign_in(page, site["user"], PASSWORD)
        for _ in range(30):  # a static Space runs as soon as its commit lands (bounded)
            page.goto(f"/spaces/{repo}")
            if page.locator("#space-stage").inner_text().strip() == "RUNNING":
                break
            page.wait_for_timeout(500)
        sandbox = page.locator(f'iframe[src="/spaces/{repo}/app/"]').get_attribute("sandbox")
        out = page.frame_locator(f'iframe[src="/spaces/{repo}/app/"]').locator("#out")
        out.filter(has_not_text="running").wait_for()
        embedded = out.inner_text()
        # Opened on its own (the page's "open the app on its own" link): the same.
        response = page.goto(f"/spaces/{repo}/app/")
        page.locator("#out").filter(has_not_text="running").wait_for()
        alone = page.locator("#out").inner_text()
        shot(page, "space-sandboxed-app")
        tokens_page = page.goto("/settings/tokens")
        stolen = page.locator("tr.token[data-name='stolen']").count()
    finally:
        page.context.close()
    # As the admin sees it: the visitor has no token the Space made.
    listed = server.admin_cli("token", "list", "--user", site["user"])
    assert "setup" in listed and "stolen" not in listed, (embedded, alone, listed)
    assert stolen == 0
    # The script saw why: the hub's pages are another origin to it.
    assert embedded.startswith("refused"), embedded
    assert alone.startswith("refused"), alone
    assert sandbox is not None and "allow-scripts" in sandbox and "allow-same-origin" not in sandbox
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    # The hub's pages are framed by the hub only, never by an app's opaque origin.
    assert tokens_page.headers["x-frame-options"] == "SAMEORIGIN"


# A private static Space's page: a classic script, an image and a fetch of its own file,
# all relative, as a static page under a path prefix has them.
PRIVATE_PAGE = b"""<!doctype html><p id="js">no script</p><p id="out">running</p>
<script src="s.js"></script><script>
fetch("data.txt").then(r => r.text()).then(
  t => document.getElementById("out").textContent = "fetched " + t,
  e => document.getElementById("out").textContent = "refused " + e.name);
</script>"""


def test_a_private_spaces_app_loads_for_its_member_in_the_sandbox(site, chromium):
    """The sandboxed app's requests carry no cookie of the hub; a member is sent to a pass
    URL of that Space, which its relative URLs keep, and outsiders get nothing from it."""
    server, hub = site["server"], site["hub"]
    repo = hub.create_repo("members-only", repo_type="space", namespace=site["user"],
                           token=site["token"], private=True)
    hub.commit_files(repo, {"README.md": b"---\nsdk: static\n---\n# Members only\n",
                            "index.html": PRIVATE_PAGE,
                            "s.js": b"document.getElementById('js').textContent = 'script ran';",
                            "data.txt": b"members data"}, repo_type="space", token=site["token"])
    page = new_page(chromium, server.url)
    try:
        sign_in(page, site["user"], PASSWORD)
        for _ in range(30):  # bounded: a static Space runs as soon as its commit lands
            page.goto(f"/spaces/{repo}")
            if page.locator("#space-stage").inner_text().strip() == "RUNNING":
                break
            page.wait_for_timeout(500)
        app = page.frame_locator(f'iframe[src="/spaces/{repo}/app/"]')
        app.locator("#out").filter(has_not_text="running").wait_for()
        assert app.locator("#out").inner_text() == "fetched members data"
        assert app.locator("#js").inner_text() == "script ran"
        page.goto(f"/spaces/{repo}/app/")
        page.locator("#out").filter(has_not_text="running").wait_for()
        assert page.locator("#out").inner_text() == "fetched members data"
        pass_url = page.url
        assert f"/spaces/{repo}/app/.trove/" in pass_url, pass_url
    finally:
        page.context.close()
    # The pass opens this Space only; a forged one opens nothing.
    other = hub.create_repo("other-private", repo_type="space", namespace=site["user"],
                            token=site["token"], private=True)
    hub.commit_files(other, {"README.md": b"---\nsdk: static\n---\n", "index.html": b"other"},
                     repo_type="space", token=site["token"])
    pass_path = pass_url.split(server.url, 1)[1]
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        assert c.get(pass_path + "data.txt").text == "members data"
        pass_segment = pass_path.split("/app", 1)[1]
        assert c.get(f"/spaces/{other}/app{pass_segment}").status_code == 404
        forged = pass_path[:-2] + ("0" if pass_path[-2] != "0" else "1") + "/"
        assert c.get(forged + "data.txt").status_code == 404
        assert c.get(f"/spaces/{repo}/app/data.txt").status_code in (401, 404)
