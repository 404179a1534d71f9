"""The dashboard server: every endpoint on synthetic runs, the live stream against a real server,
path traversal and symlinks out, tokens, malformed parameters (fuzzed), broken runs, the
``lvseg dashboard`` command and the subprocess launcher."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from conftest import serve_in_thread
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_run import HISTOGRAM_EDGES, picture, write_run

from lvseg.dashboard.access import check_token
from lvseg.dashboard.launch import TOKEN_ENV, DashboardError, DashboardServer, start_dashboard
from lvseg.dashboard.pages import STATIC_DIR, STATIC_FILES
from lvseg.dashboard.readers import bin_centres
from lvseg.dashboard.server import create_app
from lvseg.dashboard.stream import parse_cursors
from lvseg.errors import InvalidInputError
from lvseg.runs.store import RunStore

TOKEN = "t0k-of-sixteen-characters"
"""An access token long enough to be accepted (16 characters at least)."""

# ------------------------------------------------------------------------------- the JSON API


def test_run_list_has_every_run_with_its_summary(client: TestClient) -> None:
    body = client.get("/api/runs").json()
    runs = {run["name"]: run for run in body["runs"]}
    assert list(runs) == ["alpha", "beta"]
    assert runs["alpha"]["status"] == "finished" and runs["beta"]["status"] == "running"
    assert runs["alpha"]["epochs"] == 3 and runs["alpha"]["steps"] == 60
    assert runs["alpha"]["selected"] is True and runs["beta"]["selected"] is False
    assert runs["alpha"]["model"] == "lvnet" and runs["alpha"]["error"] is None
    assert "path" not in runs["alpha"]


def test_single_run_target_is_served_under_its_folder_name(runs_root: Path) -> None:
    with TestClient(create_app(runs_root / "beta"), base_url="http://127.0.0.1") as client:
        assert [run["name"] for run in client.get("/api/runs").json()["runs"]] == ["beta"]
        assert client.get("/api/runs/beta/steps").json()["columns"]["step"] == list(range(10))
        assert client.get("/api/runs/alpha").status_code == 404


def test_run_detail_marks_the_best_and_the_selected_checkpoint(client: TestClient) -> None:
    detail = client.get("/api/runs/alpha").json()
    assert detail["status"] == "finished" and detail["status_message"] == "3 epochs"
    assert [row["status"] for row in detail["status_history"]] == ["running", "finished"]
    assert detail["config"]["model"]["name"] == "lvnet"
    assert detail["meta"]["device"] == "cpu" and "histogram_edges" not in detail["meta"]
    assert detail["histogram_edges"] == HISTOGRAM_EDGES
    assert detail["selected"] == {"checkpoint": "checkpoints/best.pt"}
    rows = {row["kind"]: row for row in detail["checkpoints"]}
    assert rows["best"]["best"] and rows["best"]["selected"]
    assert not rows["last"]["selected"]
    assert rows["best"]["metrics"]["val_dice"] == pytest.approx(detail["summary"]["best_val_dice"])


def test_steps_are_columnar_and_since_keeps_only_later_steps(client: TestClient) -> None:
    columns = client.get("/api/runs/alpha/steps").json()["columns"]
    assert columns["step"] == list(range(60))
    assert list(columns)[:3] == ["step", "epoch", "time"]
    for name in ("loss", "loss_dice", "loss_ce", "lr", "grad_norm", "images_per_s", "skipped"):
        assert len(columns[name]) == 60
    later = client.get("/api/runs/alpha/steps", params={"since": 55}).json()
    assert later["columns"]["step"] == [56, 57, 58, 59] and later["since"] == 55
    assert later["columns"]["loss"] == columns["loss"][56:]
    nothing = client.get("/api/runs/alpha/steps", params={"since": 59}).json()["columns"]
    assert nothing["step"] == []


def test_non_finite_metrics_become_null(runs_root: Path, client: TestClient) -> None:
    with RunStore.open(runs_root / "beta") as store:
        store.log_step(100, 2, loss=math.nan, grad_norm=math.inf, lr=0.001)
        store.log_layer_stats(100, [("head", "grad_norm", math.nan), ("stem.0.0", "grad_norm", 1)])
    columns = client.get("/api/runs/beta/steps", params={"since": 99}).json()["columns"]
    assert columns["loss"] == [None] and columns["grad_norm"] == [None] and columns["lr"] == [0.001]
    matrix = client.get("/api/runs/beta/layers/grad_norm", params={"since": 99}).json()
    assert matrix["steps"] == [100]
    assert matrix["by_layer"][matrix["layers"].index("head")] == [None]
    assert matrix["by_layer"][matrix["layers"].index("stem.0.0")] == [1]


def test_epochs_are_columnar(client: TestClient) -> None:
    columns = client.get("/api/runs/alpha/epochs").json()["columns"]
    assert columns["epoch"] == [1, 2, 3]
    for name in ("train_loss", "val_loss", "val_dice", "val_dice_std", "seconds", "lr"):
        assert len(columns[name]) == 3
    assert client.get("/api/runs/alpha/epochs", params={"since": 2}).json()["columns"]["epoch"] == [
        3
    ]


def test_layer_matrix_is_by_layer_in_model_order(client: TestClient) -> None:
    matrix = client.get("/api/runs/alpha/layers/grad_norm").json()
    assert matrix["stat"] == "grad_norm"
    assert matrix["layers"][0] == "stem.0.0" and matrix["layers"][-1] == "head"
    assert matrix["steps"] == list(range(0, 60, 5))
    assert len(matrix["by_layer"]) == len(matrix["layers"])
    assert all(len(row) == len(matrix["steps"]) for row in matrix["by_layer"])
    # gradients shrink with depth in the synthetic run; four significant digits are kept
    assert matrix["by_layer"][0][0] > matrix["by_layer"][-1][0] > 0
    assert len(repr(matrix["by_layer"][0][0]).strip("0.").replace("e-", "")) <= 6
    later = client.get("/api/runs/alpha/layers/grad_norm", params={"since": 50}).json()
    assert later["steps"] == [55] and later["layers"] == matrix["layers"]
    activations = client.get("/api/runs/alpha/layers/act_zero_fraction").json()
    assert activations["layers"] == [f"encoder.{i // 2}.{i % 2}.act1" for i in range(4)]
    unknown = client.get("/api/runs/alpha/layers/no_such_stat").json()
    assert unknown["layers"] == [] and unknown["by_layer"] == []


def test_histograms_per_layer_with_bin_centres(client: TestClient) -> None:
    body = client.get("/api/runs/alpha/histograms").json()
    assert body["edges"] == HISTOGRAM_EDGES
    assert len(body["centres"]) == 40 and body["centres"][0] == pytest.approx(-9.875)
    head = body["layers"]["head"]
    assert head["steps"] == [0, 50] and len(head["counts"]) == 2 and len(head["counts"][0]) == 40
    later = client.get("/api/runs/alpha/histograms", params={"since": 0}).json()
    assert later["layers"]["head"]["steps"] == [50]
    one = client.get("/api/runs/alpha/histograms", params={"layer": "head"}).json()
    assert list(one["layers"]) == ["head"]


def test_bin_centres_of_open_ended_bins() -> None:
    assert bin_centres([-math.inf, 0.0, 1.0, 2.0, math.inf]) == [-0.5, 0.5, 1.5, 2.5]
    assert bin_centres([]) == []


def test_events_since_id_and_by_kind_keep_non_finite_values_as_text(client: TestClient) -> None:
    body = client.get("/api/runs/alpha/events").json()
    assert [event["kind"] for event in body["events"]] == ["alert", "alert", "nonfinite_step"]
    assert body["last_id"] == body["events"][-1]["id"]
    vanishing, nonfinite = body["events"][:2]
    assert vanishing["data"] == {
        "rule": "vanishing",
        "layer": "head",
        "value": 1e-9,
        "threshold": 1e-8,
    }
    assert vanishing["step"] == 5 and vanishing["epoch"] == 1
    assert nonfinite["data"]["value"] == "NaN"
    alerts = client.get("/api/runs/alpha/events", params={"kind": "alert"}).json()["events"]
    assert len(alerts) == 2
    first = body["events"][0]["id"]
    later = client.get("/api/runs/alpha/events", params={"since_id": first}).json()
    assert [event["id"] for event in later["events"]] == [e["id"] for e in body["events"][1:]]
    none = client.get("/api/runs/alpha/events", params={"since_id": body["last_id"]}).json()
    assert none["events"] == [] and none["last_id"] == body["last_id"]


def test_watch_frames_and_pictures(client: TestClient) -> None:
    frames = client.get("/api/runs/alpha/watch").json()["frames"]
    kinds = {(f["epoch"], f["slice"], f["kind"]) for f in frames}
    assert (0, 0, "image") in kinds and (3, 1, "cam") in kinds and (2, 0, "prediction") in kinds
    image = next(f for f in frames if f["kind"] == "image")
    assert image["data"]["patient_id"] == "SC-HF-I-01"
    later = client.get("/api/runs/alpha/watch", params={"since": 2}).json()["frames"]
    assert {f["epoch"] for f in later} == {3}
    response = client.get("/api/runs/alpha/watch/2/1/prediction.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == picture("prediction", 1, 2)
    missing = client.get("/api/runs/alpha/watch/9/0/cam.png")
    assert missing.status_code == 404 and "epoch 9" in missing.json()["error"]
    assert client.get("/api/runs/alpha/watch/x/0/cam.png").status_code == 400


def test_health(client: TestClient) -> None:
    assert client.get("/api/health").json()["ok"] is True


# ------------------------------------------------------------------------------- static files


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attributes if name in ("src", "href") and value]


def test_index_references_only_local_files_that_exist(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parser = _References()
    parser.feed(page.text)
    assert any(url.endswith("plotly.min.js") for url in parser.urls)
    for url in parser.urls:
        parts = urlsplit(url)
        if parts.scheme == "data":
            continue
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), url
        assert client.get(f"/{url}").status_code == 200, url
    for name in STATIC_FILES:
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|//cdn|@import", text), f"{name} reaches outside"


def test_static_files_and_plotly(client: TestClient) -> None:
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "lvsegDashboard" in script.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert "connect-src 'self'" in plotly.headers["content-security-policy"]
    assert client.get("/static/index.html").status_code == 404
    assert client.get("/static/server.py").status_code == 404


def test_the_page_is_es_modules_served_as_javascript(client: TestClient) -> None:
    """index.html loads app.js as a module; it and every module it imports, and theirs, come
    with a JavaScript MIME type (a browser refuses a module script otherwise), and every module
    in static/ is part of the page."""
    assert '<script type="module" src="static/app.js"></script>' in client.get("/").text
    seen: set[str] = set()
    wanted = ["app.js"]
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", name
        wanted += re.findall(r"\bfrom '\./([\w-]+\.js)'", response.text)
    assert seen == {path.name for path in STATIC_DIR.glob("*.js")}


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fserver.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/..%5c..%5cserver.py",
        "/api/runs/..",
        "/api/runs/%2e%2e/steps",
        "/api/runs/..%2falpha/steps",
        "/api/runs/alpha%2f..%2fbeta/steps",
        "/api/runs/%2Ftmp/steps",
        "/api/runs//tmp/steps",
        "/api/runs/./steps",
        "/api/runs/escape/steps",
        "/api/runs/escape",
        "/api/runs/linked-db/steps",
        "/api/runs/alpha/watch/1/0/..%2f..%2fx.png",
        "/runs/alpha/run.db",
        "/alpha/run.db",
        "/pyproject.toml",
    ],
)
def test_path_traversal_is_not_found(runs_root: Path, client: TestClient, path: str) -> None:
    outside = runs_root.parent / "outside"
    write_run(outside / "secret", epochs=1, steps_per_epoch=2)
    (runs_root / "escape").symlink_to(outside / "secret", target_is_directory=True)
    (runs_root / "linked-db").mkdir()
    (runs_root / "linked-db" / "run.db").symlink_to(outside / "secret" / "run.db")
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    names = [run["name"] for run in client.get("/api/runs").json()["runs"]]
    assert names == ["alpha", "beta"]


SECRET = {"model": {"name": "SECRET-MODEL"}, "checkpoint": "SECRET-CHECKPOINT", "key": "hunter2"}
"""JSON outside the runs folder that no response may ever show."""
OUTSIDE = "points outside the runs folder; it is not read"


def link_out(runs_root: Path, run: str, name: str) -> Path:
    """Replace ``run``'s file ``name`` with a symlink to a secret JSON file outside the runs."""
    secret = runs_root.parent / "outside" / f"secret-{name}"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(json.dumps(SECRET))
    path = runs_root / run / name
    path.unlink(missing_ok=True)
    path.symlink_to(secret)
    return path


