"""The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium) on the real stack: archive, tickets, loyalty and relations as processes, the console in
front.

An agent signs in, finds a customer registered over members.v1 by phone, opens them (the Chinese
name renders), logs a contact with the keyboard and sees it on the timeline; resolves a ticket
with a root cause; completes a task on "my work" and sees it done; sees an agreement's fulfilment
as a bar; sees neither the supervisor nor the ops page (not in the navigation, 403 when asked
directly); a POST without the CSRF token is refused; sign-out ends the session (the old
cookie no longer works). A supervisor sees the reports as charts, CSAT and NPS over time among
them; ops see each service's dead letters (a poison message among them, with its reason; notify,
not started, shown as unavailable). Every page visited is saved as
a screenshot under .local/artefacts/console/ (the path is printed), and checked for accessibility
basics: one h1, a label for every input, the main actions reachable by keyboard.
"""

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stackutil import (
    AUTH,
    DEV_TOKEN,
    ROOT,
    ServiceProcess,
    Stack,
    cloud_event,
    eventually,
    local_stack,
    order_placed,
    send,
    unique,
)

pytestmark = pytest.mark.e2e
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

TOKENS = {
    DEV_TOKEN: ["agent", "supervisor", "ops", "integration"],
    "console-agent-token": {"user": "agent-07", "roles": ["agent"]},
    "console-sup-token": {"user": "sup-01", "roles": ["supervisor"]},
    "console-ops-token": {"user": "ops-01", "roles": ["ops"]},
}
ARTEFACTS = ROOT / ".local" / "artefacts" / "console"
NAME = "王小丫"
PHONE = "+86 13911112222"


def browser_binaries() -> tuple[str, str]:
    """Debian's chromium and chromedriver, and a CJK font, installed on demand (as root, with
    apt); skip with the reason when they cannot be had here."""
    try:
        chromium = local_stack.debian_binary("chromium", "chromium")
        driver = local_stack.debian_binary("chromedriver", "chromium-driver")
        fc_list = local_stack.debian_binary("fc-list", "fontconfig")
    except RuntimeError as exc:
        pytest.skip(f"no headless Chromium here: {exc}")
    fonts = subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True, check=False)
    if not fonts.stdout.strip() and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "fonts-noto-cjk"], capture_output=True, check=False
        )
    return chromium, driver


@pytest.fixture(scope="module")
def suite(stack: Stack) -> Iterator[dict[str, ServiceProcess]]:
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("archive", "tickets", "loyalty", "relations"):
            # every day a working day: a task due "yesterday" is past whatever day the test runs
            every_day = {"rules__calendar__working_weekdays": "[0,1,2,3,4,5,6]"}
            service = ServiceProcess.isolated(
                name, stack, **(every_day if name == "relations" else {})
            )
            service.env["CRM_API_TOKENS"] = json.dumps(TOKENS)
            started[name] = service.start()
        console = ServiceProcess(
            "console",
            stack,
            env={
                "CRM_API_TOKENS": json.dumps(TOKENS),
                **{f"CRM_CONSOLE_{n.upper()}_URL": s.url for n, s in started.items()},
                "CRM_CONSOLE_NOTIFY_URL": "http://127.0.0.1:9",  # not started: shown as down
                "CRM_CONSOLE_DEFAULT_LOCALE": "zh-CN",
            },
        )
        started["console"] = console.start()
        yield started
    finally:
        for service in started.values():
            service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver_path = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"):
        options.add_argument(argument)
    options.add_argument("--lang=zh-CN")
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


