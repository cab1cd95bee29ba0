"""zh-CN and en: the message catalogues, the choice of language, and how amounts and times read.

Every string a page shows comes from `CATALOGUES` (a key missing in zh-CN falls back to en, and a
test keeps the two catalogues' keys equal). The language is the `console_lang` cookie when set,
else the best of the request's Accept-Language, else the console's default.
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

LOCALES = ("zh-CN", "en")
LANG_COOKIE = "console_lang"

EN: dict[str, str] = {
    "app.name": "CRM console",
    "nav.customers": "Customers",
    "nav.tickets": "Tickets",
    "nav.work": "My work",
    "nav.supervisor": "Supervisor",
    "nav.ops": "Ops",
    "nav.relations": "Tasks & agreements (coming)",
    "nav.signout": "Sign out",
    "nav.language": "Language",
    "nav.signed_in_as": "Signed in as {user} ({roles})",
    "signin.title": "Sign in",
    "signin.token": "API token",
    "signin.token_help": "Your personal token (ask your supervisor).",
    "signin.submit": "Sign in",
    "signin.bad_token": "That token is not valid.",
    "signin.no_role": "That token grants no role the console serves.",
    "signin.signed_out": "You are signed out.",
    "signin.expired": "Your session has ended: sign in again.",
    "customers.title": "Customers",
    "customers.q": "Name, phone or e-mail",
    "customers.grade": "Grade",
    "customers.stage": "Stage",
    "customers.owner": "Account owner",
    "customers.at_risk": "At risk",
    "customers.tag": "Tag",
    "customers.city": "City",
    "customers.type": "Type",
    "customers.spent_min": "Net spent from",
    "customers.spent_max": "Net spent to",
    "customers.last_order_after": "Last order after",
    "customers.last_order_before": "Last order before",
    "customers.sort": "Sort",
    "customers.search": "Search",
    "customers.none": "No customer matches.",
    "customers.id": "Customer",
    "customers.orders": "Orders",
    "customers.net_spent": "Net spent",
    "customers.last_order": "Last order",
    "customers.next": "Next page",
    "customers.any": "Any",
    "customers.yes": "Yes",
    "customers.no": "No",
    "customer.title": "Customer {id}",
    "customer.profile": "Profile",
    "customer.name": "Name",
    "customer.phone": "Phone",
    "customer.email": "E-mail",
    "customer.city": "City",
    "customer.birthday": "Birthday",
    "customer.grade": "Grade",
    "customer.stage": "Stage",
    "customer.owner": "Account owner",
    "customer.tags": "Tags",
    "customer.erased": "This customer's personal data was erased.",
    "customer.churn": "Churn risk",
    "customer.churn_none": "Not at risk.",
    "customer.churn_since": "since {at}",
    "customer.value": "Value",
    "customer.order_count": "Orders",
    "customer.net_spent": "Net spent",
    "customer.aov": "Average order",
    "customer.first_order": "First order",
    "customer.last_order": "Last order",
    "customer.rfm": "RFM (R/F/M, total)",
    "customer.nps": "NPS",
    "customer.csat": "CSAT",
    "customer.timeline": "Timeline",
    "customer.timeline_empty": "Nothing yet.",
    "customer.older": "Older",
    "customer.points": "Points",
    "customer.balance": "Balance",
    "customer.tier": "Tier",
    "customer.next_tier": "{points} points to {tier}",
    "customer.expiring": "{points} points expire {at}",
    "customer.ledger": "Ledger",
    "customer.no_account": "No loyalty account.",
    "customer.tickets": "Tickets",
    "customer.no_tickets": "No tickets.",
    "customer.notes": "Notes",
    "customer.no_notes": "No notes.",
    "contact.title": "Log a contact",
    "contact.channel": "Channel",
    "contact.direction": "Direction",
    "contact.purpose": "Purpose",
    "contact.outcome": "Outcome",
    "contact.summary": "Summary",
    "contact.next_contact_on": "Next contact on",
    "contact.submit": "Log contact",
    "contact.logged": "Contact logged.",
    "note.title": "Add a note",
    "note.text": "Note",
    "note.submit": "Add note",
    "note.added": "Note added.",
    "owner.title": "Set the account owner",
    "owner.user": "Owner's user id",
    "owner.submit": "Set owner",
    "owner.set": "Account owner set.",
    "tickets.title": "Tickets",
    "tickets.status": "Status",
    "tickets.priority": "Priority",
    "tickets.queue": "Queue",
    "tickets.assignee": "Assignee",
    "tickets.customer": "Customer",
    "tickets.breached": "SLA breached",
    "tickets.filter": "Filter",
    "tickets.none": "No tickets.",
    "tickets.opened": "Opened",
    "tickets.sla": "SLA",
    "tickets.category": "Category",
    "ticket.title": "Ticket {id}",
    "ticket.description": "Description",
    "ticket.history": "History",
    "ticket.comments": "Comments",
    "ticket.root_causes": "Root causes",
    "ticket.assign": "Assign",
    "ticket.assign_to": "Assign to (agent id)",
    "ticket.comment": "Comment",
    "ticket.comment_text": "Comment text",
    "ticket.public": "Public (the customer sees it)",
    "ticket.change_status": "Change status",
    "ticket.new_status": "New status",
    "ticket.resolve": "Resolve",
    "ticket.root_causes_field": "Root causes (comma-separated)",
    "ticket.resolve_summary": "Resolution summary",
    "ticket.reopen": "Reopen",
    "ticket.reopen_reason": "Reason for reopening",
    "ticket.done": "Done.",
    "sla.due_in": "{target}: due in {left}",
    "sla.overdue": "{target}: overdue by {left}",
    "sla.breached": "{target}: breached",
    "sla.met": "{target}: met",
    "sla.paused": "{target}: paused",
    "sla.first_response": "first response",
    "sla.resolution": "resolution",
    "work.title": "My work",
    "work.tickets": "My open tickets",
    "work.tasks": "Tasks due today and overdue",
    "work.tasks_later": "Tasks come with the relations service, which does not exist yet.",
    "supervisor.title": "Supervisor",
    "supervisor.sla": "SLA (last 30 days)",
    "supervisor.breach_rate": "Breach rate",
    "supervisor.root_causes": "Complaints by root cause (last 30 days)",
    "supervisor.segments": "Customers by grade and stage",
    "supervisor.churn_by_owner": "Customers at risk by account owner",
    "supervisor.churn_sample": "Counted over the first {n} customers at risk.",
    "supervisor.liability": "Points liability",
    "supervisor.csat_nps": "CSAT and NPS over time",
    "supervisor.csat_nps_missing": (
        "No service reports CSAT and NPS over time yet: see each customer's value."
    ),
    "supervisor.no_owner": "(no owner)",
    "supervisor.liability_total": "{points} points outstanding in {accounts} accounts",
    "supervisor.nothing": "Nothing to show.",
    "ops.title": "Ops",
    "ops.metrics": "Metrics",
    "ops.dead_letters": "Dead letters",
    "ops.dead_letters_missing": (
        "No service exposes its dead letters over HTTP: read the <service>.dlq.v1 topics "
        "(README, Operations)."
    ),
    "ops.audit": "Reads of personal data",
    "ops.audit_at": "At",
    "ops.audit_actor": "Who",
    "ops.audit_route": "Route",
    "ops.audit_service": "Service",
    "error.title": "Something is wrong",
    "error.unavailable": "{service} is unavailable right now.",
    "error.forbidden": "You do not have permission for this.",
    "error.not_found": "Not found.",
    "error.conflict": "That cannot be done now: {detail}",
    "error.stale": "Someone changed this meanwhile; reload and try again.",
    "error.invalid": "Please check: {fields}",
    "error.bad_request": "The request was not accepted: {detail}",
    "error.csrf": "This form has expired; reload the page and try again.",
    "error.internal": "Something went wrong on our side; try again.",
    "error.missing": "Please fill in: {fields}",
    "error.page_not_found": "There is no such page.",
    "error.back": "Back to the customers",
    "common.save": "Save",
    "common.none": "—",
    "common.at": "At",
    "common.by": "By",
    "common.what": "What",
    "common.points": "Points",
    "common.count": "Count",
    "common.total": "Total",
}

ZH: dict[str, str] = {
    "app.name": "客户管理控制台",
    "nav.customers": "客户",
    "nav.tickets": "工单",
    "nav.work": "我的工作",
    "nav.supervisor": "主管",
    "nav.ops": "运维",
    "nav.relations": "任务与协议（即将推出）",
    "nav.signout": "退出登录",
    "nav.language": "语言",
    "nav.signed_in_as": "当前用户 {user}（{roles}）",
    "signin.title": "登录",
    "signin.token": "API 令牌",
    "signin.token_help": "您的个人令牌（请向主管索取）。",
    "signin.submit": "登录",
    "signin.bad_token": "令牌无效。",
    "signin.no_role": "该令牌没有控制台可用的角色。",
    "signin.signed_out": "您已退出登录。",
    "signin.expired": "会话已结束，请重新登录。",
    "customers.title": "客户",
    "customers.q": "姓名、手机号或电子邮箱",
    "customers.grade": "等级",
    "customers.stage": "生命周期阶段",
    "customers.owner": "责任人",
    "customers.at_risk": "流失风险",
    "customers.tag": "标签",
    "customers.city": "城市",
    "customers.type": "类型",
    "customers.spent_min": "净消费不低于",
    "customers.spent_max": "净消费不高于",
    "customers.last_order_after": "最近下单晚于",
    "customers.last_order_before": "最近下单早于",
    "customers.sort": "排序",
    "customers.search": "搜索",
    "customers.none": "没有匹配的客户。",
    "customers.id": "客户",
    "customers.orders": "订单数",
    "customers.net_spent": "净消费",
    "customers.last_order": "最近下单",
    "customers.next": "下一页",
    "customers.any": "全部",
    "customers.yes": "是",
    "customers.no": "否",
    "customer.title": "客户 {id}",
    "customer.profile": "基本资料",
    "customer.name": "姓名",
    "customer.phone": "手机号",
    "customer.email": "电子邮箱",
    "customer.city": "城市",
    "customer.birthday": "生日",
    "customer.grade": "等级",
    "customer.stage": "生命周期阶段",
    "customer.owner": "责任人",
    "customer.tags": "标签",
    "customer.erased": "该客户的个人数据已被删除。",
    "customer.churn": "流失风险",
    "customer.churn_none": "暂无流失风险。",
    "customer.churn_since": "自 {at} 起",
    "customer.value": "客户价值",
    "customer.order_count": "订单数",
    "customer.net_spent": "净消费",
    "customer.aov": "客单价",
    "customer.first_order": "首次下单",
    "customer.last_order": "最近下单",
    "customer.rfm": "RFM（R/F/M，总分）",
    "customer.nps": "净推荐值",
    "customer.csat": "满意度",
    "customer.timeline": "互动时间线",
    "customer.timeline_empty": "暂无记录。",
    "customer.older": "更早",
    "customer.points": "积分",
    "customer.balance": "余额",
    "customer.tier": "会员等级",
    "customer.next_tier": "距 {tier} 还差 {points} 积分",
    "customer.expiring": "{points} 积分将于 {at} 过期",
    "customer.ledger": "积分明细",
    "customer.no_account": "暂无积分账户。",
    "customer.tickets": "工单",
    "customer.no_tickets": "暂无工单。",
    "customer.notes": "备注",
    "customer.no_notes": "暂无备注。",
    "contact.title": "记录联系",
    "contact.channel": "渠道",
    "contact.direction": "方向",
    "contact.purpose": "目的",
    "contact.outcome": "结果",
    "contact.summary": "摘要",
    "contact.next_contact_on": "下次联系日期",
    "contact.submit": "记录联系",
    "contact.logged": "联系已记录。",
    "note.title": "添加备注",
    "note.text": "备注",
    "note.submit": "添加备注",
    "note.added": "备注已添加。",
    "owner.title": "设置责任人",
    "owner.user": "责任人用户 ID",
    "owner.submit": "设置责任人",
    "owner.set": "责任人已设置。",
    "tickets.title": "工单",
    "tickets.status": "状态",
    "tickets.priority": "优先级",
    "tickets.queue": "队列",
    "tickets.assignee": "处理人",
    "tickets.customer": "客户",
    "tickets.breached": "已超时",
    "tickets.filter": "筛选",
    "tickets.none": "暂无工单。",
    "tickets.opened": "创建时间",
    "tickets.sla": "服务时限",
    "tickets.category": "类别",
    "ticket.title": "工单 {id}",
    "ticket.description": "描述",
    "ticket.history": "处理记录",
    "ticket.comments": "评论",
    "ticket.root_causes": "根本原因",
    "ticket.assign": "分配",
    "ticket.assign_to": "分配给（坐席 ID）",
    "ticket.comment": "评论",
    "ticket.comment_text": "评论内容",
    "ticket.public": "公开（客户可见）",
    "ticket.change_status": "变更状态",
    "ticket.new_status": "新状态",
    "ticket.resolve": "解决",
    "ticket.root_causes_field": "根本原因（以逗号分隔）",
    "ticket.resolve_summary": "解决说明",
    "ticket.reopen": "重新打开",
    "ticket.reopen_reason": "重新打开的原因",
    "ticket.done": "已完成。",
    "sla.due_in": "{target}：剩余 {left}",
    "sla.overdue": "{target}：已超时 {left}",
    "sla.breached": "{target}：已违约",
    "sla.met": "{target}：已达成",
    "sla.paused": "{target}：已暂停",
    "sla.first_response": "首次响应",
    "sla.resolution": "解决",
    "work.title": "我的工作",
    "work.tickets": "我的未结工单",
    "work.tasks": "今日到期及逾期任务",
    "work.tasks_later": "任务由关系服务提供，该服务尚未上线。",
    "supervisor.title": "主管",
    "supervisor.sla": "服务时限（近 30 天）",
    "supervisor.breach_rate": "违约率",
    "supervisor.root_causes": "投诉根本原因（近 30 天）",
    "supervisor.segments": "按等级和阶段的客户数",
    "supervisor.churn_by_owner": "各责任人的流失风险客户",
    "supervisor.churn_sample": "统计范围：前 {n} 位有流失风险的客户。",
    "supervisor.liability": "积分负债",
    "supervisor.csat_nps": "满意度与净推荐值趋势",
    "supervisor.csat_nps_missing": "目前没有服务按时间汇总满意度和净推荐值：请查看各客户的价值。",
    "supervisor.no_owner": "（无责任人）",
    "supervisor.liability_total": "{accounts} 个账户共有 {points} 积分未使用",
    "supervisor.nothing": "暂无数据。",
    "ops.title": "运维",
    "ops.metrics": "监控指标",
    "ops.dead_letters": "死信",
    "ops.dead_letters_missing": (
        "目前没有服务通过 HTTP 提供死信：请查看 <service>.dlq.v1 主题（见 README 运维部分）。"
    ),
    "ops.audit": "个人数据读取记录",
    "ops.audit_at": "时间",
    "ops.audit_actor": "读取人",
    "ops.audit_route": "接口",
    "ops.audit_service": "服务",
    "error.title": "出错了",
    "error.unavailable": "{service} 暂时不可用。",
    "error.forbidden": "您没有执行此操作的权限。",
    "error.not_found": "未找到。",
    "error.conflict": "当前无法执行该操作：{detail}",
    "error.stale": "其他人刚刚修改了该记录，请刷新后重试。",
    "error.invalid": "请检查：{fields}",
    "error.bad_request": "请求未被接受：{detail}",
    "error.csrf": "表单已过期，请刷新页面后重试。",
    "error.internal": "系统出现问题，请重试。",
    "error.missing": "请填写：{fields}",
    "error.page_not_found": "页面不存在。",
    "error.back": "返回客户列表",
    "common.save": "保存",
    "common.none": "—",
    "common.at": "时间",
    "common.by": "操作人",
    "common.what": "内容",
    "common.points": "积分",
    "common.count": "数量",
    "common.total": "合计",
}

VALUES: dict[str, dict[str, str]] = {
    "en": {},
    "zh-CN": {
        "grade.vip": "VIP",
        "grade.ordinary": "普通",
        "grade.potential": "潜在",
        "stage.potential": "潜在客户",
        "stage.new": "新客户",
        "stage.active": "活跃",
        "stage.loyal": "忠诚",
        "stage.at_risk": "有流失风险",
        "stage.churned": "已流失",
        "stage.one_time": "一次性",
        "churn.purchase_interval": "购买间隔过长",
        "churn.complaints": "投诉较多",
        "churn.low_csat": "满意度低",
        "status.new": "新建",
        "status.assigned": "已分配",
        "status.in_progress": "处理中",
        "status.waiting_customer": "等待客户",
        "status.resolved": "已解决",
        "status.closed": "已关闭",
        "channel.call": "电话",
        "channel.email": "电子邮件",
        "channel.visit": "拜访",
        "channel.meeting": "会议",
        "channel.wechat": "微信",
        "channel.social": "社交媒体",
        "direction.in": "呼入",
        "direction.out": "呼出",
        "service.archive": "客户档案服务",
        "service.tickets": "工单服务",
        "service.loyalty": "积分服务",
        "service.notify": "通知服务",
    },
}
"""Names of the services' values (`grade.vip`, `status.resolved`); en shows them readably."""

