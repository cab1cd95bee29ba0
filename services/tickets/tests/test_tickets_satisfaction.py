"""CSAT and NPS over time (`GET /reports/satisfaction`): the arithmetic (mean CSAT of the answers
giving one; NPS = % promoters - % detractors of the answers giving a score), the periods (weeks
from Monday and months from the 1st, in the business calendar's zone), and the route's refusals.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_tickets_flow import RULES, T0
from test_tickets_http import Audit
from tickets_fakes import InMemoryTickets

from crm_runtime.auth import Authenticator
from crm_tickets import queries
from crm_tickets.domain.satisfaction import SatisfactionFigures, period_starts
from crm_tickets.domain.ticket import Survey, Ticket
from crm_tickets.entrypoints.http import tickets_router

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")


def surveyed(
    repo: InMemoryTickets, n: int, at: datetime, csat: int | None, nps: int | None
) -> None:
    ticket, _ = Ticket.open(
        f"T-{n}",
        f"c{n}",
        at - timedelta(days=1),
        channel="phone",
        category="delivery",
        severity="low",
        grade=None,
        rules=RULES,
        actor="a1",
        description="x",
    )
    ticket.survey = Survey(f"s-{n}", at, csat, nps)
    repo.tickets[ticket.ticket_id] = ticket


def test_csat_is_the_mean_of_the_scores_given_and_nps_promoters_minus_detractors() -> None:
    answers = [(5, 10), (4, 9), (2, 3), (None, 7), (3, None)]
    total = sum(
        (
            SatisfactionFigures(
                responses=1,
                csat_total=csat or 0,
                csat_count=csat is not None,
                promoters=nps is not None and nps >= 9,
                detractors=nps is not None and nps <= 6,
                nps_count=nps is not None,
            )
            for csat, nps in answers
        ),
        SatisfactionFigures(),
    )
    summary = total.summary()
    assert summary["responses"] == 5
    assert summary["csat"] == {"average": 3.5, "count": 4}  # (5+4+2+3)/4
    # 2 promoters, 1 passive, 1 detractor of 4 scores: 50% - 25%
    assert summary["nps"] == {
        "score": 25.0,
        "responses": 4,
        "promoters": 2,
        "passives": 1,
        "detractors": 1,
    }
    empty = SatisfactionFigures().summary()
    assert empty["csat"]["average"] is None
    assert empty["nps"]["score"] is None


def test_weeks_start_on_monday_and_months_on_the_first_in_the_calendars_zone() -> None:
    # Sunday 2026-11-22 17:00 UTC is Monday 01:00 in Shanghai: its week starts that Monday.
    since = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
    weeks = period_starts(since, since + timedelta(days=8), "week", SH)
    assert [w.isoformat() for w in weeks] == [
        "2026-11-23T00:00:00+08:00",
        "2026-11-30T00:00:00+08:00",
        "2026-12-07T00:00:00+08:00",
    ]
    months = period_starts(
        datetime(2026, 12, 15, tzinfo=SH), datetime(2027, 2, 1, tzinfo=SH), "month", SH
    )
    assert [m.date().isoformat() for m in months] == ["2026-12-01", "2027-01-01", "2027-02-01"]


@pytest.fixture
def repo() -> InMemoryTickets:
    return InMemoryTickets(RULES, T0)


@pytest.fixture
def client(repo: InMemoryTickets) -> TestClient:
    auth = Authenticator({"sup": ["supervisor"], "agent": ["agent"]})
    app = FastAPI()
    app.include_router(tickets_router(repo, auth, Audit(), RULES, lambda: T0, report_max_days=366))
    return TestClient(app, headers={"Authorization": "Bearer sup"})


def test_the_report_gives_each_week_its_csat_and_nps_empty_weeks_included(
    client: TestClient, repo: InMemoryTickets
) -> None:
    monday = datetime(2026, 11, 9, tzinfo=SH)  # two weeks before T0's Monday
    surveyed(repo, 1, monday + timedelta(hours=10), 5, 10)
    surveyed(repo, 2, monday + timedelta(days=6, hours=23), 1, 0)  # Sunday night: same week
    surveyed(repo, 3, monday + timedelta(days=14, hours=1), 4, 8)  # T0's week
    surveyed(repo, 4, monday - timedelta(days=1), 2, 2)  # before `since`: not counted
    answer = client.get(
        "/reports/satisfaction", params={"interval": "week", "since": monday.isoformat()}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["interval"] == "week"
    assert report["time_zone"] == "Asia/Shanghai"
    weeks = report["periods"]
    assert [w["start"] for w in weeks] == [
        "2026-11-09T00:00:00+08:00",
        "2026-11-16T00:00:00+08:00",
        "2026-11-23T00:00:00+08:00",
    ]
    assert weeks[-1]["end"] == T0.isoformat()  # the current week ends now
    assert weeks[0]["csat"] == {"average": 3.0, "count": 2}
    assert weeks[0]["nps"]["score"] == 0.0  # one promoter, one detractor
    assert weeks[1]["responses"] == 0
    assert weeks[1]["csat"]["average"] is None
    assert weeks[2]["nps"] == {
        "score": 0.0,
        "responses": 1,
        "promoters": 0,
        "passives": 1,
        "detractors": 0,
    }
    assert report["all"]["responses"] == 3
    assert report["all"]["csat"]["average"] == 3.33


def test_the_report_by_month_defaults_to_the_last_twelve_months(
    client: TestClient, repo: InMemoryTickets
) -> None:
    surveyed(repo, 1, T0 - timedelta(days=40), 4, 9)
    report = client.get("/reports/satisfaction", params={"interval": "month"}).json()
    assert len(report["periods"]) == 13  # a partial month at each end
    assert report["periods"][0]["start"] == (T0 - timedelta(days=365)).isoformat()
    october = [p for p in report["periods"] if p["start"].startswith("2026-10")]
    assert october[0]["nps"]["score"] == 100.0


def test_bad_parameters_are_422_with_a_message_and_an_agent_is_refused(
    client: TestClient,
) -> None:
    bad = client.get("/reports/satisfaction", params={"interval": "day"})
    assert bad.status_code == 422
    assert "week" in bad.text
    backwards = {"since": T0.isoformat(), "until": (T0 - timedelta(days=1)).isoformat()}
    refused = client.get("/reports/satisfaction", params=backwards)
    assert refused.status_code == 422
    assert "`since` must be before `until`" in refused.text
    too_long = {"since": (T0 - timedelta(days=400)).isoformat(), "until": T0.isoformat()}
    assert "at most 366 days" in client.get("/reports/satisfaction", params=too_long).text
    for edge in (
        {"since": "9999-12-30T00:00:00+00:00", "until": "9999-12-31T23:00:00+00:00"},
        {"since": "0001-01-01T00:00:00+00:00", "until": "0001-01-02T00:00:00+00:00"},
        {"until": "0001-01-02T00:00:00+00:00"},
    ):  # the periods around these would not be dates: said, not a 500
        assert client.get("/reports/satisfaction", params=edge).status_code == 422, edge
    naive = client.get("/reports/satisfaction", params={"since": "2026-11-01T00:00:00"})
    assert naive.status_code == 422
    agent = client.get("/reports/satisfaction", headers={"Authorization": "Bearer agent"})
    assert agent.status_code == 403


def test_the_mongo_pipeline_groups_by_the_period_boundaries_in_utc() -> None:
    starts = period_starts(T0, T0 + timedelta(days=3), "week", SH)
    pipeline = queries.satisfaction_pipeline(T0, T0 + timedelta(days=3), starts)
    bucket = pipeline[1]["$bucket"]
    assert bucket["groupBy"] == "$survey.at"
    assert [b.isoformat() for b in bucket["boundaries"]] == [
        "2026-11-22T16:00:00+00:00",
        "2026-11-29T16:00:00+00:00",
    ]
