# Runs under the MicroPython unix port (and CPython): checks cbor_pure against
# the golden and malformed vectors and prints one line per vector.
#
#   MICROPYPATH=core/wire micropython cbor_vectors_runner.py GOLDEN.json MALFORMED.json
#   MICROPYPATH=core/wire micropython -X heapsize=64k cbor_vectors_runner.py SMALL.jsonl
#
# Output lines: "ok <kind> <index>" or "FAIL <kind> <index> <detail>", then
# "done <ok count> <fail count>". The pytest side compares the counts.
import gc
import json
import struct
import sys

import cbor_pure


def build(description):
    if isinstance(description, dict):
        for kind in description:
            payload = description[kind]
        if kind == "float":
            return struct.unpack(">d", bytes.fromhex(payload))[0]
        if kind == "bytes":
            return bytes.fromhex(payload)
        result = {}
        for pair in payload:
            result[build(pair[0])] = build(pair[1])
        return result
    if isinstance(description, list):
        return [build(item) for item in description]
    return description


def same(a, b):
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # noqa: B905 (MicroPython zip has no strict=)
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(k in b and same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def check_golden(index, vector):
    value = build(vector["value"])
    expected = bytes.fromhex(vector["hex"])
    encoded = cbor_pure.encode(value)
    if encoded != expected:
        return "encode gives " + encoded.hex()
    decoded = cbor_pure.decode(expected)
    if not same(decoded, value):
        return "decode differs"
    return None


def check_malformed(index, vector):
    try:
        cbor_pure.decode(bytes.fromhex(vector["hex"]))
    except cbor_pure.CBORDecodeError as error:
        if error.reason != vector["reason"]:
            return "reason " + error.reason
        return None
    return "decoded without error"


def check_encode_rejection(index, vector):
    try:
        cbor_pure.encode(build(vector["value"]))
    except cbor_pure.CBOREncodeError as error:
        if error.reason != vector["reason"]:
            return "reason " + error.reason
        return None
    return "encoded without error"


def run(kind, vectors, check):
    ok = failed = 0
    for index, vector in enumerate(vectors):
        gc.collect()  # a 64 KiB heap fragments quickly
        problem = check(index, vector)
        if problem is None:
            ok += 1
            print("ok", kind, index)
        else:
            failed += 1
            print("FAIL", kind, index, vector.get("name", ""), problem)
    return ok, failed


def json_lines(path):
    """Vectors one per line: a 64 KiB heap cannot hold the whole JSON document."""
    with open(path) as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def main():
    if sys.argv[1].endswith(".jsonl"):
        golden = json_lines(sys.argv[1])
    else:
        with open(sys.argv[1]) as handle:
            golden = json.load(handle)["vectors"]
    results = [run("golden", golden, check_golden)]
    golden = None
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as handle:
            malformed = json.load(handle)
        results.append(run("malformed", malformed["decode"], check_malformed))
        results.append(run("encode", malformed["encode"], check_encode_rejection))
    print("done", sum(r[0] for r in results), sum(r[1] for r in results))


main()
