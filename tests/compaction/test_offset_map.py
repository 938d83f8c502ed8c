"""The log cleaner's offset map (logstore.compaction.offset_map).

Every test taking ``make_map`` runs twice: on the pure-Python map and on the C one (skipped
when the C extension is not built, unless LOGSTORE_REQUIRE_SPEEDUPS=1, as in CI, makes a
missing build a failure; the same rule as tests/records/conftest.py).
"""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logstore.compaction import offset_map
from logstore.compaction.offset_map import (
    MAX_MEMORY_BYTES,
    MIN_MEMORY_BYTES,
    OffsetMap,
    PyOffsetMap,
    new_offset_map,
)

from logstore.errors import InvalidArgumentError

MakeMap = Callable[..., OffsetMap]
MASK64 = 2**64 - 1
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def require_c() -> None:
    """Skip (or, with LOGSTORE_REQUIRE_SPEEDUPS=1, fail) when the C map is not built."""
    if offset_map.accelerated():
        return
    if os.environ.get("LOGSTORE_REQUIRE_SPEEDUPS") == "1":
        pytest.fail("the C extension logstore.compaction._offset_map was not built")
    pytest.skip("the C offset map is not built (or LOGSTORE_PURE_PYTHON is set)")


@pytest.fixture(params=["python", "c"])
def make_map(request: pytest.FixtureRequest) -> MakeMap:
    """``make_map(memory_bytes, secret=None)``: a new map of one implementation."""
    if request.param == "c":
        require_c()
    cls: Any = offset_map.COffsetMap if request.param == "c" else PyOffsetMap

    def make(memory_bytes: int, secret: bytes | None = None) -> OffsetMap:
        return cls(memory_bytes, os.urandom(16) if secret is None else secret)

    return make


def capacity_of(memory_bytes: int) -> int:
    return memory_bytes // 24 * 9 // 10


# --- put / get ----------------------------------------------------------------------------


def test_put_get_overwrite_and_absent(make_map: MakeMap) -> None:
    m = make_map(10_000)
    assert len(m) == 0 and m.get(b"k") == -1 and m.latest_offset == -1
    assert m.put(b"k", 5) is True
    assert m.get(b"k") == 5 and len(m) == 1
    assert m.put(b"k", 9) is True
    assert m.get(b"k") == 9 and len(m) == 1
    assert m.put(b"k", 7) is True  # always the given offset, even a smaller one
    assert m.get(b"k") == 7 and m.latest_offset == 9
    assert m.get(b"other") == -1 and m.get(b"k\x00") == -1 and m.get(b"K") == -1


def test_empty_and_large_keys(make_map: MakeMap) -> None:
    m = make_map(10_000)
    big = os.urandom(1 << 20)
    assert m.put(b"", 1) and m.put(big, 2) and m.put(big[:-1], 3)
    assert m.get(b"") == 1 and m.get(big) == 2 and m.get(big[:-1]) == 3
    assert m.get(b"\x00") == -1 and m.get(big[1:]) == -1
    assert len(m) == 3


def test_bytes_like_keys_are_the_same_key(make_map: MakeMap) -> None:
    m = make_map(10_000)
    m.put(bytearray(b"abc"), 1)
    assert m.get(b"abc") == 1 and m.get(memoryview(b"xabc")[1:]) == 1
    m.put(memoryview(b"abc"), 2)
    assert m.get(bytearray(b"abc")) == 2 and len(m) == 1


@pytest.mark.parametrize("key", ["abc", 1, None, 1.5, ["a"]])
def test_non_bytes_keys_raise_type_error(make_map: MakeMap, key: Any) -> None:
    m = make_map(10_000)
    with pytest.raises(TypeError):
        m.put(key, 1)
    with pytest.raises(TypeError):
        m.get(key)
    with pytest.raises(TypeError):
        m.get_many([b"ok", key])
    assert len(m) == 0 and m.latest_offset == -1


def test_non_contiguous_key_is_refused(make_map: MakeMap) -> None:
    m = make_map(10_000)
    with pytest.raises(BufferError):
        m.put(memoryview(b"abcdef")[::2], 1)
    assert len(m) == 0


def test_offsets_are_checked(make_map: MakeMap) -> None:
    m = make_map(10_000)
    for bad in (-1, -(2**63), 2**63, 2**64):
        with pytest.raises(InvalidArgumentError):
            m.put(b"k", bad)
        with pytest.raises(ValueError):
            m.put(b"k", bad)
    not_ints: tuple[Any, ...] = (1.0, "1", None)
    for not_int in not_ints:
        with pytest.raises(TypeError):
            m.put(b"k", not_int)
    assert len(m) == 0 and m.latest_offset == -1
    assert m.put(b"k", 2**63 - 1) and m.put(b"z", 0)
    assert m.get(b"k") == 2**63 - 1 and m.get(b"z") == 0 and m.latest_offset == 2**63 - 1


