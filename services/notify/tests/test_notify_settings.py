"""The notify policy is `NotifyRules`, declared once and nested in the settings: each rule is set
from the environment as `CRM_NOTIFY_RULES__<NAME>` (maps and lists as JSON)."""

from datetime import time

import pytest

from crm_notify.domain.policy import NotifyRules
from crm_notify.settings import NotifySettings
from crm_runtime.settings import InsecureSettingsError

pytestmark = pytest.mark.unit


def test_the_defaults_are_the_domains() -> None:
    settings = NotifySettings()
    assert settings.rules == NotifyRules()
    # The runtime's back-off when the broker or database is down is every service's, not the
    # delivery retry's 5 s to 900 s (which a flat name once set for both).
    assert (settings.retry_initial_s, settings.retry_max_s) == (0.2, 15.0)


def test_a_rule_is_set_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_NOTIFY_RULES__DAILY_CAP", "5")
    monkeypatch.setenv("CRM_NOTIFY_RULES__QUIET_START", "22:30")
    monkeypatch.setenv("CRM_NOTIFY_RULES__RETRY_INITIAL_S", "0.5")
    monkeypatch.setenv("CRM_NOTIFY_RULES__CHANNELS", '{"marketing": ["email"]}')
    monkeypatch.setenv("CRM_NOTIFY_RETRY_INITIAL_S", "2")
    settings = NotifySettings()
    rules = settings.rules
    assert (rules.daily_cap, rules.quiet_start) == (5, time(22, 30))
    assert rules.channels == {"marketing": ("email",)}
    assert rules.retry_initial_s == 0.5
    assert settings.retry_initial_s == 2  # the runtime's back-off is not a rule
    assert rules.max_attempts == NotifyRules().max_attempts


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_ATTEMPTS", "0", "max_attempts must be greater than or equal to 1"),
        ("RETRY_MAX_S", "0", "retry_max_s must be greater than 0"),
        ("CHANNELS", '{"marketing": ["fax"]}', "email"),
    ],
)
def test_a_rule_out_of_bounds_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CRM_NOTIFY_RULES__{name}", value)
    with pytest.raises(ValueError, match=message):
        NotifySettings()


def test_a_staff_webhook_signed_with_change_me_refuses_to_start_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18: the default webhook secret (`change-me`) let anyone sign a staff webhook."""
    monkeypatch.setenv("CRM_NOTIFY_STAFF_WEBHOOK_URL", "https://hooks.example.cn/crm")
    monkeypatch.setenv("CRM_NOTIFY_HTTP_HOST", "0.0.0.0")
    with pytest.raises(
        InsecureSettingsError, match="CRM_NOTIFY_STAFF_WEBHOOK_SECRET is 'change-me'"
    ):
        NotifySettings().refuse_insecure_off_loopback()
    monkeypatch.setenv("CRM_NOTIFY_STAFF_WEBHOOK_SECRET", "a-secret-of-ours")
    NotifySettings().refuse_insecure_off_loopback()


def test_change_me_is_harmless_without_a_webhook_or_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_HTTP_HOST", "0.0.0.0")
    NotifySettings().refuse_insecure_off_loopback()  # no webhook: the secret signs nothing
    monkeypatch.setenv("CRM_NOTIFY_STAFF_WEBHOOK_URL", "http://127.0.0.1:9000/hook")
    monkeypatch.setenv("CRM_NOTIFY_HTTP_HOST", "127.0.0.1")
    NotifySettings().refuse_insecure_off_loopback()


def test_an_smtp_password_without_starttls_refuses_to_start_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_SMTP_USERNAME", "crm")
    monkeypatch.setenv("CRM_NOTIFY_SMTP_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("CRM_NOTIFY_HTTP_HOST", "0.0.0.0")
    with pytest.raises(InsecureSettingsError) as refused:
        NotifySettings().refuse_insecure_off_loopback()
    assert "CRM_NOTIFY_SMTP_PASSWORD is set while CRM_NOTIFY_SMTP_STARTTLS is false" in str(
        refused.value
    )
    assert "CRM_NOTIFY_HTTP_HOST" in str(refused.value)
    assert "s3cret-pass" not in str(refused.value)
    monkeypatch.setenv("CRM_NOTIFY_SMTP_STARTTLS", "true")
    NotifySettings().refuse_insecure_off_loopback()
