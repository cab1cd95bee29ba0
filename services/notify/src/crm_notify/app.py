"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from datetime import datetime

from fastapi import FastAPI

from crm_notify import delivery, handlers, metrics
from crm_notify.adapters.channels import (
    ChannelSenders,
    Failover,
    Send,
    SmtpServer,
    http_sender,
    smtp_sender,
    webhook_sender,
)
from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.entrypoints import kafka
from crm_notify.entrypoints.http import notify_router
from crm_notify.ports import Staff
from crm_notify.settings import NotifySettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now


def senders(settings: NotifySettings) -> ChannelSenders:
    def failover(primary: tuple[str, Send], secondary: tuple[str, Send] | None) -> Failover:
        return Failover(
            primary,
            secondary,
            threshold=settings.failover_threshold,
            cooldown_s=settings.failover_cooldown_s,
        )

    primary = SmtpServer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password,
        settings.smtp_starttls,
    )
    email_secondary = (
        SmtpServer(settings.smtp_secondary_host, settings.smtp_secondary_port)
        if settings.smtp_secondary_host
        else None
    )
    channels = {
        "email": failover(
            (primary.name, smtp_sender(primary, settings.mail_from)),
            (email_secondary.name, smtp_sender(email_secondary, settings.mail_from))
            if email_secondary
            else None,
        )
    }
    if settings.sms_url:
        channels["sms"] = failover(
            ("sms-primary", http_sender(settings.sms_url, settings.sms_token)),
            ("sms-secondary", http_sender(settings.sms_secondary_url, settings.sms_token))
            if settings.sms_secondary_url
            else None,
        )
    if settings.staff_webhook_url:
        channels["webhook"] = failover(
            (
                "staff-webhook",
                webhook_sender(settings.staff_webhook_url, settings.staff_webhook_secret),
            ),
            None,
        )
    return ChannelSenders(channels)


def build_app(settings: NotifySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or NotifySettings()
    rules = settings.rules
    runtime = Runtime(settings, clock)
    repository = MongoNotifyRepository(runtime.db, runtime.uow, runtime.keys)
    runtime.on_startup(repository.ensure_indexes)
    metrics.install(runtime, repository)
    staff = Staff(settings.staff_webhook_url, settings.staff)
    channels = senders(settings)

    async def deliver(now: datetime) -> int:
        # Claims run on real time (the default), whatever `clock` says business time is.
        return await delivery.deliver(
            now, repository, channels, rules=rules, send_timeout_s=settings.send_timeout_s
        )

    async def deliver_ids(ids: list[str]) -> int:
        return await delivery.deliver_ids(
            ids, clock(), repository, channels, rules=rules, send_timeout_s=settings.send_timeout_s
        )

    send_now = delivery.SendNow(deliver_ids)
    if settings.sends_now():  # else what a batch decides waits for a sweep (POST /ops/sweeps)
        runtime.background("send-now", send_now.run)
    kafka.subscribe(runtime, repository, rules, clock, staff, send_now.hand)

    async def care(now: datetime) -> int:
        return await handlers.care_sweep(
            now,
            repository,
            rules=rules,
            holidays=settings.holidays,
            zone_name=settings.care_time_zone,
        )

    async def digest(now: datetime) -> int:
        return await handlers.digest_sweep(now, repository, rules=rules)

    async def awaiting(now: datetime) -> int:
        return await handlers.awaiting_sweep(now, repository, rules=rules)

    runtime.every("deliver", settings.deliver_interval_s, deliver)
    runtime.every("care", settings.care_interval_s, care)
    runtime.every("digest", settings.digest_interval_s, digest)
    runtime.every("awaiting", settings.awaiting_interval_s, awaiting)
    return create_http_app(
        runtime,
        title="CRM notify",
        description="Messages to customers and staff: templates, channels, consent, quiet hours.",
        routers=[notify_router(repository, runtime.auth, runtime.audit)],
    )
