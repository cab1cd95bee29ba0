"""The console against in-memory stand-ins of the services (console_fakes): sign-in and
sign-out, CSRF, roles, errors said in the person's language, a service down in one part of a
page while the rest works, the language choice and how amounts read. The real services and a
real browser: tests/e2e/test_console.py."""

import html
import re

import pytest
from console_fakes import TICKET_ROW, FakeSuite
from fastapi.testclient import TestClient

from crm_console import i18n
from crm_console.app import build_app
from crm_console.settings import ConsoleSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def suite() -> FakeSuite:
    return FakeSuite()


@pytest.fixture
def client(suite: FakeSuite) -> TestClient:
    settings = ConsoleSettings(
        archive_url="http://archive",
        tickets_url="http://tickets",
        loyalty_url="http://loyalty",
        notify_url="http://notify",
        relations_url="http://relations",
        default_locale="en",
    )
    return TestClient(build_app(settings, transport=suite.transport()), follow_redirects=False)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name} in the page"
    return html.unescape(found.group(1))


def sign_in(client: TestClient, token: str) -> str:
    """Sign in; the session's CSRF token (from a page's forms)."""
    form = client.get("/signin")
    answer = client.post(
        "/signin", data={"csrf": hidden(form.text, "csrf"), "token": token, "next": "/customers"}
    )
    assert answer.status_code == 303, answer.text
    return hidden(client.get("/customers").text, "csrf")


