"""The operator's endpoint (/metrics, /healthz), `mombot health`, and JSON logs."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.cli import main, setup_logging
from bot.config import HttpConfig, MombotConfig
from bot.status_server import StatusServer
from brain.brain import Brain
from brain.config import GpuConfig, QueueConfig
from brain.images.gpu import GpuMonitor
from brain.images.queue import ImageQueue
from brain.messages import Inbound
from brain.redaction import register_secret
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.helpers import FakeNvml, RecordingOutbox, SlowBackend, close_brain
from tests.load import fake_brain


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from the Prometheus text format."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Brain, str, FakeOpenAIServer]]:
    server = FakeOpenAIServer(behaviour=Behaviour(reply="four words of answer")).start()
    (tmp_path / "db").mkdir()
    brain = fake_brain(server, f"sqlite:///{tmp_path / 'db' / 'history.db'}")
    status = StatusServer(brain, HttpConfig(enabled=True, port=0))
    await status.start()
    yield brain, f"http://127.0.0.1:{status.port}", server
    await status.close()
    await close_brain(brain)
    server.stop()


async def test_metrics_count_replies_errors_and_tokens(
    served: tuple[Brain, str, FakeOpenAIServer],
) -> None:
    brain, url, _ = served
    await brain.handle(Inbound("t", "c", "u", "ann", "hello"), RecordingOutbox())
    await brain.handle(Inbound("t", "c", "u", "ann", "/sd"), RecordingOutbox())  # usage error
    await brain.handle(Inbound("t", "c", "u", "ann", "/nosuchcommand"), RecordingOutbox())
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("mombot_reply_seconds_count", (("kind", "chat"),))] == 1
    assert found[("mombot_reply_seconds_count", (("kind", "sd"),))] == 1
    assert found[("mombot_reply_seconds_count", (("kind", "unknown command"),))] == 1
    assert found[("mombot_errors_total", (("kind", "BadCommand"),))] == 2
    usage = brain.tracker.per_model()["fake"]
    assert (
        found[("mombot_tokens_total", (("kind", "completion"), ("model", "fake")))]
        == usage.completion_tokens
        > 0
    )
    assert found[("mombot_model_calls_total", (("model", "fake"),))] == usage.calls == 1
    assert found[("mombot_tokens_per_second", (("model", "fake"),))] == pytest.approx(
        usage.tokens_per_s
    )
    assert not any(name.startswith("mombot_gpu") for name, _ in found)  # no GPU here: no series


async def test_metrics_show_the_image_queue_and_gpu_temperatures(tmp_path: Path) -> None:
    server = FakeOpenAIServer().start()
    brain = fake_brain(
        server,
        f"sqlite:///{tmp_path / 'history.db'}",
        gpu=GpuMonitor(GpuConfig(), nvml=FakeNvml([[61], [83]])),
        image_generator=ImageQueue(SlowBackend(), QueueConfig()),
    )
    status = StatusServer(brain, HttpConfig(enabled=True, port=0))
    await status.start()
    try:
        async with httpx.AsyncClient() as http:
            found = samples((await http.get(f"http://127.0.0.1:{status.port}/metrics")).text)
    finally:
        await status.close()
        await close_brain(brain)
        server.stop()
    assert found[("mombot_image_queue_length", ())] == 0
    assert found[("mombot_gpu_temperature_celsius", (("gpu", "0 NVIDIA Test GPU"),))] == 61
    assert found[("mombot_gpu_temperature_celsius", (("gpu", "1 NVIDIA Test GPU"),))] == 83


async def test_healthz_says_ok_then_503_without_database_or_when_stopping(
    served: tuple[Brain, str, FakeOpenAIServer],
    tmp_path: Path,
) -> None:
    brain, url, _ = served
    async with httpx.AsyncClient() as http:
        ok = await http.get(f"{url}/healthz")
        assert (ok.status_code, ok.json()) == (200, {"status": "ok"})

        brain.history.close()  # drop pooled connections, then take the database away
        shutil.rmtree(tmp_path / "db")
        broken = await http.get(f"{url}/healthz")
        assert (broken.status_code, broken.json()) == (503, {"status": "database unavailable"})

        await brain.shutdown(grace_s=0)
        stopping = await http.get(f"{url}/healthz")
        assert (stopping.status_code, stopping.json()) == (503, {"status": "shutting down"})


def test_mombot_health_is_the_container_health_check(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    off = tmp_path / "off.toml"
    off.write_text(f'[bot]\ndata_dir = "{tmp_path}"\n')
    assert main(["--config", str(off), "health"]) == 1
    assert "the status endpoint is off" in capsys.readouterr().err

    nobody = tmp_path / "nobody.toml"
    from bot.embedded import free_port

    nobody.write_text(
        f'[bot]\ndata_dir = "{tmp_path}"\n[http]\nenabled = true\nport = {free_port()}\n'
    )
    assert main(["--config", str(nobody), "health"]) == 1
    assert "not answering" in capsys.readouterr().err


async def test_mombot_health_reads_a_running_bot(
    served: tuple[Brain, str, FakeOpenAIServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    _, url, _ = served
    config = tmp_path / "up.toml"
    port = url.rsplit(":", 1)[1]
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path}"\n[http]\nenabled = true\nhost = "0.0.0.0"\nport = {port}\n'
    )
    code = await asyncio.to_thread(main, ["--config", str(config), "health"])
    assert code == 0 and '{"status": "ok"}' in capsys.readouterr().out


def test_json_logs_are_one_object_per_line_with_secrets_masked(tmp_path: Path) -> None:
    config = MombotConfig.model_validate({"bot": {"log_format": "json", "data_dir": str(tmp_path)}})
    setup_logging(config, tmp_path, quiet_console=True)
    secret = "sk-very-secret-token-123"
    register_secret(secret)
    log = logging.getLogger("mombot.test")
    log.info("connected with %s", secret)
    try:
        raise RuntimeError(f"the server refused {secret}")
    except RuntimeError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    records = [json.loads(line) for line in (tmp_path / "mombot.log").read_text().splitlines()]
    mine = [r for r in records if r["name"] == "mombot.test"]
    assert [r["message"] for r in mine] == ["connected with [redacted]", "failed"]
    assert mine[0]["levelname"] == "INFO" and "asctime" in mine[0]
    assert "RuntimeError: the server refused [redacted]" in mine[1]["exc_info"]
    assert secret not in (tmp_path / "mombot.log").read_text()
    logging.basicConfig(force=True)  # leave no handler on this test's file behind


def test_text_logs_are_one_record_per_line(tmp_path: Path) -> None:
    """Issue 33 defect 12: a message or traceback with line breaks spanned several lines, and
    tools that read a log line by line split the record."""
    config = MombotConfig.model_validate({"bot": {"data_dir": str(tmp_path)}})
    setup_logging(config, tmp_path, quiet_console=True)
    log = logging.getLogger("mombot.test")
    log.info("migrations:\n0001 first\n0002 second")
    try:
        raise RuntimeError("the server refused")
    except RuntimeError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    mine = [
        line for line in (tmp_path / "mombot.log").read_text().splitlines() if "mombot.test" in line
    ]
    assert len(mine) == 2 and mine[0].endswith(
        "mombot.test: migrations:\\n0001 first\\n0002 second"
    )
    assert "failed\\nTraceback (most recent call last):" in mine[1]
    assert mine[1].endswith("RuntimeError: the server refused")
    logging.basicConfig(force=True)  # leave no handler on this test's file behind


def test_the_cli_takes_config_before_or_after_the_command_and_says_its_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot import __version__
    from bot.cli import build_parser

    parser = build_parser()
    for argv in (["--config", "a.toml", "run"], ["run", "--config", "a.toml"]):
        parsed = parser.parse_args(argv)
        assert (parsed.command, parsed.config) == ("run", Path("a.toml"))
    assert parser.parse_args(["chat"]).config is None
    with pytest.raises(SystemExit) as version:
        parser.parse_args(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.strip() == f"mombot {__version__}"
    assert main([]) == 0
    usage = capsys.readouterr().out
    assert all(
        name in usage for name in ("chat", "run", "check", "health", "--config", "--version")
    )


async def test_stats_reads_the_gpus_off_the_event_loop(tmp_path: Path) -> None:
    """Issue 17 item 12: NVML calls block (a busy driver takes long); /stats makes them in a
    worker thread."""
    import threading

    nvml = FakeNvml([[61]])
    read_on: list[str] = []
    reads = nvml.nvmlDeviceGetTemperature

    def recording(handle: int, sensor: int) -> int:
        read_on.append(threading.current_thread().name)
        return reads(handle, sensor)

    nvml.nvmlDeviceGetTemperature = recording  # type: ignore[method-assign]
    server = FakeOpenAIServer().start()
    brain = fake_brain(
        server, f"sqlite:///{tmp_path / 'history.db'}", gpu=GpuMonitor(GpuConfig(), nvml=nvml)
    )
    try:
        outbox = RecordingOutbox()
        await brain.handle(Inbound("t", "c", "u", "ann", "/stats"), outbox)
        assert "61" in outbox.text and "NVIDIA Test GPU" in outbox.text
        assert read_on and threading.main_thread().name not in read_on
    finally:
        await close_brain(brain)
        server.stop()