def test_config_and_selected_links_out_of_the_runs_folder_are_errors_never_served(
    runs_root: Path, client: TestClient
) -> None:
    link_out(runs_root, "alpha", "config.json")
    link_out(runs_root, "alpha", "selected.json")
    with RunStore.open(runs_root / "alpha") as store:
        store.set_meta(model=None)  # the listing would take the model's name from config.json
    detail = client.get("/api/runs/alpha").json()
    assert detail["config"] is None
    assert detail["errors"] == [f"{runs_root / 'alpha' / 'config.json'}: config.json {OUTSIDE}"]
    assert detail["selected"] == {"error": f"selected.json {OUTSIDE}"}
    assert not any(row["selected"] for row in detail["checkpoints"])
    assert detail["summary"]["model"] is None
    listing = client.get("/api/runs")
    assert {run["name"]: run["model"] for run in listing.json()["runs"]}["alpha"] is None
    for text in (json.dumps(detail), listing.text):
        assert "SECRET" not in text and "hunter2" not in text


def test_links_inside_the_runs_folder_are_still_followed(
    runs_root: Path, client: TestClient
) -> None:
    (runs_root / "beta" / "config.json").unlink()
    (runs_root / "beta" / "config.json").symlink_to(Path("..") / "alpha" / "config.json")
    (runs_root / "beta" / "selected.json").symlink_to(runs_root / "alpha" / "selected.json")
    detail = client.get("/api/runs/beta").json()
    assert detail["errors"] == [] and detail["config"]["model"]["name"] == "lvnet"
    assert detail["selected"] == {"checkpoint": "checkpoints/best.pt"}


