"""The `fleet` command: one `command_<verb>` function per sub-command; their docstrings are the help."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fleet import limits
from fleet.errors import FleetError, describe
from fleet.layout import Layout
from fleet.ops import commands, lifecycle
from fleet.published import status
from fleet.published.parts import statuses
from fleet.published.records import recorded_caps
from fleet.swarm import edge
from fleet.vassalfile import vassals


def command_up(layout: Layout, args: argparse.Namespace) -> int:
    """Start the Emperor, nginx and the control plane; wait until every vassal is healthy."""
    chosen = limits.resolve({x.name: getattr(args, x.name) for x in limits.LIMITS})
    admin_port = args.admin_port if args.admin_port is not None else (args.port + 1 if args.port < 65535 else 0)
    # The control plane's --admin-port/--admin-listen default to these; its environment is this one's.
    os.environ["FLEET_ADMIN_PORT"], os.environ["FLEET_ADMIN_LISTEN"] = str(admin_port), args.admin_listen
    return lifecycle.up(
        layout, args.port, args.listen, args.detach, args.component, args.timeout, limits=chosen, user=args.user
    )


def command_down(layout: Layout, args: argparse.Namespace) -> int:
    """Stop everything `fleet up` started, gracefully: in-flight requests complete."""
    return lifecycle.down(layout)


def command_status(layout: Layout, args: argparse.Namespace) -> int:
    """One row per backend: name, state, pid, workers, requests, memory, last error."""
    if args.watch:
        return status.watch(layout, lambda: statuses(layout), args.interval)
    table, parts = status.rows(layout), statuses(layout)
    if args.json:
        sys.stdout.write(status.render_json(table, parts))
    else:
        sys.stdout.write(status.render_parts(parts) + status.render_table(table))
    return 0 if parts and all(p.up is not False for p in parts) else 1


def command_events(layout: Layout, args: argparse.Namespace) -> int:
    """The backends' transitions (run/logs/events.jsonl), oldest first; --follow waits for new ones."""
    from fleet.published.events import follow, format_event, read_events

    def show(event) -> None:
        print(json.dumps(event.to_dict()) if args.json else format_event(event), flush=True)

    for event in read_events(layout.events_file)[-args.lines :] if args.lines else []:
        show(event)
    if args.follow:
        try:
            for event in follow(layout.events_file, lambda: False):
                show(event)
        except KeyboardInterrupt:
            pass
    return 0


def command_add(layout: Layout, args: argparse.Namespace) -> int:
    """Write vassals/NAME.ini and wait until nginx routes to it."""
    return commands.add(layout, args.name, args.processes, args.timeout, caps=_caps(layout, args))


def command_rm(layout: Layout, args: argparse.Namespace) -> int:
    """Take NAME out of nginx, delete its file, wait until its processes are gone."""
    return commands.rm(layout, args.name, args.timeout)


def command_reload(layout: Layout, args: argparse.Namespace) -> int:
    """Zero-downtime reload of NAME..., or of every backend one at a time (--all)."""
    return commands.reload(layout, args.names, args.all, args.timeout)


def command_check(layout: Layout, args: argparse.Namespace) -> int:
    """Validate vassal files (default: all of vassals/) without starting them; exit 1 on error."""
    return commands.check(layout, [Path(p) for p in args.files], caps=_caps(layout, args))


def _caps(layout: Layout, args: argparse.Namespace) -> vassals.Caps:
    """The vassal caps: the flags, then a running cluster's (check and add give the control plane's
    verdict, whatever this shell's environment says), then the environment, then the defaults."""
    env = {**os.environ, **recorded_caps(layout)}
    chosen = limits.resolve({x: getattr(args, x, None) for x in limits.VASSAL_CAPS}, env)
    return vassals.Caps(processes=chosen.max_processes, threads=chosen.max_threads)


def command_edge(layout: Layout, args: argparse.Namespace) -> int:
    """Run the edge in the foreground: nginx balancing over the serving cells of a Swarm stack."""
    from fleet.swarm import edge_runtime

    settings = edge.EdgeSettings(cells_name=args.cells, cell_port=args.cell_port, health_port=args.health_port)
    chosen = limits.resolve({x.name: getattr(args, x.name, None) for x in limits.LIMITS})
    return edge_runtime.main(layout, args.port, args.listen, settings, chosen)


def command_cell(layout: Layout, args: argparse.Namespace) -> int:
    """Run a whole fleet as one Swarm cell, with a health port for the edge; on SIGTERM drain, then stop."""
    from fleet.swarm import edge_cell

    return edge_cell.run(layout, args.port, args.health_port, args.drain)


def command_control_plane(layout: Layout, args: argparse.Namespace) -> int:
    """Run the control plane in the foreground (`fleet up` starts it for you)."""
    from fleet.control import runtime

    admin = (args.admin_listen, args.admin_port) if args.admin_port else None
    return runtime.main(layout, admin)


