"""The CPython agent for devices: asyncio host, QUIC, mDNS, trainer, SQLite state, CLI."""

if __name__ != "agentmesh.edge":  # pragma: no cover - exercised by test_packaging
    # Running from the repository root puts ./edge on sys.path as a top-level
    # package; a second copy of the module tree would split every registry and
    # isinstance check in two. Refuse loudly instead.
    raise ImportError(
        "this folder is the package agentmesh.edge; import agentmesh.edge "
        "(install with: pip install -e .)"
    )