def test_a_single_run_target_reads_no_file_linked_out_of_the_run(runs_root: Path) -> None:
    link_out(runs_root, "alpha", "selected.json")
    with TestClient(create_app(runs_root / "alpha"), base_url="http://127.0.0.1") as client:
        assert client.get("/api/runs/alpha").json()["selected"] == {
            "error": f"selected.json {OUTSIDE}"
        }


def test_stream_never_sends_a_selection_linked_out(runs_root: Path) -> None:
    link_out(runs_root, "beta", "selected.json")
    app = create_app(runs_root, poll_s=0.1, ping_s=0.3)
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        with http.stream("GET", stream_url(base, {"beta": {}})) as response:
            events = EventReader(response).until(lambda events: updates(events, "beta"))
    assert updates(events, "beta")[0]["selected"] == {"error": f"selected.json {OUTSIDE}"}
    assert "SECRET" not in json.dumps(events)


def test_a_run_db_replaced_by_a_link_out_is_not_found_at_once(
    runs_root: Path, client: TestClient
) -> None:
    outside = runs_root.parent / "outside"
    write_run(outside / "secret", epochs=1, steps_per_epoch=2)
    assert client.get("/api/runs/beta/steps").status_code == 200
    (runs_root / "beta" / "run.db").unlink()
    (runs_root / "beta" / "run.db").symlink_to(outside / "secret" / "run.db")
    response = client.get("/api/runs/beta/steps")  # before the next scan of the folder
    assert response.status_code == 404 and response.json() == {"error": "beta: no such run"}


