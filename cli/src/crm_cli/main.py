"""The `crm` command: topics, send and replay events, dead letters, rebuilds, imports, backups.

Every command that talks to Kafka takes `--bootstrap` (default `KAFKA_BOOTSTRAP_SERVERS`, else
127.0.0.1:9092) and the services' transport security from the environment
(`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`). A user mistake or an unreachable broker
is one line on stderr and an exit code: 1 invalid input (the rest was done), 2 usage, 3 Kafka,
4 a service's HTTP API (`crm import`: the archive, at `--archive-url` with `--token`).
`crm backup` and `crm restore` also reach MongoDB at `MONGODB_URL` (credentials and TLS from the
services' `MONGODB_*` variables); their database errors exit 1.
"""

import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from crm_cli import backup as backups
from crm_cli import dlq as dead_letters
from crm_cli import events, importing, publish
from crm_cli import rebuild as rebuilds
from crm_cli import topics as topic_state
from crm_cli.connection import DEFAULT_BOOTSTRAP, client_options, run
from crm_cli.errors import EXIT_INVALID, CliError, check_service
from crm_contracts.topics import dlq_topic_name

app = typer.Typer(
    help="Operate the CRM suite: topics, events, dead letters, rebuilds, imports, backups.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
dlq_app = typer.Typer(
    help="Dead letters: list them, send them back after a fix.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(dlq_app, name="dlq")
import_app = typer.Typer(
    help="Bring records in from a spreadsheet: `crm import customers FILE`.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(import_app, name="import")
backup_app = typer.Typer(rich_markup_mode="markdown")  # help: `backup_command`'s docstring
app.add_typer(backup_app, name="backup")


@app.callback()
def main() -> None:
    """Operate the CRM suite: topics, events, dead letters, rebuilds, imports, backups."""
    quiet = logging.getLogger("aiokafka")  # its connection warnings: our errors say it in one line
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False


P = ParamSpec("P")
R = TypeVar("R")

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        "-b",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        show_envvar=True,
        help="Kafka bootstrap servers, host:port[,host:port].",
    ),
]
EventsFile = Annotated[
    Path, typer.Argument(help="JSON-lines file: one CloudEvent per line.", show_default=False)
]
TopicOverride = Annotated[
    str | None,
    typer.Option("--topic", "-t", help="Send every line to this topic instead of its type's."),
]
Force = Annotated[
    bool, typer.Option("--force", help="Send invalid lines too (they are still reported).")
]
Service = Annotated[str, typer.Argument(help="archive, tickets, loyalty, notify or relations.")]


def errors_handled(command: Callable[P, R]) -> Callable[P, R]:
    """A `CliError` (or Ctrl-C) becomes one line on stderr and an exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exc.code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


# -- topics ----------------------------------------------------------------------------------
@app.command("topics")
@errors_handled
def topics_command(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    create: Annotated[
        bool,
        typer.Option("--create", help="Create the missing topics; set the registry's retention."),
    ] = False,
    replication_factor: Annotated[
        int, typer.Option("--replication-factor", min=1, help="For topics created.")
    ] = 1,
) -> None:
    """List the suite's topics as the contracts declare them and as the broker has them.

    Exits 1 when a topic is missing (and was not created).
    """
    options = client_options(bootstrap)
    states = run(
        bootstrap,
        topic_state.check_topics(options, create=create, replication_factor=replication_factor),
    )
    rows = [("topic", "declared", "broker", "status"), *topic_state.table_rows(states)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        typer.echo("  ".join([*cells, row[3]]))
    missing = [s.declared.name for s in states if s.missing and not s.created]
    if missing:
        typer.echo(f"{len(missing)} missing: `crm topics --create` creates them", err=True)
        raise typer.Exit(EXIT_INVALID)


# -- send / replay ---------------------------------------------------------------------------
def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _send_file(
    path: Path,
    bootstrap: str,
    *,
    topic: str | None,
    force: bool,
    rate: float | None,
    progress: bool,
    verb: str,
) -> publish.Report:
    if rate is not None and rate <= 0:
        raise CliError("--rate must be more than 0 events/s")
    events.check_file(path)
    options = client_options(bootstrap)
    lines = events.read_lines(path, topic=topic)
    console = Console(stderr=True, highlight=False)

    def report_invalid(line: events.Line) -> None:
        note = " (sent anyway: --force)" if force and line.topic else ""
        console.print(f"line {line.number}: {line.reason}{note}", markup=False, soft_wrap=True)

    bar = _progress(console) if progress else None
    with bar or contextlib.nullcontext():
        task = bar.add_task(verb, total=events.count_lines(path)) if bar else None

        def on_line(line: events.Line) -> None:
            if bar is not None and task is not None:
                bar.advance(task)

        return run(
            bootstrap,
            publish.publish(
                options,
                lines,
                force=force,
                rate=rate,
                topic=topic,
                on_line=on_line,
                on_invalid=report_invalid,
            ),
        )


def _summary(report: publish.Report, verb: str) -> None:
    per_topic = ", ".join(f"{name}: {count}" for name, count in sorted(report.sent.items()))
    rate = report.total_sent / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"{verb} {report.total_sent} event(s)"
        + (f" ({per_topic})" if per_topic else "")
        + f" in {report.seconds:.1f} s ({rate:.0f} events/s); "
        f"{len(report.invalid)} invalid"
        + (f" ({report.forced} sent anyway)" if report.forced else " (not sent)")
        + f", {len(report.failed)} failed"
    )
    for line, reason in report.failed:
        typer.echo(f"line {line.number}: not sent: {reason}", err=True)
    if not report.ok:
        raise typer.Exit(EXIT_INVALID)


@app.command("send")
@errors_handled
def send_command(
    file: EventsFile,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: TopicOverride = None,
    force: Force = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = False,
) -> None:
    """Send the events of a JSON-lines file, each to its type's topic, keyed by its subject.

    Every line is checked with the contracts' decoder first; invalid lines are reported with
    their line number and reason and not sent (unless --force). Exits 1 if any was invalid.
    """
    report = _send_file(
        file, bootstrap, topic=topic, force=force, rate=None, progress=progress, verb="sending"
    )
    _summary(report, "sent")


@app.command("replay")
@errors_handled
def replay_command(
    file: EventsFile,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    topic: TopicOverride = None,
    force: Force = False,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most N events per second.", metavar="N")
    ] = None,
) -> None:
    """Replay a large JSON-lines file: like `send`, with a progress bar and an optional rate.

    Reports the counts at the end.
    """
    report = _send_file(
        file, bootstrap, topic=topic, force=force, rate=rate, progress=True, verb="replaying"
    )
    _summary(report, "replayed")


# -- dead letters ----------------------------------------------------------------------------
@dlq_app.command("list")
@errors_handled
def dlq_list_command(
    service: Service,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per dead letter (JSON lines).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Only the N most recent.")
    ] = None,
) -> None:
    """List a service's dead letters, oldest first.

    One line each: time, source topic/partition@offset, event type and id (when the value has
    them), reason. Reads with no consumer group: nothing is committed.
    """
    check_service(service)
    options = client_options(bootstrap)
    letters = run(bootstrap, dead_letters.list_dead_letters(options, service, limit=limit))
    if as_json:
        if letters:
            typer.echo(dead_letters.letters_json(letters))
        return
    for letter in letters:
        typer.echo(letter.line())
    typer.echo(f"{len(letters)} dead letter(s) in {dlq_topic_name(service)}", err=True)


@dlq_app.command("redrive")
@errors_handled
def dlq_redrive_command(
    service: Service,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be re-driven; send nothing.")
    ] = False,
    reason_contains: Annotated[
        str | None,
        typer.Option("--reason-contains", help="Only letters whose reason has this text."),
    ] = None,
    source_topic: Annotated[
        str | None, typer.Option("--source-topic", help="Only letters read from this topic.")
    ] = None,
) -> None:
    """Send a service's dead letters back to their source topic, each once.

    Key and value are sent byte for byte to the partition they were read from, with the header
    `x-redriven-from` = the DLQ offset. Progress is kept in the consumer group
    `crm-dlq-redrive-<service>`, committed after each acknowledged send. Letters the filters
    leave out stay for a later redrive.
    """
    check_service(service)
    options = client_options(bootstrap)
    verb = "would redrive" if dry_run else "redriven"
    report = run(
        bootstrap,
        dead_letters.redrive(
            options,
            service,
            filters=dead_letters.Filters(reason_contains, source_topic),
            dry_run=dry_run,
            on_letter=lambda letter: typer.echo(f"{verb}: {letter.line()}"),
        ),
    )
    for letter, problem in report.unsendable:
        typer.echo(
            f"not sent: {letter.dlq_topic}/{letter.dlq_partition}@{letter.dlq_offset}: {problem}",
            err=True,
        )
    typer.echo(
        f"{len(report.redriven)} {verb}"
        f"{' (dry run)' if dry_run else ''}; {report.already} re-driven before, "
        f"{report.filtered} left by the filters, {len(report.unsendable)} not sendable",
        err=True,
    )


# -- rebuild ---------------------------------------------------------------------------------
@app.command("rebuild")
@errors_handled
def rebuild_command(
    service: Service,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Target database (default crm_<service>_rebuild)."),
    ] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Drop the target database first.")] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate time rules as of this ISO time.")
    ] = None,
    mongodb_url: Annotated[
        str | None,
        typer.Option("--mongodb-url", envvar="MONGODB_URL", help="MongoDB of the rebuild."),
    ] = None,
) -> None:
    """Rebuild a service's read model from the retained topics (archive only).

    Runs the service's own rebuild entry point (`python -m crm_archive.rebuild`) into a fresh
    database; the service's settings (MONGODB_URL, keys) come from the environment. The other
    services keep state no topic holds, so they cannot be rebuilt from the topics.
    """
    found = rebuilds.rebuilder(service)
    code = rebuilds.run(
        rebuilds.command(found, database=database, drop=drop, at=at),
        rebuilds.environment(bootstrap, mongodb_url),
    )
    if code:
        typer.echo(f"error: {found.module} exited with code {code}", err=True)
        raise typer.Exit(code)


# -- import ----------------------------------------------------------------------------------
@import_app.command("customers")
@errors_handled
def import_customers_command(
    path: Annotated[
        Path, typer.Argument(help="A .csv (UTF-8 or GB18030) or .xlsx file with a header row.")
    ],
    column_map: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="HEADER=FIELD,... for headers not known already (e.g. 姓名=name,手机=phone). "
            f"Fields: {', '.join(importing.FIELDS)}.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row (duplicates too); create nothing.")
    ] = False,
    rejects_path: Annotated[
        Path | None,
        typer.Option("--rejects", help="Where the rejected rows go (default FILE.rejects.csv)."),
    ] = None,
    archive_url: Annotated[
        str, typer.Option("--archive-url", envvar="CRM_ARCHIVE_URL", show_envvar=True)
    ] = "http://127.0.0.1:8081",
    token: Annotated[
        str,
        typer.Option(
            "--token", envvar="CRM_TOKEN", show_envvar=True, help="A supervisor's API token."
        ),
    ] = "",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1000)] = 500,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Create customers from a spreadsheet, in the archive.

    Each row becomes a customer (`POST /customers`: a phone or e-mail already on file is
    refused). Re-running the same file creates nothing new. Every row not taken in is written
    to the rejects file with its row number and the reason; the exit code is 1 when there are
    any.
    """
    if not token:
        raise CliError("no token: pass --token or set CRM_TOKEN (a supervisor's API token)")
    sheet = importing.open_sheet(path)
    mapping = importing.column_map(sheet.headers, importing.parse_map(column_map))
    console = Console(stderr=True, highlight=False)
    mapped = ", ".join(f"{sheet.headers[i]}→{field}" for i, field in mapping.items())
    console.print(f"columns: {mapped}", markup=False, soft_wrap=True)
    rejects = importing.Rejects(rejects_path or path.with_name(path.name + ".rejects.csv"))
    client = importing.ArchiveClient(archive_url, token)
    bar = _progress(console) if progress else None
    try:
        with bar or contextlib.nullcontext():
            verb = "checking" if dry_run else "importing"
            task = bar.add_task(verb, total=sheet.total) if bar else None

            def on_rows(count: int) -> None:
                if bar is not None and task is not None:
                    bar.advance(task, count)

            report = importing.import_customers(
                sheet,
                mapping,
                client,
                rejects,
                dry_run=dry_run,
                batch_size=batch_size,
                on_rows=on_rows,
            )
    finally:
        client.close()
        rejects.close()
    done = f"{report.checked} would be created" if dry_run else f"{report.created} created"
    typer.echo(
        f"{done}, {report.existing} imported before, {report.rejected} rejected"
        + (f" (see {rejects.path})" if report.rejected else ""),
        err=True,
    )
    for reason, count in sorted(report.reasons.items(), key=lambda item: -item[1])[:10]:
        typer.echo(f"  {count} × {reason}", err=True)
    if report.rejected:
        raise typer.Exit(EXIT_INVALID)


# -- backup / restore ------------------------------------------------------------------------
MongoUrl = Annotated[
    str,
    typer.Option(
        "--mongodb-url", envvar="MONGODB_URL", show_envvar=True, help="The services' MongoDB."
    ),
]
ServiceChoice = Annotated[
    str,
    typer.Option("--service", "-s", help="archive, tickets, loyalty, notify or all."),
]
KeyRoot = Annotated[
    Path | None,
    typer.Option(
        "--keys-to",
        envvar="CRM_KEY_BACKUP_DIR",
        show_envvar=True,
        help="Folder of the key backups: kept apart from the data backups (ADR 0013).",
    ),
]
KeyRetention = Annotated[
    str,
    typer.Option(
        "--key-retention",
        envvar="CRM_KEY_BACKUP_RETENTION",
        show_envvar=True,
        help="Key backups older than this are deleted (30d, 12h...): an erased customer's "
        "data in older data backups is unreadable once it passed.",
    ),
]
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017/?directConnection=true"


class _Bars:
    """`crm_cli.backup.Progress` as rich progress bars."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        task = self.bar.add_task(description, total=total)
        return lambda count: self.bar.advance(task, count)


def _bars(progress: bool) -> tuple[contextlib.AbstractContextManager[object], backups.Progress]:
    if not progress:
        return contextlib.nullcontext(), backups.NoProgress()
    bar = _progress(Console(stderr=True, highlight=False))
    return bar, _Bars(bar)


def _key_root(key_root: Path | None) -> Path:
    if key_root is None:
        raise CliError("no key backup folder: pass --keys-to or set CRM_KEY_BACKUP_DIR")
    return key_root


@backup_app.callback(invoke_without_command=True)
@errors_handled
def backup_command(
    ctx: typer.Context,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", envvar="CRM_BACKUP_DIR", show_envvar=True, help="Folder of the data backups."
        ),
    ] = None,
    key_root: KeyRoot = None,
    service: ServiceChoice = "all",
    key_retention: KeyRetention = "30d",
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    mongodb_url: MongoUrl = DEFAULT_MONGODB_URL,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Back up the services' databases: a consistent snapshot each, with their consumer offsets.

    Writes `TO/<id>/` (every collection but the data keys, a manifest with counts, SHA-256
    checksums and offsets) and `KEYS/<id>/` (the data keys: their own short-lived backup), then
    deletes the key backups older than `--key-retention`. The services keep running.
    """
    if ctx.invoked_subcommand is not None:
        return
    if to is None:
        raise CliError("no backup folder: pass --to or set CRM_BACKUP_DIR")
    retention = backups.parse_duration(key_retention)
    chosen = backups.targets(service)
    options = client_options(bootstrap)
    context, bars = _bars(progress)
    with context:
        report = run(
            bootstrap,
            backups.take_backup(
                options, mongodb_url, chosen, to, _key_root(key_root), retention, bars
            ),
        )
    for name, entry in report.manifest.services.items():
        counted = sum(item.documents for item in entry.collections.values())
        typer.echo(f"{name}: {counted} document(s) in {len(entry.collections)} collection(s)")
    typer.echo(f"data backup {report.data}; key backup {report.keys}", err=True)
    for path in report.pruned:
        typer.echo(f"pruned key backup {path} (older than {key_retention})", err=True)


@backup_app.command("prune")
@errors_handled
def backup_prune_command(
    key_root: KeyRoot = None,
    key_retention: KeyRetention = "30d",
    now: Annotated[
        str | None,
        typer.Option("--now", help="Prune as of this ISO time instead of now (for drills)."),
    ] = None,
) -> None:
    """Delete the key backups older than the retention.

    Data backups are kept: without a key backup their sealed fields cannot be opened.
    """
    at = backups.parse_time(now) if now else datetime.now(UTC)
    root = _key_root(key_root)
    deleted = backups.prune_key_backups(root, backups.parse_duration(key_retention), at)
    for path in deleted:
        typer.echo(f"pruned key backup {path}")
    kept = len(backups.key_backups(root))
    typer.echo(f"{len(deleted)} key backup(s) pruned, {kept} kept", err=True)


@app.command("restore")
@errors_handled
def restore_command(
    backup: Annotated[Path, typer.Argument(help="A data backup folder: `TO/<id>`.")],
    key_root: KeyRoot = None,
    service: ServiceChoice = "all",
    drop: Annotated[
        bool,
        typer.Option("--drop", help="Drop the service's database first (else it must be empty)."),
    ] = False,
    without_keys: Annotated[
        bool,
        typer.Option(
            "--without-keys",
            help="Restore without a key backup: figures only, every sealed field unreadable.",
        ),
    ] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    mongodb_url: MongoUrl = DEFAULT_MONGODB_URL,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Restore a backup into the stopped services' databases.

    Verifies every checksum first; loads the data and the newest key backup not older than it;
    destroys the keys of every customer whose erasure was requested or confirmed since the
    snapshot; sets each consumer group back to the snapshot's offsets, so the services, started
    again, re-consume everything after it.
    """
    chosen = [target.service for target in backups.targets(service)]
    options = client_options(bootstrap)
    context, bars = _bars(progress)
    with context:
        report = run(
            bootstrap,
            backups.restore(
                options,
                mongodb_url,
                backup,
                key_root,
                chosen,
                drop=drop,
                without_keys=without_keys,
                progress=bars,
            ),
        )
    for name, count in report.documents.items():
        typer.echo(f"{name}: {count} document(s) restored")
    keys = f"keys from {report.keys}" if report.keys else "NO keys: sealed fields unreadable"
    typer.echo(
        f"{keys}; {len(report.erased)} customer(s) erased since the snapshot, their keys "
        f"destroyed; {report.partitions} partition(s) set back to the snapshot's offsets",
        err=True,
    )
    for warning in report.warnings:
        typer.echo(f"warning: {warning} (events between are lost to the service)", err=True)
