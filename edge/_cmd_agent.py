"""`agent join`, `agent status` and `agent invite`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agentmesh.core.admission import AdmissionRejected
from agentmesh.core.limits import DEVICE_OFFERS_PER_GATEWAY_MAX
from agentmesh.core.membership.capabilities import ROLES
from agentmesh.core.rounds import RULES, RuleConfig
from agentmesh.edge.agent import Agent, AgentConfig, AgentError, make_invite
from agentmesh.edge.control import ControlError, request
from agentmesh.edge.gateway_host import (
    add_gateway_flags,
    bridged_mark,
    gateway_listen_from,
    gateway_serial_from,
)
from agentmesh.edge.keystore import KeystoreError
from agentmesh.edge.rounds_host import POISONS, RoundsSettings
from agentmesh.edge.state import StateError
from agentmesh.edge.tasks_host import add_tasks_flags, tasks_settings
from agentmesh.edge.trainer import RUNTIMES

MESH_KEY_ENV = "AGENTMESH_MESH_KEY"
DEFAULT_PORT = 7447  # UDP, QUIC
STATE_DIR_ENV = "AGENTMESH_STATE_DIR"
_MESH_KEY_BYTES_MIN = 16

_KEY_HELP = (
    "Where the mesh key comes from (admission psk), first found wins: --mesh-key-file FILE "
    f"(the file's bytes, trailing newline dropped; keep it mode 0600), the {MESH_KEY_ENV} "
    "environment variable, or --mesh-key TEXT (visible to other users in the process "
    f"list: avoid outside experiments). At least {_MESH_KEY_BYTES_MIN} bytes."
)


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".agentmesh")


def host_port(text: str) -> tuple[str, int]:
    """argparse type for HOST:PORT."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 192.168.1.20:7447)")
    return host, int(port)


def roles_list(text: str) -> tuple[str, ...]:
    """argparse type for a comma-separated list of roles."""
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise argparse.ArgumentTypeError(f"roles must be a subset of {','.join(ROLES)}")
    return roles


def register(subparsers: Any) -> None:
    """Add join, status and invite."""
    join = subparsers.add_parser(
        "join",
        help="run an agent in the foreground and join a mesh",
        description="Run an agent in the foreground: find peers by mDNS (and --peer), join "
        "the mesh, keep membership. Ctrl-C or SIGTERM leaves gracefully.",
        epilog=_KEY_HELP,
    )
    _add_state_dir(join)
    join.add_argument("--mesh", default="default", help="mesh name (default: %(default)s)")
    join.add_argument(
        "--listen",
        type=host_port,
        metavar="HOST:PORT",
        help="QUIC listen address "
        f"(default 0.0.0.0:{DEFAULT_PORT}; 127.0.0.1 on any free port with --loopback)",
    )
    join.add_argument(
        "--peer",
        type=host_port,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="bootstrap peer across networks (repeatable)",
    )
    join.add_argument(
        "--config",
        type=Path,
        help='JSON file with more bootstrap peers: {"peers": ["host:port", ...]}',
    )
    join.add_argument(
        "--admission",
        choices=("psk", "invite", "open"),
        default="psk",
        help="admission policy (default: %(default)s; open is for experiments)",
    )
    join.add_argument("--mesh-key-file", type=Path, help="file holding the mesh key (psk)")
    join.add_argument("--mesh-key", help="the mesh key as text (see below)")
    join.add_argument("--invite", metavar="TOKEN", help="invite token (admission invite)")
    join.add_argument(
        "--loopback",
        action="store_true",
        help="bind QUIC and mDNS to 127.0.0.1 only (local meshes, tests)",
    )
    join.add_argument("--no-mdns", action="store_true", help="do not use mDNS discovery")
    join.add_argument(
        "--roles",
        type=roles_list,
        default=ROLES,
        metavar="R1,R2",
        help=f"roles this agent may take (default: {','.join(ROLES)})",
    )
    join.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _add_rounds_flags(join)
    add_tasks_flags(join)
    add_gateway_flags(join)
    join.set_defaults(func=_join)

    status = subparsers.add_parser(
        "status",
        help="show the running local agent's view of the mesh",
        description="Ask the agent running on --state-dir for its members, their state, "
        "capabilities and roles.",
    )
    _add_state_dir(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_status)

    invite = subparsers.add_parser(
        "invite",
        help="print an invite token signed by this agent's identity",
        description="Print an invite token for admission 'invite', signed by the identity "
        "in --state-dir (the issuer must be a member of the mesh).",
    )
    _add_state_dir(invite)
    invite.add_argument("--mesh", default="default", help="mesh name (default: %(default)s)")
    invite.add_argument(
        "--ttl-s", type=int, default=86_400, help="validity in seconds (default: %(default)s)"
    )
    invite.add_argument(
        "--for", dest="invitee", metavar="PEER_ID", help="bind the token to one peer id"
    )
    invite.set_defaults(func=_invite)