# ------------------------------------------------------------------------------- access control


@pytest.mark.parametrize(
    "path",
    ["/", "/static/app.js", "/static/plotly.min.js", "/api/runs", "/api/runs/alpha/steps"]
    + ["/api/stream", "/api/runs/alpha/watch/1/0/cam.png"],
)
def test_token_is_required_on_every_request(runs_root: Path, path: str) -> None:
    with TestClient(create_app(runs_root, token=TOKEN), base_url="http://10.1.2.3") as client:
        assert client.get(path).status_code == 401
        assert client.get(path, params={"token": "wrong"}).status_code == 403
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        if path != "/api/stream":  # the stream never ends; it is tested on a live server below
            assert client.get(path, params={"token": TOKEN}).status_code == 200
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_page_passes_its_token_on_to_its_scripts(runs_root: Path) -> None:
    token = "a&b=c/d+e%f~g#h!"  # every character URLs must quote
    quoted = "a%26b%3Dc%2Fd%2Be%25f~g%23h%21"
    with TestClient(create_app(runs_root, token=token), base_url="http://10.1.2.3") as client:
        page = client.get("/", params={"token": token}).text
        assert f'src="static/app.js?token={quoted}"' in page
        assert f'href="static/style.css?token={quoted}"' in page
        assert client.get(f"/static/app.js?token={quoted}").status_code == 200
        # a module's relative imports drop its URL's query: the server adds the token to them
        for name in ("app.js", "draw.js"):
            script = client.get(f"/static/{name}?token={quoted}").text
            imports = re.findall(r"\bfrom '(\./[^']*)'", script)
            assert imports and all(url.endswith(f".js?token={quoted}") for url in imports)
    script = (STATIC_DIR / "state.js").read_text()
    assert "location.search" in script and "query.set('token', TOKEN)" in script


def test_without_a_token_only_local_host_names_are_answered(runs_root: Path) -> None:
    app = create_app(runs_root)
    for base in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        with TestClient(app, base_url=base) as client:
            assert client.get("/api/runs").status_code == 200, base
    for base in ("http://evil.example", "http://127.0.0.1.evil.example", "http://10.0.0.5"):
        with TestClient(app, base_url=base) as client:
            response = client.get("/api/runs")
            assert response.status_code == 403 and "localhost" in response.json()["error"]


@pytest.mark.parametrize(
    "host", ["[", "]", "[::1", "[zz]", "[::1]x", "localhost:abc", "user@localhost", "localhost/x"]
)
def test_a_malformed_host_header_is_refused_not_an_error(runs_root: Path, host: str) -> None:
    with TestClient(create_app(runs_root), base_url="http://127.0.0.1") as client:
        response = client.get("/api/runs", headers={"host": host})
    assert response.status_code == 403
    assert response.json() == {
        "error": f"host {host!r} refused: this dashboard answers on localhost only"
    }


