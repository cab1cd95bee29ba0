"""Message templates per trigger and locale (zh-CN default, en), rendered in a Jinja2 sandbox.

A template that refers to a variable the caller did not give is an error (`TemplateError`), never
a half-filled message. A subject is one line (`one_line`): it becomes a mail header. Pure code
(Jinja2 is a library, not I/O).
"""

import functools
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2 import Template as JinjaTemplate
from jinja2.sandbox import SandboxedEnvironment

Locale = Literal["zh-CN", "en"]
LOCALES: tuple[Locale, ...] = ("zh-CN", "en")
DEFAULT_LOCALE: Locale = "zh-CN"
SUBJECT_LIMIT = 200
"""Characters in a subject (a longer one ends in "…")."""
NAME_LIMIT = 100
"""Characters of a customer's name in a message (the contract allows 200)."""
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def one_line(text: str, limit: int) -> str:
    """`text` as one line of at most `limit` characters, safe in a mail header.

    Line breaks of any kind (CR, LF, U+2028, U+2029, NEL, VT, FF) and tabs become a space; other
    control characters and bidirectional overrides are dropped; runs of spaces become one.
    *Example:* `"Li\\nLei"` -> `"Li Lei"`; 300 characters with `limit=200` -> 199 and "…".
    """
    kept = "".join(
        ch
        for ch in text
        if ch.isspace() or (unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS)
    )
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class RenderError(Exception):
    """A template could not be rendered (a missing variable, a syntax error)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


@dataclass(frozen=True)
class Template:
    name: str
    subject: dict[Locale, str]
    body: dict[Locale, str]
    sample: dict[str, Any]
    """Variables for `POST /templates/{name}/preview`."""


ZH_KINDS = (
    '{% set kinds = {"follow_up": "回访", "callback": "回电", "recovery": "挽留", '
    '"renewal": "续约", "agreement_review": "协议复核"} %}'
)
EN_KINDS = (
    '{% set kinds = {"follow_up": "follow-up", "callback": "callback", "recovery": "recovery '
    'call", "renewal": "renewal", "agreement_review": "agreement review"} %}'
)
"""Staff templates name a task's kind in the reader's language."""
AGREEMENT_SAMPLE: dict[str, Any] = {
    "name": "li.wei",
    "customer_id": "C-1a2b3c",
    "agreement_id": "A-1",
    "period": "2027-01-01 – 2027-03-31",
    "minimum": "100000",
    "unit": "CNY",
}

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template(
            "welcome",
            {"zh-CN": "欢迎加入，{{ name }}", "en": "Welcome, {{ name }}"},
            {
                "zh-CN": "{{ name }}，您好！感谢注册，我们很高兴为您服务。",
                "en": "Hello {{ name }}, thank you for registering. We are glad to have you.",
            },
            {"name": "李雷"},
        ),
        Template(
            "ticket_ack",
            {
                "zh-CN": "我们已收到您的反馈（工单 {{ ticket_id }}）",
                "en": "We received your complaint (ticket {{ ticket_id }})",
            },
            {
                "zh-CN": "{{ name }}，您好！您的反馈已登记为工单 {{ ticket_id }}，"
                "我们会尽快处理并与您联系。",
                "en": "Hello {{ name }}, your complaint is ticket {{ ticket_id }}. "
                "We are on it and will get back to you soon.",
            },
            {"name": "李雷", "ticket_id": "T-1a2b3c4d5e6f"},
        ),
        Template(
            "survey_invite",
            {
                "zh-CN": "工单 {{ ticket_id }} 已解决，请为我们的服务打分",
                "en": "Ticket {{ ticket_id }} is resolved: how did we do?",
            },
            {
                "zh-CN": "{{ name }}，您好！您的工单 {{ ticket_id }} 已处理完毕。"
                "请花一分钟告诉我们您是否满意。",
                "en": "Hello {{ name }}, ticket {{ ticket_id }} is resolved. "
                "Please take a minute to tell us how we did.",
            },
            {"name": "李雷", "ticket_id": "T-1a2b3c4d5e6f"},
        ),
        Template(
            "tier_changed",
            {"zh-CN": "您的会员等级已变为 {{ tier }}", "en": "Your tier is now {{ tier }}"},
            {
                "zh-CN": "{{ name }}，您好！您的会员等级已由 {{ previous_tier }} 变为 {{ tier }}。",
                "en": "Hello {{ name }}, your tier changed from {{ previous_tier }} to {{ tier }}.",
            },
            {"name": "李雷", "tier": "gold", "previous_tier": "silver"},
        ),
        Template(
            "points_expiring",
            {
                "zh-CN": "您有 {{ points }} 积分即将过期",
                "en": "{{ points }} of your points expire soon",
            },
            {
                "zh-CN": "{{ name }}，您好！您有 {{ points }} 积分将于 {{ expires_on }} 过期，"
                "记得及时使用。",
                "en": "Hello {{ name }}, {{ points }} points expire on {{ expires_on }}. "
                "Use them before then.",
            },
            {"name": "李雷", "points": 300, "expires_on": "2027-01-31"},
        ),
        Template(
            "points_digest",
            {
                "zh-CN": "今日积分：+{{ points }}",
                "en": "Your points today: +{{ points }}",
            },
            {
                "zh-CN": "{{ name }}，您好！您在 {{ day }} 通过 {{ orders }} 笔订单获得 "
                "{{ points }} 积分，当前余额 {{ balance }}。",
                "en": "Hello {{ name }}, on {{ day }} you earned {{ points }} points with "
                "{{ orders }} orders. Your balance is {{ balance }}.",
            },
            {"name": "李雷", "points": 120, "orders": 2, "balance": 860, "day": "2026-11-23"},
        ),
        Template(
            "retention",
            {"zh-CN": "{{ name }}，好久不见", "en": "We miss you, {{ name }}"},
            {
                "zh-CN": "{{ name }}，您好！好久不见，我们为您准备了专属优惠，期待您再次光临。",
                "en": "Hello {{ name }}, it has been a while. We have a welcome-back offer "
                "waiting for you.",
            },
            {"name": "李雷"},
        ),
        Template(
            "birthday",
            {"zh-CN": "生日快乐，{{ name }}！", "en": "Happy birthday, {{ name }}!"},
            {
                "zh-CN": "{{ name }}，祝您生日快乐！愿您新的一岁一切顺利。",
                "en": "Happy birthday, {{ name }}! All the best for the year ahead.",
            },
            {"name": "李雷"},
        ),
        Template(
            "holiday",
            {"zh-CN": "{{ holiday }}快乐", "en": "Happy {{ holiday }}"},
            {
                "zh-CN": "{{ name }}，您好！祝您{{ holiday }}快乐，阖家幸福。",
                "en": "Hello {{ name }}, we wish you a happy {{ holiday }}.",
            },
            {"name": "李雷", "holiday": "春节"},
        ),
        Template(
            "sla_alert",
            {
                "zh-CN": "SLA 超时：工单 {{ ticket_id }}（{{ priority }}）",
                "en": "SLA breached: ticket {{ ticket_id }} ({{ priority }})",
            },
            {
                "zh-CN": "工单 {{ ticket_id }}（{{ priority }}）的 {{ target }} 已超时，"
                "已转入主管队列。",
                "en": "Ticket {{ ticket_id }} ({{ priority }}) breached its {{ target }} target "
                "and is in the supervisors' queue.",
            },
            {"ticket_id": "T-1a2b3c4d5e6f", "priority": "P1", "target": "first_response"},
        ),
        Template(
            "task_digest",
            {
                "zh-CN": "今日待办：{{ due_today }} 项到期，{{ overdue }} 项逾期（{{ day }}）",
                "en": "Your tasks for {{ day }}: {{ due_today }} due, {{ overdue }} overdue",
            },
            {
                "zh-CN": ZH_KINDS + "{{ name }}，早上好！您今天的任务：\n"
                "{% for t in tasks %}- {{ kinds.get(t.kind, t.kind) }} · 客户 {{ t.customer_id }}"
                " · 截止 {{ t.due_on }}{% if t.overdue %}（已逾期"
                "{% if t.business_days_overdue %} {{ t.business_days_overdue }} 个工作日"
                "{% endif %}）{% endif %}\n{% endfor %}"
                "{% if more > 0 %}另有 {{ more }} 项未列出，请在工作台查看。{% endif %}",
                "en": EN_KINDS + "Good morning {{ name }}, your tasks today:\n"
                "{% for t in tasks %}- {{ kinds.get(t.kind, t.kind) }} · customer "
                "{{ t.customer_id }} · due {{ t.due_on }}{% if t.overdue %} (overdue"
                "{% if t.business_days_overdue %} by {{ t.business_days_overdue }} business "
                "days{% endif %}){% endif %}\n{% endfor %}"
                "{% if more > 0 %}{{ more }} more are in your workspace.{% endif %}",
            },
            {
                "name": "li.wei",
                "day": "2027-01-06",
                "due_today": 1,
                "overdue": 1,
                "more": 0,
                "tasks": [
                    {
                        "kind": "callback",
                        "customer_id": "C-1a2b3c",
                        "due_on": "2027-01-05",
                        "overdue": True,
                        "business_days_overdue": 1,
                    },
                    {
                        "kind": "recovery",
                        "customer_id": "C-4d5e6f",
                        "due_on": "2027-01-06",
                        "overdue": False,
                        "business_days_overdue": 0,
                    },
                ],
            },
        ),
        Template(
            "task_escalated",
            {
                "zh-CN": "任务逾期 {{ business_days_overdue }} 个工作日：客户 {{ customer_id }}",
                "en": "Task {{ business_days_overdue }} business days overdue: customer "
                "{{ customer_id }}",
            },
            {
                "zh-CN": ZH_KINDS + "{{ name }}，您好！{{ owner }} 的任务"
                "（{{ kinds.get(kind, kind) }}，客户 {{ customer_id }}，截止 {{ due_on }}）"
                "已逾期 {{ business_days_overdue }} 个工作日，请跟进或改派。"
                "任务编号 {{ task_id }}。",
                "en": EN_KINDS + "Hello {{ name }}, {{ owner }}'s task ({{ kinds.get(kind, kind) }}"
                ", customer {{ customer_id }}, due {{ due_on }}) is {{ business_days_overdue }} "
                "business days overdue: please follow up or reassign it. Task {{ task_id }}.",
            },
            {
                "name": "wang.fang",
                "owner": "li.wei",
                "kind": "recovery",
                "customer_id": "C-1a2b3c",
                "due_on": "2027-01-05",
                "business_days_overdue": 5,
                "task_id": "6585908e-a3ea-57d2-94e4-0a05b87c61e8",
            },
        ),
        Template(
            "agreement_at_risk",
            {
                "zh-CN": "协议履约风险：客户 {{ customer_id }}（{{ period }}）",
                "en": "Agreement at risk: customer {{ customer_id }} ({{ period }})",
            },
            {
                "zh-CN": "{{ name }}，您好！客户 {{ customer_id }} 的协议在 {{ period }} 期间"
                "已完成 {{ fulfilled }} {{ unit }}，预计期末 {{ projected }}，低于约定的 "
                "{{ minimum }}。已为您创建跟进任务。协议 {{ agreement_id }}。",
                "en": "Hello {{ name }}, customer {{ customer_id }} has reached {{ fulfilled }} "
                "{{ unit }} of the agreed {{ minimum }} for {{ period }}, projected "
                "{{ projected }} by its end. A review task is waiting for you. Agreement "
                "{{ agreement_id }}.",
            },
            AGREEMENT_SAMPLE | {"fulfilled": "30000", "projected": "60000"},
        ),
        Template(
            "agreement_period_closed",
            {
                "zh-CN": "协议期间结束（{{ '已达成' if met else '未达成' }}）：客户 "
                "{{ customer_id }}",
                "en": "Agreement period {{ 'met' if met else 'missed' }}: customer "
                "{{ customer_id }}",
            },
            {
                "zh-CN": "{{ name }}，您好！客户 {{ customer_id }} 的协议期间 {{ period }} 已结束："
                "完成 {{ fulfilled }} {{ unit }}，约定 {{ minimum }}，"
                "{{ '已达成' if met else '未达成' }}。已为您创建复核任务。"
                "协议 {{ agreement_id }}。",
                "en": "Hello {{ name }}, the period {{ period }} of customer {{ customer_id }}'s "
                "agreement closed at {{ fulfilled }} {{ unit }} of {{ minimum }}: "
                "{{ 'met' if met else 'missed' }}. A review task is waiting for you. Agreement "
                "{{ agreement_id }}.",
            },
            AGREEMENT_SAMPLE | {"fulfilled": "100000", "met": True},
        ),
        Template(
            "agreement_renewal_due",
            {
                "zh-CN": "协议即将到期（{{ ends_on }}）：客户 {{ customer_id }}",
                "en": "Agreement ends on {{ ends_on }}: customer {{ customer_id }}",
            },
            {
                "zh-CN": "{{ name }}，您好！客户 {{ customer_id }} 的协议将于 {{ ends_on }} 到期"
                "（提前 {{ notice_days }} 天提醒），请及时洽谈续约。已为您创建续约任务。"
                "协议 {{ agreement_id }}。",
                "en": "Hello {{ name }}, customer {{ customer_id }}'s agreement ends on "
                "{{ ends_on }} ({{ notice_days }} days' notice): time to talk about renewing it. "
                "A renewal task is waiting for you. Agreement {{ agreement_id }}.",
            },
            {
                "name": "li.wei",
                "customer_id": "C-1a2b3c",
                "agreement_id": "A-1",
                "ends_on": "2027-12-31",
                "notice_days": 30,
            },
        ),
    ]
}

_environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> JinjaTemplate:
    """Templates are constants: compile each once."""
    return _environment.from_string(source)


def render(name: str, locale: str, variables: dict[str, Any]) -> Rendered:
    template = TEMPLATES.get(name)
    if template is None:
        raise RenderError(f"no template {name!r}")
    chosen: Locale = "en" if locale == "en" else DEFAULT_LOCALE
    try:
        subject = _compiled(template.subject[chosen]).render(variables)
        body = _compiled(template.body[chosen]).render(variables)
    except UndefinedError as exc:
        raise RenderError(f"template {name!r} ({chosen}): {exc.message}") from exc
    except TemplateError as exc:
        raise RenderError(f"template {name!r} ({chosen}) is broken: {exc}") from exc
    return Rendered(one_line(subject, SUBJECT_LIMIT), body.strip())