def _add_rounds_flags(join: argparse.ArgumentParser) -> None:
    """Federated rounds on the digits task (docs/federated-rounds.md); off without --expect."""
    group = join.add_argument_group("federated rounds (on with --expect)")
    group.add_argument(
        "--expect",
        type=int,
        metavar="N",
        help="form the committee once N members are alive, then run rounds",
    )
    group.add_argument(
        "--partition",
        type=int,
        default=0,
        metavar="K",
        help="train on partition K of the digits split (default 0)",
    )
    group.add_argument(
        "--partitions", type=int, metavar="N", help="partitions of the split (default: --expect)"
    )
    group.add_argument(
        "--non-iid",
        dest="alpha",
        type=float,
        default=0.5,
        metavar="ALPHA",
        help="Dirichlet alpha of the label skew (default 0.5: digits-8)",
    )
    group.add_argument("--rounds", type=int, default=20, help="rounds to run (default 20)")
    group.add_argument(
        "--rule", choices=sorted(RULES), default="fedavg", help="aggregation rule (default fedavg)"
    )
    group.add_argument(
        "--rule-f",
        type=int,
        metavar="F",
        help="Krum/Multi-Krum f (default: the most the updates allow)",
    )
    group.add_argument(
        "--trim-fraction",
        type=float,
        default=0.25,
        help="trimmed-mean fraction cut at each end (default 0.25)",
    )
    group.add_argument(
        "--window-ms",
        type=int,
        default=3000,
        help="the cohort closes this long after a round starts (default 3000)",
    )
    group.add_argument(
        "--takeover-ms",
        type=int,
        default=1000,
        help="a stand-in aggregator waits this long more (default 1000)",
    )
    group.add_argument(
        "--committee-size",
        type=int,
        default=4,
        help="validators in the genesis committee, 3f+1 (default 4)",
    )
    group.add_argument(
        "--epoch-stable-ms",
        type=int,
        default=2000,
        help="a joined or departed member must be seen this long before the committee "
        "proposes the next membership epoch (default 2000)",
    )
    group.add_argument(
        "--device-offers-max",
        type=int,
        default=DEVICE_OFFERS_PER_GATEWAY_MAX,
        metavar="N",
        help=f"bridged-device updates one gateway may add to a round, 0 to "
        f"{DEVICE_OFFERS_PER_GATEWAY_MAX} (default %(default)s); a malicious gateway can "
        "invent that many votes, so keep it well below the member count for a robust "
        "rule; every member must use the same value",
    )
    group.add_argument(
        "--poison",
        choices=POISONS,
        help="experiments only: this agent poisons its updates (Byzantine)",
    )
    group.add_argument("--runtime", choices=RUNTIMES, help="trainer runtime (default best)")


def rounds_settings(args: argparse.Namespace) -> RoundsSettings | None:
    """RoundsSettings from the join flags; None when --expect is absent."""
    if args.expect is None:
        return None
    if args.expect < 1 or not 0 <= args.partition < (args.partitions or args.expect):
        raise ValueError("--expect must be >= 1 and --partition within the partitions")
    if not 0 <= args.device_offers_max <= DEVICE_OFFERS_PER_GATEWAY_MAX:
        raise ValueError(f"--device-offers-max must be 0 to {DEVICE_OFFERS_PER_GATEWAY_MAX}")
    return RoundsSettings(
        expect=args.expect,
        partition=args.partition,
        partitions=args.partitions,
        alpha=args.alpha,
        rounds=args.rounds,
        rule=RuleConfig(args.rule, args.rule_f, args.trim_fraction),
        window_ms=args.window_ms,
        takeover_ms=args.takeover_ms,
        committee_size=args.committee_size,
        poison=args.poison,
        runtime=args.runtime,
        epoch_stable_ms=args.epoch_stable_ms,
        device_offers_max=args.device_offers_max,
    )


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"agent state directory (default: ${STATE_DIR_ENV} or ~/.agentmesh)",
    )