def test_latest_offset_is_the_largest_put(make_map: MakeMap) -> None:
    m = make_map(10_000)
    m.put(b"a", 10)
    m.put(b"b", 4)
    m.put(b"a", 3)
    assert m.latest_offset == 10
    m.put_many([b"c", b"d"], [11, 12])
    assert m.latest_offset == 12


# --- fullness -----------------------------------------------------------------------------


def test_put_returns_false_exactly_when_full(make_map: MakeMap) -> None:
    for _ in range(20):  # several secrets: different probe chains and wrap-arounds
        m = make_map(MIN_MEMORY_BYTES)
        assert m.capacity == 14 and m.remaining == 14 and m.memory_bytes == 384
        for i in range(14):
            assert m.remaining == 14 - i
            assert m.put(b"key%d" % i, i) is True
        assert len(m) == 14 and m.remaining == 0
        assert m.put(b"one more", 100) is False
        assert m.get(b"one more") == -1 and len(m) == 14 and m.latest_offset == 13
        assert m.put(b"key3", 50) is True  # overwriting still works when full
        assert [m.get(b"key%d" % i) for i in range(14)] == [*range(3), 50, *range(4, 14)]


def test_put_many_stops_at_the_first_key_that_does_not_fit(make_map: MakeMap) -> None:
    m = make_map(MIN_MEMORY_BYTES)
    m.put(b"k0", 0)
    keys = [b"k%d" % i for i in range(30)]
    # k0 is already in, so 14 distinct keys fit: k0..k13; k14 does not.
    assert m.put_many(keys, list(range(100, 130))) == 14
    assert m.get_many(keys) == [*range(100, 114), *[-1] * 16]
    assert len(m) == 14 and m.latest_offset == 113
    # Keys already present still go in; a new one stops the batch.
    assert m.put_many([b"k1", b"k2", b"new", b"k3"], [200, 201, 202, 203]) == 2
    assert m.get_many([b"k1", b"k2", b"new", b"k3"]) == [200, 201, -1, 103]


def test_put_many_counts_duplicates_and_takes_any_sequence(make_map: MakeMap) -> None:
    m = make_map(10_000)
    assert m.put_many((b"a", b"b", b"a"), range(3)) == 3
    assert len(m) == 2 and m.get(b"a") == 2
    assert m.put_many([], []) == 0
    assert m.get_many(k for k in (b"a", b"b", b"c")) == [2, 1, -1]


def test_put_many_errors(make_map: MakeMap) -> None:
    m = make_map(10_000)
    with pytest.raises(InvalidArgumentError):
        m.put_many([b"a", b"b"], [1])
    assert len(m) == 0
    with pytest.raises(TypeError):
        m.put_many([b"a", b"b", "c", b"d"], [1, 2, 3, 4])  # type: ignore[list-item]
    assert m.get_many([b"a", b"b", b"d"]) == [1, 2, -1]  # pairs before the bad one applied
    with pytest.raises(InvalidArgumentError):
        m.put_many([b"x", b"y"], [5, -1])
    assert m.get(b"x") == 5 and m.get(b"y") == -1 and m.latest_offset == 5
    with pytest.raises(TypeError):
        m.put_many(iter([b"a"]), [1])  # type: ignore[arg-type]  # not sized


def test_clear(make_map: MakeMap) -> None:
    m = make_map(MIN_MEMORY_BYTES * 3)
    keys = [os.urandom(8) for _ in range(m.capacity)]
    assert m.put_many(keys, range(m.capacity)) == m.capacity
    m.clear()
    assert len(m) == 0 and m.remaining == m.capacity and m.latest_offset == -1
    assert m.get_many(keys) == [-1] * len(keys)
    assert m.put_many(keys[::-1], range(m.capacity)) == m.capacity
    assert m.get(keys[-1]) == 0


# --- model test ---------------------------------------------------------------------------

keys_st = st.binary(max_size=3)
offsets_st = st.integers(0, 2**63 - 1)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys_st, offsets_st),
        st.tuples(st.just("get"), keys_st),
        st.tuples(st.just("put_many"), st.lists(st.tuples(keys_st, offsets_st), max_size=20)),
        st.tuples(st.just("clear")),
    ),
    max_size=80,
)