def test_a_page_without_a_session_sends_the_person_to_sign_in(client: TestClient) -> None:
    answer = client.get("/customers/c-1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=/customers/c-1"


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_token(
    client: TestClient,
) -> None:
    form = client.get("/signin")
    answer = client.post(
        "/signin", data={"csrf": hidden(form.text, "csrf"), "token": "agent-token"}
    )
    cookie = next(v for k, v in answer.headers.multi_items() if v.startswith("console_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "agent-token" not in cookie
    page = client.get("/customers")
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'none'" in page.headers["content-security-policy"]


def test_sign_in_with_a_bad_token_says_so_and_makes_no_session(client: TestClient) -> None:
    form = client.get("/signin")
    answer = client.post("/signin", data={"csrf": hidden(form.text, "csrf"), "token": "nope"})
    assert answer.status_code == 401
    assert "That token is not valid." in answer.text
    assert "console_session" not in client.cookies


def test_an_integration_token_cannot_sign_in(client: TestClient) -> None:
    form = client.get("/signin")
    token = {"csrf": hidden(form.text, "csrf"), "token": "integration-token"}
    answer = client.post("/signin", data=token)
    assert answer.status_code == 403
    assert "no role the console serves" in answer.text


def test_sign_in_without_the_forms_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/signin")
    answer = client.post("/signin", data={"token": "agent-token"})
    assert answer.status_code == 403
    assert "console_session" not in client.cookies


def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "agent-token")
    body = {"key": "k-1", "channel": "call", "summary": "hello"}
    answer = client.post("/customers/c-1/contacts", data=body)
    assert answer.status_code == 403
    assert "This form has expired" in answer.text
    forged = client.post("/customers/c-1/contacts", data={**body, "csrf": "forged"})
    assert forged.status_code == 403
    assert suite.contacts == []


def test_a_contact_logged_from_the_form_is_on_the_timeline_once(
    client: TestClient, suite: FakeSuite
) -> None:
    csrf = sign_in(client, "agent-token")
    page = client.get("/customers/c-1").text
    key = hidden(page, "key")
    form = {"csrf": csrf, "key": key, "channel": "visit", "summary": "拜访王小丫"}
    first = client.post("/customers/c-1/contacts", data=form)
    again = client.post("/customers/c-1/contacts", data=form)  # a double submit
    assert first.status_code == again.status_code == 303
    assert len(suite.contacts) == 1
    shown = client.get("/customers/c-1").text
    assert "Contact logged." in shown
    assert "拜访王小丫" in shown


def test_sign_out_ends_the_session_and_the_old_cookie_no_longer_works(client: TestClient) -> None:
    csrf = sign_in(client, "agent-token")
    old = client.cookies["console_session"]
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    client.cookies.set("console_session", old)
    assert client.get("/customers").status_code == 303  # to sign-in


def test_an_agent_sees_no_supervisor_or_ops_page(client: TestClient) -> None:
    sign_in(client, "agent-token")
    page = client.get("/customers").text
    assert 'href="/supervisor"' not in page
    assert 'href="/ops"' not in page
    for path in ("/supervisor", "/ops"):
        refused = client.get(path)
        assert refused.status_code == 403
        assert "You do not have permission for this." in refused.text


def test_a_supervisor_sees_the_reports_as_charts(client: TestClient) -> None:
    sign_in(client, "sup-token")
    page = client.get("/supervisor")
    assert page.status_code == 200
    assert page.text.count("<svg") >= 4
    assert "晚到" in page.text


def test_a_service_that_is_down_shows_in_its_part_while_the_rest_renders(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "agent-token")
    suite.down.add("loyalty")
    page = client.get("/customers/c-1")
    assert page.status_code == 200
    assert "loyalty is unavailable right now." in page.text
    assert "王小丫" in page.text  # the archive's part
    assert "¥12,345.60" in page.text


def test_a_service_refusal_is_said_in_the_persons_language(
    client: TestClient, suite: FakeSuite
) -> None:
    csrf = sign_in(client, "agent-token")
    client.cookies.set(i18n.LANG_COOKIE, "zh-CN")
    done = client.post("/tickets/t-1/resolve", data={"csrf": csrf, "root_causes": "晚到"})
    assert done.status_code == 303
    page = client.get("/tickets").text
    assert "当前无法执行该操作" in page
    missing = client.post("/tickets/t-1/resolve", data={"csrf": csrf, "root_causes": " "})
    assert missing.status_code == 303
    assert "请填写：根本原因" in client.get("/tickets").text


def test_an_agent_setting_the_owner_is_refused_by_the_console(client: TestClient) -> None:
    csrf = sign_in(client, "agent-token")
    refused = client.post("/customers/c-1/owner", data={"csrf": csrf, "account_owner": "x"})
    assert refused.status_code == 403


def test_an_unknown_customer_and_page_are_404_pages_not_traces(client: TestClient) -> None:
    sign_in(client, "agent-token")
    for path in ("/customers/c-404", "/no-such-page"):
        page = client.get(path)
        assert page.status_code == 404
        assert "<h1>" in page.text
        assert "Traceback" not in page.text


def test_the_language_follows_the_cookie_then_accept_language() -> None:
    assert i18n.negotiate(None, "en-US,en;q=0.9", "zh-CN") == "en"
    assert i18n.negotiate(None, "fr, zh-TW;q=0.5, en;q=0.4", "en") == "zh-CN"
    assert i18n.negotiate("en", "zh-CN", "zh-CN") == "en"
    assert i18n.negotiate("xx", None, "zh-CN") == "zh-CN"


def test_the_two_catalogues_have_the_same_keys() -> None:
    assert set(i18n.EN) == set(i18n.ZH)


def test_amounts_read_as_cny() -> None:
    assert i18n.money("1234.5") == "¥1,234.50"
    assert i18n.money("-12.00") == "¥-12.00"
    assert i18n.money("99.90", "USD") == "USD 99.90"


def test_a_service_answering_5xx_shows_as_unavailable_in_its_part(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "agent-token")
    suite.broken.add("tickets")
    page = client.get("/customers/c-1")
    assert page.status_code == 200
    assert "tickets is unavailable right now." in page.text
    assert "王小丫" in page.text


def test_no_edit_form_when_the_archive_does_not_version_customers(client: TestClient) -> None:
    sign_in(client, "agent-token")
    assert 'action="/customers/c-1/profile"' not in client.get("/customers/c-1").text


def test_an_edit_is_sent_with_if_match_and_a_stale_one_is_said_in_the_persons_language(
    client: TestClient, suite: FakeSuite
) -> None:
    suite.version = 3
    csrf = sign_in(client, "agent-token")
    page = client.get("/customers/c-1").text
    version = hidden(page, "version")
    assert version == '"3"'
    form = {"csrf": csrf, "version": version, "name": "王小雅", "phone": "", "city": "杭州"}
    assert client.post("/customers/c-1/profile", data=form).status_code == 303
    assert suite.patches == [{"name": "王小雅", "phone": None, "email": None, "city": "杭州"}]
    assert "Profile saved." in client.get("/customers/c-1").text
    # the same form again: someone (this person) changed the customer since it was rendered
    client.cookies.set(i18n.LANG_COOKIE, "zh-CN")
    assert client.post("/customers/c-1/profile", data=form).status_code == 303
    assert "其他人刚刚修改了该记录，请刷新后重试。" in client.get("/customers/c-1").text
    assert len(suite.patches) == 1


def test_the_owner_is_set_on_the_version_read(client: TestClient, suite: FakeSuite) -> None:
    suite.version = 5
    csrf = sign_in(client, "sup-token")
    version = hidden(client.get("/customers/c-1").text, "version")
    form = {"csrf": csrf, "version": version, "account_owner": "owner-01"}
    assert client.post("/customers/c-1/owner", data=form).status_code == 303
    assert suite.patches == [{"account_owner": "owner-01"}]
    assert "Account owner set." in client.get("/customers/c-1").text


def test_my_work_lists_my_tasks_due_and_overdue_and_completes_one_with_its_outcome(
    client: TestClient, suite: FakeSuite
) -> None:
    csrf = sign_in(client, "agent-token")
    page = client.get("/work").text
    assert page.index('data-task="t-late"') < page.index('data-task="t-today"')  # by due time
    assert 'for="outcome-t-late"' in page  # each input has its label
    done = client.post(
        "/tasks/t-late/complete",
        data={
            "csrf": csrf,
            "outcome": "reached",
            "summary": "客户满意",
            "next_follow_up_on": "2027-01-10",
            "next": "/work",
        },
    )
    assert (done.status_code, done.headers["location"]) == (303, "/work")
    assert suite.completed == [
        ("t-late", {"outcome": "reached", "summary": "客户满意", "next_follow_up_on": "2027-01-10"})
    ]
    after = client.get("/work").text
    assert "Task completed." in after
    assert 'data-task="t-late"' not in after  # no longer open or overdue


def test_completing_a_task_without_csrf_or_twice_changes_nothing_and_says_why(
    client: TestClient, suite: FakeSuite
) -> None:
    csrf = sign_in(client, "agent-token")
    refused = client.post("/tasks/t-late/complete", data={"outcome": "reached"})
    assert refused.status_code == 403
    assert suite.completed == []
    suite.tasks["t-late"]["status"] = "done"
    client.post("/tasks/t-late/complete", data={"csrf": csrf, "outcome": "reached"})
    assert "That cannot be done now: task t-late is done" in client.get("/work").text
    client.post("/tasks/t-today/complete", data={"csrf": csrf, "outcome": ""})
    assert "Please fill in: Outcome" in client.get("/work").text
    assert suite.completed == []


def test_relations_down_shows_in_the_tasks_part_while_my_tickets_render(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "agent-token")
    suite.tickets = [TICKET_ROW]
    suite.down.add("relations")
    page = client.get("/work")
    assert page.status_code == 200
    assert "relations is unavailable right now." in page.text
    assert "T-1" in page.text
    customer = client.get("/customers/c-1")
    assert customer.status_code == 200
    assert customer.text.count("relations is unavailable right now.") == 2  # tasks, agreements
    assert "王小丫" in customer.text


def test_the_customer_page_shows_their_open_tasks_and_agreements(client: TestClient) -> None:
    sign_in(client, "agent-token")
    page = client.get("/customers/c-1").text
    assert page.count('<li class="task">') == 2
    assert "HZ-001" in page
    assert "HZ-002" in page


def test_agreements_show_a_bar_per_period_those_at_risk_first(client: TestClient) -> None:
    sign_in(client, "ops-token")
    page = client.get("/agreements")
    assert page.status_code == 200
    text = page.text
    assert text.index("HZ-002") < text.index("HZ-001")  # projected 40,000 of 100,000: at risk
    assert text.count('<svg class="chart fulfilment"') == 2
    assert text.count('<rect class="met"') == 2  # the closed quarter of each, met
    assert text.count('<rect class="at_risk"') == 1
    assert text.count("<h1>") == 1


def test_the_supervisor_page_charts_follow_up_completion_by_owner(client: TestClient) -> None:
    sign_in(client, "sup-token")
    page = client.get("/supervisor").text
    assert "agent-07 (3/4)" in page
    assert "75%" in page


def test_the_ticket_queue_is_one_call_and_shows_each_tickets_sla_countdown(
    client: TestClient, suite: FakeSuite
) -> None:
    """The list rows carry the SLA clocks: no ticket is read one by one (each such read is an
    audited personal-data read and made the queue slow)."""
    sign_in(client, "agent-token")
    suite.tickets = [TICKET_ROW]
    for path in ("/tickets", "/work"):
        page = client.get(path).text
        assert "first response: due in" in page
        assert "resolution: due in" in page
    assert suite.ticket_reads == []


def test_an_agent_sees_tasks_and_agreements_but_ops_no_tasks(client: TestClient) -> None:
    sign_in(client, "agent-token")
    nav = client.get("/customers").text
    assert 'href="/tasks"' in nav
    assert 'href="/agreements"' in nav
    assert "(coming)" not in nav
    assert client.get("/tasks").status_code == 200
    client.cookies.clear()
    sign_in(client, "ops-token")
    assert 'href="/tasks"' not in client.get("/customers").text
    assert client.get("/tasks").status_code == 403


def test_the_current_period_has_its_bar_before_any_order_counts_in_it(
    client: TestClient, suite: FakeSuite
) -> None:
    for found in suite.agreements:
        found["periods"] = []  # a new agreement: relations has no period aggregate yet
    sign_in(client, "sup-token")
    page = client.get("/agreements").text
    assert page.count('<rect class="at_risk"') == 1
    assert page.count('<rect class="open"') == 1


def test_the_supervisor_page_draws_csat_and_nps_over_time_by_week_or_month(
    client: TestClient,
) -> None:
    sign_in(client, "sup-token")
    page = client.get("/supervisor").text
    section = page[page.index('id="satisfaction"') :]
    assert 'aria-label="CSAT (mean score, 1-5)"' in section
    assert 'aria-label="NPS (% promoters - % detractors, -100 to 100)"' in section
    assert "<polyline" in section
    assert "11-23" in section
    assert "CSAT 4.25 of 4 answers, NPS 50.0 of 4 scores" in section
    monthly = client.get("/supervisor?interval=month").text
    assert "2026-11" in monthly[monthly.index('id="satisfaction"') :]
    assert client.get("/supervisor?interval=<b>").status_code == 200  # read as a week


def test_the_satisfaction_chart_says_tickets_is_unavailable_when_it_is_down(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "sup-token")
    client.cookies.set(i18n.LANG_COOKIE, "zh-CN")
    suite.down.add("tickets")
    page = client.get("/supervisor")
    assert page.status_code == 200
    section = page.text[page.text.index('id="satisfaction"') :]
    assert "暂时不可用" in section[: section.index("</section>")]
    assert "积分负债" in page.text  # loyalty's part still renders


def test_the_ops_page_lists_each_services_dead_letters_and_a_service_down_as_such(
    client: TestClient, suite: FakeSuite
) -> None:
    sign_in(client, "ops-token")
    suite.down.add("notify")
    page = client.get("/ops")
    assert page.status_code == 200
    section = page.text[page.text.index('id="dead-letters"') :]
    section = section[: section.index("</section>")]
    assert "1 in archive.dlq.v1" in section
    assert "orders.v1/7@1207" in section
    assert "e-poison-1" in section
    assert "invalid event: source: Field required" in section
    assert "0 in loyalty.dlq.v1" in section
    assert "notify is unavailable right now." in section
    assert "<svg" not in section
