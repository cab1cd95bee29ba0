"""The console's pages on the demo's data: p50 / p95 / max per page (target p95 < 300 ms).

    python benchmarks/console_pages.py [--customers 300] [--requests 40]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL), archive, tickets, loyalty and relations, replays the demo's traffic
(deploy/local/demo.py: customers, orders, complaints, surveys over two years; relations makes its
tasks from them), starts the console in front, signs in as the demo agent and supervisor (and
the dev token for the ops page), and times each page from request to the last byte, one request
at a time. Prints a table, with the load average.
"""

import argparse
import asyncio
import os
import re
import time

import benchutil  # first: it puts deploy/local and tests on the path
import demo
import httpx
import stack
from stackutil import AUTH, free_port

AGENT, SUPERVISOR = "crm-demo-agent-07", "crm-demo-sup-01"


def signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    form = client.get("/signin").text
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match, "no CSRF field on the sign-in form"
    answer = client.post("/signin", data={"csrf": match.group(1), "token": token})
    assert answer.status_code == 303, answer.text
    return client


def timed(client: httpx.Client, paths: list[str]) -> list[float]:
    times = []
    for path in paths:
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with benchutil.private_stack() as bench:
        ports = {
            name: bench.start_service(name, {})[0]
            for name in ("archive", "tickets", "loyalty", "relations")
        }
        tickets = f"http://127.0.0.1:{ports['tickets']}"
        for n, queue in enumerate(["product", "delivery", "service", "billing", "general"]):
            body = {"name": f"Agent {n}", "queues": [queue], "capacity": 50}
            httpx.put(f"{tickets}/agents/agent-{n + 1}", json=body, headers=AUTH, timeout=10)
        body = {"name": "Agent 07", "queues": ["delivery", "service"], "capacity": 50}
        httpx.put(f"{tickets}/agents/agent-07", json=body, headers=AUTH, timeout=10)
        traffic = demo.generate(args.customers, seed=7)
        before = {name: demo.handled(port) for name, port in ports.items()}
        asyncio.run(demo.send(bench.bootstrap, traffic))
        sent = {
            "archive": len(traffic),
            "loyalty": sum(1 for _, s in traffic if s.topic in ("members.v1", "orders.v1")),
            "tickets": sum(1 for _, s in traffic if s.topic == "callcenter.v1"),
        }
        for name, port in ports.items():
            # relations reads the others' events too (archive.v1, tickets.v1): until quiet
            demo.await_handled(name, port, before[name] + sent.get(name, 0))

        console_port = free_port()
        proc = stack.start_service(
            "console",
            {**os.environ, **stack.console_env(console_port, ports)},
            bench.workdir / "console.log",
        )
        bench.pids.append(proc.pid)
        stack.wait_for(lambda: stack.service_ready(console_port), "console", 60, proc)
        url = f"http://127.0.0.1:{console_port}"

        archive = f"http://127.0.0.1:{ports['archive']}"
        found = httpx.get(f"{archive}/customers", params={"limit": 200}, headers=AUTH).json()
        customers = [c["id"] for c in found["items"]]
        listed = httpx.get(f"{tickets}/tickets", params={"limit": 200}, headers=AUTH).json()
        ticket_ids = [t["id"] for t in listed["items"]] or ["none"]
        n = args.requests
        agent, supervisor = signed_in(url, AGENT), signed_in(url, SUPERVISOR)
        ops = signed_in(url, stack.DEV_TOKEN)  # the local stack's one token with the ops role
        pages = {
            "/customers (first page)": (agent, ["/customers"] * n),
            "/customers?grade=vip&sort": (agent, ["/customers?grade=vip"] * n),
            "/customers/{id} (360°)": (
                agent,
                [f"/customers/{customers[i % len(customers)]}" for i in range(n)],
            ),
            "/tickets (queue, SLA)": (agent, ["/tickets"] * n),
            "/tickets/{id}": (
                agent,
                [f"/tickets/{ticket_ids[i % len(ticket_ids)]}" for i in range(n)],
            ),
            "/work": (agent, ["/work"] * n),
            "/tasks": (agent, ["/tasks"] * n),
            "/agreements": (agent, ["/agreements"] * n),
            "/supervisor (charts)": (supervisor, ["/supervisor"] * n),
            "/ops (dead letters, audit)": (ops, ["/ops"] * n),
        }
        rows = []
        for page, (client, paths) in pages.items():
            client.get(paths[0])  # warm
            rows.append((page, *benchutil.latency_row(timed(client, paths))))
        benchutil.print_table(
            f"Console pages, {args.customers} demo customers, {len(traffic)} events, "
            f"one request at a time (load average {os.getloadavg()[0]:.2f})",
            ["page", "requests", "p50 ms", "p95 ms", "max ms"],
            rows,
        )


if __name__ == "__main__":
    main()
