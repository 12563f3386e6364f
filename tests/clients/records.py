"""The records every real-client test produces: keyed, with headers and known timestamps."""

import random

BASE_TS = 1_700_000_000_000  # fixed so ListOffsets-by-time expectations are exact


def make_records(n=60, seed=7):
    rng = random.Random(seed)
    records = []
    for i in range(n):
        size = rng.choice([0, 1, 17, 100, 1000, 5000])
        value = bytes(rng.getrandbits(8) for _ in range(size))
        headers = [("idx", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))]
        if i % 7 == 0:
            headers.append(("empty", b""))
        records.append(
            {
                "key": f"key-{i % 10}".encode(),
                "value": value,
                "headers": headers,
                # strictly increasing, 10 ms apart, so "first offset at or after T" is unambiguous
                "timestamp": BASE_TS + i * 10,
            }
        )
    return records


def expected_offset_for_time(records, ts):
    """Kafka semantics: first offset whose timestamp >= ts, or None when there is none."""
    for i, r in enumerate(records):
        if r["timestamp"] >= ts:
            return i
    return None


def probe_times(records):
    """Times to look up: before everything, exact hits, between records, after everything."""
    first = records[0]["timestamp"]
    last = records[-1]["timestamp"]
    return [first - 1_000, first, first + 5, records[len(records) // 2]["timestamp"], last, last + 1]