def command_supervise(layout: Layout, args: argparse.Namespace) -> int:
    """Run and keep alive the parts `fleet up --detach` planned (`fleet up` starts it for you)."""
    from fleet.ops import supervisor

    return supervisor.run_detached(layout, args.component)


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def _admin_port(value: str) -> int:
    """A TCP port, or 0: no admin listener."""
    return 0 if int(value) == 0 else _port(value)


def _admin_flags(parser: argparse.ArgumentParser, port_default: str) -> None:
    parser.add_argument(
        "--admin-port",
        type=_admin_port,
        default=os.environ.get("FLEET_ADMIN_PORT"),
        help=f"the status page and /metrics; 0: none (default: $FLEET_ADMIN_PORT or {port_default})",
    )
    parser.add_argument(
        "--admin-listen",
        default=os.environ.get("FLEET_ADMIN_LISTEN", "127.0.0.1"),
        help="default: $FLEET_ADMIN_LISTEN or 127.0.0.1",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet", description="Run a Flask service as uWSGI vassals behind nginx.")
    p.add_argument("--root", help="the cluster's folder, holding emperor.ini (default: current directory)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, **kwargs) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=func.__doc__, description=func.__doc__, **kwargs)
        sp.set_defaults(func=func)
        return sp

    up = add("up", command_up)
    up.add_argument(
        "--port",
        type=_port,
        default=_port(os.environ.get("FLEET_PORT", "8080")),
        help="default: $FLEET_PORT or 8080",
    )
    up.add_argument(
        "--listen",
        default=os.environ.get("FLEET_LISTEN", "127.0.0.1"),
        help="default: $FLEET_LISTEN or 127.0.0.1",
    )
    up.add_argument("--detach", action="store_true", help="return once healthy, leave it running")
    up.add_argument(
        "--component", choices=sorted(lifecycle.COMPONENTS), default="all", help="for containers: run only part"
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the backends at start")
    limits.add_flags(up)
    up.add_argument("--user", help="started as root, the vassals run as this user ($FLEET_USER; default www-data)")
    _admin_flags(up, "the port + 1")
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
    ad.add_argument("--timeout", type=float, default=60.0)
    rm = add("rm", command_rm)
    rm.add_argument("name")
    rm.add_argument("--timeout", type=float, default=60.0)
    rl = add("reload", command_reload)
    rl.add_argument("names", nargs="*", metavar="NAME")
    rl.add_argument("--all", action="store_true", help="rolling: one backend at a time")
    rl.add_argument("--timeout", type=float, default=60.0)
    ck = add("check", command_check)
    ck.add_argument("files", nargs="*", metavar="FILE")
    limits.add_flags(ck, limits.VASSAL_CAPS)
    sv = sub.add_parser("supervise", help=argparse.SUPPRESS)
    sv.add_argument("--component", choices=sorted(lifecycle.COMPONENTS), default="all")
    sv.set_defaults(func=command_supervise)
    # Docker Swarm (docker-stack.yml): the edge and the cells.
    ed = add("edge", command_edge)
    ed.add_argument("--port", type=_port, default=up.get_default("port"), help="default: $FLEET_PORT or 8080")
    ed.add_argument("--listen", default=up.get_default("listen"), help="default: $FLEET_LISTEN or 127.0.0.1")
    ed.add_argument(
        "--cells", default=os.environ.get("FLEET_EDGE_CELLS", "tasks.cell"), help="the cells' DNS name (%(default)s)"
    )
    cells = edge.EdgeSettings()
    ed.add_argument("--cell-port", type=_port, default=cells.cell_port, help="the cells' fleet (%(default)s)")
    ed.add_argument("--health-port", type=_port, default=cells.health_port, help="the cells' health (%(default)s)")
    limits.add_flags(ed, tuple(x.name for x in limits.LIMITS if x.name not in limits.VASSAL_CAPS))
    ce = add("cell", command_cell)
    ce.add_argument("--port", type=_port, default=up.get_default("port"), help="default: $FLEET_PORT or 8080")
    ce.add_argument("--health-port", type=_port, default=cells.health_port, help="for the edge (%(default)s)")
    ce.add_argument(
        "--drain",
        type=float,
        default=float(os.environ.get("FLEET_CELL_DRAIN", edge.default_drain_wait())),
        help=f"seconds to keep serving after an edge last heard `serving` ($FLEET_CELL_DRAIN; default "
        f"{edge.default_drain_wait():g}: the edge's routing lag and a margin)",
    )
    cp = sub.add_parser("control-plane", help=argparse.SUPPRESS)
    cp.set_defaults(func=command_control_plane)
    _admin_flags(cp, "none")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        layout = Layout.find(args.root)
        return args.func(layout, args)
    except FleetError as e:
        print(f"fleet: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a read-only folder, a full disk, a file where a folder belongs: an answer
        print(f"fleet: {describe(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
