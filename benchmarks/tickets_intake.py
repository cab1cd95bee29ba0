"""Tickets on the real local stack: complaint.reported -> ticket.opened latency, intake rate.

    python benchmarks/tickets_intake.py [--latency-complaints 100] [--complaints 3000]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL) and a tickets service with ten agents. Latency: complaints are sent one at a time
(every 50 ms) and each is timed from the send to its `ticket.opened` on `tickets.v1`. Intake:
`callcenter.v1` is pre-loaded with complaints, a fresh tickets instance starts, and is timed from
ready to the last complaint applied. Prints a table.
"""

import argparse
import asyncio
import json
import time
import urllib.request
from typing import Any

from benchutil import latencies, latency_row, print_table, private_stack, time_ingest
from stackutil import DEV_TOKEN, cloud_event, produce

CATEGORIES = ["product", "delivery", "service", "billing", "other"]


def complaint(customer: str, complaint_id: str, n: int) -> bytes:
    return cloud_event(
        "complaint.reported",
        customer,
        {
            "complaint_id": complaint_id,
            "channel": "phone",
            "description": "包裹破损",
            "category": CATEGORIES[n % len(CATEGORIES)],
            "severity": ["low", "medium", "high", "critical"][n % 4],
        },
    )


def add_agents(port: int) -> None:
    queues = ["product", "delivery", "service", "billing", "general"]
    for n in range(10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/agents/agent-{n}",
            data=json.dumps(
                {"name": f"Agent {n}", "queues": [queues[n % 5]], "capacity": 1000}
            ).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {DEV_TOKEN}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-complaints", type=int, default=100)
    parser.add_argument("--complaints", type=int, default=3_000)
    args = parser.parse_args()
    run = f"bench{int(time.time())}"
    with private_stack() as bench:
        env = {"CRM_TICKETS_DATABASE": f"crm_tickets_{run}", "CRM_TICKETS_CONSUMER_GROUP": run}
        port, proc = bench.start_service("tickets", env)
        add_agents(port)
        probes = [
            (
                "callcenter.v1",
                f"{run}-c{n}",
                complaint(f"{run}-c{n}", f"{run}-k{n}", n),
                f"{run}-k{n}",
            )
            for n in range(args.latency_complaints)
        ]

        def opened(event: dict[str, Any]) -> str | None:
            data = event.get("data") or {}
            return data.get("complaint_id") if event.get("type") == "ticket.opened" else None

        times = asyncio.run(latencies(bench.bootstrap, probes, "tickets.v1", opened))
        proc.terminate()

        messages = [
            (f"{run}-b{n % 1000}", complaint(f"{run}-b{n % 1000}", f"{run}-bk{n}", n))
            for n in range(args.complaints)
        ]
        asyncio.run(produce(bench.bootstrap, "callcenter.v1", messages))
        env = {
            "CRM_TICKETS_DATABASE": f"crm_tickets_{run}_b",
            "CRM_TICKETS_CONSUMER_GROUP": f"{run}-b",
            "CRM_TICKETS_SWEEPS_ENABLED": "false",
        }
        port, proc = bench.start_service("tickets", env)
        total = args.complaints + args.latency_complaints
        elapsed, peak = time_ingest(port, proc.pid, total)
        print_table(
            "Tickets: complaint.reported -> ticket.opened (assigned)",
            ("complaints timed", "p50 ms", "p95 ms", "max ms"),
            [latency_row(times)],
        )
        print_table(
            "Tickets intake (no agents: tickets wait in their queues)",
            ("complaints", "seconds", "events/s", "peak RSS MB"),
            [(total, f"{elapsed:.1f}", f"{total / elapsed:.0f}", f"{peak:.0f}")],
        )


if __name__ == "__main__":
    main()
