"""Hardware-in-the-loop rigs: emulated devices here, real boards in a lab."""

if __name__ != "agentmesh.hil":  # pragma: no cover - exercised by test_packaging
    # Running from the repository root puts ./hil on sys.path as a top-level
    # package; a second copy of the module tree would split every registry and
    # isinstance check in two. Refuse loudly instead.
    raise ImportError(
        "this folder is the package agentmesh.hil; import agentmesh.hil "
        "(install with: pip install -e .)"
    )
