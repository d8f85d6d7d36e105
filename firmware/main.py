# Entry point: on a board it runs at boot; on the unix port pass the config path:
#   micropython -X heapsize=64k main.py path/to/amesh_config.json
import gc
import sys

# The big modules first, biggest first: compiling one needs a transient parse tree
# several times its final size, and only a fresh heap has room for it.
import cbor_pure  # noqa: F401

gc.collect()
import amesh_wire  # noqa: E402, F401

gc.collect()
import amesh_agent  # noqa: E402

gc.collect()


def load_config():
    import json

    path = sys.argv[1] if len(sys.argv) > 1 else "amesh_config.json"
    with open(path) as f:
        return json.load(f), path


cfg, path = load_config()
amesh_agent.start(cfg, path)