class Visit:
    """The browser on the console: each page visited is screenshotted and checked."""

    def __init__(self, driver: WebDriver, console: ServiceProcess, test: str) -> None:
        self.driver = driver
        self.console = console
        self.test = test
        self.shots = 0

    def go(self, path: str) -> None:
        self.driver.get(self.console.url + path)
        self.page("get" + path.replace("/", "-"))

    def page(self, what: str) -> None:
        """Screenshot and accessibility basics of the page now shown."""
        self.shots += 1
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in what)[:60]
        path = ARTEFACTS / f"{self.test}-{self.shots:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
        self.driver.implicitly_wait(0)  # absent elements are expected below: no waiting
        try:
            self.accessible()
        finally:
            self.driver.implicitly_wait(5)

    def accessible(self) -> None:
        """One h1; a label for every input, select and text area."""
        assert len(self.driver.find_elements(By.TAG_NAME, "h1")) == 1, "one h1 per page"
        for field in self.driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
            if field.get_attribute("type") == "hidden":
                continue
            ident = field.get_attribute("id")
            labelled = ident and self.driver.find_elements(By.CSS_SELECTOR, f"label[for='{ident}']")
            wrapped = field.find_elements(By.XPATH, "ancestor::label")
            assert labelled or wrapped or field.get_attribute("aria-label"), (
                f"an input without a label: {field.get_attribute('name')}"
            )

    def sign_in(self, token: str) -> None:
        self.driver.delete_all_cookies()
        self.go("/signin")
        self.driver.find_element(By.CSS_SELECTOR, "a[lang='zh-CN']").click()  # the switch
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.ID, "signin").click()
        self.page("signed-in")
        assert self.driver.find_elements(By.ID, "signout"), "signed in"

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)


@pytest.fixture
def visit(
    browser: WebDriver, suite: dict[str, ServiceProcess], request: pytest.FixtureRequest
) -> Visit:
    return Visit(browser, suite["console"], request.node.name.removeprefix("test_")[:40])


def registered(stack: Stack, archive: ServiceProcess) -> str:
    customer = unique("console")
    data = {"name": NAME, "phone": PHONE, "city": "杭州"}
    send(stack, "members.v1", (customer, cloud_event("customer.registered", customer, data)))
    eventually(lambda: archive.get(f"/customers/{customer}").status_code == 200, timeout=30)
    return customer