def run_model(m: OffsetMap, memory_bytes: int, ops: list[tuple[Any, ...]]) -> None:
    model: dict[bytes, int] = {}
    latest = -1
    capacity = capacity_of(memory_bytes)
    assert m.capacity == capacity and m.memory_bytes == memory_bytes // 24 * 24

    def model_put(key: bytes, offset: int) -> bool:
        nonlocal latest
        if key not in model and len(model) >= capacity:
            return False
        model[key] = offset
        latest = max(latest, offset)
        return True

    for op in ops:
        if op[0] == "put":
            assert m.put(op[1], op[2]) == model_put(op[1], op[2])
        elif op[0] == "get":
            assert m.get(op[1]) == model.get(op[1], -1)
        elif op[0] == "put_many":
            applied = 0
            for key, offset in op[1]:
                if not model_put(key, offset):
                    break
                applied += 1
            assert m.put_many([k for k, _ in op[1]], [o for _, o in op[1]]) == applied
        else:
            m.clear()
            model.clear()
            latest = -1
        assert len(m) == len(model) and m.remaining == capacity - len(model)
        assert m.latest_offset == latest
    keys = list(model)
    assert m.get_many(keys) == [model[k] for k in keys]


@FIXTURE_OK
@given(memory_bytes=st.integers(MIN_MEMORY_BYTES, 24 * 40), ops=ops_st)
def test_model_small_maps_fill_up(
    make_map: MakeMap, memory_bytes: int, ops: list[tuple[Any, ...]]
) -> None:
    run_model(make_map(memory_bytes), memory_bytes, ops)


@FIXTURE_OK
@given(ops=ops_st)
def test_model_roomy_map(make_map: MakeMap, ops: list[tuple[Any, ...]]) -> None:
    run_model(make_map(1 << 16), 1 << 16, ops)


def test_many_random_keys_at_full_load(make_map: MakeMap) -> None:
    memory = 24 * 5_000
    m = make_map(memory)
    rng = random.Random(7)
    distinct: set[bytes] = set()
    while len(distinct) < m.capacity:
        distinct.add(rng.randbytes(rng.randrange(0, 40)))
    model = {key: i for i, key in enumerate(distinct)}
    assert m.put_many(list(model), list(model.values())) == len(model) == m.capacity
    assert m.get_many(list(model)) == list(model.values())
    assert m.get_many([b"absent%d" % i for i in range(1000)]) == [-1] * 1000


# --- construction -------------------------------------------------------------------------


def test_capacity_formula(make_map: MakeMap) -> None:
    for memory in (MIN_MEMORY_BYTES, 385, 407, 408, 1000, 24 * 1001, 1 << 20):
        m = make_map(memory)
        assert m.capacity == capacity_of(memory) == m.remaining
        assert m.memory_bytes == memory // 24 * 24