def test_an_internal_error_says_only_that(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lvseg.dashboard.server as server

    monkeypatch.setattr(server, "step_columns", lambda *_: 1 / 0)
    app = create_app(runs_root)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        response = client.get("/api/runs/alpha/steps")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (the dashboard's log has the details)"}


SHORT = (
    "dashboard token too short ({} characters): use at least 16, "
    "or leave --token out to have one generated"
)


@pytest.mark.parametrize("token", ["", "t0k", "fifteen-chars-x"])
def test_an_empty_or_short_token_is_refused_wherever_it_comes_in(
    runs_root: Path, token: str
) -> None:
    message = SHORT.format(len(token))
    for start in (
        lambda: create_app(runs_root, token=token),
        lambda: DashboardServer(runs_root, host="0.0.0.0", port=0, token=token),
        lambda: start_dashboard(runs_root, host="0.0.0.0", token=token),
    ):
        with pytest.raises(InvalidInputError) as caught:
            start()
        assert str(caught.value) == message


def test_a_token_with_spaces_or_non_ascii_is_refused() -> None:
    for token in ("sixteen chars ok", "sixteen-chars-ok\n", "sixteen-chars-éé"):
        with pytest.raises(InvalidInputError, match="space, control or non-ASCII character"):
            check_token(token)
    assert check_token("x" * 16) == "x" * 16 and check_token(None) is None


def test_generated_tokens_pass_the_rule(runs_root: Path) -> None:
    server = DashboardServer(runs_root, host="0.0.0.0", port=0)
    try:
        assert server.token is not None and check_token(server.token) == server.token
        assert len(server.token) >= 16 and server.url.endswith(f"?token={server.token}")
    finally:
        server.socket.close()


def test_dashboard_command_and_launcher_refuse_an_empty_token(runs_root: Path) -> None:
    result = run_lvseg("dashboard", str(runs_root), "--host", "0.0.0.0", "--token", "")
    assert_one_line_error(result, SHORT.format(0))
    for value in ("", "short"):
        result = subprocess.run(
            [sys.executable, "-m", "lvseg.dashboard.launch", str(runs_root), "--host", "0.0.0.0"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, TOKEN_ENV: value},
        )
        assert result.returncode == 2 and result.stderr == f"error: {SHORT.format(len(value))}\n"


# ------------------------------------------------------------------------------- bad parameters

WHOLE = "must be a whole number from 0 to 2**63 - 1, not"
HUGE = "9" * 30


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/api/runs/alpha/steps?since=1e23", f"since {WHOLE} '1e23'"),
        ("/api/runs/alpha/steps?since=-1", f"since {WHOLE} '-1'"),
        ("/api/runs/alpha/steps?since=abc", f"since {WHOLE} 'abc'"),
        ("/api/runs/alpha/steps?since=", f"since {WHOLE} ''"),
        (f"/api/runs/alpha/steps?since={HUGE}", f"since {WHOLE} '{HUGE}'"),
        ("/api/runs/alpha/steps?since=9223372036854775808", f"since {WHOLE} '9223372036854775808'"),
        (f"/api/runs/alpha/steps?since={'1' * 5000}", f"since {WHOLE} '{'1' * 36}..."),
        ("/api/runs/alpha/epochs?since=1.5", f"since {WHOLE} '1.5'"),
        ("/api/runs/alpha/layers/grad_norm?since=-5", f"since {WHOLE} '-5'"),
        (f"/api/runs/alpha/histograms?since={HUGE}", f"since {WHOLE} '{HUGE}'"),
        (f"/api/runs/alpha/events?since_id=-{HUGE}", f"since_id {WHOLE} '-{HUGE}'"),
        ("/api/runs/alpha/watch?since=NaN", f"since {WHOLE} 'NaN'"),
        (f"/api/runs/alpha/watch/{HUGE}/0/cam.png", f"epoch {WHOLE} '{HUGE}'"),
        ("/api/runs/alpha/watch/1/-1/cam.png", f"slice {WHOLE} '-1'"),
        ("/api/runs/alpha/watch/x/0/cam.png", f"epoch {WHOLE} 'x'"),
    ],
)
def test_malformed_integers_are_400_with_a_short_message(
    client: TestClient, path: str, error: str
) -> None:
    response = client.get(path)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_the_largest_integer_is_accepted(client: TestClient) -> None:
    response = client.get(f"/api/runs/alpha/events?since_id={2**63 - 1}")
    assert response.status_code == 200 and response.json()["events"] == []


@pytest.mark.parametrize(
    ("cursors", "error"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"a":' * 3000 + "{}" + "}" * 3000, "nested too deeply"),
        ("[1]", "from= is a JSON object of run names"),
        ("{nope", "not JSON (Expecting property name enclosed in double quotes: line 1 column 2"),
        ('{"alpha": [1]}', "a run's cursors are a JSON object"),
        ('{"alpha": {"step": 1e23}}', f"cursor 'step' {WHOLE[:-5]} or null"),
        ('{"alpha": {"step": -1}}', f"cursor 'step' {WHOLE[:-5]} or null"),
        (f'{{"alpha": {{"event": {HUGE}}}}}', f"cursor 'event' {WHOLE[:-5]} or null"),
        ('{"alpha": {"watch": NaN}}', f"cursor 'watch' {WHOLE[:-5]} or null"),
        ('{"alpha": {"layer": "7"}}', f"cursor 'layer' {WHOLE[:-5]} or null"),
        ('{"alpha": {"hist": true}}', f"cursor 'hist' {WHOLE[:-5]} or null"),
        ('{"alpha": {"step": ' + "1" * 5000 + "}}", "not JSON (Exceeds the limit (4300 digits)"),
    ],
)
def test_malformed_stream_cursors_are_400(client: TestClient, cursors: str, error: str) -> None:
    # A refused stream ends at once, so the TestClient can read it (a stream served never ends).
    response = client.get("/api/stream", params={"from": cursors})
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith(f"bad stream cursors: {error}") and len(message) < 200


def test_stream_cursors_longer_than_64_kib_are_refused() -> None:
    with pytest.raises(ValueError, match="^longer than 65536 characters$"):
        parse_cursors("{" + " " * 70_000 + "}")
    assert parse_cursors('{"alpha": {"step": 3.0, "event": null}}')["alpha"].step == 3


