"""The `fleet` command: one `command_<verb>` function per sub-command; their docstrings are the help."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from fleet import config
from fleet.config import Values
from fleet.errors import FleetError, describe
from fleet.layout import Layout
from fleet.ops import commands, lifecycle, shutdown
from fleet.proxy import tls
from fleet.published import status
from fleet.published.parts import statuses
from fleet.published.records import recorded_caps
from fleet.swarm import edge
from fleet.vassalfile import vassals


def command_up(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Start the Emperor, nginx and the control plane; wait until every vassal is healthy."""
    return lifecycle.up(layout, values, args.detach, args.component)


def command_down(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Stop everything `fleet up` started, gracefully: in-flight requests complete."""
    return shutdown.down(layout)


def command_status(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """One row per backend: name, state, pid, workers, requests, memory, last error."""
    if args.watch:
        return status.watch(layout, lambda: statuses(layout), args.interval)
    status.want_usage(layout)
    table, parts = status.rows(layout), statuses(layout)
    https = tls.read_state(layout) if parts else None
    if args.json:
        from fleet.published.snapshot import Snapshot

        deploy = Snapshot.read(layout).deploy
        sys.stdout.write(status.render_json(table, parts, https.to_dict() if https else None, deploy=deploy))
    else:
        text = status.render_parts(parts, https.describe() if https else "") + status.render_table(table)
        sys.stdout.write(text + _deploy_line(layout))
    return 0 if parts and all(p.up is not False for p in parts) else 1


def _deploy_line(layout: Layout) -> str:
    """The deploy in progress, if any, under the table."""
    from fleet.control.deploying import read_state
    from fleet.core.deploy import FINISHED
    from fleet.ops.deploys import describe

    d = read_state(layout)
    return "" if d is None or d.phase in FINISHED else describe(d) + "\n"


def command_events(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """The backends' transitions (run/logs/events.jsonl), oldest first; --follow waits for new ones."""
    from fleet.published.events import format_event, read_events, tail

    def show(event) -> None:
        print(json.dumps(event.to_dict()) if args.json else format_event(event), flush=True)

    for event in read_events(layout.events_file)[-args.lines :] if args.lines else []:
        show(event)
    if args.follow:
        try:
            for event in tail(layout.events_file, lambda: False):
                show(event)
        except KeyboardInterrupt:
            pass
    return 0


def command_add(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Write vassals/NAME.ini and wait until nginx routes to it."""
    return commands.add(layout, args.name, args.processes, values.timeout, caps=_caps(layout, values))


def command_rm(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Take NAME out of nginx, delete its file, wait until its processes are gone."""
    return commands.rm(layout, args.name, values.timeout)


def command_reload(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Zero-downtime reload of NAME..., or of every backend one at a time (--all)."""
    if args.surge is not None:
        from fleet.ops import deploys

        if not args.all or args.names:
            raise FleetError("--surge goes with --all: `fleet reload --all --surge N`", exit_code=2)
        return deploys.reload_by_replacement(layout, args.surge, args.start_timeout)
    return commands.reload(layout, args.names, args.all, values.timeout)


def command_weight(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Set NAME's weight (0-1000; 0: a warm standby) at run time, until its file changes; no reload."""
    from fleet.ops.weighing import weigh

    return weigh(layout, args.name, args.weight)


def command_deploy(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Deploy NEW.ini beside the app's backends, canary judged on its own answers; exit 0 promoted, 1 rolled back."""
    from fleet.ops import deploys

    if args.status:
        return deploys.status(layout, args.json)
    if args.cancel:
        return deploys.cancel(layout)
    if args.file is None:
        raise FleetError("name the new version's vassal file: `fleet deploy NEW.ini`", exit_code=2)
    canary = deploys.parse_canary(args.canary)
    return deploys.deploy(
        layout, Path(args.file), args.app, canary, args.interval, args.max_error_rate, args.max_p99,
        args.min_requests, args.surge, args.start_timeout, args.probe_rate,
    )  # fmt: skip


def command_rollback(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Back to the version before the last `fleet deploy` (kept), by the same zero-loss path, no canary."""
    from fleet.ops import deploys

    return deploys.rollback(layout, args.app, args.start_timeout)


def command_check(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Validate vassal files (default: all of vassals/) without starting them; exit 1 on error."""
    return commands.check(layout, [Path(p) for p in args.files], values.uwsgi, caps=_caps(layout, values))


def _caps(layout: Layout, values: Values) -> vassals.Caps:
    """The vassal caps: the flags, then a running cluster's (check and add give the control plane's
    verdict, whatever this shell's environment says), then the environment, then the defaults."""
    return values.under(recorded_caps(layout)).caps


def command_edge(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Run the edge in the foreground: nginx balancing over the serving cells of a Swarm stack."""
    from fleet.swarm import edge_process

    settings = edge.EdgeSettings(cells_name=values.cells, cell_port=values.cell_port, health_port=values.health_port)
    config.check_https(values)
    pair = (str(Path(values.tls_cert).absolute()), str(Path(values.tls_key).absolute())) if values.tls_cert else None
    https = tls.Https(values.https_port, values.http_redirect == "on") if pair else None
    return edge_process.main(layout, values.port, values.listen, settings, values.limits, https, pair)


def command_cell(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Run a whole fleet as one Swarm cell, with a health port for the edge; on SIGTERM drain, then stop."""
    from fleet.swarm import cell

    # The fleet it runs gets every setting of `fleet up` on its command line.
    up = ["up", "--component", "all", *values.argv("up")]
    return cell.run(layout, values.port, values.health_port, values.drain, up)


def command_control_plane(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Run the control plane in the foreground (`fleet up` starts it for you)."""
    from fleet.control.main import main

    admin = (values.admin_listen, values.admin_port) if values.admin_port else None
    polling = values.file_watch == "poll"
    config.check_https(values)
    tls_pair = (values.tls_cert, values.tls_key) if values.tls_cert else None
    return main(
        layout,
        values.control,
        admin,
        polling=polling,
        uwsgi_bin=values.uwsgi,
        caps=values.caps,
        tls_pair=tls_pair,
        static_max_age=values.static_max_age,
    )


def command_supervise(layout: Layout, args: argparse.Namespace, values: Values) -> int:
    """Run and keep alive the parts `fleet up --detach` planned (`fleet up` starts it for you)."""
    from fleet.ops import supervisor

    return supervisor.run_detached(layout, args.component)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet",
        description="Run a Flask service as uWSGI vassals behind nginx.",
        epilog=config.EPILOG + " `fleet COMMAND --help` lists a command's settings.",
    )
    p.add_argument("--root", help="the cluster's folder, holding emperor.ini (default: current directory)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, **kwargs) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=func.__doc__, description=func.__doc__, epilog=config.EPILOG, **kwargs)
        sp.set_defaults(func=func)
        return sp

    up = add("up", command_up)
    up.add_argument("--detach", action="store_true", help="return once healthy, leave it running")
    up.add_argument(
        "--component", choices=sorted(lifecycle.COMPONENTS), default="all", help="for containers: run only part"
    )
    config.add_flags(up, "up")
    add("down", command_down)
    st = add("status", command_status)
    st.add_argument("--json", action="store_true", help="a list of objects")
    st.add_argument("--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    st.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (1)")
    ev = add("events", command_events)
    ev.add_argument("--follow", "-f", action="store_true", help="then print new ones as they come, until Ctrl-C")
    ev.add_argument("--json", action="store_true", help="JSON lines, as in run/logs/events.jsonl")
    ev.add_argument("--lines", "-n", type=int, default=50, help="how many past ones to print first (50; 0: none)")
    ad = add("add", command_add)
    ad.add_argument("name")
    ad.add_argument("--processes", type=int)
    config.add_flags(ad, "add")
    rm = add("rm", command_rm)
    rm.add_argument("name")
    config.add_flags(rm, "rm")
    rl = add("reload", command_reload)
    rl.add_argument("names", nargs="*", metavar="NAME")
    rl.add_argument("--all", action="store_true", help="rolling: one backend at a time")
    rl.add_argument(
        "--surge", type=int, help="with --all: start N new backends before draining N old (the deploy's path)"
    )
    rl.add_argument("--start-timeout", type=float, default=60.0, help="with --surge: seconds to be healthy (60)")
    config.add_flags(rl, "reload")
    wt = add("weight", command_weight)
    wt.add_argument("name")
    wt.add_argument("weight", metavar="N")
    de = add("deploy", command_deploy)
    de.add_argument("file", nargs="?", metavar="NEW.ini")
    de.add_argument("--app", help="the app to deploy (default: default)")
    de.add_argument("--canary", default="10,50", help="percents of new requests, step by step (10,50; none)")
    de.add_argument("--interval", type=float, default=30.0, help="seconds per canary step before judging (30)")
    de.add_argument("--max-error-rate", type=float, default=1.0, help="percent of 5xx the canary may answer (1)")
    de.add_argument("--max-p99", type=float, default=500.0, help="p99 in ms the canary may answer within (500)")
    de.add_argument("--min-requests", type=int, default=50, help="answers needed before judging a step (50)")
    de.add_argument("--surge", type=int, default=1, help="new backends started beyond the app's count (1)")
    de.add_argument("--start-timeout", type=float, default=60.0, help="seconds a new backend has to be healthy")
    de.add_argument(
        "--probe-rate",
        type=float,
        default=0.0,
        help="GETs/s of the health path to each new backend while short of answers (0)",
    )
    de.add_argument("--status", action="store_true", help="show the deploy in progress (or the last one)")
    de.add_argument("--json", action="store_true", help="with --status: as JSON")
    de.add_argument("--cancel", action="store_true", help="roll back the deploy in progress")
    rb = add("rollback", command_rollback)
    rb.add_argument("app", nargs="?")
    rb.add_argument("--start-timeout", type=float, default=60.0, help="seconds a new backend has to be healthy")
    ck = add("check", command_check)
    ck.add_argument("files", nargs="*", metavar="FILE")
    config.add_flags(ck, "check")
    sv = sub.add_parser("supervise", help=argparse.SUPPRESS)
    sv.add_argument("--component", choices=sorted(lifecycle.COMPONENTS), default="all")
    sv.set_defaults(func=command_supervise)
    # Docker Swarm (docker-stack.yml): the edge and the cells.
    ed = add("edge", command_edge)
    config.add_flags(ed, "edge")
    ce = add("cell", command_cell)
    config.add_flags(ce, "cell")
    cp = sub.add_parser("control-plane", help=argparse.SUPPRESS)
    cp.set_defaults(func=command_control_plane)
    config.add_flags(cp, "control-plane")
    return p


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`fleet ...`; `env` stands for the environment (tests)."""
    args = parser().parse_args(argv)
    try:
        values = config.resolve(args.command, vars(args), env)
        layout = Layout.find(args.root)
        return args.func(layout, args, values)
    except FleetError as e:
        print(f"fleet: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a read-only folder, a full disk, a file where a folder belongs: an answer
        print(f"fleet: {describe(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
