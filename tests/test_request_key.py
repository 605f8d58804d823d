"""The request key is orjson's sorted-key JSON hashed with SHA-256, as DSPy computes it."""

import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turbodspy import _core


def orjson_key(request: dict, ignored=()) -> str:
    kept = {k: v for k, v in request.items() if k not in ignored}
    return hashlib.sha256(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)).hexdigest()


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
requests = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


@settings(max_examples=500, deadline=None)
@given(requests)
def test_key_matches_orjson_on_generated_requests(request):
    try:
        expected = orjson_key(request)
    except orjson.JSONEncodeError:
        # Lone surrogates: orjson refuses them, and so must we.
        with pytest.raises((TypeError, UnicodeEncodeError)):
            _core.request_key(request)
        return
    assert _core.request_key(request) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats())
def test_float_formatting_matches_orjson(value):
    assert _core.request_key({"x": value}) == orjson_key({"x": value})


def test_ignored_keys_are_left_out_at_the_top_level_only():
    request = {
        "model": "openai/gpt-4o-mini",
        "api_key": "sk-secret",
        "api_base": "http://localhost:1",
        "extra": {"api_key": "kept-when-nested"},
    }
    ignored = ["api_key", "api_base", "base_url"]
    assert _core.request_key(request, ignored) == orjson_key(request, ignored)
    assert _core.request_key(request, ignored) != _core.request_key({**request, "extra": {}}, ignored)


def test_tuples_serialise_as_arrays():
    assert _core.request_key({"stop": ("a", "b")}) == _core.request_key({"stop": ["a", "b"]})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"n": 2**64}, "64-bit"),
        ({"x": object()}, "not JSON serializable"),
        ({"x": {1: "a"}}, "key must be str"),
    ],
)
def test_non_json_values_raise_a_typed_error(bad, message):
    with pytest.raises(_core.UnsupportedValueError, match=message):
        _core.request_key(bad)


def test_the_same_long_string_object_keys_the_same_in_every_request_it_appears_in():
    # A batch sends one system prompt object with every request; its key must not depend on what came before.
    clean = "Your input fields are: `question`. " * 40
    escaped = 'A prompt with "quotes", a tab\t, a newline\n and \\ slashes. ' * 10
    for _ in range(3):
        for text in (clean, escaped, clean + "!", escaped):
            for i in range(3):
                request = {"messages": [{"role": "system", "content": text}, {"role": "user", "content": str(i)}]}
                assert _core.request_key(request) == orjson_key(request)


def test_a_cache_subclass_that_overrides_cache_key_keeps_its_own():
    from turbodspy.clients.cache import Cache

    class PrefixedKeys(Cache):
        def cache_key(self, request, ignored_args_for_cache_key=None, fn_identifier=None):
            return "custom-" + super().cache_key(request, ignored_args_for_cache_key, fn_identifier)

    cache = PrefixedKeys(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None)
    assert cache.cache_key({"model": "m"}) == "custom-" + orjson_key({"model": "m"})
    cache.put({"model": "m"}, {"answer": 1})
    assert cache.get({"model": "m"}) == {"answer": 1}
    assert "custom-" + orjson_key({"model": "m"}) in cache


@pytest.mark.parametrize("request_", [{"\ud800": 1}, {"messages": [{"content": "a lone \ud800 surrogate"}]}])
def test_text_that_is_not_valid_unicode_is_refused_not_hashed(request_):
    with pytest.raises(UnicodeEncodeError):
        _core.request_key(request_)


def test_ignored_args_may_be_any_container_of_names():
    from turbodspy.clients.cache import Cache

    request = {"model": "m", "api_key": "secret", "api_base": "http://x"}
    expected = orjson_key(request, ("api_key", "api_base"))
    for ignored in (
        ["api_key", "api_base"],
        ("api_key", "api_base"),
        {"api_key", "api_base"},
        frozenset({"api_key", "api_base"}),
    ):
        assert Cache.cache_key(request, ignored) == expected


def test_cache_key_patched_on_the_class_reaches_existing_caches(monkeypatch):
    from turbodspy.clients.cache import Cache

    cache = Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None)
    monkeypatch.setattr(Cache, "cache_key", lambda self, request, ignored=None, fn_identifier=None: "patched")
    assert cache.cache_key({"model": "m"}) == "patched"
