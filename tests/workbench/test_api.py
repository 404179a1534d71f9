"""The workbench's JSON API and its safety rules, through FastAPI's TestClient (no runner, no
training): a change needs the token or a same-origin session with its CSRF token, another
origin changes nothing, paths stay inside the roots, and the queue outlives the app."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.guard import session_cookie
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.workspace import Workspace

BASE = "http://127.0.0.1:8765"
TOKEN = "a-workbench-token-of-some-length"
TRAIN = {"kind": "train", "args": {"data": "phantom", "epochs": 2}}


def client(space, queue, token=None):
    return TestClient(create_workbench_app(space, queue, token=token), base_url=BASE)


def session(http):
    """Load the page: the cookie is set on the client; the CSRF token is in the page."""
    page = http.get("/")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


# -- who may change what


def test_a_post_without_token_or_session_is_refused(space, queue):
    http = client(space, queue, TOKEN)
    # The token in the URL lets it through the dashboard's guard, not as a change's credential.
    answer = http.post(f"/api/jobs?token={TOKEN}", json=TRAIN)
    assert answer.status_code == 403
    assert queue.list_jobs() == []
    assert client(space, queue).post("/api/jobs", json=TRAIN).status_code == 403
    assert queue.list_jobs() == []


def test_a_session_without_its_csrf_header_is_refused(space, queue):
    http = client(space, queue)
    csrf = session(http)
    answer = http.post("/api/jobs", json=TRAIN, headers={"Origin": BASE})
    assert answer.status_code == 403
    wrong = http.post("/api/jobs", json=TRAIN, headers={"Origin": BASE, "X-CSRF-Token": "x" * 32})
    assert wrong.status_code == 403
    no_origin = http.post("/api/jobs", json=TRAIN, headers={"X-CSRF-Token": csrf})
    assert no_origin.status_code == 403
    assert queue.list_jobs() == []


def test_a_session_with_csrf_and_origin_queues(space, queue):
    http = client(space, queue)
    csrf = session(http)
    answer = http.post("/api/jobs", json=TRAIN, headers={"Origin": BASE, "X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    assert [job.state for job in queue.list_jobs()] == ["queued"]
    # A Referer of this server stands for a missing Origin.
    referer = {"Referer": BASE + "/", "X-CSRF-Token": csrf}
    assert http.post("/api/jobs", json=TRAIN, headers=referer).status_code == 201


@pytest.mark.parametrize("token", [None, TOKEN])
def test_another_origin_is_refused_whatever_it_carries(space, queue, token):
    http = client(space, queue, token)
    csrf = session(http) if token is None else None
    headers = {"Origin": "http://evil.example", **(bearer() if token else {"X-CSRF-Token": csrf})}
    assert http.post("/api/jobs", json=TRAIN, headers=headers).status_code == 403
    # Another port of this very machine is another origin too.
    headers["Origin"] = "http://127.0.0.1:9999"
    assert http.post("/api/jobs", json=TRAIN, headers=headers).status_code == 403
    assert queue.list_jobs() == []


def test_the_token_queues_a_job(space, queue):
    http = client(space, queue, TOKEN)
    answer = http.post("/api/jobs", json=TRAIN, headers=bearer())
    assert answer.status_code == 201
    job = answer.json()
    assert job["state"] == "queued" and job["args"] == TRAIN["args"] and job["run"] == "job-0001"
    assert http.get("/api/jobs", headers=bearer()).json()["jobs"][0]["id"] == job["id"]
    assert http.get("/api/jobs").status_code == 401  # a token set: any request needs it
    assert http.post("/api/jobs", json=TRAIN, headers=bearer("w" * 32)).status_code == 403
    assert len(queue.list_jobs()) == 1


def test_a_foreign_host_and_uploads_are_refused(space, queue):
    http = client(space, queue)
    csrf = session(http)
    rebound = TestClient(create_workbench_app(space, queue), base_url="http://evil.example")
    assert rebound.get("/api/jobs").status_code == 403
    upload = http.post(
        "/api/datasets",
        files={"file": ("x.bin", b"data")},
        headers={"Origin": BASE, "X-CSRF-Token": csrf},
    )
    assert upload.status_code == 415


def test_a_refused_stop_or_delete_changes_nothing(space, queue):
    http = client(space, queue)
    csrf = session(http)
    job = queue.submit("train", TRAIN["args"])
    queue.request_stop(job.id)
    resumed = queue.resume(job.id)
    own = {"Origin": BASE, "X-CSRF-Token": csrf}
    for headers in ({"Origin": BASE}, {**own, "Origin": "http://evil.example"}, {}):
        assert http.post(f"/api/jobs/{resumed.id}/stop", headers=headers).status_code == 403
        answer = http.delete(f"/api/jobs/{job.id}?confirm=job-0001", headers=headers)
        assert answer.status_code == 403
    assert [j.state for j in queue.list_jobs()] == ["queued", "stopped"]
    assert http.post(f"/api/jobs/{resumed.id}/stop", headers=own).json()["state"] == "stopped"


# -- jobs


def test_an_unknown_option_or_kind_is_one_line_400(space, queue):
    http = client(space, queue, TOKEN)
    for body in (
        {"kind": "train", "args": {"rm": "-rf"}},
        {"kind": "shell", "args": {}},
        {"kind": "train", "args": {"epochs": "2; reboot"}},
    ):
        answer = http.post("/api/jobs", json=body, headers=bearer())
        assert answer.status_code == 400
        message = answer.json()["error"]
        assert message and "\n" not in message
    assert (
        "unknown option 'rm'"
        in http.post(
            "/api/jobs", json={"kind": "train", "args": {"rm": 1}}, headers=bearer()
        ).json()["error"]
    )
    bad = http.post("/api/jobs", content=b"kind=train", headers=bearer())
    assert bad.status_code == 400
    assert queue.list_jobs() == []


def test_command_log_stop_clone(space, queue):
    http = client(space, queue, TOKEN)
    job = http.post("/api/jobs", json=TRAIN, headers=bearer()).json()
    command = http.get(f"/api/jobs/{job['id']}/command", headers=bearer()).json()
    assert command["command"].startswith(f"{sys.executable} -m lvseg train")
    assert "--epochs=2" in command["argv"] and "--data=phantom" in command["argv"]
    queue.get(job["id"]).log_path.write_text("epoch 1\nepoch 2\n")
    log = http.get(f"/api/jobs/{job['id']}/log?tail=8", headers=bearer()).json()
    assert log["text"] == "epoch 2\n" and log["size"] == 16
    since = http.get(f"/api/jobs/{job['id']}/log?since=8", headers=bearer()).json()
    assert since["text"] == "epoch 2\n"
    clone = http.post(
        f"/api/jobs/{job['id']}/clone", json={"changes": {"epochs": 5}}, headers=bearer()
    )
    assert clone.status_code == 201 and clone.json()["args"]["epochs"] == 5
    stopped = http.post(f"/api/jobs/{job['id']}/stop", headers=bearer())
    assert stopped.json()["state"] == "stopped"
    assert http.get("/api/jobs/99", headers=bearer()).status_code == 404
    assert http.get("/api/jobs/-1", headers=bearer()).status_code == 400


def test_delete_needs_the_run_folders_name(space, queue):
    http = client(space, queue, TOKEN)
    job = http.post("/api/jobs", json=TRAIN, headers=bearer()).json()
    http.post(f"/api/jobs/{job['id']}/stop", headers=bearer())
    run = space.runs / job["run"]
    run.mkdir()
    (run / "run.db").write_bytes(b"")
    data = space.datasets / "mine"
    data.mkdir()
    for confirm in ("", "?confirm=job-0002", "?confirm=../job-0001"):
        answer = http.delete(f"/api/jobs/{job['id']}{confirm}", headers=bearer())
        assert answer.status_code == 400
        assert run.exists() and len(queue.list_jobs()) == 1
    answer = http.delete(f"/api/jobs/{job['id']}?confirm=job-0001", headers=bearer())
    assert answer.status_code == 200 and answer.json() == {"deleted": [job["id"]]}
    assert not run.exists() and data.exists() and space.runs.exists()
    assert queue.list_jobs() == []


# -- datasets


def test_datasets_inside_the_roots_only(space, queue, tmp_path):
    http = client(space, queue, TOKEN)
    (space.datasets / "sunnybrook").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (space.datasets / "link-out").symlink_to(outside)
    for path in ("../elsewhere", str(outside), "/etc", "datasets/link-out", "datasets/../../"):
        answer = http.post("/api/datasets", json={"path": path}, headers=bearer())
        assert answer.status_code == 400, path
        assert "\n" not in answer.json()["error"]
    # Nothing registered; the workspace's own folder is offered, the symlink out is not.
    offered = http.get("/api/datasets", headers=bearer()).json()["datasets"]
    assert [(d["name"], d["registered"]) for d in offered] == [("sunnybrook", False)]
    answer = http.post("/api/datasets", json={"path": "datasets/sunnybrook"}, headers=bearer())
    assert answer.status_code == 201
    assert answer.json()["name"] == "sunnybrook"
    again = http.post("/api/datasets", json={"path": "datasets/sunnybrook"}, headers=bearer())
    assert again.status_code == 200
    listed = http.get("/api/datasets", headers=bearer()).json()["datasets"]
    folder = str((space.datasets / "sunnybrook").resolve())
    assert [(d["path"], d["registered"]) for d in listed] == [(folder, True)]


def test_an_allowed_root_may_be_registered(tmp_path):
    allowed = tmp_path / "scans"
    (allowed / "study").mkdir(parents=True)
    space = Workspace.open(tmp_path / "ws", allowed=[allowed])
    with JobQueue.open(space) as queue:
        http = client(space, queue, TOKEN)
        path = str(allowed / "study")
        assert http.post("/api/datasets", json={"path": path}, headers=bearer()).status_code == 201


# -- a restart


def test_the_queue_survives_a_restart(tmp_path):
    root = tmp_path / "ws"
    space = Workspace.open(root)
    queue = JobQueue.open(space)
    http = client(space, queue, TOKEN)
    first = http.post("/api/jobs", json=TRAIN, headers=bearer()).json()
    second = http.post("/api/jobs", json=TRAIN, headers=bearer()).json()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    queue.mark_running(second["id"], dead.pid)  # as if its server died with it
    del http
    queue.close()

    space = Workspace.open(root)
    with JobQueue.open(space) as queue:
        http = client(space, queue, TOKEN)
        jobs = {job["id"]: job for job in http.get("/api/jobs", headers=bearer()).json()["jobs"]}
        assert jobs[first["id"]]["state"] == "queued"
        assert jobs[second["id"]]["state"] == "interrupted"
        resumed = http.post(f"/api/jobs/{second['id']}/resume", headers=bearer())
        assert resumed.status_code == 201
        assert resumed.json()["state"] == "queued"
        assert resumed.json()["run_dir"] == second["run_dir"]
        assert len(queue.list_jobs("queued")) == 2


def test_a_change_wakes_the_runner(space, queue):
    class Runner:
        woken = 0

        def wake(self):
            self.woken += 1

    runner = Runner()
    http = TestClient(create_workbench_app(space, queue, runner, TOKEN), base_url=BASE)
    http.post("/api/jobs", json=TRAIN, headers=bearer())
    http.get("/api/jobs", headers=bearer())
    assert runner.woken == 1


def test_the_session_cookie_is_named(space, queue):
    http = client(space, queue)
    session(http)
    assert http.cookies.get(session_cookie(None))


def test_the_session_cookie_names_the_port(space, queue):
    """Two workbenches on one machine (one cookie jar per host) keep their own sessions."""
    assert session_cookie(8766) == "lvseg_workbench_session_8766"
    one = TestClient(create_workbench_app(space, queue, port=8766), base_url=BASE)
    other = TestClient(create_workbench_app(space, queue, port=8767), base_url=BASE)
    csrf = session(one)
    assert set(one.cookies) == {"lvseg_workbench_session_8766"}
    session(other)
    assert set(other.cookies) == {"lvseg_workbench_session_8767"}
    # This server reads its own cookie only: its session under the other's name is none.
    value = one.cookies["lvseg_workbench_session_8766"]
    headers = {"X-CSRF-Token": csrf, "Origin": BASE}
    bare = TestClient(one.app, base_url=BASE)
    misnamed = {"Cookie": f"lvseg_workbench_session_8767={value}"}
    assert bare.post("/api/jobs", json=TRAIN, headers=headers | misnamed).status_code == 403
    named = {"Cookie": f"lvseg_workbench_session_8766={value}"}
    accepted = bare.post("/api/jobs", json=TRAIN, headers=headers | named)
    assert accepted.status_code == 201
