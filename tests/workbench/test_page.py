"""The workbench's page: served with its CSRF meta and session cookie, its static files from a
whitelist; and the whole flow in a real headless Chromium (register a dataset, start a job,
watch it run, stop, resume, delete) against a runner whose jobs are a tiny Python sleeper; and the
Network panel (a model's picture and summary, two models compared) from real ``lvseg model info``.

The browser test needs Debian's ``chromium`` (``scripts/install-browser.sh``) and is skipped
where it is absent; its screenshot is saved to ``test-artifacts/workbench.png``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lvseg.dashboard.launch import bind, uvicorn_server
from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.guard import session_cookie
from lvseg.workbench.page import STATIC_DIR
from lvseg.workbench.runner import Runner

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BASE = "http://127.0.0.1:8766"
MEDIA = {".js": "text/javascript", ".css": "text/css"}
SLEEPER = """
import signal, sys, time
def on_sigint(*_):
    print("got SIGINT, checkpoint saved", flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, on_sigint)
for epoch in range(1, 4):
    print(f"epoch {epoch}/3 loss 0.{9 - epoch}", flush=True)
    time.sleep(0.1)
time.sleep(60)
"""


def _modules(text: str) -> set[str]:
    return set(re.findall(r"from '\./([\w-]+\.js)'", text))


def test_page_has_the_csrf_meta_the_cookie_and_its_static_files(space, queue) -> None:
    with TestClient(create_workbench_app(space, queue), base_url=BASE) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert session_cookie(None) in page.cookies
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert csrf and csrf.group(1) != "{{csrf}}"
        assert "<script>" not in page.text  # the CSP allows no inline script
        names = set(re.findall(r'(?:src|href)="static/([^"?]+)"', page.text))
        pending = set(names)
        while pending:  # the page's files, and every module they import
            name = pending.pop()
            answer = http.get(f"/static/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-type"].startswith(MEDIA[Path(name).suffix]), name
            found = _modules(answer.text) - names
            names |= found
            pending |= found
        assert {"app.js", "api.js", "data.js", "jobs.js", "network.js", "style.css"} <= names
        assert {p.name for p in STATIC_DIR.glob("*.js")} == {n for n in names if n.endswith(".js")}
        for unknown in ("index.html", "nope.js", "..%2Fapi.py", "page.py"):
            assert http.get(f"/static/{unknown}").status_code == 404, unknown


def test_page_passes_the_token_to_its_files(space, queue) -> None:
    token = "t" * 32
    with TestClient(create_workbench_app(space, queue, token=token), base_url=BASE) as http:
        page = http.get(f"/?token={token}")
        assert page.status_code == 200
        assert f'src="static/app.js?token={token}"' in page.text
        app = http.get(f"/static/app.js?token={token}")
        assert f"from './jobs.js?token={token}'" in app.text
        assert http.get("/static/app.js").status_code == 401


# -- the real browser


class Served:
    """The app in-process: uvicorn on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        listener = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listener]}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def _browsing(browser, app, runner: Runner | None = None) -> Iterator[tuple[Any, str]]:
    """A browser page and the URL of ``app`` served in-process; on leaving, the page, the
    runner and the server are closed, and no page error may have happened."""
    served = Served(app)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page, served.url
    finally:
        page.close()
        if runner is not None:
            runner.close(timeout_s=10)
        served.close()
    assert errors == []


def test_the_workbench_in_a_browser(browser, space, queue, tmp_path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    runner = Runner(queue, argv_for=lambda job: [sys.executable, str(script)], poll_s=0.2)
    folder = space.datasets / "scans"
    folder.mkdir()
    with _browsing(browser, create_workbench_app(space, queue, runner), runner) as (page, url):
        _drive(page, url, folder, runner)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "workbench.png"), full_page=True)
        _stop_and_delete(page)


def test_the_network_panel_in_a_browser(browser, space, queue) -> None:
    token = "n" * 32  # with a token: the picture's URL must carry it
    with _browsing(browser, create_workbench_app(space, queue, token=token)) as (page, url):
        page.goto(f"{url}?token={token}")
        page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
        assert page.input_value("#network-model") == "lvnet"
        page.click("#network-form button[type=submit]")
        page.wait_for_function(
            "document.getElementById('network-picture').complete"
            " && document.getElementById('network-picture').naturalWidth > 0",
            timeout=120_000,
        )
        assert "231,716 parameters" in page.text_content("#network-summary")
        assert f"token={token}" in page.get_attribute("#network-picture", "src")
        page.select_option("#compare-a", "lvnet")
        page.select_option("#compare-b", "dli-fcn")
        page.click("#compare-form button[type=submit]")
        page.wait_for_function(
            "document.querySelectorAll('#compare tbody tr').length === 2", timeout=120_000
        )
        models = page.eval_on_selector_all(
            "#compare tbody tr td:first-child", "c => c.map(td => td.textContent)"
        )
        assert models == ["lvnet", "dli-fcn"]
        assert page.is_hidden("#problems")