CATALOGUES: dict[str, dict[str, str]] = {"en": EN, "zh-CN": ZH}


def translate(locale: str, key: str, **values: object) -> str:
    text = CATALOGUES.get(locale, EN).get(key) or EN.get(key, key)
    return text.format(**values) if values else text


def value_name(locale: str, kind: str, value: str | None) -> str:
    """A service's value in words: `value_name("zh-CN", "status", "resolved")` -> 已解决."""
    if value is None:
        return translate(locale, "common.none")
    named = VALUES.get(locale, {}).get(f"{kind}.{value}")
    return named or value.replace("_", " ")


def negotiate(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The cookie's language, else Accept-Language's best (by q) that we have, else `default`."""
    if cookie in LOCALES:
        return cookie
    offers: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, quality = part.strip().partition(";q=")
        try:
            q = float(quality) if quality else 1.0
        except ValueError:
            continue
        primary = tag.strip().lower().split("-")[0]
        locale = {"zh": "zh-CN", "en": "en"}.get(primary)
        if locale is not None and q > 0:
            offers.append((-q, index, locale))
    return sorted(offers)[0][2] if offers else default


def money(amount: str | None, currency: str = "CNY") -> str:
    """A decimal string as an amount: `¥1,234.50` for CNY, `USD 12.00` otherwise."""
    if amount is None:
        return "—"
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return amount
    text = f"{value:,.2f}"
    return f"¥{text}" if currency == "CNY" else f"{currency} {text}"


def when(value: str | None, zone: ZoneInfo) -> str:
    """An RFC 3339 time from a service, in the console's zone: `2026-12-03 18:59`."""
    if not value:
        return "—"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    if at.tzinfo is None:
        return at.strftime("%Y-%m-%d %H:%M")
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def duration(locale: str, seconds: float) -> str:
    """A span as `2h 05m` / `2小时05分`; days when longer than 2 days."""
    total = int(abs(seconds)) // 60
    days, rest = divmod(total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if locale == "zh-CN":
        return f"{days}天{hours}小时" if days >= 2 else f"{days * 24 + hours}小时{minutes:02d}分"
    return f"{days}d {hours}h" if days >= 2 else f"{days * 24 + hours}h {minutes:02d}m"
