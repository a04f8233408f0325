import pickle

import numpy as np
import pytest

from ttcrouter import (BeamSearch, BestOfN, MajorityVote, WeightedMajorityVote,
                       default_strategy_space, encode_strategies, parse_strategy)
from ttcrouter.strategies import METHODS, Strategy, as_strategy


@pytest.mark.parametrize("spec, name", [
    (BestOfN(4), "best_of_n@n=4"),
    (MajorityVote(8), "majority_vote@n=8"),
    (WeightedMajorityVote(8), "weighted_majority_vote@n=8"),
    (BeamSearch(8, 4), "beam_search@n=8,w=4"),
    (BeamSearch(8, 2, max_steps=5), "beam_search@n=8,w=2,steps=5"),
])
def test_canonical_name_round_trip(spec, name):
    assert spec.name == name
    assert str(spec) == name
    assert parse_strategy(name) == spec
    assert parse_strategy(name).name == name


def test_parse_tolerates_whitespace_and_returns_specs_unchanged():
    assert parse_strategy(" majority_vote @ n=2 ") == MajorityVote(2)
    spec = BeamSearch(4, 2)
    assert parse_strategy(spec) is spec
    assert as_strategy("best_of_n@n=1") == BestOfN(1)


def test_specs_are_immutable_hashable_and_picklable():
    spec = BeamSearch(8, 4)
    with pytest.raises(Exception):
        spec.n = 2
    assert len({spec, BeamSearch(8, 4), BestOfN(8)}) == 2
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert BestOfN(4) != MajorityVote(4)


def test_beam_search_geometry():
    spec = BeamSearch(16, 4)
    assert spec.n_beams == 4 and spec.beam_width == 4 and not spec.parallel
    assert MajorityVote(4).beam_width == 1 and MajorityVote(4).parallel
    assert BestOfN(2).needs_reward_model and not MajorityVote(2).needs_reward_model


@pytest.mark.parametrize("make, match", [
    (lambda: BeamSearch(6, 4), "must divide n=6"),
    (lambda: BestOfN(0), ">= 1"),
    (lambda: MajorityVote(-2), ">= 1"),
    (lambda: BeamSearch(4, 0), ">= 1"),
    (lambda: Strategy(4), "abstract"),
])
def test_bad_specs_raise_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_non_integer_n_is_rejected():
    with pytest.raises(TypeError, match="integer"):
        BestOfN(2.5)
    with pytest.raises(TypeError, match="integer"):
        MajorityVote(True)


@pytest.mark.parametrize("name, match", [
    ("best_of_n", "expected 'method@n=N'"),
    ("self_consistency@n=4", "Unknown strategy method"),
    ("best_of_n@n=four", "key=integer"),
    ("best_of_n@n=4,w=2", "takes only n"),
    ("beam_search@w=2", "lacks n"),
    ("beam_search@n=6,w=4", "must divide"),
])
def test_parse_errors_say_what_is_wrong(name, match):
    with pytest.raises(ValueError, match=match):
        parse_strategy(name)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a string"):
        parse_strategy(8)


def test_encoding_layout():
    enc = encode_strategies(["best_of_n@n=1", MajorityVote(8), BeamSearch(16, 4)])
    assert enc.dtype == np.float32 and enc.shape == (3, len(METHODS) + 2)
    np.testing.assert_array_equal(enc[0], [1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(enc[1], [0, 1, 0, 0, 3, 1])
    np.testing.assert_array_equal(enc[2], [0, 0, 0, 1, 4, 4])
    np.testing.assert_array_equal(BeamSearch(16, 4).encode(), enc[2])


def test_default_space():
    space = default_strategy_space()
    names = [s.name for s in space]
    assert len(space) == 17 and len(set(names)) == 17
    assert "beam_search@n=8,w=4" in names and "weighted_majority_vote@n=16" in names
    assert all(parse_strategy(n) == s for n, s in zip(names, space))
    small = default_strategy_space(max_n=4)
    assert max(s.n for s in small) == 4
    assert {s.method for s in small} == set(METHODS)