# Random query strings for every endpoint: parameter names the API knows and some it does not,
# values that are anything (huge and negative numbers, JSON, control characters, bad escapes).
_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=2**63 - 2, max_value=2**63 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
).map(str)
_VALUES = st.one_of(_NUMBERS, st.text(max_size=40), st.sampled_from(["", "%", "%zz", "%ff"]))
_NAMES = st.one_of(
    st.sampled_from(["since", "since_id", "kind", "layer", "token", "from", "run"]),
    st.text(max_size=10),
)
_QUERY = st.lists(st.tuples(_NAMES, _VALUES), max_size=4).map(
    lambda pairs: "&".join(f"{quote(k, safe='%')}={quote(v, safe='%=&')}" for k, v in pairs)
)
_SEGMENT = st.one_of(
    st.sampled_from(["alpha", "beta", "nope", "grad_norm", "1", "0", "-1", HUGE, "1e23", "x"]),
    _NUMBERS,
    st.text(min_size=1, max_size=20),
).map(lambda text: quote(text, safe=""))
_ENDPOINTS = [
    "/",
    "/static/{a}",
    "/api/health",
    "/api/runs",
    "/api/runs/{a}",
    "/api/runs/{a}/steps",
    "/api/runs/{a}/epochs",
    "/api/runs/{a}/layers/{b}",
    "/api/runs/{a}/histograms",
    "/api/runs/{a}/events",
    "/api/runs/{a}/watch",
    "/api/runs/{a}/watch/{b}/{c}/{d}.png",
]
_RUNS = st.sampled_from(["alpha", "beta"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from(_ENDPOINTS),
    run=st.one_of(_RUNS, _SEGMENT),
    segments=st.tuples(_SEGMENT, _SEGMENT, _SEGMENT),
    query=_QUERY,
)
def test_random_query_strings_never_give_500(
    client: TestClient, endpoint: str, run: str, segments: tuple[str, str, str], query: str
) -> None:
    path = endpoint.format(a=run, b=segments[0], c=segments[1], d=segments[2])
    # The TestClient raises any exception the app did not answer itself: none may escape.
    response = client.get(f"{path}?{query}")
    assert response.status_code in (200, 400, 404), (path, query, response.text[:300])
    if response.status_code == 400:
        message = response.json()["error"]
        assert "\n" not in message and "Traceback" not in message and len(message) < 200


_CURSOR_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**25), 10**25),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
_CURSORS = st.one_of(
    st.text(max_size=60),
    st.dictionaries(
        st.one_of(_RUNS, st.text(max_size=8)),
        st.one_of(
            st.dictionaries(
                st.sampled_from(["step", "epoch", "event", "layer", "hist", "watch", "x"]),
                _CURSOR_VALUES,
                max_size=4,
            ),
            _CURSOR_VALUES,
        ),
        max_size=3,
    ).map(json.dumps),
)


@pytest.fixture
def stream_server(runs_root: Path) -> Iterator[tuple[str, httpx.Client]]:
    """A live server's stream URL and a client (a stream served never ends: no TestClient)."""
    app = create_app(runs_root, poll_s=0.05, ping_s=0.05)
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        yield f"{base}/api/stream", http


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cursors=_CURSORS)
def test_random_stream_cursors_never_give_500(
    stream_server: tuple[str, httpx.Client], cursors: str
) -> None:
    url, http = stream_server
    with http.stream("GET", url, params={"from": cursors}) as response:
        assert response.status_code in (200, 400), (cursors, response.read()[:300])
        if response.status_code == 400:
            response.read()
            assert response.json()["error"].startswith("bad stream cursors: ")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_bad_parameters_leave_no_traceback_in_the_server_log(runs_root: Path) -> None:
    app = create_app(runs_root, poll_s=0.05, ping_s=0.05)
    bad = ['{"alpha": {"step": 1e23}}', "[" * 3000, "{nope", f'{{"beta": {{"epoch": -{HUGE}}}}}']
    records = _Records()
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        logging.getLogger("uvicorn.error").addHandler(records)  # where uvicorn logs tracebacks
        try:
            for cursors in bad:
                response = http.get(f"{base}/api/stream", params={"from": cursors})
                assert response.status_code == 400
            for path in (f"/api/runs/alpha/steps?since={HUGE}", "/api/runs/alpha/watch/1/-1/x.png"):
                assert http.get(f"{base}{path}").status_code == 400
        finally:
            logging.getLogger("uvicorn.error").removeHandler(records)
    assert [record.getMessage() for record in records.records] == []


# ------------------------------------------------------------------------------- broken runs


def test_a_garbage_run_db_gives_a_clear_error_and_other_runs_still_answer(
    runs_root: Path, client: TestClient
) -> None:
    (runs_root / "broken").mkdir()
    (runs_root / "broken" / "run.db").write_bytes(b"this is not sqlite" * 100)
    listed = {run["name"]: run for run in client.get("/api/runs").json()["runs"]}
    assert listed["broken"]["status"] == "corrupt"
    assert "run.db" in listed["broken"]["error"]
    for path in ("/api/runs/broken", "/api/runs/broken/steps", "/api/runs/broken/layers/x"):
        response = client.get(path)
        assert response.status_code == 422
        message = response.json()["error"]
        assert "run.db" in message and "Traceback" not in message and "\n" not in message
    assert client.get("/api/runs/alpha/steps").status_code == 200


