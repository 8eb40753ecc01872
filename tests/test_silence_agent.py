"""Silences from the command line against a real agent: a silence written before the agent ever
opened the database mutes from the start; one added or expired while it runs takes effect at a
real webhook receiver within seconds, without a restart. Two agents on one database: the second
refuses to start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.agentproc import AgentProcess, Event, run_cli, write_config
from tests.support_receivers import WEBHOOK_SECRET, SignedWebhookReceiver, always_firing_toml

QUIET = 4.0  # seconds without a notification that show the mute (four repeat intervals)


def _config(tmp_path: Path, hook_url: str) -> Path:
    # repeat_interval 1s re-notifies the firing alert every second unless it is silenced.
    return write_config(
        tmp_path,
        always_firing_toml(
            hook_url,
            agent="shutdown_deadline = 3",
            alerting="group_interval = 1\nrepeat_interval = 1",
        ),
    )


async def _cli(config: Path, *args: str) -> str:
    code, out, err = await run_cli("silence", *args, "-c", str(config))
    assert code == 0, err
    return out.strip()


def _loaded(ids: list[str]) -> Callable[[Event], bool]:
    return lambda e: e.get("ids") == ids


async def _no_notification_for(hook: SignedWebhookReceiver, seconds: float) -> None:
    """Assert the receiver gets nothing more for `seconds` (a bounded wait for what must not
    happen; every repeat interval within it would have sent one)."""
    count = len(hook.requests)
    try:
        await asyncio.wait_for(hook.wait_until(lambda r: len(r.requests) > count), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"notified while silenced: {hook.requests[-1].json['alerts'][0]}")


async def _more_than(hook: SignedWebhookReceiver, count: int) -> None:
    await hook.wait_until(lambda r: len(r.requests) > count)


async def test_cli_silences_mute_and_unmute_a_running_agent(tmp_path: Path) -> None:
    hook = SignedWebhookReceiver(WEBHOOK_SECRET)
    await hook.start()
    config = _config(tmp_path, hook.url)
    matcher = 'alertname="memory_in_use"'
    # Written before any agent opened the (not yet existing) database.
    first = await _cli(config, "add", matcher, "--for", "1h", "--comment", "deploy")
    assert (tmp_path / "agent.db").exists()
    agent = await AgentProcess(config).start()
    try:
        await agent.wait_for("alert.silences_loaded", _loaded([first]))
        await agent.wait_for("alert.state", lambda e: e.get("state") == "firing")
        await _no_notification_for(hook, QUIET)
        assert hook.requests == []

        # Expired from the CLI while the agent runs: the firing alert is notified.
        assert await _cli(config, "expire", first) == f"{first} expired"
        await agent.wait_for("alert.silences_loaded", _loaded([]))
        await asyncio.wait_for(hook.wait_until(lambda r: len(r.accepted()) >= 1), 20)
        # Notified again every repeat interval while nothing mutes it.
        await asyncio.wait_for(hook.wait_until(lambda r: len(r.accepted()) >= 2), 20)

        # A new silence from the CLI: at most the notification already on its way, then none.
        second = await _cli(config, "add", matcher, "--for", "1h")
        await agent.wait_for("alert.silences_loaded", _loaded([second]))
        # Notifications already in the outbox when the silence loaded may still arrive (one a
        # second at most): wait for a 1.5 s lull, then count from there.
        for _ in range(3):
            try:
                await asyncio.wait_for(_more_than(hook, len(hook.requests)), 1.5)
            except TimeoutError:
                break
        muted_at = len(hook.requests)
        await _no_notification_for(hook, QUIET)
        assert len(hook.requests) == muted_at

        # Expiring it lets the next repeat through.
        await _cli(config, "expire", second[:8])
        await agent.wait_for("alert.silences_loaded", _loaded([]), count=2)
        await asyncio.wait_for(hook.wait_until(lambda r: len(r.accepted()) > muted_at), 20)
    finally:
        code = await agent.stop()
        await hook.stop()
    assert code == 0, agent.stderr
    assert hook.bad_signatures == 0
    assert all(r.json["status"] == "firing" for r in hook.accepted())
    assert not agent.named("alert.silences_unreadable")


async def test_a_second_agent_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[host]\ninterval = 60\nmetrics = ["memory"]\n')
    first = await AgentProcess(config).start()
    try:
        await first.wait_for("alerting.started")
        second = await AgentProcess(config).start()
        assert await asyncio.wait_for(second.wait(), 30) == 2
        refused = second.named("agent.database_in_use")
        assert len(refused) == 1
        assert "another infrawatch agent" in refused[0]["error"]
        assert not second.named("agent.started")
        # The CLI shares the database with the running agent: it takes no lock.
        assert await _cli(config, "add", 'alertname="x"', "--for", "1m")
    finally:
        assert await first.stop() == 0
    # Once the first is gone, the lock is free again (the kernel released it at exit).
    again = await AgentProcess(config).start()
    try:
        await again.wait_for("alerting.started")
    finally:
        assert await again.stop() == 0
