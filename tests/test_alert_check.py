"""`infrawatch check --send-test`: each sink described without secrets, one test message each."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support_receivers import SignedWebhookReceiver, SlackReceiver, free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_check_send_test_reports_each_sink_without_secrets(tmp_path: Path) -> None:
    slack, hook = SlackReceiver(), SignedWebhookReceiver(SECRET)
    await slack.start()
    await hook.start()
    dead = f"http://127.0.0.1:{free_port()}/api/webhooks/1/deadtoken"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[alerting.sinks]]\nname = "s"\ntype = "slack"\nurl = "{slack.url}"\n'
        f'[[alerting.sinks]]\nname = "h"\ntype = "webhook"\nurl = "{hook.url}"\n'
        f'secret = "{SECRET}"\n'
        f'[[alerting.sinks]]\nname = "d"\ntype = "discord"\nurl = "{dead}"\n'
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "infrawatch", "check", "-c", str(config), "--send-test",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out_b, err_b = await proc.communicate()
    finally:
        await slack.stop()
        await hook.stop()
    out = out_b.decode() + err_b.decode()
    assert proc.returncode == 1  # the Discord sink is unreachable
    assert "test notification to s: ok (HTTP 200)" in out
    assert "test notification to h: ok (HTTP 204)" in out
    assert "test notification to d: retry" in out
    assert f"h (webhook): JSON webhook at http://127.0.0.1:{hook.port}, signed" in out
    for secret in ("secretsecret", SECRET.removeprefix("whsec_"), "deadtoken", "/hook"):
        assert secret not in out
    assert len(slack.accepted()) == 1
    assert hook.accepted()[0].json["alerts"][0]["labels"]["alertname"] == "infrawatch_test"


def test_check_warns_about_a_secret_standard_webhooks_libraries_would_misread() -> None:
    from infrawatch.alerting.check import _warnings
    from infrawatch.alerting.config import AlertingConfig

    def sink(name: str, secret: str) -> dict[str, str]:
        return {"name": name, "type": "webhook", "url": "https://x/h", "secret": secret}

    cfg = AlertingConfig.model_validate(
        {"sinks": [sink("raw", "plain-S3CRET"), sink("spec", SECRET)]}
    )
    warnings = _warnings(cfg)
    assert [w for w in warnings["raw"] if "whsec_" in w]
    assert warnings["spec"] == []
    assert not any("S3CRET" in w for ws in warnings.values() for w in ws)
