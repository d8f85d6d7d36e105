"""Pure protocol: wire format, identities, membership, consensus, FL rounds, simulator.

No I/O, no clock, no global randomness: see docs/node-contract.md."""

if __name__ != "agentmesh.core":  # pragma: no cover - exercised by test_packaging
    # Running from the repository root puts ./core on sys.path as a top-level
    # package; a second copy of the module tree would split every registry and
    # isinstance check in two. Refuse loudly instead.
    raise ImportError(
        "this folder is the package agentmesh.core; import agentmesh.core "
        "(install with: pip install -e .)"
    )
