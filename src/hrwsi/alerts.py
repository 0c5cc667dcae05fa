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

from hrwsi.sql_files import query

logger = logging.getLogger(__name__)


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
            smtp_port=int(os.environ.get("HRWSI_ALERT_SMTP_PORT", "25")),
            smtp_sender=os.environ.get("HRWSI_ALERT_SMTP_FROM", "hrwsi@localhost"),
            smtp_recipients=recipients,
            smtp_user=os.environ.get("HRWSI_ALERT_SMTP_USER") or None,
            smtp_password=os.environ.get("HRWSI_ALERT_SMTP_PASSWORD") or None,
            smtp_starttls=os.environ.get("HRWSI_ALERT_SMTP_STARTTLS", "") in ("1", "true", "yes"),
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


async def send_pending_alerts(pool: asyncpg.Pool, sender: AlertSender, batch: int = 20) -> int:
    """Send what the outbox holds; returns how many were sent. A failure is recorded and retried."""
    sent = 0
    async with pool.acquire() as conn, conn.transaction():
        for alert in await conn.fetch(query("claim_alerts"), batch, sender.settings.max_attempts):
            try:
                await sender.send(alert["kind"], alert["subject"], alert["body"])
            except (TimeoutError, OSError, aiohttp.ClientError, smtplib.SMTPException, RuntimeError) as error:
                logger.warning("alert %d (%s) could not be sent (attempt %d): %s; it will be retried",
                               alert["id"], alert["subject"], alert["attempts"] + 1, error)
                await conn.execute(query("alert_failed"), alert["id"], str(error)[:500])
                continue
            await conn.execute(query("alert_sent"), alert["id"])
            sent += 1
    return sent
