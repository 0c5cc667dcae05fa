"""The notification manager: sends the alert outbox (hrwsi.alert) by webhook and by e-mail.

Alerts are written by database triggers (a task terminated, a routine put on hold), in the same
transaction as the event, so none is lost; this module delivers them, retrying a failed delivery
at every round until `max_attempts`. Configuration comes from the environment; a password is read
from the environment only, never stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

import aiohttp
import asyncpg

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.settings import SettingsError
from hrwsi.sql_files import query
from hrwsi.terminal import shown

logger = logging.getLogger(__name__)


def _smtp_port() -> int:
    """HRWSI_ALERT_SMTP_PORT in ASCII digits, 25 unless set: int() read '2_5' as 25 and other scripts' digits, and
    'abc' ended the service in a traceback (found by review)."""
    raw = os.environ.get("HRWSI_ALERT_SMTP_PORT", "").strip()
    port = ascii_decimal(raw, max_digits=5) if raw else 25
    if port is None or not 1 <= port <= 65535:
        raise SettingsError(f"HRWSI_ALERT_SMTP_PORT={shown(raw)} is not a TCP port (1-65535; unset: 25)")
    return port


def _smtp_starttls() -> bool:
    """HRWSI_ALERT_SMTP_STARTTLS, off unless set: true, yes, on or 1 in any case, and false, no, off or 0, as
    hrwsi's other switches read them. Only '1', 'true' and 'yes' turned it on: 'True' and 'on' left it off,
    silently, and the SMTP password went out without TLS (found walking README through); another value is
    refused."""
    raw = os.environ.get("HRWSI_ALERT_SMTP_STARTTLS", "").strip()
    if raw.lower() in ("", "0", "false", "no", "off"):
        return False
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"HRWSI_ALERT_SMTP_STARTTLS={shown(raw)} is neither true nor false (true, yes, on, 1; "
                        "false, no, off, 0; unset: false)")


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "hrwsi@localhost"
    smtp_recipients: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    timeout_s: float = 10.0
    max_attempts: int = 10

    @classmethod
    def from_env(cls) -> AlertSettings:
        recipients = tuple(r.strip() for r in os.environ.get("HRWSI_ALERT_SMTP_TO", "").split(",") if r.strip())
        return cls(
            webhook_url=os.environ.get("HRWSI_ALERT_WEBHOOK_URL") or None,
            smtp_host=os.environ.get("HRWSI_ALERT_SMTP_HOST") or None,
            smtp_port=_smtp_port(),
            smtp_sender=os.environ.get("HRWSI_ALERT_SMTP_FROM", "hrwsi@localhost"),
            smtp_recipients=recipients,
            smtp_user=os.environ.get("HRWSI_ALERT_SMTP_USER") or None,
            smtp_password=os.environ.get("HRWSI_ALERT_SMTP_PASSWORD") or None,
            smtp_starttls=_smtp_starttls(),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or (self.smtp_host and self.smtp_recipients))


class AlertSender:
    def __init__(self, settings: AlertSettings):
        self.settings = settings

    async def send(self, kind: str, subject: str, body: str) -> None:
        """Deliver one alert on every configured channel; raise if any of them fails."""
        if self.settings.webhook_url:
            await self._post(kind, subject, body)
        if self.settings.smtp_host and self.settings.smtp_recipients:
            await asyncio.to_thread(self._mail, subject, body)

    async def _post(self, kind: str, subject: str, body: str) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(self.settings.webhook_url, json={"kind": kind, "subject": subject,
                                                                        "text": body}) as response:
                    if response.status >= 300:
                        raise RuntimeError(f"webhook answered HTTP {response.status}: "
                                           f"{(await response.text())[:200]}")
        except aiohttp.ClientConnectorError:
            raise  # "Cannot connect to host H:P ...": no credentials in it
        except aiohttp.ClientError as error:
            # Other aiohttp errors quote the whole URL, credentials and all (an invalid URL, a connection
            # timeout, a redirect loop); the message is logged and stored: name the failure, not the URL.
            raise RuntimeError(f"webhook request failed ({type(error).__name__}); check HRWSI_ALERT_WEBHOOK_URL") \
                from None

    def _mail(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.settings.smtp_sender
        message["To"] = ", ".join(self.settings.smtp_recipients)
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=self.settings.timeout_s) as smtp:
            if self.settings.smtp_starttls:
                smtp.starttls()
            if self.settings.smtp_user:
                smtp.login(self.settings.smtp_user, self.settings.smtp_password or "")
            smtp.send_message(message)


# More alerts of one kind than this in one round are sent as one message (a digest) naming the first few:
# a missed deadline is alerted once per task, and a back-fill or an outage made thousands at once, each a
# webhook call and an e-mail, 20 a round (every 2 s), so a routine put on hold after them waited minutes
# behind them (found by exploratory testing: 3,000 deadline_missed alerts, 5 minutes of deliveries).
DIGEST_AFTER = 5
DIGEST_NAMES = 10  # the alerts a digest names, one line each
CLAIM_BATCH = 1000


def digest(kind: str, alerts: list) -> tuple[str, str]:
    """The subject and text of one message for many alerts of one kind."""
    first = alerts[0]["subject"].removeprefix("hrwsi: ")
    subject = f"hrwsi: {len(alerts)} alerts {kind}: {first}, and {len(alerts) - 1} more"
    lines = [f"{len(alerts)} alerts of kind {kind} at once; the first {min(len(alerts), DIGEST_NAMES)}:", ""]
    lines += [f"- {a['subject'].removeprefix('hrwsi: ')}" for a in alerts[:DIGEST_NAMES]]
    if len(alerts) > DIGEST_NAMES:
        lines.append(f"- ... and {len(alerts) - DIGEST_NAMES} more")
    lines += ["", f"The first in full: {alerts[0]['body']}", "",
              "`hrwsi alerts` lists them all; `hrwsi status` says what they are about."]
    return subject, "\n".join(lines)


async def send_pending_alerts(pool: asyncpg.Pool, sender: AlertSender, batch: int = CLAIM_BATCH) -> int:
    """Send what the outbox holds; returns how many alerts were sent. More than DIGEST_AFTER of one kind
    go as one message. A failure is recorded and retried."""
    sent = 0
    async with pool.acquire() as conn, conn.transaction():
        by_kind: dict[str, list] = {}
        for alert in await conn.fetch(query("claim_alerts"), batch, sender.settings.max_attempts):
            by_kind.setdefault(alert["kind"], []).append(alert)
        for kind, alerts in by_kind.items():  # (in the order each kind first came)
            messages = ([(alerts, *digest(kind, alerts))] if len(alerts) > DIGEST_AFTER
                        else [([a], a["subject"], a["body"]) for a in alerts])
            for members, subject, body in messages:
                ids = [a["id"] for a in members]
                try:
                    await sender.send(kind, subject, body)
                except (TimeoutError, OSError, aiohttp.ClientError, smtplib.SMTPException, RuntimeError) as error:
                    logger.warning("alert %s (%s) could not be sent (attempt %d): %s; it will be retried",
                                   ids[0] if len(ids) == 1 else f"{ids[0]} and {len(ids) - 1} more", subject,
                                   members[0]["attempts"] + 1, error)
                    await conn.execute(query("alerts_failed"), ids, str(error)[:500])
                    continue
                await conn.execute(query("alerts_sent"), ids)
                sent += len(ids)
    return sent