@pytest.mark.parametrize(
    "memory", [MIN_MEMORY_BYTES - 1, 0, -1, MAX_MEMORY_BYTES + 1, 2**70, True, 1e6, "4096", None]
)
def test_bad_memory_bytes(make_map: MakeMap, memory: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        make_map(memory)
    with pytest.raises(InvalidArgumentError):
        new_offset_map(memory)


@pytest.mark.parametrize("secret", [b"", b"x" * 15, b"x" * 17, "x" * 16, 16, bytes(32)])
def test_bad_secret(make_map: MakeMap, secret: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        make_map(1000, secret)
    with pytest.raises(InvalidArgumentError):
        new_offset_map(1000, secret=secret)


def test_given_secret_and_default_secret(make_map: MakeMap) -> None:
    for secret in (bytes(16), bytearray(range(16)), memoryview(b"s" * 16)):
        m = make_map(1000, secret)
        assert m.put(b"a", 1) and m.get(b"a") == 1
    m = new_offset_map(1000)
    assert m.put(b"a", 1) and m.get(b"a") == 1 and isinstance(m, OffsetMap)


def test_memory_stays_within_the_budget(make_map: MakeMap) -> None:
    memory = 8 << 20
    keys = [os.urandom(16) for _ in range(2_000)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        m = make_map(memory)
        m.put_many(keys, range(len(keys)))
        m.get_many(keys)
        m.clear()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # The table, plus at most a constant (the Python clear() zeroes in 1 MiB chunks).
    assert memory - 24 <= peak < memory + (3 << 19)


def test_all_zero_digest_is_stored_as_nonzero() -> None:
    """The Python map's digest forced to zeros: still stored (as 01 00..00), and another key
    with the same digest is the same key, as documented."""

    class ZeroHasher:
        def copy(self) -> ZeroHasher:
            return self

        def update(self, data: bytes) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(16)

    m = PyOffsetMap(MIN_MEMORY_BYTES, bytes(16))
    m._hasher = ZeroHasher()  # type: ignore[assignment]
    assert m.put(b"x", 4) and m.get(b"x") == 4 and m.get(b"y") == 4 and len(m) == 1
    assert m._table.count(b"\x01" + bytes(15)) == 1


# --- SipHash-2-4-128 ----------------------------------------------------------------------

# vectors_sip128 of the reference implementation (github.com/veorq/SipHash, vectors.h):
# key 00 01 .. 0f, message i = bytes 00 01 .. (i-1).
SIPHASH128_VECTORS = {
    0: "a3817f04ba25a8e66df67214c7550293",
    1: "da87c1d86b99af44347659119b22fc45",
    2: "8177228da4a45dc7fca38bdef60affe4",
    7: "a1f1ebbed8dbc153c0b84aa61ff08239",
    8: "3b62a9ba6258f5610f83e264f31497b4",
    9: "264499060ad9baabc47f8b02bb6d71ed",
    15: "5493e99933b0a8117e08ec0f97cfc3d9",
    16: "6ee2a4ca67b054bbfd3315bf85230577",
    31: "2939b0183223fafc1723de4f52c43d35",
    63: "5150d1772f50834a503e069a973fbd7c",
}


def c_module() -> Any:
    require_c()
    return importlib.import_module("logstore.compaction._offset_map")


def siphash128_py(key: bytes, data: bytes) -> bytes:
    """An independent, slow SipHash-2-4-128 straight from the paper, to check the C one."""

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & MASK64

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D ^ 0xEE]
    v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & MASK64
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK64
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & MASK64
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & MASK64
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    tail = len(data) - len(data) % 8
    blocks = [int.from_bytes(data[i : i + 8], "little") for i in range(0, tail, 8)]
    blocks.append(int.from_bytes(data[tail:], "little") | (len(data) & 0xFF) << 56)
    for m in blocks:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xEE
    rounds(4)
    lo = v[0] ^ v[1] ^ v[2] ^ v[3]
    v[1] ^= 0xDD
    rounds(4)
    hi = v[0] ^ v[1] ^ v[2] ^ v[3]
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")


@pytest.mark.parametrize("length", sorted(SIPHASH128_VECTORS))
def test_siphash128_reference_vectors(length: int) -> None:
    key, data = bytes(range(16)), bytes(range(length))
    assert siphash128_py(key, data).hex() == SIPHASH128_VECTORS[length]
    _offset_map = c_module()

    assert _offset_map._siphash128(key, data).hex() == SIPHASH128_VECTORS[length]


@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=100))
def test_siphash128_matches_the_python_reference(key: bytes, data: bytes) -> None:
    _offset_map = c_module()

    assert _offset_map._siphash128(key, data) == siphash128_py(key, data)
    assert _offset_map._siphash128(bytearray(key), memoryview(data)) == siphash128_py(key, data)


def test_siphash128_argument_checks() -> None:
    _offset_map = c_module()

    with pytest.raises(ValueError):
        _offset_map._siphash128(b"short", b"")
    with pytest.raises(TypeError):
        _offset_map._siphash128(bytes(16), "text")


def test_c_type_checks() -> None:
    require_c()
    cls: Any = offset_map.COffsetMap
    with pytest.raises(TypeError):
        cls(1000)  # no secret
    with pytest.raises(TypeError):
        type("Sub", (cls,), {})  # not subclassable: no half-initialised maps
    m = cls(1000, bytes(16))
    with pytest.raises(TypeError):
        m.put(b"a")
    with pytest.raises(TypeError):
        m.put_many([b"a"])
    with pytest.raises(AttributeError):
        m.capacity = 5


# --- the switch ---------------------------------------------------------------------------


def implementation_in_subprocess(tmp_path: Path, pure: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LOGSTORE_PURE_PYTHON"}
    if pure is not None:
        env["LOGSTORE_PURE_PYTHON"] = pure
    probe = (
        "from logstore.compaction.offset_map import new_offset_map\n"
        "print(type(new_offset_map(1000)).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pure_python_switch(tmp_path: Path) -> None:
    assert implementation_in_subprocess(tmp_path, "1") == "PyOffsetMap"
    require_c()
    assert implementation_in_subprocess(tmp_path, None) == "COffsetMap"
    assert implementation_in_subprocess(tmp_path, "0") == "COffsetMap"
