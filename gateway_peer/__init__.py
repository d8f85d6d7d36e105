"""What a capable peer adds: microcontroller bridge, metrics, dashboard."""

if __name__ != "agentmesh.gateway_peer":  # pragma: no cover - exercised by test_packaging
    # Running from the repository root puts ./gateway_peer on sys.path as a top-level
    # package; a second copy of the module tree would split every registry and
    # isinstance check in two. Refuse loudly instead.
    raise ImportError(
        "this folder is the package agentmesh.gateway_peer; import agentmesh.gateway_peer "
        "(install with: pip install -e .)"
    )