def test_an_agent_finds_a_customer_by_phone_logs_a_contact_and_sees_it_on_the_timeline(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    visit.sign_in("console-agent-token")
    visit.driver.find_element(By.ID, "q").send_keys(PHONE)
    visit.driver.find_element(By.ID, "search").click()
    visit.page("search-by-phone")
    links = visit.driver.find_elements(By.CSS_SELECTOR, f"a[href='/customers/{customer}']")
    assert links, visit.text()
    links[0].click()
    visit.page("customer-360")
    assert NAME in visit.driver.find_element(By.TAG_NAME, "h1").text  # a Chinese name renders
    assert visit.driver.find_element(By.ID, "customer-name").text == NAME
    summary = f"电话回访 {unique('call')}"
    visit.driver.find_element(By.ID, "channel").send_keys("电话")
    visit.driver.find_element(By.ID, "purpose").send_keys("回访")
    # keyboard only: type the summary (the last field), Tab to the button and press Enter
    visit.driver.find_element(By.ID, "summary").send_keys(summary, Keys.TAB)
    focused = visit.driver.switch_to.active_element
    assert focused.get_attribute("id") == "log-contact"
    focused.send_keys(Keys.ENTER)
    visit.page("contact-logged")
    timeline = visit.driver.find_element(By.ID, "timeline").text
    assert summary in timeline
    assert "agent-07" in timeline
    assert "联系已记录" in visit.text()
    # on the archive, once, by the agent
    items = suite["archive"].get(f"/customers/{customer}/timeline").json()["items"]
    logged = [i for i in items if i["type"] == "contact.logged"]
    assert [i["data"]["by"] for i in logged] == ["agent-07"]


def test_an_agent_resolves_a_ticket_with_a_root_cause(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    opened = suite["tickets"].post(
        "/tickets", {"customer_id": customer, "description": "快递晚到三天", "category": "delivery"}
    )
    assert opened.status_code == 201, opened.text
    ticket = opened.json()["id"]
    visit.sign_in("console-agent-token")
    visit.go("/tickets")
    assert visit.driver.find_elements(By.CSS_SELECTOR, f"a[href='/tickets/{ticket}']")
    assert "剩余" in visit.text() or "已超时" in visit.text()  # each open ticket's SLA clock
    visit.go(f"/tickets/{ticket}")
    visit.driver.find_element(By.ID, "root_causes").send_keys("晚到, packaging")
    visit.driver.find_element(By.ID, "resolve-summary").send_keys("已补发")
    visit.driver.find_element(By.ID, "resolve").click()
    visit.page("ticket-resolved")
    status = visit.driver.find_element(By.ID, "ticket-status")
    assert status.get_attribute("data-status") == "resolved"
    assert visit.driver.find_element(By.ID, "root-causes").text == "packaging, 晚到"
    assert suite["tickets"].get(f"/tickets/{ticket}").json()["status"] == "resolved"


def test_an_agent_sees_neither_the_supervisor_nor_the_ops_page(visit: Visit) -> None:
    visit.sign_in("console-agent-token")
    nav = [
        a.get_attribute("data-nav") for a in visit.driver.find_elements(By.CSS_SELECTOR, "nav a")
    ]
    assert "customers" in nav
    assert "supervisor" not in nav
    assert "ops" not in nav
    assert "work" in nav
    assert "agreements" in nav
    for path in ("/supervisor", "/ops"):
        visit.go(path)
        assert "您没有执行此操作的权限" in visit.driver.find_element(By.ID, "error").text


def test_a_supervisor_sees_the_reports_as_charts(visit: Visit) -> None:
    visit.sign_in("console-sup-token")
    visit.go("/supervisor")
    assert len(visit.driver.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 1
    assert "主管" in visit.driver.find_element(By.TAG_NAME, "h1").text


def test_a_supervisor_sees_csat_and_nps_over_time(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    opened = suite["tickets"].post(
        "/tickets", {"customer_id": customer, "description": "包裹破损", "category": "delivery"}
    )
    assert opened.status_code == 201, opened.text
    survey = {"survey_id": unique("s"), "ticket_id": opened.json()["id"], "csat": 4, "nps": 9}
    send(stack, "callcenter.v1", (customer, cloud_event("survey.answered", customer, survey)))

    def counted() -> bool:
        report = suite["tickets"].get("/reports/satisfaction").json()
        return bool(report["all"]["responses"] >= 1)

    eventually(counted, timeout=30)
    visit.sign_in("console-sup-token")
    visit.go("/supervisor")
    section = visit.driver.find_element(By.ID, "satisfaction")
    assert "满意度与净推荐值趋势" in section.text
    trends = section.find_elements(By.CSS_SELECTOR, "svg.chart.trend")
    assert [t.get_attribute("aria-label") for t in trends] == [
        "满意度（平均分，1–5）",
        "净推荐值（推荐者占比 − 贬损者占比，−100 至 100）",
    ]
    section.find_element(By.LINK_TEXT, "按月").click()
    visit.page("supervisor-by-month")
    assert visit.driver.find_elements(By.CSS_SELECTOR, "#satisfaction svg.chart.trend")


def test_ops_see_each_services_dead_letters_with_the_reason(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer, event_id = unique("c"), unique("poison")
    poison = json.dumps(
        {"specversion": "1.0", "id": event_id, "type": "survey.answered", "subject": customer}
    ).encode()  # no source, time or data: not an event
    send(stack, "callcenter.v1", (customer, poison))

    def dead_lettered() -> bool:
        letters = suite["tickets"].get("/dead-letters", limit=200).json()["items"]
        return any(letter["event_id"] == event_id for letter in letters)

    eventually(dead_lettered, timeout=30)
    visit.sign_in("console-ops-token")
    visit.go("/ops")
    section = visit.driver.find_element(By.ID, "dead-letters")
    text = section.text
    assert "tickets.dlq.v1" in text
    assert event_id in text
    assert "EventDecodeError" in text
    assert "callcenter.v1/" in text
    assert "暂时不可用" in text  # notify is not started
    assert customer not in text


def test_a_post_without_the_csrf_token_is_refused(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    visit.sign_in("console-agent-token")
    cookie = visit.driver.get_cookie("console_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    forged = httpx.post(
        f"{suite['console'].url}/customers/{customer}/notes",
        data={"text": "forged"},
        cookies={"console_session": cookie["value"]},
    )
    assert forged.status_code == 403
    notes = httpx.get(f"{suite['archive'].url}/customers/{customer}/notes", headers=AUTH).json()
    assert notes["items"] == []


def test_sign_out_ends_the_session(suite: dict[str, ServiceProcess], visit: Visit) -> None:
    visit.sign_in("console-agent-token")
    cookie: dict[str, Any] | None = visit.driver.get_cookie("console_session")
    assert cookie is not None
    visit.driver.find_element(By.ID, "signout").click()
    visit.page("signed-out")
    assert "您已退出登录" in visit.text()
    old = httpx.get(
        f"{suite['console'].url}/customers", cookies={"console_session": cookie["value"]}
    )
    assert old.status_code == 303
    assert old.headers["location"].startswith("/signin")


def test_an_agent_finds_a_customer_by_part_of_their_name(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    visit.sign_in("console-agent-token")
    visit.driver.find_element(By.ID, "q").send_keys("小丫")
    visit.driver.find_element(By.ID, "search").click()
    visit.page("search-by-name")
    assert visit.driver.find_elements(By.CSS_SELECTOR, f"a[href='/customers/{customer}']")


def test_an_agent_completes_a_task_on_my_work_and_sees_it_done(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    relations = suite["relations"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    made = httpx.post(
        f"{relations.url}/tasks",
        json={"customer_id": customer, "kind": "callback", "due_on": yesterday},
        headers={"Authorization": "Bearer console-agent-token", "Idempotency-Key": unique("k")},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    task = made.json()["task_id"]
    visit.sign_in("console-agent-token")
    visit.go("/work")
    row = f"tr[data-task='{task}']"
    assert visit.driver.find_elements(By.CSS_SELECTOR, row), visit.text()
    visit.driver.find_element(By.ID, f"outcome-{task}").send_keys("已联系上")
    visit.driver.find_element(By.ID, f"summary-{task}").send_keys("客户同意续费")
    visit.driver.find_element(By.CSS_SELECTOR, f"{row} button.complete").click()
    visit.page("task-completed")
    assert "任务已完成" in visit.text()
    visit.driver.implicitly_wait(0)
    try:
        assert not visit.driver.find_elements(By.CSS_SELECTOR, row)  # no longer due
    finally:
        visit.driver.implicitly_wait(5)
    done = httpx.get(
        f"{relations.url}/tasks/{task}",
        headers={"Authorization": "Bearer console-agent-token"},
        timeout=10,
    ).json()
    assert (done["status"], done["outcome"], done["completed_by"]) == (
        "done",
        "reached",
        "agent-07",
    )
    visit.go("/tasks?status=done")
    assert "已联系上" in visit.driver.find_element(By.CSS_SELECTOR, row).text


def test_the_agreements_page_shows_each_period_as_a_bar(
    stack: Stack, suite: dict[str, ServiceProcess], visit: Visit
) -> None:
    customer = registered(stack, suite["archive"])
    today = datetime.now(UTC).date()
    number = unique("HZ")
    body = {
        "customer_id": customer,
        "number": number,
        "owner": "agent-07",
        "starts_on": (today - timedelta(days=2)).isoformat(),
        "ends_on": (today + timedelta(days=365)).isoformat(),
        "terms": {"period": "quarter", "measure": "spend", "minimum": "100000"},
    }
    made = suite["relations"].post("/agreements", body, headers={"Idempotency-Key": unique("k")})
    assert made.status_code == 201, made.text
    agreement = made.json()["agreement_id"]
    send(stack, "orders.v1", (customer, order_placed(customer, unique("o"), "30000.00")))
    path = f"/agreements/{agreement}"

    def counted() -> Decimal:
        return Decimal(suite["relations"].get(path).json()["current_period"]["fulfilled"])

    eventually(lambda: counted() == 30000, timeout=60)
    visit.sign_in("console-agent-token")
    visit.go(f"/agreements?customer={customer}")
    card = visit.driver.find_element(By.CSS_SELECTOR, f"[data-agreement='{agreement}']")
    assert number in card.text
    assert "¥30,000.00" in card.text
    bars = card.find_elements(By.CSS_SELECTOR, "svg.fulfilment rect:not(.track)")
    assert len(bars) == 1  # the current period's, 30% of its minimum
    assert float(bars[0].get_attribute("width") or 0) > 0