def test_a_failed_job_says_why_in_a_browser(browser, space, queue, tmp_path) -> None:
    """A job that fails shows lvseg's one-line error (the end of its log) on its page and on
    its badge in the list, without opening the log."""
    script = tmp_path / "fails.py"
    script.write_text("import sys; print('loading'); sys.exit('error: s.json: not a split')")
    runner = Runner(queue, argv_for=lambda job: [sys.executable, str(script)], poll_s=0.2)
    with _browsing(browser, create_workbench_app(space, queue, runner), runner) as (page, url):
        page.goto(url)
        page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
        page.click("#job-form button[type=submit]")  # the phantom, lvseg's defaults
        runner.start()
        _state(page, "failed")
        page.wait_for_selector("#job-reason:not([hidden])")
        assert page.text_content("#job-reason") == "error: s.json: not a split"
        badge = "#jobs tbody tr[data-job='1'] .badge.failed"
        assert page.get_attribute(badge, "title") == "error: s.json: not a split"


def test_a_dataset_s_inspection_in_a_browser(browser, space, queue) -> None:
    """Clicking a dataset of the workspace's datasets/ (not registered: offered) shows its real
    lvseg data inspect counts, its montage and its plan, with the commands they ran."""
    from lvseg.data.phantom import write_phantom

    write_phantom(space.datasets / "tiny", patients=2, seed=0, downscale=4)
    with _browsing(browser, create_workbench_app(space, queue)) as (page, url):
        page.goto(url)
        page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
        page.click("#datasets tbody tr[data-dataset='tiny']")
        page.wait_for_function(
            "document.getElementById('plan-command').textContent !== ''", timeout=60_000
        )
        page.wait_for_function(
            "document.getElementById('dataset-montage').naturalWidth > 0", timeout=30_000
        )
        counts = page.inner_text("#dataset-counts")
        assert "patients\t2" in counts and "HF-I 1, N 1" in counts, counts
        assert page.text_content("#inspect-command").startswith("lvseg data inspect ")
        assert page.text_content("#plan-command").startswith("lvseg data plan ")
        assert page.is_hidden("#problems")


def _state(page, state: str) -> None:
    page.wait_for_function(
        f"document.getElementById('job-state').textContent === '{state}'", timeout=15_000
    )


def _drive(page, url: str, folder: Path, runner: Runner) -> None:
    page.goto(url)
    page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
    page.fill("#data-path", str(folder))
    page.click("#data-form button[type=submit]")
    page.wait_for_selector("#datasets tbody td:text-is('scans')")
    assert page.input_value("#job-data") == str(folder)
    page.select_option("#job-model", "unet")
    page.fill("#job-epochs", "2")
    page.fill("#job-lr", "0.001")
    page.click("#job-form button[type=submit]")
    _state(page, "queued")  # the runner is not started yet: it stays queued
    assert page.is_visible("#jobs tbody tr[data-job='1'] .badge.queued")
    runner.start()
    _state(page, "running")
    page.wait_for_function("document.getElementById('job-log').textContent.includes('epoch 3/3')")
    command = page.text_content("#job-command")
    assert " -m lvseg train " in command and "--model=unet" in command, command
    assert "--epochs=2" in command and f"--data={folder}" in command, command


def _stop_and_delete(page) -> None:
    page.click("#job-stop")
    _state(page, "stopped")
    page.wait_for_function("document.getElementById('job-log').textContent.includes('SIGINT')")
    run = page.text_content("#job-run")
    page.click("#job-resume")
    page.wait_for_selector("#jobs tbody tr[data-job='2']")
    _state(page, "running")
    assert page.text_content("#job-run") == run  # the resume continues the same run folder
    page.click("#job-stop")
    _state(page, "stopped")
    page.fill("#delete-confirm", "wrong")
    page.click("#job-delete")
    page.wait_for_function("!document.getElementById('problems').hidden")
    assert "confirm" in page.text_content("#problems")
    page.fill("#delete-confirm", run)
    page.click("#job-delete")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 0")
    assert page.is_hidden("#job-detail")
    assert page.is_hidden("#problems")