def mesh_key_from(args: argparse.Namespace) -> bytes | None:
    """The mesh key from file, environment or flag; ValueError when too short."""
    key: bytes | None = None
    if args.mesh_key_file is not None:
        key = args.mesh_key_file.read_bytes().rstrip(b"\r\n")
    elif os.environ.get(MESH_KEY_ENV):
        key = os.environ[MESH_KEY_ENV].encode()
    elif args.mesh_key:
        key = args.mesh_key.encode()
    if key is not None and len(key) < _MESH_KEY_BYTES_MIN:
        raise ValueError(f"the mesh key must be at least {_MESH_KEY_BYTES_MIN} bytes")
    return key


def _config_peers(path: Path | None) -> list[tuple[str, int]]:
    if path is None:
        return []
    data = json.loads(path.read_text())
    peers = data.get("peers", []) if isinstance(data, dict) else None
    if not isinstance(peers, list):
        raise ValueError(f'{path}: expected {{"peers": ["host:port", ...]}}')
    return [host_port(str(peer)) for peer in peers]


def _join(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    if args.log_level != "debug":
        logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's per-connection chatter
    try:
        peers = list(args.peer) + _config_peers(args.config)
        # A device listens on a well-known port so peers across networks can name it
        # in --peer; local meshes (--loopback) run many agents per host, so any port.
        listen = args.listen or (("127.0.0.1", 0) if args.loopback else ("0.0.0.0", DEFAULT_PORT))
        config = AgentConfig(
            state_dir=args.state_dir or default_state_dir(),
            mesh=args.mesh,
            listen_host=listen[0],
            listen_port=listen[1],
            peers=peers,
            admission=args.admission,
            mesh_key=mesh_key_from(args),
            invite_token=args.invite,
            loopback=args.loopback,
            roles=args.roles,
            discovery=not args.no_mdns,
            rounds=rounds_settings(args),
            tasks=tasks_settings(args),
            gateway_listen=gateway_listen_from(args),
            gateway_serial=gateway_serial_from(args),
        )
        return asyncio.run(_run_agent(config))
    except (AgentError, KeystoreError, StateError, AdmissionRejected, ValueError, OSError) as error:
        print(f"agent join: {error}", file=sys.stderr)
        return 1


async def _run_agent(config: AgentConfig) -> int:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.stop)
    await agent.run()
    return 0


def _status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    try:
        result = asyncio.run(request(state_dir, "status"))
    except ControlError as error:
        print(f"agent status: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(render_status(result))
    return 0


def render_status(result: dict[str, Any]) -> str:
    """A readable table of the status JSON."""
    me = result["self"]
    lines = [
        f"peer {me['peer_id']}  mesh {me['mesh']}  address {me.get('address', '?')}  "
        f"incarnation {me.get('incarnation', 0)}",
        f"{'PEER':<54} {'STATE':<8} {'INC':>4} {'CLASS':<7} {'RUNTIME':<14} ROLES",
    ]
    for member in result["members"]:
        caps = member.get("capabilities") or {}
        lines.append(
            f"{member['peer_id']:<54} {member['state']:<8} {member['incarnation']:>4} "
            f"{caps.get('device_class', '-'):<7} {caps.get('trainer_runtime', '-'):<14} "
            f"{','.join(member.get('roles', [])) or '-'}{bridged_mark(member)}"
        )
    return "\n".join(lines)


def _invite(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    try:
        token = make_invite(state_dir, args.mesh, args.ttl_s, args.invitee)
    except (KeystoreError, ValueError) as error:
        print(f"agent invite: {error}", file=sys.stderr)
        return 1
    print(token.encode())
    return 0
