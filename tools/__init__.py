"""Dev-time tools: model export, benchmarks, trace viewer, data preparation."""

if __name__ != "agentmesh.tools":  # pragma: no cover - exercised by test_packaging
    # Running from the repository root puts ./tools on sys.path as a top-level
    # package; a second copy of the module tree would split every registry and
    # isinstance check in two. Refuse loudly instead.
    raise ImportError(
        "this folder is the package agentmesh.tools; import agentmesh.tools "
        "(install with: pip install -e .)"
    )