def test_a_run_deleted_while_served_is_not_found(runs_root: Path, client: TestClient) -> None:
    assert client.get("/api/runs/beta/steps").status_code == 200
    shutil.rmtree(runs_root / "beta")
    response = client.get("/api/runs/beta/steps")
    assert response.status_code == 404 and "beta" in response.json()["error"]
    assert client.get("/api/runs/alpha/epochs").status_code == 200
    time.sleep(1.1)  # the next scan of the folder drops it from the list
    assert [run["name"] for run in client.get("/api/runs").json()["runs"]] == ["alpha"]


# ------------------------------------------------------------------------------- live stream


class EventReader:
    """The (event, data) pairs of a server-sent-event response, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def until(self, done, timeout_s: float = 6.0) -> list[tuple[str, dict]]:
        """Read events until ``done(events read by this call)`` holds; fail after ``timeout_s``."""
        events: list[tuple[str, dict]] = []
        name = None
        deadline = time.monotonic() + timeout_s
        for line in self.lines:
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
                if done(events):
                    return events
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"stream did not deliver in {timeout_s} s: {events}")


def updates(events: list, run: str) -> list[dict]:
    return [data for name, data in events if name == "update" and data["run"] == run]


def stream_url(base: str, cursors: dict) -> str:
    return f"{base}/api/stream?from={quote(json.dumps(cursors))}"


def test_stream_pushes_only_new_rows_as_they_are_written(runs_root: Path) -> None:
    app = create_app(runs_root, poll_s=0.1, ping_s=0.3, rescan_s=0.2)
    cursors = {"beta": {"step": 9, "epoch": 1, "event": None, "layer": 5, "hist": 0, "watch": 1}}
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        with http.stream("GET", stream_url(base, cursors)) as response:
            stream = EventReader(response)
            assert response.headers["content-type"].startswith("text/event-stream")
            first = stream.until(lambda events: any(n == "update" for n, _ in events))
            assert first[0][0] == "runs"
            assert [run["name"] for run in first[0][1]["runs"]] == ["alpha", "beta"]
            opening = updates(first, "beta")[0]
            assert "steps" not in opening and "epochs" not in opening
            assert opening["status"] == {"status": "running", "message": None}

            written = time.monotonic()
            with RunStore.open(runs_root / "beta") as store:
                for step in (10, 11, 12):
                    store.log_step(step, 2, loss=0.5, lr=0.001)
                store.log_layer_stats(10, [("head", "grad_norm", 0.01), ("x.act1", "act_std", 1)])
                store.log_histograms(10, HISTOGRAM_EDGES, {"head": [1.0] * 40})
                store.event("alert", "exploding", step=10, epoch=2, rule="exploding", layer="head")
                store.log_epoch(2, train_loss=0.4, val_dice=0.8)
                store.log_watch(2, 0, "prediction", picture("prediction", 0, 2), dice=0.8)
                store.set_status("finished", "done")

            def complete(events: list) -> bool:
                got = updates(events, "beta")
                return any(u.get("status", {}).get("status") == "finished" for u in got) and any(
                    "watch" in u for u in got
                )

            events = stream.until(complete)
            arrived = time.monotonic()
            got = updates(events, "beta")
            steps = [s for u in got if "steps" in u for s in u["steps"]["step"]]
            assert steps == [10, 11, 12]
            assert [e for u in got if "epochs" in u for e in u["epochs"]["epoch"]] == [2]
            layers = [u["layers"] for u in got if "layers" in u]
            assert any(m.get("grad_norm", {}).get("steps") == [10] for m in layers)
            grad = next(m["grad_norm"] for m in layers if "grad_norm" in m)
            assert grad["layers"] == ["head"] and grad["by_layer"] == [[0.01]]
            hist = next(u["histograms"] for u in got if "histograms" in u)
            assert hist["layers"]["head"]["steps"] == [10] and hist["edges"] == HISTOGRAM_EDGES
            alerts = [e for u in got if "events" in u for e in u["events"]]
            assert [e["data"]["rule"] for e in alerts] == ["exploding"]
            frames = [f for u in got if "watch" in u for f in u["watch"]]
            assert [(f["epoch"], f["slice"], f["kind"]) for f in frames] == [(2, 0, "prediction")]
            assert arrived - written < 2.0

            (runs_root / "gamma").mkdir()
            write_run(runs_root / "gamma", epochs=1, steps_per_epoch=2)
            events = stream.until(
                lambda events: any(
                    n == "runs" and "gamma" in [r["name"] for r in d["runs"]] for n, d in events
                ),
            )

            shutil.rmtree(runs_root / "beta")
            events = stream.until(lambda events: any(n == "problem" for n, _ in events))
            problem = next(d for n, d in events if n == "problem")
            assert problem["run"] == "beta" and "beta" in problem["error"]


def test_stream_finishes_a_step_whose_layer_rows_came_in_two_writes(runs_root: Path) -> None:
    app = create_app(runs_root, poll_s=0.1, ping_s=0.3)
    cursors = {"beta": {"step": 9, "layer": 5}}
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        with http.stream("GET", stream_url(base, cursors)) as response:
            stream = EventReader(response)
            stream.until(lambda events: bool(updates(events, "beta")))
            with RunStore.open(runs_root / "beta") as store:
                store.log_layer_stats(20, [("head", "grad_norm", 0.5)])
                time.sleep(0.4)
                store.log_layer_stats(20, [("x.act1", "act_mean", 0.25)])

            def both(events: list) -> bool:
                stats = {s for u in updates(events, "beta") for s in u.get("layers", {})}
                return {"grad_norm", "act_mean"} <= stats

            events = stream.until(both)
            sent = [
                (s, m["steps"]) for u in updates(events, "beta") for s, m in u["layers"].items()
            ]
            assert sorted(sent) == [("act_mean", [20]), ("grad_norm", [20])]


def test_stream_on_a_resumed_run_asks_the_page_to_reload_it(runs_root: Path) -> None:
    app = create_app(runs_root, poll_s=0.1, ping_s=0.3)
    cursors = {"beta": {"step": 9, "event": 0}}
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        with http.stream("GET", stream_url(base, cursors)) as response:
            stream = EventReader(response)
            stream.until(lambda events: bool(updates(events, "beta")))
            with RunStore.open(runs_root / "beta") as store:
                store.truncate_after(5, 0)
            events = stream.until(lambda events: any(n == "reset" for n, _ in events))
            reset = next(d for n, d in events if n == "reset")
            assert reset["run"] == "beta" and "resumed" in reset["reason"]


def test_stream_needs_the_token_and_bad_cursors_are_refused(runs_root: Path) -> None:
    app = create_app(runs_root, token=TOKEN, poll_s=0.1, ping_s=0.3)
    with serve_in_thread(app) as base, httpx.Client(timeout=10) as http:
        assert http.get(f"{base}/api/stream").status_code == 401
        bad = http.get(f"{base}/api/stream", params={"token": TOKEN, "from": "[1]"})
        assert bad.status_code == 400 and "cursors" in bad.json()["error"]
        url = f"{stream_url(base, {'nope': {}})}&token={TOKEN}"
        with http.stream("GET", url) as response:
            stream = EventReader(response)
            events = stream.until(lambda events: any(n == "problem" for n, _ in events))
            assert next(d for n, d in events if n == "problem")["run"] == "nope"


# ------------------------------------------------------------------------------- command, launcher


def run_lvseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvseg", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_dashboard_command_refuses_a_missing_folder_and_a_folder_without_runs(
    tmp_path: Path,
) -> None:
    assert_one_line_error(run_lvseg("dashboard", str(tmp_path / "missing")), "no such run")
    assert_one_line_error(run_lvseg("dashboard", str(tmp_path)), "no runs here")


def test_dashboard_command_refuses_a_port_in_use(runs_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_one_line_error(run_lvseg("dashboard", str(runs_root), "--port", port), "in use")


def test_dashboard_modules_never_import_torch(runs_root: Path) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import lvseg.dashboard\n"
        "import lvseg.dashboard.readers\n"
        "import lvseg.dashboard.launch\n"
        "from lvseg.dashboard.server import create_app\n"
        f"client = TestClient(create_app({str(runs_root)!r}), base_url='http://127.0.0.1')\n"
        "assert client.get('/api/runs/alpha').status_code == 200\n"
        "assert client.get('/api/runs/alpha/layers/grad_norm').status_code == 200\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def fetch(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_start_dashboard_serves_from_a_subprocess_until_stopped(runs_root: Path) -> None:
    dashboard = start_dashboard(runs_root)
    try:
        assert dashboard.url == f"http://127.0.0.1:{dashboard.port}/" and dashboard.token is None
        status, body = fetch(f"{dashboard.url}api/runs")
        assert status == 200 and [r["name"] for r in json.loads(body)["runs"]] == ["alpha", "beta"]
    finally:
        dashboard.stop()
    assert dashboard.process.poll() is not None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{dashboard.url}api/health", timeout=2)


def test_start_dashboard_with_a_token_and_on_a_run_not_made_yet(tmp_path: Path) -> None:
    with start_dashboard(tmp_path / "runs" / "later", token=TOKEN) as dashboard:
        assert dashboard.url.endswith(f"/?token={TOKEN}")
        base = dashboard.url.split("?")[0]
        assert fetch(f"{base}api/runs")[0] == 401
        status, body = fetch(f"{base}api/runs", token=TOKEN)
        assert status == 200 and json.loads(body)["runs"] == []
        write_run(tmp_path / "runs" / "later", epochs=1, steps_per_epoch=2)
        time.sleep(1.1)
        status, body = fetch(f"{base}api/runs", token=TOKEN)
        assert [run["name"] for run in json.loads(body)["runs"]] == ["later"]


def test_start_dashboard_reports_a_port_in_use(
    runs_root: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError) as caught:
            start_dashboard(runs_root, port=port, timeout_s=30)
    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 is already in use; choose another with --port"
    )
    assert capsys.readouterr().err == ""  # the server's own error line is not echoed as well


def test_a_port_out_of_range_is_one_line(runs_root: Path) -> None:
    result = run_lvseg("dashboard", str(runs_root), "--port", "70000")
    assert_one_line_error(result, "port 70000 is not a port number (0 to 65535); choose one")
