"""The compare, select and deploy routes on real output: a tiny trained run copied into a
workspace, and lvseg select, evaluate and export run on it as queued jobs by the real runner
(once for the module). The routes must answer what the files hold, serve them byte for byte,
and refuse every name that leads out of its folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from lvseg import layout
from lvseg.dashboard.launch import bind, uvicorn_server
from lvseg.workbench.api import create_workbench_app
from lvseg.workbench.deploy import PARITY_MIN_DICE
from lvseg.workbench.queue import JobQueue
from lvseg.workbench.runner import Runner
from lvseg.workbench.workspace import Workspace

BASE = "http://127.0.0.1:8765"
TOKEN = "a-workbench-token-of-some-length"
JOBS = {
    "select": {"runs": ["runs/tiny"], "prefer": "dice"},
    "evaluate": {"model": "runs/tiny", "data": "datasets/tiny", "split": "all", "limit": 4},
    "export": {"model": ["runs/tiny"], "format": "onnx", "int8": True},  # int8: ~1 s more
}


@pytest.fixture(scope="module")
def deployed(tiny_run, tiny_phantom, tmp_path_factory):
    """The workspace, its queue, and the three jobs run to their end (in this order)."""
    space = Workspace.open(tmp_path_factory.mktemp("deploy") / "ws")
    # Copies: a symlink out of runs/ or datasets/ is refused by design.
    shutil.copytree(tiny_run, space.runs / "tiny")
    shutil.copytree(tiny_phantom, space.datasets / "tiny")
    (space.runs / "unselected").mkdir()
    with JobQueue.open(space) as queue:
        jobs = {kind: queue.submit(kind, args) for kind, args in JOBS.items()}
        with Runner(queue) as runner:
            deadline = time.monotonic() + 240
            while any(queue.get(j.id).state in ("queued", "running") for j in jobs.values()):
                assert time.monotonic() < deadline, "the jobs took over 240 s"
                runner.tick()
                time.sleep(0.1)
        yield space, queue, {kind: queue.get(job.id) for kind, job in jobs.items()}


@pytest.fixture(scope="module")
def http(deployed):
    space, queue, _ = deployed
    return TestClient(create_workbench_app(space, queue), base_url=BASE)


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_three_jobs_ran_to_done(deployed):
    _, _, jobs = deployed
    for kind, job in jobs.items():
        log = job.log_path.read_text()
        assert (job.state, job.exit_code) == ("done", 0), f"{kind}: {log[-2000:]}"


# -- selection


def test_a_selection_is_what_selected_json_holds(deployed, http):
    space, _, _ = deployed
    held = _json(space.runs / "tiny" / layout.SELECTED)
    answer = http.get("/api/runs/tiny/selection")
    assert answer.status_code == 200
    assert answer.json() == {**held, "run_name": "tiny"}
    assert answer.json()["reason"].startswith("best validation Dice (")
    assert len(answer.json()["candidates"]) == len(held["candidates"]) >= 1


def test_a_run_without_a_selection_or_unknown_is_404_and_a_bad_name_400(http):
    for path in ("/api/runs/unselected/selection", "/api/runs/nope/selection"):
        answer = http.get(path)
        assert answer.status_code == 404 and "error" in answer.json()
    for name in ("%2e%2e", ".hidden", "..%5Cx"):
        answer = http.get(f"/api/runs/{name}/selection")
        assert answer.status_code == 400, name
        assert set(answer.json()) == {"error"}


# -- evaluations


def test_the_evaluation_list_shows_the_headline_figures_of_metrics_json(deployed, http):
    space, _, jobs = deployed
    job = jobs["evaluate"]
    metrics = _json(job.run_dir / "metrics.json")
    [row] = http.get("/api/evaluations").json()["evaluations"]
    assert (row["name"], row["job"], row["state"]) == (job.run_dir.name, job.id, "done")
    assert row["args"]["model"] == str(space.runs / "tiny")
    assert row["args"]["data"] == str(space.datasets / "tiny")
    assert row["model"] == {"name": "lvnet", "source": metrics["model"]["source"]}
    assert row["data"]["split"] == "all" and row["data"]["path"] == metrics["data"]["path"]
    headline = row["headline"]
    assert headline["dice_mean"] == metrics["summary"]["dice_mean"]
    assert headline["slices"] == metrics["summary"]["slices"] == 4
    patient_means = [p["dice_mean"] for p in metrics["patients"]]
    assert headline["patient_dice_mean"] == pytest.approx(statistics.fmean(patient_means))
    agreement = (metrics.get("clinical") or {}).get("agreement") or {}
    assert row["ef_agreement"] == agreement.get("ef")
    assert row["report"] == "report.html"
    names = {f["name"]: f["size"] for f in row["files"]}
    assert names["metrics.json"] == (job.run_dir / "metrics.json").stat().st_size
    assert any(name.startswith("figures/") for name in names)


def test_an_evaluation_in_full_has_its_patients(deployed, http):
    _, _, jobs = deployed
    folder = jobs["evaluate"].run_dir
    metrics = _json(folder / "metrics.json")
    answer = http.get(f"/api/evaluations/{folder.name}").json()
    assert [p["patient_id"] for p in answer["patients"]] == [
        p["patient_id"] for p in metrics["patients"]
    ]
    assert answer["split_note"] == metrics["data"]["split_note"]


def test_the_evaluation_files_are_served_as_they_are_and_the_report_links_work(deployed, http):
    _, _, jobs = deployed
    folder = jobs["evaluate"].run_dir
    types = {"report.html": "text/html", "slices.csv": "text/csv", "metrics.json": "application"}
    for name, media in types.items():
        answer = http.get(f"/api/evaluations/{folder.name}/files/{name}")
        assert answer.status_code == 200
        assert answer.content == (folder / name).read_bytes()
        assert answer.headers["content-type"].startswith(media)
    url = f"{BASE}/api/evaluations/{folder.name}/files/report.html"
    images = [link for link in _links(http.get(url).text) if link.endswith(".png")]
    assert images
    for link in images:
        answer = http.get(urljoin(url, link))  # as the browser resolves it
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content == (folder / link).read_bytes()


def _links(page: str) -> list[str]:
    return re.findall(r"(?:src|href)='([^']+)'", page)


def test_with_a_token_the_report_links_carry_it(deployed):
    space, queue, jobs = deployed
    http = TestClient(create_workbench_app(space, queue, token=TOKEN), base_url=BASE)
    name = jobs["evaluate"].run_dir.name
    url = f"{BASE}/api/evaluations/{name}/files/report.html?token={TOKEN}"
    links = [link for link in _links(http.get(url).text) if not link.startswith("#")]
    assert links and all(link.endswith(f"?token={TOKEN}") for link in links)
    figure = next(link for link in links if link.startswith("figures/"))
    assert http.get(urljoin(url, figure)).status_code == 200
    assert http.get(urljoin(url, figure.split("?")[0])).status_code == 401  # without it


# -- exports


def test_the_export_list_shows_the_card_headline_and_the_files(deployed, http):
    _, _, jobs = deployed
    job = jobs["export"]
    card = _json(job.run_dir / layout.CARD_JSON)
    [row] = http.get("/api/exports").json()["exports"]
    assert (row["name"], row["job"], row["state"]) == (job.run_dir.name, job.id, "done")
    assert row["model"]["name"] == card["model"]["name"] == "lvnet"
    assert (row["model"]["format"], row["model"]["int8"]) == ("onnx", True)
    assert row["model"]["checkpoint"] == card["model"]["checkpoint"]
    parity = card["export_checks"]["parity"]
    fp32, int8 = row["checks"]
    assert (fp32["variant"], fp32["file"]) == ("onnx fp32", "model.onnx")
    assert (int8["variant"], int8["file"]) == ("onnx int8", "model.int8.onnx")
    assert fp32["mask_dice"] == parity["onnx fp32"]["mask_dice"]
    assert int8["mask_dice"] == parity["onnx int8"]["mask_dice"]
    assert fp32["passed"] is (parity["onnx fp32"]["mask_dice"] >= PARITY_MIN_DICE)
    assert int8["passed"] is True  # measured, never refused
    assert row["checks_passed"] is fp32["passed"]
    on_disk = sorted(
        (p.name, p.stat().st_size) for p in job.run_dir.iterdir() if not p.name.startswith(".")
    )
    assert sorted((f["name"], f["size"]) for f in row["files"]) == on_disk
    assert {"model.onnx", "model.int8.onnx", "model-card.md", "model-card.json"} == {
        name for name, _ in on_disk
    }


def test_an_export_in_full_has_its_model_card(deployed, http):
    _, _, jobs = deployed
    folder = jobs["export"].run_dir
    answer = http.get(f"/api/exports/{folder.name}").json()
    assert answer["card_markdown"] == (folder / layout.CARD_MARKDOWN).read_text()
    assert answer["card"] == _json(folder / layout.CARD_JSON)


def test_an_export_file_downloads_byte_for_byte(deployed, http):
    _, _, jobs = deployed
    folder = jobs["export"].run_dir
    for name in ("model.onnx", "model.int8.onnx", "model-card.md", "model-card.json"):
        answer = http.get(f"/api/exports/{folder.name}/files/{name}")
        assert answer.status_code == 200
        assert answer.content == (folder / name).read_bytes()
        assert answer.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert answer.headers["content-type"] == "application/octet-stream"


def test_the_parity_threshold_is_lvseg_exports(deployed):
    from lvseg.deploy.export import PARITY_MIN_DICE as EXPORTS

    assert PARITY_MIN_DICE == EXPORTS


# -- confinement


def test_unknown_names_are_404(deployed, http):
    _, _, jobs = deployed
    evaluation, export = jobs["evaluate"].run_dir.name, jobs["export"].run_dir.name
    for path in (
        "/api/evaluations/job-9999",
        "/api/evaluations/job-9999/files/report.html",
        f"/api/evaluations/{evaluation}/files/nope.html",
        f"/api/evaluations/{evaluation}/files/figures/nope.png",
        "/api/exports/job-9999",
        f"/api/exports/{export}/files/model.ort",
    ):
        answer = http.get(path)
        assert answer.status_code == 404, path
        assert set(answer.json()) == {"error"}


def test_traversal_and_absolute_paths_are_refused(deployed, http):
    _, _, jobs = deployed
    evaluation, export = jobs["evaluate"].run_dir.name, jobs["export"].run_dir.name
    for path in (
        "/api/evaluations/%2e%2e/files/workbench.db",
        f"/api/evaluations/{evaluation}/files/%2e%2e/%2e%2e/workbench.db",
        f"/api/evaluations/{evaluation}/files/figures/%2e%2e/metrics.json",
        f"/api/evaluations/{evaluation}/files/..%2f..%2fworkbench.db",
        f"/api/evaluations/{evaluation}/files//etc/passwd",
        f"/api/evaluations/{evaluation}/files/%2fetc%2fpasswd",
        f"/api/evaluations/{evaluation}/files/.lvseg-output",
        f"/api/exports/{export}/files/%2e%2e%2f%2e%2e%2fworkbench.db",
        "/api/exports/..%5C..%5Cworkbench.db",
    ):
        answer = http.get(path)
        assert answer.status_code == 400, path
        assert set(answer.json()) == {"error"}


def test_symlinks_out_are_refused(deployed, http, tmp_path):
    space, _, jobs = deployed
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    folder = jobs["evaluate"].run_dir
    links = [
        (folder / "figures" / "leak.png", secret),
        (jobs["export"].run_dir / "leak.onnx", secret),
        (space.evaluations / "outside", tmp_path),
        (space.runs / "outside", tmp_path),
    ]
    (tmp_path / layout.SELECTED).write_text('{"reason": "not yours"}')
    try:
        for link, target in links:
            os.symlink(target, link)
        for path in (
            f"/api/evaluations/{folder.name}/files/figures/leak.png",
            f"/api/exports/{jobs['export'].run_dir.name}/files/leak.onnx",
            "/api/evaluations/outside",
            "/api/evaluations/outside/files/secret.png",
            "/api/runs/outside/selection",
        ):
            answer = http.get(path)
            assert answer.status_code == 400, path
            assert "outside the workspace" in answer.json()["error"]
        listed = [row["name"] for row in http.get("/api/evaluations").json()["evaluations"]]
        assert "outside" not in listed
    finally:
        for link, _ in links:
            link.unlink(missing_ok=True)


def test_a_metrics_json_that_is_a_symlink_out_is_not_read(deployed, http, tmp_path):
    space, _, _ = deployed
    secret = tmp_path / "metrics.json"
    secret.write_text(json.dumps({"summary": {"dice_mean": 0.123}, "model": {"name": "x"}}))
    folder = space.evaluations / "linked"
    folder.mkdir()
    try:
        (folder / "metrics.json").symlink_to(secret)
        answer = http.get("/api/evaluations/linked")
        assert answer.status_code == 200
        assert answer.json()["headline"]["dice_mean"] is None
        assert answer.json()["model"]["name"] is None and answer.json()["files"] == []
        assert http.get("/api/evaluations/linked/files/metrics.json").status_code == 400
    finally:
        shutil.rmtree(folder)


# -- the panel, in a real browser


def test_the_deploy_panel_shows_what_the_jobs_wrote(deployed, browser):
    space, queue, jobs = deployed
    listener = bind("127.0.0.1", 0)
    server = uvicorn_server(create_workbench_app(space, queue, token=TOKEN))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_function("window.lvsegWorkbench && window.lvsegWorkbench.ready")
        for kind in ("select", "evaluate", "export"):
            page.wait_for_selector(f"#{kind}-result:not([hidden])", timeout=20_000)
            assert f" -m lvseg {kind} " in page.text_content(f"#{kind}-command")
        selected = _json(space.runs / "tiny" / layout.SELECTED)
        assert page.text_content("#select-reason") == selected["reason"]
        assert page.text_content("#select-chosen").startswith("tiny: lvnet epoch ")
        metrics = _json(jobs["evaluate"].run_dir / "metrics.json")
        figures = page.inner_text("#evaluate-figures")
        assert f"Dice, mean over slices\t{metrics['summary']['dice_mean']:.4f}" in figures
        report = page.get_attribute("#evaluate-report", "href")
        assert report.endswith(f"/files/report.html?token={TOKEN}")
        folder = jobs["export"].run_dir
        names = page.eval_on_selector_all("#export-files a", "l => l.map(a => a.textContent)")
        assert names == sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert page.text_content("#export-card") == (folder / layout.CARD_MARKDOWN).read_text()
        assert page.text_content("#export-checks").startswith("checks passed: onnx fp32")
        assert page.is_hidden("#problems")
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)
    assert errors == []
