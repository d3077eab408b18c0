"""Dataset previews: Parquet, CSV and JSON Lines files uploaded with the real client show
their first rows and column types on the dataset page and in the viewer
(`/datasets/{ns}/{name}/viewer/{config}/{split}`), per config and split, in plain HTTP and in
headless Chromium; a private dataset's preview does not exist for outsiders."""

from __future__ import annotations

import html
import json

import pytest

from browser import chromium, new_page, shot  # noqa: F401  (chromium is a fixture)
from conftest import Hub, make_client

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

UPLOAD = """
api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"], repo_type="dataset")
"""


def write_parquet(path, rows: int, offset: int = 0, row_group_size: int = 500) -> None:
    """Columns of the kinds real datasets have: int, text, a list and a struct."""
    table = pa.table({
        "idx": pa.array(range(offset, offset + rows), type=pa.int64()),
        "text": [f"sentence number {i} <b>bold?</b>" for i in range(offset, offset + rows)],
        "tokens": [[i, i + 1] for i in range(offset, offset + rows)],
        "meta": [{"lang": "en", "score": i / 2} for i in range(offset, offset + rows)],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.fixture(scope="module")
def datasets(trove, tmp_path_factory):
    hub = Hub(trove)
    tmp = tmp_path_factory.mktemp("preview")
    client = make_client(trove, tmp)

    # Default layout: data/ with train and test files, no configs in the card.
    plain = hub.create_repo("pq-plain", repo_type="dataset")
    folder = tmp / "plain"
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", 1500)
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", 20, offset=9000)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# Plain parquet\n")
    client.py(UPLOAD, args={"repo": plain, "folder": str(folder)})

    # Configs declared by the card: a CSV config and a JSON Lines one.
    configured = hub.create_repo("pq-configs", repo_type="dataset")
    folder = tmp / "configs"
    (folder / "csv").mkdir(parents=True)
    (folder / "jsonl").mkdir(parents=True)
    (folder / "csv" / "part-0.csv").write_text('id,city,pop\n1,"Paris, FR",2.1\n2,Lyon,0.5\n')
    (folder / "jsonl" / "rows.jsonl").write_text(
        "\n".join(json.dumps({"q": f"question {i}", "n": i, "tags": ["a", "b"]}) for i in range(5)) + "\n")
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: cities\n  data_files:\n  - split: train\n    path: csv/*.csv\n"
        "- config_name: questions\n  data_files: jsonl/*.jsonl\n"
        "---\n# Two configs\n")
    client.py(UPLOAD, args={"repo": configured, "folder": str(folder)})

    # A file that claims to be Parquet but is not.
    broken = hub.create_repo("pq-broken", repo_type="dataset")
    folder = tmp / "broken"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.parquet").write_bytes(b"\x00" * 4096 + b"\xff\xff\xff\x7fPAR1")
    client.py(UPLOAD, args={"repo": broken, "folder": str(folder)})

    private = hub.create_repo("pq-private", repo_type="dataset", private=True)
    hub.commit_files(private, {"train.csv": b"secret_col\nclassified value\n"}, repo_type="dataset")

    yield {"hub": hub, "plain": plain, "configured": configured, "broken": broken, "private": private}
    hub.close()


def page(hub: Hub, path: str, token=None):
    headers = hub.auth(hub.server.admin_token if token is None else token) if token != "" else {}
    return hub.http.get(path, headers=headers)


def test_parquet_preview_shows_first_rows_and_types(datasets):
    hub = datasets["hub"]
    r = page(hub, f"/datasets/{datasets['plain']}")
    assert r.status_code == 200, r.text[:500]
    assert "Dataset preview" in r.text
    assert "<b>bold?</b>" not in r.text, "cells are escaped"
    body = html.unescape(r.text)
    for dtype in ("int64", "string", "list<int64>", "struct<lang: string, score: double>"):
        assert f">{dtype}</span>" in body, dtype
    assert "sentence number 0 <b>bold?</b>" in body
    assert "sentence number 99 " in body and "sentence number 100 " not in body
    assert "100 rows shown of the first row group" in body
    assert 'data-split="train"' in body and 'data-split="test"' in body

    r = page(hub, f"/datasets/{datasets['plain']}/viewer/default/test")
    assert r.status_code == 200
    assert "sentence number 9000 " in r.text and "20 rows shown" in r.text
    assert "sentence number 0 " not in r.text

    r = page(hub, f"/datasets/{datasets['plain']}/viewer/default/nope")
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "EntryNotFound"


def test_card_configs_choose_the_files(datasets):
    hub = datasets["hub"]
    r = page(hub, f"/datasets/{datasets['configured']}")
    assert r.status_code == 200
    assert 'data-config="cities"' in r.text and 'data-config="questions"' in r.text
    assert "Paris, FR" in r.text, "the first config's first split is previewed"

    r = page(hub, f"/datasets/{datasets['configured']}/viewer/questions/train")
    assert r.status_code == 200
    assert "question 4" in r.text
    assert '["a","b"]' in html.unescape(r.text)
    assert "5 rows shown of the whole file" in r.text


def test_a_broken_parquet_file_is_a_note_not_an_error(datasets):
    r = page(datasets["hub"], f"/datasets/{datasets['broken']}")
    assert r.status_code == 200
    assert "Preview unavailable" in r.text


def test_a_private_datasets_preview_is_missing_for_outsiders(datasets, bob):
    hub = datasets["hub"]
    path = f"/datasets/{datasets['private']}/viewer/default/train"
    r = page(hub, path)
    assert r.status_code == 200 and "classified value" in r.text
    r = page(hub, path, token=bob.token)
    assert r.status_code == 404
    assert r.headers["x-error-code"] == "RepoNotFound"
    assert "classified" not in r.text
    r = page(hub, path, token="")
    assert r.status_code == 401
    assert "classified" not in r.text


def test_preview_a_parquet_dataset_in_the_browser(datasets, chromium, trove):
    browser = new_page(chromium, trove.url)
    browser.goto(f"/datasets/{datasets['plain']}")
    section = browser.locator("#dataset-preview")
    section.wait_for()
    assert section.locator("th[data-column='text'] .dtype").inner_text() == "string"
    first = section.locator("table.preview-table tbody tr").first
    assert first.locator("td").nth(1).inner_text() == "sentence number 0 <b>bold?</b>"
    assert section.locator("table.preview-table tbody tr").count() == 100
    shot(browser, "dataset-preview")
    section.locator("a[data-split='test']").click()
    browser.wait_for_url(f"**/viewer/default/test")
    assert browser.locator("table.preview-table tbody tr").count() == 20
    assert "sentence number 9000" in browser.locator("table.preview-table").inner_text()
    shot(browser, "dataset-viewer")
    browser.context.close()


def test_a_json_array_of_objects_previews(trove):
    hub = Hub(trove)
    try:
        repo = hub.create_repo("json-array", repo_type="dataset")
        rows = [{"prompt": f"prompt {i}", "score": i / 4, "ok": i % 2 == 0} for i in range(120)]
        hub.commit_files(repo, {"data/train.json": json.dumps(rows, indent=1).encode(),
                                "data/test.json": b'{"not": "an array"}'}, repo_type="dataset")
        r = page(hub, f"/datasets/{repo}")
        assert r.status_code == 200, r.text[:500]
        body = html.unescape(r.text)
        assert "prompt 99" in body and "prompt 100" not in body, "the first 100 rows"
        assert "100 rows shown of the whole file" in body and 'preview-source">JSON ·' in body
        for dtype in ("string", "float64", "bool"):
            assert f">{dtype}</span>" in body, dtype
        r = page(hub, f"/datasets/{repo}/viewer/default/test")
        assert r.status_code == 200 and "Preview unavailable" in r.text
        assert "not a JSON array of objects" in r.text
    finally:
        hub.close()


def gz_bomb(path, rows: int) -> None:
    """A CSV of `rows` rows of a thousand zeros, gzip-compressed as members of a thousand
    rows each (one member compressed once, repeated): a few hundred KiB that inflate a
    thousandfold."""
    import gzip
    member = gzip.compress((b"0" * 1000 + b"\n") * 1000, 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(b"zeros\n"))
        for _ in range(rows // 1000):
            f.write(member)


def write_deep_parquet(path, depth: int) -> None:
    """A Parquet file whose one column is a struct nested `depth` levels deep (real, written
    by pyarrow): more than the preview's schema depth budget."""
    column = pa.array([1, 2, 3], type=pa.int64())
    for level in range(depth):
        column = pa.StructArray.from_arrays([column], names=[f"level{level}"])
    pq.write_table(pa.table({"deep": column}), path)


@pytest.fixture(scope="module")
def hostile(trove, tmp_path_factory):
    """A dataset of gzip CSV files (one an honest table, one a gzip bomb inflating to 300 MB)
    and one whose Parquet file nests its schema 40 levels deep."""
    import gzip
    hub = Hub(trove)
    tmp = tmp_path_factory.mktemp("hostile-preview")
    client = make_client(trove, tmp)

    gz = hub.create_repo("csv-gz", repo_type="dataset")
    folder = tmp / "gz"
    folder.mkdir()
    with gzip.open(folder / "train.csv.gz", "wt") as f:
        f.write("id,city,note\n")
        for i in range(5000):
            f.write(f'{i},"City {i}, somewhere",<i>row {i}</i>\n')
    gz_bomb(folder / "test.csv.gz", 300_000)
    client.py(UPLOAD, args={"repo": gz, "folder": str(folder)})

    deep = hub.create_repo("pq-deep", repo_type="dataset")
    folder = tmp / "deep"
    (folder / "data").mkdir(parents=True)
    write_deep_parquet(folder / "data" / "train-00000-of-00001.parquet", 40)
    client.py(UPLOAD, args={"repo": deep, "folder": str(folder)})

    yield {"hub": hub, "gz": gz, "deep": deep, "bomb_size": (tmp / "gz" / "test.csv.gz").stat().st_size}
    hub.close()


def test_gzip_csv_previews_its_first_rows_and_a_gzip_bomb_stops_at_the_budget(hostile):
    hub = hostile["hub"]
    assert hostile["bomb_size"] < 4 << 20, hostile["bomb_size"]
    r = page(hub, f"/datasets/{hostile['gz']}")
    assert r.status_code == 200, r.text[:500]
    body = html.unescape(r.text)
    assert 'preview-source">CSV (gzip) ·' in body
    assert "City 0, somewhere" in body and "City 99, somewhere" in body
    assert "City 100, somewhere" not in body, "the first 100 rows"
    assert "<i>row 0</i>" not in r.text, "cells are escaped"
    assert "100 rows shown of the whole file" in body
    assert 'data-split="train"' in body and 'data-split="test"' in body

    # 300 MB once inflated: the page answers at once with the first rows of the first MiB.
    r = page(hub, f"/datasets/{hostile['gz']}/viewer/default/test")
    assert r.status_code == 200
    assert r.elapsed.total_seconds() < 5, r.elapsed
    body = html.unescape(r.text)
    assert "100 rows shown of the first 1.0 MiB once decompressed" in body, body[-3000:]


def test_a_parquet_schema_nested_past_the_budget_is_refused_on_the_page(hostile):
    r = page(hostile["hub"], f"/datasets/{hostile['deep']}")
    assert r.status_code == 200
    assert r.elapsed.total_seconds() < 5, r.elapsed
    assert "Preview unavailable: its schema nests more than 32 levels deep" in r.text


def test_hostile_previews_in_the_browser(hostile, chromium, trove):
    browser = new_page(chromium, trove.url)
    browser.goto(f"/datasets/{hostile['gz']}")
    section = browser.locator("#dataset-preview")
    section.wait_for()
    first = section.locator("table.preview-table tbody tr").first
    assert first.locator("td").nth(1).inner_text() == "City 0, somewhere"
    assert first.locator("td").nth(2).inner_text() == "<i>row 0</i>"
    assert section.locator("th[data-column='id'] .dtype").inner_text() == "int64"
    shot(browser, "dataset-preview-gzip")
    section.locator("a[data-split='test']").click()
    browser.wait_for_url("**/viewer/default/test")
    assert browser.locator("table.preview-table tbody tr").count() == 100
    browser.goto(f"/datasets/{hostile['deep']}")
    notice = browser.locator("#dataset-preview .preview-unavailable")
    notice.wait_for()
    assert "its schema nests more than 32 levels deep" in notice.inner_text()
    shot(browser, "dataset-preview-refused")
    browser.context.close()
