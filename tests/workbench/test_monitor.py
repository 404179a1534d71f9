"""The live monitor inside the workbench: the dashboard over the workspace's runs/, mounted at
/monitor/. Its page, modules, JSON API and live stream answer under the prefix with the token
and are refused without it; a session client (no token) reads it; the workbench's own guards
still apply; and it may be framed by the workbench only."""

from __future__ import annotations

import json
import shutil
import threading
import time
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from lvseg.dashboard.launch import bind, uvicorn_server
from lvseg.dashboard.server import create_app
from lvseg.workbench.api import create_workbench_app

BASE = "http://127.0.0.1:8765"
TOKEN = "a-workbench-token-of-some-length"
RUN = "tiny"


@pytest.fixture
def space(space, tiny_run):
    # A copy, not a symlink: a run folder that resolves outside runs/ is not served.
    shutil.copytree(tiny_run, space.runs / RUN)
    return space


def client(space, queue, token=None):
    return TestClient(create_workbench_app(space, queue, token=token), base_url=BASE)


def test_the_monitor_answers_under_its_prefix_with_the_token(space, queue):
    http = client(space, queue, TOKEN)
    page = http.get(f"/monitor/?token={TOKEN}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>lvseg dashboard</title>" in page.text
    # the page's own files carry the token (its relative URLs resolve under /monitor/)
    assert f'src="static/app.js?token={TOKEN}"' in page.text
    module = http.get(f"/monitor/static/app.js?token={TOKEN}")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert f"from './state.js?token={TOKEN}'" in module.text
    runs = http.get(f"/monitor/api/runs?token={TOKEN}")
    assert runs.status_code == 200
    assert runs.json()["target"] == str(space.runs)
    assert [(run["name"], run["status"], run["epochs"]) for run in runs.json()["runs"]] == [
        (RUN, "finished", 2)
    ]
    steps = http.get(f"/monitor/api/runs/{RUN}/epochs?token={TOKEN}").json()["columns"]
    assert steps["epoch"] == [1, 2]


@pytest.mark.parametrize("path", ["/monitor/", "/monitor/static/app.js", "/monitor/api/runs"])
def test_the_monitor_is_refused_without_the_token(space, queue, path):
    http = client(space, queue, TOKEN)
    assert http.get(path).status_code == 401
    assert http.get(f"{path}?token=not-the-workbench-token").status_code == 403
    # an API refusal is one line of JSON under the prefix too
    if "/api/" in path:
        assert http.get(path).json()["error"].startswith("this dashboard needs its token")


def test_monitor_without_slash_redirects_keeping_the_query(space, queue):
    http = client(space, queue, TOKEN)
    answer = http.get(f"/monitor?run={RUN}&token={TOKEN}", follow_redirects=False)
    assert answer.status_code in (307, 308)
    assert answer.headers["location"] == f"{BASE}/monitor/?run={RUN}&token={TOKEN}"


def test_a_session_client_reads_the_monitor(space, queue):
    http = client(space, queue)
    assert http.get("/").status_code == 200  # the session cookie
    assert http.get("/monitor/").status_code == 200
    assert http.get("/monitor/static/state.js").status_code == 200
    assert [run["name"] for run in http.get("/monitor/api/runs").json()["runs"]] == [RUN]
    # without a token only loopback names are answered, under the prefix as elsewhere
    assert http.get("/monitor/api/runs", headers={"Host": "evil.example"}).status_code == 403


def test_the_workbench_guards_apply_to_the_monitor(space, queue):
    http = client(space, queue)
    http.get("/")
    # a change needs the CSRF token, under /monitor/ too (refused before the dashboard's 405)
    assert http.post("/monitor/api/runs", headers={"Origin": BASE}).status_code == 403
    # another site's page learns nothing
    assert (
        http.get("/monitor/api/runs", headers={"Origin": "http://evil.example"}).status_code == 403
    )


def _frame_ancestors(response) -> set[str]:
    policies = response.headers.get_list("content-security-policy")
    assert policies
    return {policy.rsplit("frame-ancestors", 1)[1].strip() for policy in policies}


def test_the_monitor_may_be_framed_by_the_workbench_only(space, queue, tmp_path):
    http = client(space, queue, TOKEN)
    assert _frame_ancestors(http.get(f"/monitor/?token={TOKEN}")) == {"'self'"}
    assert _frame_ancestors(http.get(f"/?token={TOKEN}")) == {"'self'"}
    # the dashboard on its own still refuses every frame
    alone = TestClient(create_app(space.runs), base_url="http://127.0.0.1")
    assert _frame_ancestors(alone.get("/")) == {"'none'"}


def test_the_live_stream_answers_under_the_prefix(space, queue):
    app = create_workbench_app(space, queue, token=TOKEN)
    listener = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        cursors = quote(json.dumps({RUN: {}}))
        url = f"{base}/monitor/api/stream?from={cursors}&token={TOKEN}"
        events, name = [], None
        with httpx.Client(timeout=10) as http, http.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            deadline = time.monotonic() + 10
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: ") :])))
                if any(n == "update" for n, _ in events) or time.monotonic() > deadline:
                    break
        update = next(data for n, data in events if n == "update")
        assert update["run"] == RUN and update["epochs"]["epoch"] == [1, 2]
        assert httpx.get(f"{base}/monitor/api/stream").status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)
