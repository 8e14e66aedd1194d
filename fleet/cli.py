"""The `fleet` command: one `command_<verb>` function per sub-command; their docstrings are the help."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fleet import commands, lifecycle, limits, status
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.parts import statuses


def command_up(layout: Layout, args: argparse.Namespace) -> int:
    """Start the Emperor, nginx and the control plane; wait until every vassal is healthy."""
    chosen = limits.resolve({x.name: getattr(args, x.name) for x in limits.LIMITS})
    return lifecycle.up(layout, args.port, args.listen, args.detach, args.component, args.timeout, limits=chosen)


def command_down(layout: Layout, args: argparse.Namespace) -> int:
    """Stop everything `fleet up` started, gracefully: in-flight requests complete."""
    return lifecycle.down(layout)


def command_status(layout: Layout, args: argparse.Namespace) -> int:
    """One row per backend: name, state, pid, workers, requests, memory, last error."""
    table, parts = status.rows(layout), statuses(layout)
    if args.json:
        sys.stdout.write(status.render_json(table, parts))
    else:
        sys.stdout.write(status.render_parts(parts) + status.render_table(table))
    return 0 if parts and all(p.up is not False for p in parts) else 1


def command_add(layout: Layout, args: argparse.Namespace) -> int:
    """Write vassals/NAME.ini and wait until nginx routes to it."""
    return commands.add(layout, args.name, args.processes, args.timeout)


def command_rm(layout: Layout, args: argparse.Namespace) -> int:
    """Take NAME out of nginx, delete its file, wait until its processes are gone."""
    return commands.rm(layout, args.name, args.timeout)


def command_reload(layout: Layout, args: argparse.Namespace) -> int:
    """Zero-downtime reload of NAME..., or of every backend one at a time (--all)."""
    return commands.reload(layout, args.names, args.all, args.timeout)


def command_check(layout: Layout, args: argparse.Namespace) -> int:
    """Validate vassal files (default: all of vassals/) without starting them; exit 1 on error."""
    return commands.check(layout, [Path(p) for p in args.files])


def command_control_plane(layout: Layout, args: argparse.Namespace) -> int:
    """Run the control plane in the foreground (`fleet up` starts it for you)."""
    from fleet import runtime

    return runtime.main(layout)


def command_supervise(layout: Layout, args: argparse.Namespace) -> int:
    """Run and keep alive the parts `fleet up --detach` planned (`fleet up` starts it for you)."""
    from fleet import supervisor

    return supervisor.run_detached(layout, args.component)


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


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
    add("down", command_down)
    st = add("status", command_status)
    st.add_argument("--json", action="store_true", help="a list of objects")
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
    sv = sub.add_parser("supervise", help=argparse.SUPPRESS)
    sv.add_argument("--component", choices=sorted(lifecycle.COMPONENTS), default="all")
    sv.set_defaults(func=command_supervise)
    cp = sub.add_parser("control-plane", help=argparse.SUPPRESS)
    cp.set_defaults(func=command_control_plane)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        layout = Layout.find(args.root)
        return args.func(layout, args)
    except FleetError as e:
        print(f"fleet: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
