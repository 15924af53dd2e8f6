from __future__ import annotations

from gateway import keys


def test_new_keys_are_long_random_and_prefixed() -> None:
    made = {keys.new_key() for _ in range(100)}
    assert len(made) == 100
    assert all(k.startswith("cgw_") and len(k) >= 40 for k in made)


def test_matches_only_the_right_key() -> None:
    key = keys.new_key()
    digests = [keys.digest(keys.new_key()), keys.digest(key)]
    assert keys.matches(key, digests)
    assert not keys.matches(key + "x", digests)
    assert not keys.matches(key, [])
    assert keys.digest(key) != key
